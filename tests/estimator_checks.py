"""Tools the estimator tests share: tiny models, fed noise, and the exact gradient by enumeration."""
from __future__ import absolute_import, division, print_function

import itertools
import zlib

import numpy as np

import config
import rebar
import utils as U
import tensorflow.compat.v1 as tf

TINY = 'n_input=6,n_hidden=3'


def tiny_data(n=8, seed=0, likelihood='bernoulli'):
    """Images of 6 pixels with a known mean: binary, or for likelihood=gaussian grey in
    [-1, 1] (the data that likelihood models)."""
    rng = np.random.RandomState(seed)
    binary = (rng.rand(n, 6) < np.linspace(0.2, 0.8, 6)).astype(np.float32)
    if likelihood == 'gaussian':   # the same images made grey, then x * 2 - 1
        return (2 * (0.2 + 0.6 * binary + 0.2 * rng.rand(n, 6)) - 1).astype(np.float32)
    return binary


def build(spec, mean_xs, static_shapes=False, reuse_hard=True):
    hp = config.parse_hparams(spec)
    return rebar.build_model(hp, mean_xs, static_shapes=static_shapes, reuse_hard=reuse_hard)


def noise_feed(model_or_step, n_rows, rng):
    """Uniform noise for every layer (of the model's main step, or of a given step), drawn by
    numpy so both TensorFlows see the same numbers."""
    return {u: rng.rand(n_rows, u.shape.as_list()[1]).astype(np.float32)
            for u in model_or_step.noise}


def exact_loss_gradient(model, xs):
    """-grad mean_x E_q(b|x)[f(x, b)] by summing over every latent configuration b.

    Returns one vector over model.variables (zeros where the objective does not depend on one).
    """
    f, log_q = _every_configuration(model, xs)
    objective = tf.reduce_mean(tf.reduce_sum(tf.exp(log_q) * f, 1))
    return U.vectorize(tf.gradients(-objective, model.variables), model.variables)


def _every_configuration(model, xs):
    """(f, log q), each [len(xs), C]: every image's f and log q(b|x) at each of the C latent
    configurations b (in itertools.product order)."""
    nets, hp = model.nets, model.hparams
    n_units = hp.n_layer * hp.n_hidden
    configs = np.array(list(itertools.product([0.0, 1.0], repeat=n_units)), np.float32)
    x_rep = np.repeat(xs, len(configs), 0)
    b = np.tile(configs, (len(xs), 1))
    samples = [tf.constant(b[:, i * hp.n_hidden:(i + 1) * hp.n_hidden])
               for i in range(hp.n_layer)]
    parent = nets.recognition_input(tf.constant(x_rep))
    log_q = 0.0
    for i in range(hp.n_layer):
        log_q += U.bernoulli_log_likelihood(samples[i], nets.q_logits(i, parent))
        parent = 2.0 * samples[i] - 1.0
    log_p = nets.log_p(tf.constant(x_rep), samples)
    f = log_p if nets.conditional else log_p - log_q
    shape = [len(xs), len(configs)]
    return tf.reshape(f, shape), tf.reshape(log_q, shape)


def exact_bound_gradient(model, xs, k):
    """-grad mean_x E[log mean_k exp f(x, b_k)], b_1..b_k independent samples of q(b|x), by
    summing over every k-tuple of latent configurations (C^k of them; keep C^k small).

    Returns one vector over model.variables."""
    f, log_q = _every_configuration(model, xs)
    n_configs = f.shape.as_list()[1]
    tuples = np.array(list(itertools.product(range(n_configs), repeat=k)), np.int32)
    f_t = tf.gather(f, tuples, axis=1)                        # [images, C^k, k]
    log_q_t = tf.reduce_sum(tf.gather(log_q, tuples, axis=1), 2)
    bound = U.log_mean_exp(f_t, 2)
    objective = tf.reduce_mean(tf.reduce_sum(tf.exp(log_q_t) * bound, 1))
    return U.vectorize(tf.gradients(-objective, model.variables), model.variables)


# learned scalar coefficients of control variates: REBAR's and RELAX's eta, double CV's and
# RODEO's alpha and beta; they keep their start (the control variate off or at 1) unless asked
COEFFICIENTS = ('eta', 'alpha', 'beta')


def load_weights(sess, etas=True):
    """Gives every weight and baseline (and, with `etas`, every coefficient) a value drawn from a seed
    made of its name, so that tests do not depend on TensorFlow's own initialisers."""
    for v in tf.global_variables():
        parts = v.op.name.split('/')
        if parts[0] not in ('model', 'estimator') or any('_adam' in p for p in parts):
            continue   # optimiser slots and moving averages keep their initial values
        if parts[-1].startswith(COEFFICIENTS) and not etas:
            continue
        shape = v.shape.as_list()
        scale = np.sqrt(2.0 / shape[0]) if len(shape) == 2 else 0.5   # fan-in scaling for weights
        rng = np.random.RandomState(zlib.crc32(v.op.name.encode('utf-8')))
        v.load(np.asarray(scale * rng.randn(*shape), np.float32), sess)


def perturb(sess, model, rng):
    """Random coefficients (eta, alpha, beta), baseline and control-variate network weights, and
    temperature: the estimators stay unbiased for any."""
    for v in tf.global_variables():
        name = v.op.name
        if name.startswith('estimator/'):
            shape = v.shape.as_list()
            scale = 1.0 if name.split('/')[-1].startswith(COEFFICIENTS) else 0.3
            v.load(np.float32(scale) * np.asarray(rng.randn(*shape), np.float32), sess)
    model.log_temperature.load(np.log(rng.uniform(0.2, 1.5)), sess)


def sample_gradients(sess, model, xs, runs, rng):
    """`runs` independent draws of the model's loss-gradient vector on the batch xs."""
    grad = U.vectorize(model.grads, model.variables)
    n_rows = len(xs) * model.hparams.n_samples
    draws = []
    for _ in range(runs):
        feed = noise_feed(model, n_rows, rng)
        feed[model.x] = xs
        draws.append(sess.run(grad, feed))
    return np.array(draws)


def training_fetches(model):
    variances = model.grad_variance if model.tracked else [model.grad_variance]
    return [model.train_op, model.step_after] + variances + model.train_report


def op_inputs(op):
    """The ops `op` waits for: its data and control inputs."""
    return [t.op for t in op.inputs] + list(op.control_inputs)


def op_consumers(op):
    """The ops that wait for `op`: consumers of its outputs and its control dependents."""
    return [c for t in op.outputs for c in t.consumers()] + list(op._control_outputs)


def reachable(start, neighbours=op_inputs):
    """The ops of `start` (ops or tensors) and every op reached from them through
    `neighbours` (by default: everything they depend on)."""
    stack = [f if isinstance(f, tf.Operation) else f.op for f in start]
    seen = set(stack)
    while stack:
        for op in neighbours(stack.pop()):
            if op not in seen:
                seen.add(op)
                stack.append(op)
    return seen


def unknown_dimensions(fetches):
    """Tensors with an unknown dimension among everything `fetches` depend on."""
    return [t for op in reachable(fetches) for t in op.outputs if not t.shape.is_fully_defined()]
