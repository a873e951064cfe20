"""Every estimator of `rebar.ESTIMATORS` on a function f(b) of your own.

    import binary_gradient
    est = binary_gradient.estimate(f, logits, 'RELAX', n_samples=1)

gives an estimate of d E_{b ~ Bernoulli(sigmoid(logits))}[f(b)] / d logits and an op that trains
what the estimator learns. No estimator is re-implemented here: `f` becomes the learning signal
of a one-layer "network" (`FNetworks`) whose logits are yours, run through the same
`rebar.ForwardPasses`, `rebar.Step` and estimator functions as the sigmoid belief networks. The
ELBO of that network is f itself (no log q term, as for the structured-prediction task), so the
estimators' "maximise the ELBO" gradient is the gradient of E[f]; `estimate` returns it with the
sign of d E[f] / d logits (ascend it to maximise E[f], descend it to minimise).

Why a module of its own rather than a function in rebar.py: the model file stays the one place
for the estimators' math, and this adapter (a duck-typed `Networks` and model, input checks)
needs no change to it.

What each estimator requires of f. f maps a [M, D] float32 batch of rows to [M]; every
estimator evaluates it at binary rows b, some at other rows too; K = n_samples rows are drawn
per logit row; "evals" counts evaluations of f per drawn row (the registry's `passes`).

| estimator | f evaluated at | f must be | K | evals |
| --- | --- | --- | --- | --- |
| REINFORCE | b | any (no gradient used) | 1+ | 1 |
| NVIL | b | any | 1+ | 1 |
| SimpleMuProp | b, sigmoid(logits) | defined on [0, 1]^D | 1+ | 2 |
| MuProp | b, sigmoid(logits) | differentiable in b at the mean | 1+ | 2 |
| Concrete (biased) | relaxed z in (0, 1)^D (b for the report) | differentiable in z | 1+ | 2 |
| REBAR, DynamicREBAR | b, relaxed z and z~ | differentiable in z | 1+ | 3 |
| RELAX | b, relaxed z and z~ | differentiable in z | 1+ | 3 |
| ARM, DisARM | b and its antithetic b~ | any | 1+ | 2 |
| ReinforceLOO | b | any | 2+ | 1 |

REINFORCE centres each f on the mean f of the step's other N K - 1 rows (plain REINFORCE with a
single row). An estimator added to the registry later is accepted as it is, its minimum K from
`config.MULTI_SAMPLE_MODELS` (through its model class).

Learned parts, trained by `update` (Adam) as `rebar.Model` trains them: NVIL's, SimpleMuProp's,
MuProp's and REBAR's baseline c (a network of a constant input here, so a learned constant) and
the etas, on their squared signal or on the variance objective mean(g^2); DynamicREBAR's and
RELAX's temperature (`learned` holds `log_temperature`); RELAX's network r.
"""
from __future__ import absolute_import, division, print_function

import collections

import numpy as np
import tensorflow.compat.v1 as tf

import config
import rebar

def model_class(name):
    """The model class of `rebar` that trains with estimator `name` alone (None if none does)."""
    for cls in vars(rebar).values():
        if (isinstance(cls, type) and issubclass(cls, rebar.Model) and cls.estimator == name
                and cls.tracked is None):
            return cls
    return None


def min_samples(name):
    """The smallest n_samples K that `name` accepts: 2 for estimators that centre each sample on
    the other samples of its row (config.MULTI_SAMPLE_MODELS), else 1."""
    cls = model_class(name)
    return 2 if cls is not None and cls.__name__ in config.MULTI_SAMPLE_MODELS else 1


def learns_temperature(name):
    """Whether `name`'s model class trains the temperature on the variance objective."""
    cls = model_class(name)
    return bool(cls is not None and cls.learns_temperature)


def check_applicable(name, n_samples):
    """Raises ValueError (one line: the problem and the fix) unless estimator `name` can run
    with n_samples samples per logit row."""
    if name not in rebar.ESTIMATORS:
        raise ValueError('Unknown estimator %r; choose one of %s.'
                         % (name, ', '.join(rebar.ESTIMATORS)))
    if n_samples < min_samples(name):
        raise ValueError('%s needs n_samples >= %d (it centres each sample on the other samples '
                         'of its row), got %d; fix: pass n_samples=%d.'
                         % (name, min_samples(name), n_samples, min_samples(name)))


class FNetworks(object):
    """The duck-typed `rebar.Networks` of one stochastic layer whose logits are a given tensor
    and whose log p is the user's f: `conditional`, so that the ELBO of a pass is f alone.

    The "input" is a constant [N, 1] zero image: baselines that read the input (NVIL's c(x))
    become learned constants.
    """
    conditional = True

    def __init__(self, f, logits, hparams):
        self.f, self.logits, self.hparams = f, logits, hparams
        self.mean_xs = np.zeros([1], np.float32)

    def recognition_input(self, x):
        return x

    def q_logits(self, i, inputs):
        """The logits for every row of `inputs` ([D] tiled, or [N, D] as given)."""
        if self.logits.shape.ndims == 1:
            return tf.tile(self.logits[None, :], [inputs.shape.as_list()[0], 1])
        return self.logits

    def log_p_terms(self, x, samples, start=0):
        """[f(b)]: the whole objective is the one term."""
        b = samples[0]
        value = self.f(b)
        if value.shape.as_list() != b.shape.as_list()[:1]:
            raise ValueError('f must map a [M, D] batch to [M], but it gave shape %s for a batch '
                             'of shape %s; fix: reduce over the last axis (e.g. tf.reduce_sum(..., '
                             '1)).' % (value.shape.as_list(), b.shape.as_list()))
        return [value]


class _FModel(object):
    """What `rebar.Step` reads of a model: hparams, nets, the temperature variable, the
    estimator and the report."""

    reuse_hard = False

    def __init__(self, nets, name, variables):
        self.nets, self.hparams, self._name, self._variables = nets, nets.hparams, name, variables
        self.learns_temperature = learns_temperature(name)
        self.log_temperature = tf.get_variable(
            'log_temperature', [], tf.float32,
            tf.constant_initializer(np.log(self.hparams.temperature)), trainable=False,
            use_resource=True)

    def estimate(self, step):
        return rebar.ESTIMATORS[self._name].build(step, self._variables, self.hparams)

    def report(self, step):
        est = step.estimate
        return list(zip(est.report_names, est.report)) + est.etas


# gradient: d E[f] / d logits, the shape of logits ([D]: the mean over the K samples; [N, D]:
# row n's own estimate, from its K samples). update: one Adam step of the learned parts (a no-op
# when nothing is learned). learned: the variables it trains. computed: every tensor the step
# computes from the logits (run your update of the logits after these). report: the estimator's
# report vector, {name: scalar}. noise: the uniform noise [N K, D] (a placeholder with a random
# default; rows sample-major, row k N + n belongs to logit row n), fed to replay a draw.
# temperature: the relaxations' temperature. step: the `rebar.Step`.
Estimate = collections.namedtuple('Estimate', 'gradient update learned computed report noise '
                                  'temperature step')


def estimate(f, logits, estimator, n_samples=1, learning_rate=1e-3, hparams=None,
             scope='binary_gradient'):
    """An estimate of d E_{b ~ Bernoulli(sigmoid(logits))}[f(b)] / d logits, with `estimator`
    (a name of `rebar.ESTIMATORS`) and `n_samples` = K samples per logit row.

    f: a function of a float32 tensor [M, D] (M = N K rows) to [M], built from TensorFlow ops;
      see the module's table for where each estimator evaluates and differentiates it.
    logits: a float32 tensor or variable of static shape [D] (one distribution) or [N, D] (N
      independent ones, e.g. a batch of inputs of a policy).
    learning_rate: Adam's step for the learned parts (beta2 from hparams, default 0.99999).
    hparams: overrides of `config.DEFAULTS` that the estimators read, e.g. {'temperature': 0.1}
      (the relaxation's temperature, initial value where it is learned) or
      {'muprop_relaxation': False}.
    scope: variable scope of the learned parts; calls with the same scope share them.

    Returns an `Estimate` (see its comment for shapes). Cost per draw: the table's evaluations
    of f on N K rows, plus one backward pass through them for the relaxed estimators.

    Raises ValueError, before building anything, for an unknown estimator, a K below the
    estimator's minimum, or logits of another rank or without a static shape; and at f's first
    call if f does not return one value per row.

    Example: minimise E[(b - 0.45)^2] over one bit with RELAX.

        import tensorflow.compat.v1 as tf
        import binary_gradient
        theta = tf.get_variable('theta', [1], initializer=tf.zeros_initializer())
        est = binary_gradient.estimate(lambda b: tf.reduce_sum(tf.square(b - 0.45), 1),
                                       theta, 'RELAX', learning_rate=0.01)
        with tf.control_dependencies(est.computed):
            step = tf.group(tf.train.AdamOptimizer(0.01).apply_gradients(
                [(est.gradient, theta)]), est.update)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(2000):
                sess.run(step)
            print(sess.run(tf.sigmoid(theta)))   # towards 0
    """
    logits = tf.convert_to_tensor(logits) if not isinstance(logits, tf.Variable) else logits
    shape = logits.shape.as_list() if logits.shape.ndims is not None else None
    if shape is None or len(shape) not in (1, 2) or None in shape:
        raise ValueError('logits must have a static shape [D] or [N, D], got %s; fix: reshape '
                         'or set_shape them.' % (shape,))
    n_rows = 1 if len(shape) == 1 else shape[0]
    check_applicable(estimator, n_samples)
    values = {'n_hidden': shape[-1], 'n_layer': 1, 'n_samples': n_samples}
    values.update(hparams or {})
    hp = config.HParams(**values)
    with tf.variable_scope(scope, reuse=tf.AUTO_REUSE):
        nets = FNetworks(f, logits, hp)
        model = _FModel(nets, estimator, [logits])
        rows = n_rows * n_samples
        noise = tf.placeholder_with_default(tf.random_uniform([rows, shape[-1]]),
                                            [rows, shape[-1]], name='u_0')
        step = rebar.Step(model, tf.zeros([n_rows, 1]), n_samples, rows, [noise])
        gradient = -step.estimate.grads[0] * float(n_rows)   # the estimators' loss is -mean f
        learned = [v for _, v in step.control_grads]
        computed = [gradient] + [g for g, _ in step.control_grads] + step.report
        if step.control_grads:
            with tf.control_dependencies(computed):
                update = tf.train.AdamOptimizer(learning_rate, beta2=hp.beta2,
                                                name='control_adam').apply_gradients(
                                                    step.control_grads)
        else:
            update = tf.no_op()
    return Estimate(gradient, update, learned, computed,
                    dict(zip(step.report_names, step.report)), step.noise[0], step.temperature,
                    step)
