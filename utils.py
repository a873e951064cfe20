"""Small TensorFlow helpers shared by the model and the driver (graph mode, TF 1.15 and TF 2)."""
from __future__ import absolute_import, division, print_function

import numpy as np
import tensorflow.compat.v1 as tf

# One graph-mode semantics in both worlds: TF 2 behaves as TF 1.15 does (graphs, sessions,
# v1 control flow and shapes).
tf.disable_v2_behavior()

EPS = 1e-8


def safe_log(x, eps=EPS):
    """log(clip(x, eps, 1)): the noise's logs, finite at 0 and 1.

    The clip acts on the value only; the gradient is that of log x at the clipped point (the
    two differ only within 1e-8 of 0 or 1). This keeps clipping out of the gradient graph, whose
    TF 1.15 form has shapes unknown until run time even in the static-shape build.
    """
    return tf.log(x + tf.stop_gradient(tf.clip_by_value(x, eps, 1.0) - x))


def logit_noise(u):
    """log u - log(1 - u), the logistic noise behind every hard and relaxed sample."""
    return safe_log(u) - safe_log(1.0 - u)


def bernoulli_log_likelihood(y, logits):
    """sum_j y_j log sigma(l_j) + (1 - y_j) log sigma(-l_j) over the last axis, [N, D] -> [N].

    Written as sum_j [y_j l_j - softplus(l_j)] with TensorFlow's stable softplus (four ops, and
    a short gradient, y - sigma(l)); y may be relaxed (in [0, 1]).
    """
    return tf.reduce_sum(y * logits - tf.nn.softplus(logits), 1)


def gaussian_log_likelihood(y, mean, variance):
    """sum_j log N(y_j; mean_j, variance_j) over the last axis, [N, D] (variance [D]) -> [N]:
    sum_j -(log(2 pi variance_j) + (y_j - mean_j)^2 / variance_j) / 2.

    The precision 1/variance is taken once per pixel and multiplied in: TF 1.15's gradient of a
    broadcast division has shapes unknown until run time (see `mean_square`).
    """
    precision = tf.reciprocal(variance)
    return -0.5 * tf.reduce_sum(tf.log(2.0 * np.pi * variance)
                                + tf.square(y - mean) * precision, 1)


def floored_softplus(raw, floor):
    """max(softplus(raw), floor) for `raw` of a static shape: a positive parameter (a variance)
    that never falls below `floor`; below it the gradient in raw is zero, as in the
    double-CV/RODEO authors' code. A select against a floor of raw's shape, not tf.maximum:
    TF 1.15's gradient of a broadcast maximum has shapes unknown until run time."""
    value = tf.nn.softplus(raw)
    floors = tf.constant(np.full(raw.shape.as_list(), floor, np.float32))
    return tf.where(value > floors, value, floors)


def leave_one_out_centre(x):
    """x_i - mean_{j != i} x_j over the first axis: a baseline independent of sample i. A single
    sample has no others and keeps x (baseline 0: plain REINFORCE, as the papers' one-sample
    toy problem uses it)."""
    n = tf.cast(tf.shape(x)[0], x.dtype)
    return x - (tf.reduce_sum(x) - x) / tf.maximum(n - 1.0, 1.0)


def mean_square(tensors, variables=None):
    """mean(x^2) over every entry of a list of tensors of static shapes, from TensorFlow's
    fused l2_loss (sum(x^2) / 2, one pass). A product with 2/n, not a division: TF 1.15's
    gradient of a division has shapes unknown until run time.

    With `variables` (one per tensor), a missing (None) gradient counts as zeros of its
    variable's shape: its entries stay in n, as in the released code's variance objective.
    """
    if variables is None:
        variables = tensors
    present = [t for t in tensors if t is not None]
    n = sum(v.shape.num_elements() for v in variables)
    return tf.add_n([tf.nn.l2_loss(t) for t in present]) * (2.0 / n)


def rms(x):
    return tf.sqrt(tf.reduce_mean(tf.square(x)))


def log_sum_exp(x, axis):
    """log sum_k exp(x_k) along `axis`, shifted by the maximum for stability."""
    m = tf.reduce_max(x, axis, keepdims=True)
    return tf.squeeze(m, [axis]) + tf.log(tf.reduce_sum(tf.exp(x - m), axis))


def log_mean_exp(x, axis):
    """log (1/K) sum_k exp(x_k) along `axis`."""
    k = tf.cast(tf.shape(x)[axis], x.dtype)
    return log_sum_exp(x, axis) - tf.log(k)


def vectorize(grads, variables=None):
    """Concatenates gradients into one vector.

    With `variables`, a missing (None) gradient counts as zeros of its variable's shape;
    without, missing gradients are left out.
    """
    if variables is None:
        return tf.concat([tf.reshape(g, [-1]) for g in grads if g is not None], 0)
    return tf.concat([tf.reshape(g if g is not None else tf.zeros_like(v), [-1])
                      for g, v in zip(grads, variables)], 0)


def debiased_ema(tensors, decay, name):
    """Exponential moving averages with zero-debiasing.

    m_n = decay m_{n-1} + (1 - decay) x_n, m_0 = 0, updated in place as m -= (1 - decay)(m - x);
    the average is m_n / (1 - decay^n) (0 before the first update). Returns (update_op, read):
    read() builds reads ([m...], 1 - decay^n) at the point of the graph where it is called
    (inside a control dependency on update_op to see this step's values), so that callers can
    fold the correction into scalars instead of dividing every entry.
    """
    with tf.variable_scope(name, reuse=tf.AUTO_REUSE):   # one set of averages per name
        count = tf.get_variable('count', [], tf.float32, tf.zeros_initializer(),
                                trainable=False, use_resource=True)
        biased = [tf.get_variable('biased_%d' % i, t.shape, tf.float32, tf.zeros_initializer(),
                                  trainable=False, use_resource=True)
                  for i, t in enumerate(tensors)]
    updates = [tf.raw_ops.ResourceApplyGradientDescent(var=b.handle, alpha=1.0 - decay,
                                                       delta=b.read_value() - t)
               for b, t in zip(biased, tensors)]
    updates.append(count.assign_add(1.0))

    def read():
        correction = 1.0 - tf.pow(decay, tf.maximum(count.read_value(), 1.0))
        return [b.read_value() for b in biased], correction
    return tf.group(*updates), read
