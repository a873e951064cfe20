"""Sigmoid belief networks trained with REINFORCE, NVIL, MuProp, Concrete, REBAR and the estimators
after it (RELAX, ARM, DisARM, REINFORCE leave-one-out, ARMS; VIMCO and local DisARM, which also
train the K-sample bound, hparam `objective`), in graph mode.

Reading order, as in the paper:

1. `Networks`: the variables of q(b|x) and p(x, b) and their transformations.
2. `ForwardPasses`: the hard pass (b = H(a + logit u)), relaxed passes (z = sigma((a + logit u)/t
   [+ a t/(t+1)])) that switch from hard to relaxed at a given layer, with u or with the
   conditional noise v, and the mean pass (sigma(a)). Each pass is built once per step and
   every estimator shares them.
3. Estimators, one short function each with one signature, `(step, variables, hparams)` ->
   `Estimate`: `reinforce`, `nvil`, `simple_muprop`, `muprop`, `concrete`, `rebar` and
   `dynamic_rebar` (both `rebar_gradient`, whose control variate and its gradient are built in
   `rebar_control_variate`), `arm`, `disarm`, `relax`, `reinforce_loo`, `arms` (with
   `ForwardPasses.copula`), `vimco` and `local_disarm` (with `KSampleBound`, the objective of
   an image's K samples); the registry `ESTIMATORS` names each with its number of forward
   passes per sample.
4. `Model` and the thin classes users name in --hparams (`SBNDynamicRebar`, ...): inputs and
   noise, the two Adam optimisers, the gradient-variance EMA and the importance-weighted bound.

Signs: every `grads` list holds the gradient of the loss, i.e. of minus the ELBO (minus the
K-sample bound under objective=iwae).
"""
from __future__ import absolute_import, division, print_function

import collections

import numpy as np
import tensorflow.compat.v1 as tf

import config
import utils as U


def _dense(inputs, n_output, scope):
    """One fully connected layer; weights ~ fan-in variance scaling (scale 2, truncated normal)."""
    with tf.variable_scope(scope, reuse=tf.AUTO_REUSE):
        w = tf.get_variable('weights', [inputs.shape[-1], n_output], tf.float32,
                            tf.variance_scaling_initializer(2.0, 'fan_in', 'truncated_normal'),
                            use_resource=True)
        b = tf.get_variable('biases', [n_output], tf.float32, tf.zeros_initializer(),
                            use_resource=True)
    return tf.nn.bias_add(tf.matmul(inputs, w), b)


LEAKY_SLOPE = 0.3   # the DisARM/RODEO protocol's LeakyReLU slope (nonlinearity=leaky_relu)


class Networks(object):
    """q(b_i | b_{i-1}) for i = 0..L-1 (b_{-1} = x) and p(x | b_0) prod p(b_{i-1} | b_i) p(b_{L-1}).

    A transformation is one dense layer, preceded by two layers of n_hidden when `nonlinear`
    (tanh, the reference's, or with `nonlinearity=leaky_relu` LeakyReLU of slope 0.3, the
    later papers' protocol). Inputs of every layer but the first recognition layer are samples
    in +-1 form.

    p(x | b_0), by `likelihood`: `bernoulli` (the reference's), logits = the transformation +
    the logit of the training mean; `gaussian` (pixels in [-1, 1]), N(x_j; m_j, s2_j) with mean
    m = the transformation + the training mean (ours: the Gaussian counterpart of the reference's
    output bias; the double-CV/RODEO authors' code starts it at 0), and a learned per-pixel
    variance s2_j = max(softplus(r_j), VARIANCE_FLOOR), r_j started at -0.5, a model variable
    trained with the decoder (as in those authors' code).
    """

    VARIANCE_FLOOR = 1e-3
    VARIANCE_RAW_INIT = -0.5

    def __init__(self, hparams, mean_xs):
        self.hparams = hparams
        mean_xs = np.asarray(mean_xs, np.float32).reshape([hparams.n_input])
        self.gaussian = hparams.likelihood == 'gaussian'
        if self.gaussian:
            train_bias = mean_xs
        else:
            train_bias = -np.log(1.0 / np.clip(mean_xs, 0.001, 0.999) - 1.0).astype(np.float32)
        self.mean_xs = mean_xs
        self.conditional = hparams.task == 'sp'
        if self.conditional:   # predict the bottom half of the image from its top half
            half = hparams.n_input // 2
            self.input_mean, self.output_bias = mean_xs[:half], train_bias[half:]
        else:
            self.input_mean, self.output_bias = mean_xs, train_bias
        self.n_output = len(self.output_bias)
        self.n_in = hparams.n_input // 2 if self.conditional else hparams.n_input

        # Creation order = the reference's order of trainable variables (the eta report follows it).
        with tf.variable_scope('model') as self._scope:
            self.prior = tf.get_variable('p_prior', [hparams.n_hidden], tf.float32,
                                         tf.zeros_initializer(), use_resource=True)
            for i in range(hparams.n_layer):
                n_in = self.n_in if i == 0 else hparams.n_hidden
                self.q_logits(i, tf.zeros([1, n_in]))
            for i in reversed(self._generative_layers()):
                self.p_logits(i, tf.zeros([1, hparams.n_hidden]))
            if self.gaussian:   # after the reference's variables, keeping their order
                self.variance_raw = tf.get_variable(
                    'p_x_variance_raw', [self.n_output], tf.float32,
                    tf.constant_initializer(self.VARIANCE_RAW_INIT), use_resource=True)
        self.variables = tf.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES,
                                           self._scope.name + '/')

    def _generative_layers(self):
        h = self.hparams
        if self.conditional and not h.sp_all_layers:
            return [h.n_layer - 1]   # the released code's model (2019 erratum): last layer only
        return list(range(h.n_layer))

    def _transform(self, inputs, n_output, scope):
        h = inputs
        if self.hparams.nonlinear:
            if self.hparams.nonlinearity == 'tanh':
                activation = tf.tanh
            else:
                activation = lambda t: tf.nn.leaky_relu(t, LEAKY_SLOPE)
            h = activation(_dense(h, self.hparams.n_hidden, scope + '_nonlinear_1'))
            h = activation(_dense(h, self.hparams.n_hidden, scope + '_nonlinear_2'))
        return _dense(h, n_output, scope)

    def q_logits(self, i, inputs):
        with tf.variable_scope(self._scope, reuse=tf.AUTO_REUSE):
            return self._transform(inputs, self.hparams.n_hidden, 'q_%d' % i)

    def p_logits(self, i, inputs):
        n_out = self.n_output if (i == 0 or self.conditional) else self.hparams.n_hidden
        with tf.variable_scope(self._scope, reuse=tf.AUTO_REUSE):
            return self._transform(inputs, n_out, 'p_%d' % i)

    def recognition_input(self, x):
        """The centred (top half of the) image seen by q's first layer."""
        return x[:, :self.n_in] - self.input_mean

    def variance(self):
        """The Gaussian likelihood's per-pixel variance [n_output], never below the floor.
        Built where it is used, so that inside the loop of several steps per call it reads the
        variable as that step left it."""
        return U.floored_softplus(self.variance_raw, self.VARIANCE_FLOOR)

    def _image_log_likelihood(self, x, outputs):
        """log p(x | b_0) [N] from the bottom transformation's `outputs` [N, n_output]."""
        parameter = tf.nn.bias_add(outputs, self.output_bias)
        if self.gaussian:
            return U.gaussian_log_likelihood(x, parameter, self.variance())
        return U.bernoulli_log_likelihood(x, parameter)

    def log_p_terms(self, x, samples, start=0):
        """The terms of log p(x, b) that involve a layer >= start: log p(b_{i-1} | b_i) for
        i >= start (b_{-1} = x), then the prior log p(b_{L-1}). For sp, the one term
        log p(x_bottom | b). Samples may be relaxed."""
        if self.conditional:
            logits = tf.add_n([self.p_logits(i, 2.0 * samples[i] - 1.0)
                               for i in self._generative_layers()])
            return [self._image_log_likelihood(x[:, self.n_in:], logits)]
        terms = []
        for i in range(start, self.hparams.n_layer):
            logits = self.p_logits(i, 2.0 * samples[i] - 1.0)
            if i == 0:
                terms.append(self._image_log_likelihood(x, logits))
            else:
                terms.append(U.bernoulli_log_likelihood(samples[i - 1], logits))
        return terms + [U.bernoulli_log_likelihood(samples[-1], self.prior[None, :])]

    def log_p(self, x, samples):
        """log p(x, b) for sbn/omni; log p(x_bottom | b) for sp."""
        return tf.add_n(self.log_p_terms(x, samples))


# One forward pass: per-sample `elbo` f, model term `log_p` (and its `log_p_terms`), and per
# layer `log_q`, `samples` and `logits`; `varying`, the part of f that involves the pass's own
# samples (f itself, but for a pass reusing the hard pass's terms below its start layer). For
# sp, f = log p(x_bottom | b) (no log q terms, as in the released code).
Pass = collections.namedtuple('Pass', 'elbo varying log_p log_p_terms log_q samples logits')


class ForwardPasses(object):
    """The passes of one training step over a batch of images, each seen n_samples times.

    Rows of the tiled batch `x` (N = batch x n_samples) are sample-major. `noise[i]` is layer
    i's uniform noise u_i [N, n_hidden]. Whatever two passes share is computed once: q's first
    layer depends on the image alone and is computed per image, then tiled; a pass switching to
    relaxed samples at layer l reuses the hard pass's samples and logits below l and its
    logits at l.
    """

    def __init__(self, nets, images, n_samples, noise, reuse_hard=True):
        self.nets, self.images, self.n_samples = nets, images, n_samples
        self.reuse_hard = reuse_hard and not nets.conditional
        self.x = self.tile(images)
        self._n_images = images.shape.as_list()[0] or tf.shape(images)[0]
        self.first_logits = self.tile(nets.q_logits(0, nets.recognition_input(images)))
        self.u = noise
        self.logit_u = [U.logit_noise(u) for u in noise]
        self.hard = self._run(lambda i, a: tf.stop_gradient(
            tf.cast(a + self.logit_u[i] > 0, tf.float32)))
        self.v = [conditional_noise(a, u) for a, u in zip(self.hard.logits, noise)]
        self.logit_v = [U.logit_noise(v) for v in self.v]
        self._mean = None
        self._antithetic = {}
        self._copula = {}
        self._bound = None
        self._f_gradients = None

    def _run(self, sample, start=0, below=None):
        """Samples layers >= start with `sample(i, logits)`, reusing below layer `start` the
        samples, logits and terms of the pass `below` (default: the hard pass)."""
        samples, logits, log_q = [], [self.first_logits], []
        if start > 0:
            below = below or self.hard
            samples = below.samples[:start]
            logits = below.logits[:start + 1]
            log_q = below.log_q[:start]
        for i in range(start, self.nets.hparams.n_layer):
            if i >= len(logits):
                logits.append(self.nets.q_logits(i, 2.0 * samples[i - 1] - 1.0))
            samples.append(sample(i, logits[i]))
            log_q.append(U.bernoulli_log_likelihood(samples[i], logits[i]))
        shared = start if self.reuse_hard else 0   # layers whose terms are `below`'s
        new_terms = self.nets.log_p_terms(self.x, samples, shared)
        log_p_terms = (below.log_p_terms[:shared] if shared else []) + new_terms
        log_p = tf.add_n(log_p_terms)
        elbo = log_p if self.nets.conditional else log_p - tf.add_n(log_q)
        varying = tf.add_n(new_terms) - tf.add_n(log_q[shared:]) if shared else elbo
        return Pass(elbo, varying, log_p, log_p_terms, log_q, samples, logits)

    def tile(self, per_image):
        """[batch, ...] -> [N, ...], repeating the batch n_samples times."""
        return tf.tile(per_image, [self.n_samples, 1])

    def relaxed(self, start, temperature, v_layers=()):
        """Hard below layer `start`, relaxed from it on (see `relaxed_sample`), with the
        conditional noise v in `v_layers` and u elsewhere."""
        logit_noise = [self.logit_v[i] if i in v_layers else lu
                       for i, lu in enumerate(self.logit_u)]
        relaxation = self.nets.hparams.muprop_relaxation
        return self._run(lambda i, a: relaxed_sample(a, logit_noise[i], temperature, relaxation),
                         start)

    def antithetic(self, layer):
        """ARM's second pass for `layer`: hard below it; there b~ = H(a - logit u) =
        1[u < sigma(a)], the antithetic partner of the hard b = 1[u > sigma(-a)]; above it hard
        again with the hard pass's own u (independent of u_layer, so the pair's difference
        stays an unbiased estimate given the layers below). Built once per layer: one
        evaluation of f."""
        if layer not in self._antithetic:
            flip = [-lu if i == layer else lu for i, lu in enumerate(self.logit_u)]
            self._antithetic[layer] = self._run(lambda i, a: tf.stop_gradient(
                tf.cast(a + flip[i] > 0, tf.float32)), layer)
        return self._antithetic[layer]

    def copula(self, layer):
        """ARMS's group for `layer`: the K = n_samples samples of each image share their
        layers below `layer` (for layer 0 the image; above, the image's first sample of
        `copula(0)`, tiled), so that they share the logits at `layer`; there they are drawn
        jointly from the Dirichlet copula (`dirichlet_copula`, `dirichlet_copula_sample`) made
        from the image's K rows of u_layer, which are independent of the shared parents; above
        it each row is sampled with the hard pass's noise. Each row alone is a sample of q.
        Built once per layer."""
        if layer not in self._copula:
            noise = dirichlet_copula(self.u[layer], self.n_samples)
            below = None
            if layer > 0:
                first = self.copula(0)
                below = Pass(*[[self._first_sample(t) for t in field]
                               if isinstance(field, list) else None for field in first])

            def sample(i, a):
                if i == layer:
                    return tf.stop_gradient(dirichlet_copula_sample(a, noise))
                return tf.stop_gradient(tf.cast(a + self.logit_u[i] > 0, tf.float32))
            self._copula[layer] = self._run(sample, layer, below)
        return self._copula[layer]

    def _first_sample(self, t):
        """[N, ...] -> [N, ...]: each image's first sample (rows 0..batch-1), tiled."""
        return tf.tile(t[:self._n_images], [self.n_samples] + [1] * (t.shape.ndims - 1))

    @property
    def bound(self):
        """The hard pass's per-image objective and its leave-one-out forms (`KSampleBound`),
        for the objective `hparams.objective`."""
        if self._bound is None:
            self._bound = KSampleBound(self.hard.elbo, self.n_samples,
                                       self.nets.hparams.objective)
        return self._bound

    @property
    def f_gradients(self):
        """g_l = d f / d b_l at the hard pass, b_l taken as real-valued, per layer [N, n_hidden]
        (zeros for a layer f does not depend on, such as a lower layer for sp). One backward
        pass through the hard pass, no evaluation of f; each row is its own sample's gradient,
        as f's rows do not interact. Built once per step, for the estimators that expand f
        around a sample (double control variates, RODEO)."""
        if self._f_gradients is None:
            samples = self.hard.samples
            grads = tf.gradients(tf.reduce_sum(self.hard.elbo), samples)
            self._f_gradients = [tf.zeros_like(b) if g is None else g
                                 for g, b in zip(grads, samples)]
        return self._f_gradients

    @property
    def mean(self):
        """The MuProp pass: every layer's sample is its mean sigma(a)."""
        if self._mean is None:
            self._mean = self._run(lambda i, a: tf.sigmoid(a))
        return self._mean


def relaxed_sample(logits, logit_noise, temperature, muprop_relaxation):
    """sigma(z + a t/(t+1)) with z = (a + logit u)/t (the paper's relaxation), or sigma(z).

    t is a number or a [N, 1] tensor. Divisions are written as products with reciprocals,
    whose gradients keep static shapes in TF 1.15 too.
    """
    if isinstance(temperature, tf.Tensor):
        inverse, ratio = tf.reciprocal(temperature), temperature * tf.reciprocal(temperature + 1.0)
    else:
        inverse, ratio = 1.0 / temperature, temperature / (temperature + 1.0)
    z = (logits + logit_noise) * inverse
    if muprop_relaxation:
        z += logits * ratio
    return tf.sigmoid(z)


def conditional_noise(logits, u, eps=U.EPS):
    """v ~ p(v | b): noise that reproduces the hard sample b = H(a + logit u), as a function of a.

    With u' = sigma(-a): v = u' + (1 - u') r, r = (u - u')/(1 - u') where u > u' (b = 1),
    else v = u' r, r = u/u'; r is held constant. The result has the value of u and the
    gradient of v with respect to a.
    """
    u_prime = tf.sigmoid(-logits)
    r1 = tf.stop_gradient(tf.clip_by_value(
        (u - u_prime) / tf.clip_by_value(1.0 - u_prime, eps, 1.0), 0.0, 1.0))
    r0 = tf.stop_gradient(tf.clip_by_value(u / tf.clip_by_value(u_prime, eps, 1.0), 0.0, 1.0))
    v = tf.where(u > u_prime, u_prime + (1.0 - u_prime) * r1, u_prime * r0)
    return u + (v - tf.stop_gradient(v))   # exactly u in value: v - v is 0 in floating point


class Estimate(object):
    """What an estimator contributes to a training step.

    grads: gradient of the loss per model variable (None: no dependence).
    report: (name, scalar tensor) pairs, the estimator's part of the report vector; kept as
      `report` (the tensors) and `report_names`.
    baseline_losses / baseline_vars: per-sample squared learning signals, minimised by the
      control optimiser (NVIL-style baselines and MuProp's eta).
    cv_vars / variance_objective: variables minimised by the control optimiser on
      mean(g^2), g the vectorised gradient (REBAR's eta and baseline).
    etas: (name, eta) pairs, REBAR's per-variable eta, for the report vector.
    tracked: gradients whose variance is tracked, each a list of tensors (default: `grads`).
    """

    def __init__(self, grads, report, baseline_losses=(), baseline_vars=(), cv_vars=(),
                 variance_objective=None, etas=(), tracked=()):
        self.grads = list(grads)
        self.report = [t for _, t in report]
        self.report_names = [n for n, _ in report]
        self.baseline_losses = list(baseline_losses)
        self.baseline_vars = list(baseline_vars)
        self.cv_vars = list(cv_vars)
        self.variance_objective = variance_objective
        self.etas = list(etas)   # (name, tensor) pairs
        self.tracked = list(tracked)


def _eta(name):
    """eta = 2 sigma(w), w a scalar starting at 0 (eta starts at 1). Returns (eta, w)."""
    w = tf.get_variable(name, [], tf.float32, tf.zeros_initializer(), trainable=False,
                        use_resource=True)
    return 2.0 * tf.sigmoid(w), w


def _baseline(passes, name):
    """c(x): tanh(100 units) then one output, on the centred image. Returns (c [N], variables)."""
    with tf.variable_scope(name, reuse=tf.AUTO_REUSE) as scope:
        h = tf.tanh(_dense(passes.images - passes.nets.mean_xs, 100, 'hidden'))
        c = tf.reshape(passes.tile(_dense(h, 1, 'output')), [-1])
    return c, tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES, scope.name + '/')


def _grads(loss, variables):
    return tf.gradients(tf.reduce_mean(loss), variables)


def reinforce(step, variables, hparams):
    """SBN: signal = f - (mean of the other samples' f); loss = -(signal log q + log p)."""
    hard = step.passes.hard
    signal = tf.stop_gradient(U.leave_one_out_centre(hard.elbo))
    loss = -(signal * tf.add_n(hard.log_q) + hard.log_p)
    return Estimate(_grads(loss, variables),
                    [('elbo', tf.reduce_mean(hard.elbo)), ('rms_signal', U.rms(signal))])


def nvil(step, variables, hparams, scope='nvil'):
    """NVIL: signal = f - c(x); c is trained on signal^2 (no variance normalisation)."""
    hard = step.passes.hard
    with tf.variable_scope(scope):
        c, c_vars = _baseline(step.passes, 'baseline')
    signal = tf.stop_gradient(hard.elbo) - c
    loss = -(tf.stop_gradient(signal) * tf.add_n(hard.log_q) + hard.log_p)
    return Estimate(_grads(loss, variables), [('elbo', tf.reduce_mean(hard.elbo))],
                    baseline_losses=[tf.square(signal)], baseline_vars=c_vars)


def simple_muprop(step, variables, hparams, scope='simple_muprop'):
    """SimpleMuProp: signal = f - eta f(mean pass) - c(x), no linear term."""
    passes = step.passes
    hard, mean = passes.hard, passes.mean
    with tf.variable_scope(scope):
        eta, w = _eta('eta')
        c, c_vars = _baseline(passes, 'baseline')
    signal = hard.elbo - eta * mean.elbo - c
    loss = -(tf.stop_gradient(signal) * tf.add_n(hard.log_q) + hard.log_p)
    return Estimate(_grads(loss, variables),
                    [('elbo', tf.reduce_mean(hard.elbo)),
                     ('mean_pass_elbo', tf.reduce_mean(mean.elbo))],
                    baseline_losses=[tf.square(signal)], baseline_vars=[w] + c_vars)


def muprop(step, variables, hparams, scope='muprop'):
    """MuProp, per layer i with g_i = d f(mean) / d mu_i:

    signal_i = f - eta0_i f(mean) - eta1_i g_i.(b_i - mu_i) - c_i(x);
    loss = -(sum_i [log q_i signal_i + eta1_i g_i.sigma(a_i)] + log p), signals, eta1 and g held
    constant in the loss.
    """
    passes = step.passes
    hard, mean = passes.hard, passes.mean
    n_layer = len(hard.samples)
    slopes = tf.gradients(tf.reduce_sum(mean.elbo), mean.samples)
    surrogate = hard.log_p
    losses, trained = [], []
    for i in range(n_layer):
        with tf.variable_scope('%s/layer_%d' % (scope, i)):
            eta0, w0 = _eta('eta0')
            eta1, w1 = _eta('eta1')
            c, c_vars = _baseline(passes, 'baseline')
        linear = tf.reduce_sum(slopes[i] * (hard.samples[i] - mean.samples[i]), 1)
        signal = hard.elbo - eta0 * mean.elbo - eta1 * linear - c
        mean_term = tf.reduce_sum(tf.stop_gradient(slopes[i]) * tf.sigmoid(hard.logits[i]), 1)
        surrogate += (hard.log_q[i] * tf.stop_gradient(signal)
                      + tf.stop_gradient(eta1) * mean_term)
        losses.append(tf.square(signal))
        trained += [w0, w1] + c_vars
    return Estimate(_grads(-surrogate, variables),
                    [('elbo', tf.reduce_mean(hard.elbo)),
                     ('mean_pass_elbo', tf.reduce_mean(mean.elbo))],
                    baseline_losses=losses, baseline_vars=trained)


def concrete(step, variables, hparams):
    """SBNGumbel: loss = -f(relaxed pass at the fixed temperature); biased. Reports [hard ELBO,
    relaxed ELBO]."""
    relaxed = step.passes.relaxed(0, hparams.temperature)
    return Estimate(_grads(-relaxed.elbo, variables),
                    [('elbo', tf.reduce_mean(step.passes.hard.elbo)),
                     ('relaxed_elbo', tf.reduce_mean(relaxed.elbo))])


def _segments(n_layer, quadratic):
    """The control variates' segments (first layer, layers): one per layer when `quadratic`,
    else one for the whole network."""
    if quadratic:
        return [(l, [l]) for l in range(n_layer)]
    return [(0, list(range(n_layer)))]


def rebar_control_variate(passes, variables, temperature, quadratic, log_temperature=None,
                          reference_quadratic=False):
    """The gradient in each variable of mean(c), c the REBAR control variate summed over
    segments s (one per layer when `quadratic`):

        c = sum_s [ f~v_s (held constant) * log q(b_s) - f~_s + f~v_s ],

    f~_s the pass hard below the segment's first layer and relaxed from it on with u; f~v_s the
    same pass with the conditional noise v in the segment's layers; log q(b_s) the hard pass's
    log q of the segment's layers. Its expectation over u is zero. (`reference_quadratic`: v in
    every relaxed layer, as the released code does; that leaves the per-layer terms with a
    non-zero mean when n_layer > 1, see README.)

    With `log_temperature` (a per-sample tensor of log t), the held-constant f~v_s keeps its
    derivative in log t (value f~v, gradient d f~v/d log t, none in the model variables), so
    that differentiating the variance objective in log t gives the exact gradient, through the
    REINFORCE term as well as the reparameterised one.

    Built as grad mean(sum_s f~v_s - f~_s) + grad mean(sum_s f~v_s log q(b_s)): each f~v_s
    pass sees its own copy of log t, so the first backward pass also gives each sample's
    d f~v_s / d log t. Only the passes' varying terms enter f~v_s - f~_s: the terms below
    `start` are the hard pass's in both.
    """
    hard = passes.hard
    n_layer = len(hard.samples)
    segments = _segments(n_layer, quadratic)
    differences, f_v, log_t_copies = [], [], []
    for start, layers in segments:
        t_v = temperature
        if log_temperature is not None:
            log_t_copies.append(tf.identity(log_temperature))
            t_v = tf.exp(log_t_copies[-1])[:, None]
        v_layers = range(start, n_layer) if reference_quadratic else layers
        f_v.append(passes.relaxed(start, t_v, v_layers))
        differences.append(f_v[-1].varying - passes.relaxed(start, temperature).varying)
    grads = tf.gradients(tf.reduce_mean(tf.add_n(differences)), variables + log_t_copies)
    reparameterised, df_dt = grads[:len(variables)], grads[len(variables):]

    terms = []
    for s, (start, layers) in enumerate(segments):
        f_v_const = tf.stop_gradient(f_v[s].elbo)
        if log_temperature is not None:
            # the mean's gradient is d f~v / d log t over the number of samples
            n = tf.cast(tf.size(df_dt[s]), tf.float32)
            f_v_const += (tf.stop_gradient(df_dt[s] * n)
                          * (log_temperature - tf.stop_gradient(log_temperature)))
        terms.append(f_v_const * tf.add_n([hard.log_q[l] for l in layers]))
    reinforce = _grads(tf.add_n(terms), variables)
    return [a if b is None else b if a is None else a + b
            for a, b in zip(reparameterised, reinforce)]


def rebar(step, variables, hparams, scope='rebar'):
    """REBAR at the fixed temperature `hparams.temperature` (see `rebar_gradient`)."""
    return rebar_gradient(step.passes, variables, hparams.temperature, hparams.quadratic,
                          scope=scope)


def dynamic_rebar(step, variables, hparams, scope='rebar'):
    """REBAR at the learned temperature t = exp(w_t), per sample so that d f / d w_t is per
    sample (see `rebar_gradient`)."""
    return rebar_gradient(step.passes, variables, tf.exp(step.log_temperature)[:, None],
                          hparams.quadratic, log_temperature=step.log_temperature, scope=scope)


def rebar_gradient(passes, variables, temperature, quadratic, log_temperature=None,
                   scope='rebar'):
    """REBAR: loss gradient = -grad[(f - c(x)) log q + log p] + eta * grad[control variate].

    eta = 2 sigma(w_v), one per model variable. eta and c minimise the variance objective
    mean(g^2) over the entries of the gradient vector g.
    """
    hard = passes.hard
    with tf.variable_scope(scope):
        c, c_vars = _baseline(passes, 'baseline')
    learning = (tf.stop_gradient(hard.elbo) - c) * tf.add_n(hard.log_q) + hard.log_p
    f_grads = _grads(-learning, variables)
    h_grads = rebar_control_variate(passes, variables, temperature, quadratic, log_temperature,
                                    passes.nets.hparams.reference_quadratic_cv)
    grads, etas, eta_vars = [], [], []
    for var, f_g, h_g in zip(variables, f_grads, h_grads):
        if h_g is None:
            grads.append(f_g)
            continue
        with tf.variable_scope(scope):
            eta, w = _eta('eta_' + var.op.name.replace('/', '_'))
        etas.append(('eta/' + var.op.name, eta))
        eta_vars.append(w)
        grads.append(eta * h_g if f_g is None else f_g + eta * h_g)
    variance_objective = U.mean_square(grads, variables)
    return Estimate(grads, [('elbo', tf.reduce_mean(hard.elbo))], cv_vars=eta_vars + c_vars,
                    variance_objective=variance_objective, etas=etas)


def _antithetic_estimate(passes, variables, learning_signal):
    """ARM-style estimators, multi-layer in our variant: for each layer l, the pair of the
    hard pass (b) and the antithetic pass for l (b~), and a learning signal g_l [N, n_hidden]
    for the logits a_l, pushed into the parameters by
    loss = -(sum_l sum_j g_lj (held constant) a_lj + log p).
    Layers below l come from the hard pass, so the chain through a_l is the one of the hard
    pass; layers above l are sampled for both members with the hard pass's noise. The log p
    gradient (the generative parameters) is the hard pass's.

    The hard pass is one member of every layer's pair: 1 + L evaluations of f per sample
    (L = n_layer). The ARM and DisARM authors' multi-layer code draws a fresh pair per layer
    (a fresh u at layer l, both members' upper layers resampled, with common noise only under
    its shared-randomness option): 2 evaluations per layer, 1 + 2L with the pass that gives
    the lower layers. Both are unbiased (each layer's term is, given the layers below, and
    the tests check the sum against exact enumeration); we do not claim either is less noisy.
    """
    hard = passes.hard
    surrogate = hard.log_p
    for l in range(len(hard.samples)):
        anti = passes.antithetic(l)
        g = learning_signal(hard.elbo - anti.elbo, passes.u[l], hard.logits[l],
                            anti.samples[l], hard.samples[l])
        surrogate += tf.reduce_sum(tf.stop_gradient(g) * hard.logits[l], 1)
    return Estimate(_grads(-surrogate, variables), [('elbo', tf.reduce_mean(hard.elbo))])


def arm(step, variables, hparams):
    """ARM (Yin and Zhou, 2019): d E[f] / d a = E_u[(f(1[u > sigma(-a)]) - f(1[u < sigma(a)]))
    (u - 1/2)]. One layer: the paper's estimator, 2 evaluations of f per sample. Several
    layers: our variant (see `_antithetic_estimate`), 1 + L evaluations, the hard pass one
    member of every layer's pair, where the authors' code draws a fresh pair per layer
    (1 + 2L)."""
    return _antithetic_estimate(
        step.passes, variables, lambda diff, u, a, b_anti, b: diff[:, None] * (u - 0.5))


def disarm(step, variables, hparams):
    """DisARM (Dong, Mnih and Tucker, 2020): ARM's pair with u integrated out given (b, b~):

        d E[f] / d a_j = E[1/2 (f(b) - f(b~)) (-1)^{b~_j} 1[b_j != b~_j] sigma(|a_j|)].

    One layer: the paper's estimator, 2 evaluations of f per sample. Several layers: our
    variant, as `arm` (see `_antithetic_estimate`): below l the hard pass, at l the pair with
    the hard pass as one member, above l both members sampled with the hard pass's noise
    (independent of u_l, so each layer's term stays unbiased); 1 + L evaluations of f, where
    the authors' code draws a fresh pair per layer, 1 + 2L. Sharing the upper layers' noise
    saves passes; it is not claimed to lower the variance.
    """
    return _antithetic_estimate(step.passes, variables, lambda diff, u, a, b_anti, b:
                                0.5 * diff[:, None] * disarm_weight(a, b, b_anti))


def disarm_weight(logits, b, b_anti):
    """DisARM's per-unit factor (-1)^{b~} 1[b != b~] sigma(|a|), [N, D]."""
    disagree = tf.cast(tf.not_equal(b, b_anti), tf.float32)
    return (1.0 - 2.0 * b_anti) * disagree * tf.sigmoid(tf.abs(logits))


def reinforce_loo(step, variables, hparams):
    """REINFORCE with K samples per image, each centred on the mean f of the image's other
    K - 1 samples (Kool et al., 2019): signal_k = f_k - sum_{j != k} f_j / (K - 1).

    Rows are sample-major (row k * batch + i), so [K, batch] reshapes group an image's samples
    in a column.
    """
    hard = step.passes.hard
    k = tf.cast(step.passes.n_samples, tf.float32)
    f = tf.reshape(hard.elbo, [step.passes.n_samples, -1])
    centred = f - (tf.reduce_sum(f, 0, keepdims=True) - f) * tf.reciprocal(k - 1.0)
    signal = tf.stop_gradient(tf.reshape(centred, [-1]))
    loss = -(signal * tf.add_n(hard.log_q) + hard.log_p)
    return Estimate(_grads(loss, variables),
                    [('elbo', tf.reduce_mean(hard.elbo)), ('rms_signal', U.rms(signal))])


RELAX_HIDDEN = (200, 200)   # r's hidden layers (the RELAX paper's two layers of 200)
RELAX_ACTIVATION = tf.nn.relu


def _relax_network(samples, scope):
    """r(z): RELAX_ACTIVATION (ReLU) layers of RELAX_HIDDEN units, then one output;
    [N, D] -> [N]."""
    with tf.variable_scope(scope, reuse=tf.AUTO_REUSE):
        h = samples
        for k, n_units in enumerate(RELAX_HIDDEN):
            h = RELAX_ACTIVATION(_dense(h, n_units, 'hidden_%d' % k))
        return tf.reshape(_dense(h, 1, 'output'), [-1])


def relax(step, variables, hparams, log_temperature=None, scope='relax'):
    """RELAX (Grathwohl et al., 2018) with REBAR's segments (one per layer when `quadratic`):

        c_s(z) = eta f~_s(z) + r_s(z),   g = -grad[sum_s (f - c_s(z~_s)) log q(b_s) + log p]
                                             - grad sum_s [c_s(z_s) - c_s(z~_s)],

    z the relaxed pass from the segment's first layer with u, z~ with v in the segment's layers,
    r_s a ReLU network on the segment's relaxed samples, eta a scalar. eta, r and the
    temperature exp(log_temperature) ([N], default the model's) minimise mean(g^2). In the
    REINFORCE term c_s(z~_s) is held constant in the model variables only: it keeps its
    derivatives in eta, in r's weights and (per sample, as REBAR's f~v does) in log t.

    Our variant of the paper's estimator (its form is one layer, c(z) = eta f(sigma_t(z)) +
    r(z)): r_s sees only the segment's relaxed samples (not the image, the layers below or z),
    and one eta and one temperature serve every segment; the layers above a segment are
    relaxed in both passes. (The DisARM authors' multi-layer RELAX draws a fresh u, v per layer,
    resamples the layers above hard, and gives each layer's r its input beside z.) Cost per
    sample: 1 + 2S evaluations of f (the hard pass, two relaxed passes per segment; S = L with
    `quadratic`, else 1), plus r on the 2 relaxed inputs of each segment.
    """
    passes, hard = step.passes, step.passes.hard
    if log_temperature is None:
        log_temperature = step.log_temperature
    with tf.variable_scope(scope) as outer:
        eta, w = _eta('eta')
    temperature = tf.exp(log_temperature)[:, None]
    segments = _segments(len(hard.samples), hparams.quadratic)
    differences, copies, fixed = [], [], []
    for s, (start, layers) in enumerate(segments):
        copies.append(tf.identity(log_temperature))
        f_u = passes.relaxed(start, temperature)
        f_v = passes.relaxed(start, tf.exp(copies[-1])[:, None], layers)
        z_u, z_v = [tf.concat([p.samples[l] for l in layers], 1) for p in (f_u, f_v)]
        with tf.variable_scope(outer):   # one application of r to the three inputs, stacked
            r_u, r_v, r_fixed = tf.split(_relax_network(
                tf.concat([z_u, z_v, tf.stop_gradient(z_v)], 0), 'r_%d' % s), 3)
        differences.append(eta * (f_u.varying - f_v.varying) + r_u - r_v)
        # value c_s(z~) and its derivatives in eta and r; log t's is added below
        fixed.append(tf.stop_gradient(eta * f_v.elbo + r_v)
                     + (eta - tf.stop_gradient(eta)) * tf.stop_gradient(f_v.elbo)
                     + r_fixed - tf.stop_gradient(r_fixed))
    grads = tf.gradients(tf.reduce_mean(tf.add_n(differences)), variables + copies)
    reparameterised, dc_dt = grads[:len(variables)], grads[len(variables):]

    n = tf.cast(tf.size(log_temperature), tf.float32)
    surrogate = hard.log_p
    for (start, layers), c_v, d in zip(segments, fixed, dc_dt):
        # the mean's gradient in a copy is -d c_s(z~)/d log t over the number of samples
        c_v += tf.stop_gradient(-d * n) * (log_temperature - tf.stop_gradient(log_temperature))
        surrogate += ((tf.stop_gradient(hard.elbo) - c_v)
                      * tf.add_n([hard.log_q[l] for l in layers]))
    learning = _grads(-surrogate, variables)
    grads = [a if b is None else -b if a is None else a - b
             for a, b in zip(learning, reparameterised)]
    r_vars = [v for v in tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES, outer.name + '/r_')]
    return Estimate(grads, [('elbo', tf.reduce_mean(hard.elbo)), ('eta', eta)],
                    cv_vars=[w] + r_vars, variance_objective=U.mean_square(grads, variables))


# -- multi-sample estimators: ARMS, VIMCO and local DisARM -------------------------------------
def dirichlet_copula(u, n_samples):
    """K = n_samples mutually antithetic uniforms per unit, made from K independent ones.

    u [K * B, D], rows sample-major (row k * B + i: image i's sample k). Per image and unit,
    E_k = -log u_k, delta = E / sum_j E_j ~ Dirichlet(1, ..., 1), and u'_k = (1 - delta_k)^(K-1):
    delta_k ~ Beta(1, K - 1), so each u'_k is uniform, and sum_k delta_k = 1 makes them
    negatively dependent (Dimitriev and Zhou, 2021; K = 2 gives u'_2 = 1 - u'_1). Returns u'
    [K * B, D].
    """
    width = u.shape.as_list()[1]
    e = tf.reshape(-U.safe_log(u), [n_samples, -1, width])
    delta = e / tf.reduce_sum(e, 0, keepdims=True)
    k = tf.cast(n_samples, tf.float32)
    return tf.reshape(tf.pow(1.0 - delta, k - 1.0), [-1, width])


def dirichlet_copula_sample(logits, u):
    """b = 1[u' < theta] where theta = sigma(a) < 1/2, else 1[1 - u' < theta]: a sample of q
    per row (u' uniform); the flip makes a pair's bits as antithetic for theta > 1/2 as for
    1 - theta (the ARMS paper's and its authors' code's form)."""
    theta = tf.sigmoid(logits)
    return tf.cast(tf.where(theta < 0.5, u < theta, 1.0 - u < theta), tf.float32)


def copula_debias(logits, n_samples):
    """ARMS's factor c = theta (1 - theta) / (theta - P11), [N, D], P11 the probability that
    two of the K samples (`dirichlet_copula_sample`) are both 1: C(theta) for theta < 1/2,
    2 theta - 1 + C(1 - theta) otherwise, C(p) = max(2 p^(1/(K-1)) - 1, 0)^(K-1). Both cases
    have theta - P11 = p - C(p) with p = min(theta, 1 - theta) = sigma(-|a|), the form used
    here (no cancellation near theta = 1). K = 2: c = sigma(|a|)."""
    k = tf.cast(n_samples, tf.float32)
    p = tf.maximum(tf.sigmoid(-tf.abs(logits)), 1e-30)   # p = 0 would give 0/0
    joint = tf.pow(tf.nn.relu(2.0 * tf.pow(p, 1.0 / (k - 1.0)) - 1.0), k - 1.0)
    return p * (1.0 - p) / (p - joint)


def _leave_one_out(f, n_samples):
    """f [K * B] -> f_k - mean_{j != k} f_j over each image's K samples, [K * B]."""
    f = tf.reshape(f, [n_samples, -1])
    k = tf.cast(n_samples, tf.float32)
    return tf.reshape(f - (tf.reduce_sum(f, 0, keepdims=True) - f) / (k - 1.0), [-1])


def arms(step, variables, hparams):
    """ARMS (Dimitriev and Zhou, 2021): per layer l, K = n_samples samples b_1..b_K of the
    layer drawn jointly from the Dirichlet copula (`ForwardPasses.copula(l)`), and

        d E[f] / d a_l = E[(1/K) sum_k (f_k - mean_{j != k} f_j) (b_k - theta) c(theta)],

    theta = sigma(a_l), c the debiasing factor (`copula_debias`). Independent samples would
    have c = 1: REINFORCE leave-one-out; K = 2 gives DisARM's pair and estimate. The decoder
    and prior get mean_k grad log p(x, b_k) of the first group's samples.

    One layer: the paper's and its authors' code's form (their code is single-layer only).
    Multi-layer (ours): per layer, as our ARM/DisARM, the K samples of layer l share the
    layers below (the image's first sample of the layer-0 group), the layers above sampled
    with the hard pass's noise; the layer-l term is then unbiased given those parents, as the
    copula needs one theta for the K samples. The hard pass is built (evaluation uses it) but
    a training step does not run it: K L evaluations of f per image.
    """
    passes = step.passes
    first = passes.copula(0)
    surrogate = first.log_p
    for l in range(len(first.samples)):
        group = passes.copula(l)
        a = group.logits[l]
        signal = (_leave_one_out(group.elbo, passes.n_samples)[:, None]
                  * (group.samples[l] - tf.sigmoid(a)) * copula_debias(a, passes.n_samples))
        surrogate += tf.reduce_sum(tf.stop_gradient(signal) * a, 1)
    return Estimate(_grads(-surrogate, variables), [('elbo', tf.reduce_mean(first.elbo))])


class KSampleBound(object):
    """An image's objective over its K samples, and the same with one sample's term replaced.

    f [K * B], each sample's ELBO term f_k (rows sample-major). objective 'iwae':
    L = log mean_k exp f_k, the K-sample importance-weighted bound; 'elbo': L = mean_k f_k,
    the reference's objective (K single-sample ELBOs averaged).

    value              L [B]; its gradient in f_k is w_k = softmax_k f_k (iwae) or 1/K
    replaced(g)        [K, B]: entry (k, i), image i's L with f_k replaced by g_k (g [K * B])
    leave_one_out      replaced(mean_{j != k} f_j): VIMCO's L_{-k} (under iwae, sample k's
                       weight replaced by the geometric mean of the others')
    per_image(t)       [K * B] -> [B], summed over each image's samples
    name               the report's name for L: 'k_sample_bound' (iwae) or 'elbo'
    """

    def __init__(self, f, n_samples, objective):
        self.n_samples, self.objective = n_samples, objective
        self.f = tf.reshape(f, [n_samples, -1])
        self.value = self._reduce(self.f, 0)
        self.name = 'k_sample_bound' if objective == 'iwae' else 'elbo'

    def _reduce(self, f, axis):
        return U.log_mean_exp(f, axis) if self.objective == 'iwae' else tf.reduce_mean(f, axis)

    def replaced(self, g):
        one = tf.eye(self.n_samples)[:, :, None]   # [K replaced, K, 1]
        swapped = self.f[None] * (1.0 - one) + tf.reshape(g, [self.n_samples, 1, -1]) * one
        return self._reduce(swapped, 1)

    @property
    def leave_one_out(self):
        k = tf.cast(self.n_samples, tf.float32)
        return self.replaced((tf.reduce_sum(self.f, 0, keepdims=True) - self.f) / (k - 1.0))

    def per_image(self, per_sample):
        """[K * B] per-sample terms -> [B], summed over each image's samples."""
        return tf.reduce_sum(tf.reshape(per_sample, [self.n_samples, -1]), 0)


def vimco(step, variables, hparams):
    """VIMCO (Mnih and Rezende, 2016) for the objective L of the K = n_samples samples
    (`KSampleBound`; the K-sample bound under objective=iwae):

        grad L = sum_k (L - L_{-k}) grad log q(b_k) + sum_k dL/df_k grad f_k,

    the second sum taken with the samples fixed: the decoder and prior get
    sum_k w_k grad log p(x, b_k), the encoder -sum_k w_k grad log q(b_k). The paper's form, as
    the DisARM authors' code runs it. K evaluations of f per image. Under objective=elbo it is
    REINFORCE leave-one-out plus the mean-zero term -mean_k grad log q(b_k).
    """
    passes = step.passes
    bound = passes.bound
    signal = tf.stop_gradient(bound.value[None] - bound.leave_one_out)
    surrogate = bound.value + bound.per_image(
        tf.reshape(signal, [-1]) * tf.add_n(passes.hard.log_q))
    return Estimate(_grads(-surrogate, variables),
                    [(bound.name, tf.reduce_mean(bound.value))])


def local_disarm(step, variables, hparams):
    """Local DisARM (Dong, Mnih and Tucker, 2020) for the objective L of n = n_samples
    antithetic pairs (`KSampleBound` over the hard samples b_1..b_n; the n-sample bound under
    objective=iwae): per layer l, with b~_i the antithetic pass's partner of b_i
    (`ForwardPasses.antithetic(l)`) and L^(i) the objective with f(b_i) replaced by f(b~_i),

        d L / d a_l,i = E[1/2 (L - L^(i)) (-1)^{b~_i} 1[b_i != b~_i] sigma(|a_l,i|)],

    summed over the pairs, plus the pathwise part sum_i dL/df_i grad f_i with the samples fixed
    (as `vimco`). The DisARM paper pairs n pairs against VIMCO with 2n samples: for one layer
    both evaluate f 2n times per image; here (1 + L) n. The paper's (and authors' code's)
    estimator of the score part; the authors' code leaves out the encoder's pathwise part,
    -sum_i w_i grad log q(b_i), which does not have mean zero under iwae (the exact-enumeration
    test sees the bias), so we keep it. Multi-layer: per layer, as `disarm`. Under
    objective=elbo it is DisARM over n pairs plus the mean-zero -mean_i grad log q(b_i).
    """
    passes = step.passes
    hard, bound = passes.hard, passes.bound
    surrogate = bound.value
    for l in range(len(hard.samples)):
        anti = passes.antithetic(l)
        diff = tf.reshape(bound.value[None] - bound.replaced(anti.elbo), [-1])
        signal = 0.5 * diff[:, None] * disarm_weight(hard.logits[l], hard.samples[l],
                                                     anti.samples[l])
        surrogate += bound.per_image(tf.reduce_sum(tf.stop_gradient(signal) * hard.logits[l], 1))
    return Estimate(_grads(-surrogate, variables),
                    [(bound.name, tf.reduce_mean(bound.value))])
# -- control variates from the gradient of f: double control variates and RODEO ---------------
# Both take the K >= 2 hard samples of each image (rows sample-major, so [K, batch, ...] reshapes
# put an image's samples along axis 0), f_k = f(b_k) and g_k = d f / d b at b_k
# (`ForwardPasses.f_gradients`), and return per layer a signal s for the logits a of each row:
# loss = -(sum_l sum_j s_lj a_lj + log p), every s held constant in the model variables but
# not in the control variates' own variables, which minimise mean(grad^2) (the variance
# objective) with the control optimiser. Multi-layer (ours): every layer's signal uses the one
# hard pass (its samples, f and g), theta_l the hard pass's sigma(a_l) given its layers below;
# each added term has mean zero given everything but the layer it is a function of, so each
# layer's signal stays unbiased, and the estimator costs K evaluations of f per image for any
# depth (the authors' hierarchical code draws fresh pairs per layer: 1 + 2L for K = 2).


def _by_image(t, k):
    """[K * batch, ...] (sample-major rows) -> [K, batch, ...]."""
    return tf.reshape(t, [k, -1] + t.shape.as_list()[1:])


def _others_mean(t, k):
    """Per sample, the mean over the image's other samples, along axis 0 of [K, ...]; k is K
    as a float tensor."""
    return (tf.reduce_sum(t, 0, keepdims=True) - t) * tf.reciprocal(k - 1.0)


def _signal_estimate(step, signals, report, cv_vars, variables):
    """The Estimate of per-layer logit signals [N, n_hidden] (see the block's comment)."""
    hard = step.passes.hard
    surrogate = hard.log_p + tf.add_n([tf.reduce_sum(s * a, 1)
                                       for s, a in zip(signals, hard.logits)])
    grads = _grads(-surrogate, variables)
    return Estimate(grads, [('elbo', tf.reduce_mean(hard.elbo))] + report, cv_vars=cv_vars,
                    variance_objective=U.mean_square(grads, variables))


def _layer_tensors(passes, l):
    """Layer l's [K, batch, n_hidden] samples b, theta = sigma(a) and g, held constant."""
    k = passes.n_samples
    return [_by_image(tf.stop_gradient(t), k) for t in
            (passes.hard.samples[l], tf.sigmoid(passes.hard.logits[l]), passes.f_gradients[l])]


def _scalar(name):
    """A learned control-variate coefficient starting at 0 (the control variate off)."""
    return tf.get_variable(name, [], tf.float32, tf.zeros_initializer(), trainable=False,
                           use_resource=True)


def expansion_mean(alpha, slopes, theta):
    """E over b ~ q of h(b) (b - theta) for h(b) = alpha slopes.(b - theta): coordinate d keeps
    only (b_d - theta_d)^2, of mean theta_d (1 - theta_d)."""
    return alpha * slopes * theta * (1.0 - theta)


def double_cv(step, variables, hparams, scope='double_cv'):
    """Double control variates (Titsias and Shi, AISTATS 2022), the paper's form (its authors'
    code computes the same), per layer l with one learned scalar alpha_l:

        s_k = [F_k - mean_{j != k} F_j] (b_k - theta) - alpha gbar_{-k} theta (1 - theta),
        F_k = f_k + alpha gbar_{-k}.(b_k - theta),

    gbar_{-k} the mean of the other samples' g_j. F is leave-one-out REINFORCE's f plus a
    first-order expansion of f taken from the other samples; the last term is the expansion's
    known mean given the other samples (`expansion_mean`), so s_k is unbiased for any alpha.
    The authors' per-image mean over k of s_k is our mean over rows. alpha_l starts at 0
    (REINFORCE leave-one-out) and minimises mean(grad^2), as the authors' code (which uses the
    logits' gradient) does. Cost: K evaluations of f per image and one backward pass (g).
    """
    passes = step.passes
    k = tf.cast(passes.n_samples, tf.float32)
    f = _by_image(tf.stop_gradient(passes.hard.elbo), passes.n_samples)
    signals, report, alphas = [], [], []
    for l in range(len(passes.hard.samples)):
        with tf.variable_scope('%s/layer_%d' % (scope, l)):
            alpha = _scalar('alpha')
        b, theta, g = _layer_tensors(passes, l)
        slopes = _others_mean(g, k)
        big_f = f + alpha * tf.reduce_sum(slopes * (b - theta), 2)
        s = ((big_f - _others_mean(big_f, k))[:, :, None] * (b - theta)
             - expansion_mean(alpha, slopes, theta))
        signals.append(tf.reshape(s, [-1, s.shape.as_list()[-1]]))
        report.append(('alpha_%d' % l, alpha.read_value()))
        alphas.append(alpha)
    return _signal_estimate(step, signals, report, alphas, variables)


RODEO_HIDDEN = 100   # the RODEO paper's h: one hidden layer of 100 LeakyReLU(0.3) units


def _rodeo_network(x, z, scope):
    """h(x, z) = W2 LeakyReLU_0.3(W1 [x, z] + c1) + c2 in R^2 for scalar inputs x, z of one
    shape S (static); returns [S..., 2]."""
    shape = x.shape.as_list() if x.shape.is_fully_defined() else tf.unstack(tf.shape(x))
    with tf.variable_scope(scope, reuse=tf.AUTO_REUSE):
        hidden = tf.nn.leaky_relu(_dense(tf.reshape(tf.stack([x, z], -1), [-1, 2]),
                                         RODEO_HIDDEN, 'hidden'), LEAKY_SLOPE)
        return tf.reshape(_dense(hidden, 2, 'output'), shape + [2])


def stein_weights(b, theta):
    """q(1 - b_d) under q = Bernoulli(theta): the rate at which random-scan Gibbs flips bit d."""
    return theta * (1.0 - b) + (1.0 - theta) * b


def stein_control_variates(network, b, theta, g, f):
    """RODEO's two control variates for each sample b_k of an image, from the discrete Stein
    operator of q (the generator of random-scan Gibbs sampling):

        (A phi)(b) = (1/D) sum_d q(1 - b_d) [phi(b^(d)) - phi(b)],   E_q[(A phi)(b)] = 0,

    b^(d) b with bit d flipped, applied to phi = h0 and to phi(y) = h1(y) (y - theta), with
    [h0, h1](y) = mean_{j != k} network(g_j.(y - b_j), f_j): the network on the other samples'
    first-order expansion of f at y and their f (for K = 2 this is the authors' K = 2 form,
    which averages the inputs, and for K > 2 their form that averages the outputs). h depends
    on sample k only through y, so each term has mean zero given the other samples. The D
    one-bit flips go through the network only, never through f.

    network: (x, z) -> [..., 2]; b, theta, g [K, batch, D]; f [K, batch].
    Returns (A h0)(b_k) [K, batch] and (A [y -> h1(y) (y - theta)])(b_k) [K, batch, D]. The
    network runs at D + 1 points on the K (K - 1) pairs (k, j != k), partner s = 1..K-1 of
    sample k being sample (k + s) mod K; with K unknown when the graph is built (the flexible
    build), on all K x K pairs with j = k weighted out.
    """
    k, d = b.shape.as_list()[0], b.shape.as_list()[-1]
    if k is None:
        n = tf.shape(b)[0]
        partner = lambda t: t[:, None]   # [j, k, ...]
        weights = ((1.0 - tf.eye(n))[:, :, None, None, None]
                   * tf.reciprocal(tf.cast(n - 1, tf.float32)))
    else:
        partner = lambda t: tf.stack([tf.roll(t, -s, 0) for s in range(1, k)])   # [s, k, ...]
        weights = 1.0 / (k - 1)
    g_j, b_j, f_j = partner(g), partner(b), partner(f)
    flip = 1.0 - 2.0 * b   # y^(d) - b on coordinate d
    # x at b_k: g_j.(b_k - b_j); at b_k^(d): plus g_jd (1 - 2 b_kd)
    at_b = tf.reduce_sum(g_j * (b - b_j), -1)
    x = tf.concat([at_b[..., None], at_b[..., None] + g_j * flip], -1)   # [., K, batch, 1 + D]
    z = f_j[..., None] + tf.zeros_like(x)
    h = tf.reduce_sum(network(x, z) * weights, 0)   # [K, batch, 1 + D, 2]
    h0, h1 = h[..., 0], h[..., 1]
    w = stein_weights(b, theta)
    a_h0 = tf.reduce_mean(w * (h0[..., 1:] - h0[..., :1]), 2)
    # phi(b^(d))_e - phi(b)_e = (h1(b^(d)) - h1(b)) (b_e - theta_e) + [e = d] h1(b^(d)) flip_e
    a_h1 = ((b - theta) * tf.reduce_sum(w * (h1[..., 1:] - h1[..., :1]), 2, keepdims=True)
            + w * h1[..., 1:] * flip) * (1.0 / d)
    return a_h0, a_h1


def rodeo(step, variables, hparams, scope='rodeo'):
    """RODEO (Shi, Zhou, Hwang, Titsias and Mackey, NeurIPS 2022), the authors' code's form
    (their default operator, q(1 - b_d)-weighted Gibbs flips), per layer l with its own
    network h_l (`stein_control_variates`) and learned scalars alpha_l, beta_l:

        s_k = [f_k - mean_{j != k} (f_j + alpha (A h0)(b_j))] (b_k - theta)
              + beta (A [y -> h1(y) (y - theta)])(b_k).

    Unbiased for any alpha, beta and network: every A term has mean zero given the other
    samples (and, multi-layer, the layers below). alpha, beta start at 0 (REINFORCE
    leave-one-out), the network at our fan-in initialiser; all minimise mean(grad^2) (the
    authors' code: the logits' gradient). Cost: K evaluations of f per image, one backward
    pass (g), and per layer K (K - 1) (D + 1) evaluations of the small network, none of f.
    """
    passes = step.passes
    k = tf.cast(passes.n_samples, tf.float32)
    f = _by_image(tf.stop_gradient(passes.hard.elbo), passes.n_samples)
    signals, report, trained = [], [], []
    for l in range(len(passes.hard.samples)):
        with tf.variable_scope('%s/layer_%d' % (scope, l)) as layer_scope:
            alpha, beta = _scalar('alpha'), _scalar('beta')
            b, theta, g = _layer_tensors(passes, l)
            a_h0, a_h1 = stein_control_variates(
                lambda x, z: _rodeo_network(x, z, 'h'), b, theta, g, f)
        s = ((f - _others_mean(f + alpha * a_h0, k))[:, :, None] * (b - theta)
             + beta * a_h1)
        signals.append(tf.reshape(s, [-1, s.shape.as_list()[-1]]))
        report += [('alpha_%d' % l, alpha.read_value()), ('beta_%d' % l, beta.read_value())]
        trained += [alpha, beta] + tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES,
                                                     layer_scope.name + '/h/')
    return _signal_estimate(step, signals, report, trained, variables)


def _relaxed_pairs(hparams):
    """Passes per sample of REBAR and RELAX: the hard one and two relaxed ones per segment."""
    return 1 + 2 * len(_segments(hparams.n_layer, hparams.quadratic))


# name -> (build(step, variables, hparams) -> Estimate, passes(hparams) -> forward passes per
# sample through the generative network that a training step runs; a pass relaxed from layer l
# on reuses the hard pass's terms below l but counts as one).
Estimator = collections.namedtuple('Estimator', 'build passes')
ESTIMATORS = collections.OrderedDict([
    ('REINFORCE', Estimator(reinforce, lambda hp: 1)),
    ('NVIL', Estimator(nvil, lambda hp: 1)),
    ('SimpleMuProp', Estimator(simple_muprop, lambda hp: 2)),
    ('MuProp', Estimator(muprop, lambda hp: 2)),
    ('Concrete', Estimator(concrete, lambda hp: 2)),
    ('REBAR', Estimator(rebar, _relaxed_pairs)),
    ('DynamicREBAR', Estimator(dynamic_rebar, _relaxed_pairs)),
    ('ARM', Estimator(arm, lambda hp: 1 + hp.n_layer)),
    ('DisARM', Estimator(disarm, lambda hp: 1 + hp.n_layer)),
    ('RELAX', Estimator(relax, _relaxed_pairs)),
    ('ReinforceLOO', Estimator(reinforce_loo, lambda hp: 1)),
    ('ARMS', Estimator(arms, lambda hp: hp.n_layer)),
    ('VIMCO', Estimator(vimco, lambda hp: 1)),
    ('LocalDisARM', Estimator(local_disarm, lambda hp: 1 + hp.n_layer)),
    ('DoubleCV', Estimator(double_cv, lambda hp: 1)),
    ('RODEO', Estimator(rodeo, lambda hp: 1)),
])


EVAL_GROUP = 5       # images per evaluation call (the reference's groups of 5)
EVAL_SAMPLES = 100   # samples per image of the importance-weighted bound

# A seeded run's noise streams (`Model.keyed_uniform`): the second word of the stateless
# generator's seed, a distinct one for every draw, so that no two draws share numbers and each
# is a function of the step and its use alone. Training noise: even, >= 0; a batch's dynamic
# binarization (session.DeviceBatches): odd, >= 0; evaluation noise: negative.
EVAL_KEYS = 2 ** 24   # evaluation calls a step can key apart (`Model.eval_key`)


def training_noise_stream(step, layer, n_layer):
    return 2 * (step * n_layer + layer)


def binarization_stream(step):
    return 2 * step + 1


def eval_noise_stream(step, key, layer, n_layer):
    """0 <= key < EVAL_KEYS: which evaluation call of the step (session.RunSession.evaluate)."""
    return -1 - ((step * EVAL_KEYS + key) * n_layer + layer)


class Step(object):
    """The graph of one estimator over one batch: inputs, noise, passes, estimate, bounds."""

    def __init__(self, model, x, n_samples, static_rows, noise=None):
        self.x = x
        n_rows = static_rows or tf.shape(x)[0] * n_samples
        if noise is None:
            noise = [tf.placeholder_with_default(u, [static_rows, model.hparams.n_hidden],
                                                 name='u_%d' % i)
                     for i, u in enumerate(model.step_noise(n_rows))]
        self.noise = noise
        # read here, with the step's other reads (in a loop of steps, after the last update)
        self.temperature = tf.exp(model.log_temperature.read_value())
        self.passes = ForwardPasses(model.nets, x, n_samples, self.noise, model.reuse_hard)
        # log t tiled over samples, so that d f / d log t can be taken per sample
        self.log_temperature = tf.tile(model.log_temperature[None], [n_rows])
        with tf.variable_scope('estimator', reuse=tf.AUTO_REUSE):
            self.estimate = model.estimate(self)
        est = self.estimate

        self.control_grads = []
        if est.baseline_losses:
            loss = tf.reduce_mean(tf.add_n(est.baseline_losses))
            self.control_grads += list(zip(tf.gradients(loss, est.baseline_vars),
                                           est.baseline_vars))
        self.temperature_grad = None
        if est.variance_objective is not None:
            trained = est.cv_vars + ([model.log_temperature] if model.learns_temperature else [])
            grads = tf.gradients(est.variance_objective, trained)
            self.control_grads += list(zip(grads, trained))
            if model.learns_temperature:
                self.temperature_grad = grads[-1]
        self.control_grads = [(g, v) for g, v in self.control_grads if g is not None]
        pairs = model.report(self)
        self.report = [t for _, t in pairs]
        self.report_names = [n for n, _ in pairs]

        # f per (image, sample): rows of the tiled batch are sample-major
        self.log_f = tf.transpose(tf.reshape(self.passes.hard.elbo, [n_samples, -1]))
        # each image's importance-weighted bound, log mean_k exp f_k
        self.image_bounds = U.log_mean_exp(self.log_f, 1)


# A training step's graph: its input placeholder `x`, its `Step`, `train_op`, and what the
# driver fetches: the `report` vector, the gradient variance, the global step after the update
# and whether every gradient was finite; `read_averages()` reads the gradient moments' moving
# averages (shared by every training graph) for the variance figures.
Training = collections.namedtuple('Training', 'x step train_op report grad_variance step_after '
                                  'grads_finite read_averages')


# K training steps in one call (`Model.training_loop`): its inputs (`n` steps to run, noise)
# and per-step outputs.
TrainingLoop = collections.namedtuple('TrainingLoop', 'n noise count reports grad_variances '
                                      'steps_after temperatures grads_finite')


# Several groups of EVAL_GROUP images evaluated in one call (`Model.eval_groups`).
EvalGroups = collections.namedtuple('EvalGroups', 'x noise image_bounds reports extras')


class Model(object):
    """A sigmoid belief network and one gradient estimator, with its training step.

    Subclasses name their estimator in `estimator` (a key of ESTIMATORS) or define
    `estimate(step) -> Estimate`; the report vector is the estimator's first entry (the ELBO),
    the temperature when it is learned, the estimator's other entries and its etas.

    static_shapes: fix batch_size and n_samples in the graph (for the NPU), so that no tensor of
    the training step has an unknown dimension; evaluation then uses its own graph of
    EVAL_GROUP images x EVAL_SAMPLES samples. The driver builds static shapes on every device
    (they are faster on the CPU too); the default here is the reference's flexible build.

    reuse_hard: relaxed passes take the hard pass's terms below their first relaxed layer (see
    ForwardPasses); False recomputes them in every pass, the straightforward graph that the
    default is tested against.

    images: with static shapes, a function n -> the [n, n_input] batch tensor a training step
    reads (the driver's batches taken in the session); by default, a placeholder to feed.

    noise_seed: None, TensorFlow's generator draws every noise; an integer, every noise is a
    function of (noise_seed, global step, what it is for) alone (TensorFlow's stateless
    generator, `keyed_uniform`), so that a seeded run resumed from a checkpoint draws what
    the uninterrupted run draws, whichever graph (one step a call or several) draws it.
    """
    estimator = None   # a key of ESTIMATORS
    learns_temperature = False
    tracked = None   # names of tracked estimators (SBNTrackGradVariances)
    in_report = ()   # the first of them, whose deviations the report vector holds

    def __init__(self, hparams, mean_xs, static_shapes=False, reuse_hard=True, images=None,
                 noise_seed=None):
        config.validate(hparams)
        self.noise_seed = noise_seed
        if images is not None and not static_shapes:
            raise ValueError('Batches from an images function need static shapes.')
        self.hparams = hparams
        self.static_shapes = static_shapes
        self.reuse_hard = reuse_hard
        self._images = images
        self.nets = Networks(hparams, mean_xs)
        self.variables = self.nets.variables
        self.global_step = tf.get_variable(
            'global_step', [], tf.int64, tf.zeros_initializer(), trainable=False,
            use_resource=True,
            collections=[tf.GraphKeys.GLOBAL_VARIABLES, tf.GraphKeys.GLOBAL_STEP])
        # which evaluation call of the step this is (`eval_noise_stream`); -1, not fed: a
        # training step (the flexible build's one Step serves both)
        self.eval_key = tf.placeholder_with_default(tf.constant(-1, tf.int64), [], 'eval_key')
        self.log_temperature = tf.get_variable(
            'log_temperature', [], tf.float32,
            tf.constant_initializer(np.log(hparams.temperature)), trainable=False,
            use_resource=True)
        self.temperature = tf.exp(self.log_temperature)

        batch = hparams.batch_size if static_shapes else None
        self.x = self._batch_input(batch)
        if static_shapes:
            self.n_samples = hparams.n_samples
            rows = batch * self.n_samples
            self.train = Step(self, self.x, self.n_samples, rows, self._training_noise(rows))
            self._eval = None   # its own fixed-shape graph, built when first needed
        else:
            self.n_samples = tf.placeholder_with_default(
                tf.constant(hparams.n_samples), [], 'n_samples')
            self.train = self._eval = Step(self, self.x, self.n_samples, None)
        self._eval_report = None
        self.noise = self.train.noise
        self.grads = self.train.estimate.grads
        self._model_opt = tf.train.AdamOptimizer(hparams.learning_rate, beta2=hparams.beta2,
                                                 name='model_adam')
        self._control_opt = tf.train.AdamOptimizer(
            hparams.control_learning_rate or 10 * hparams.learning_rate, beta2=hparams.beta2,
            name='control_adam')
        self._trainings, self._loops, self._eval_groups = {}, {}, {}
        main = self._trainings[batch] = self._build_training(self.train)
        self.train_op, self.grads_finite = main.train_op, main.grads_finite
        self.train_report, self.grad_variance = main.report, main.grad_variance
        self.step_after = main.step_after
        # evaluation reads the averages outside any training graph (not in a loop's body)
        self._read_averages = main.read_averages

    def training(self, n_images):
        """The training step for a batch of n_images. Static shapes: each batch size has its own
        graph (the epoch's last, partial batch too), built on first use and sharing every
        variable, optimizer slot and moving average; otherwise the one graph serves all."""
        if not self.static_shapes:
            n_images = None
        if n_images not in self._trainings:
            with tf.name_scope('batch_%d' % n_images):
                x = self._batch_input(n_images)
                rows = n_images * self.n_samples
                self._trainings[n_images] = self._build_training(
                    Step(self, x, self.n_samples, rows, self._training_noise(rows)))
        return self._trainings[n_images]

    def training_loop(self, steps_per_call):
        """K = steps_per_call training steps of full batches in one session call.

        A `tf.while_loop` runs n <= K (fed: `TrainingLoop.n`) iterations of the training step,
        each building the same `Step` and update as `training(batch_size)` on the variables,
        optimizer slots and moving averages that graph created, on the batch of the global step
        (so the batches follow the epoch's order as single steps do). Iteration i's ops all
        depend on the loop counter that iteration i - 1 returns once its update and its reads
        after the update are done, so every read of a step sees the previous step's update.
        The loop stops early after a step whose gradient or report is not finite.

        Noise: `TrainingLoop.noise[l]` [K, N, n_hidden], step i uses row i (random by default,
        fed to replay). Outputs, fixed [K, ...] shapes (rows >= `count` unused): `reports`
        [K, R], `grad_variances` [K] or [K, n_tracked], `steps_after` [K], `temperatures` [K]
        (before the step, as the report's), `grads_finite` [K]; `count` the steps run.
        Static shapes and batches from an images function only.
        """
        if not self.static_shapes or self._images is None:
            raise ValueError('Several steps per call need static shapes and batches held in '
                             'the session (an images function).')
        if steps_per_call not in self._loops:
            with tf.name_scope('loop_%d' % steps_per_call):
                self._loops[steps_per_call] = self._build_loop(steps_per_call)
        return self._loops[steps_per_call]

    def _build_loop(self, k):
        batch = self.hparams.batch_size
        rows = batch * self.n_samples
        single = self._trainings[batch]   # its variables exist before the loop is built
        n = tf.placeholder(tf.int32, [], 'steps_in_call')
        noise = self._training_noise(rows, k)
        widths = [tf.reshape(t, [-1]).shape.as_list()[0]
                  for t in (tf.stack(single.report), single.grad_variance)]
        outputs = [tf.zeros([k, widths[0]]), tf.zeros([k, widths[1]]),
                   tf.zeros([k], tf.int64), tf.zeros([k]), tf.zeros([k], tf.bool)]

        def body(i, finite, *outputs):
            with tf.control_dependencies([i]):
                step = Step(self, self._images(batch), self.n_samples, rows,
                            [u[i] for u in noise])
                t = self._build_training(step)
                with tf.control_dependencies([t.train_op]):
                    results = [tf.reshape(tf.stack(t.report), [-1]),
                               tf.reshape(t.grad_variance, [-1]), t.step_after,
                               step.temperature, t.grads_finite]
            this = tf.equal(tf.range(k), i)   # row i of each output takes this step's value
            outputs = [tf.where(this, tf.broadcast_to(r, o.shape), o)
                       for o, r in zip(outputs, results)]
            finite = tf.logical_and(t.grads_finite, tf.reduce_all(tf.is_finite(results[0])))
            with tf.control_dependencies(outputs):   # the next step starts after these reads
                return [i + 1, finite] + outputs

        results = tf.while_loop(lambda i, finite, *_: tf.logical_and(i < n, finite), body,
                                [tf.constant(0), tf.constant(True)] + outputs,
                                parallel_iterations=1, maximum_iterations=k)
        count, _, reports, variances, steps_after, temperatures, finite = results
        if not self.tracked:
            variances = variances[:, 0]
        return TrainingLoop(n, noise, count, reports, variances, steps_after, temperatures,
                            finite)

    def keyed_uniform(self, shape, stream):
        """Uniform noise of `shape`: with `noise_seed`, a function of (noise_seed, stream)
        alone, `stream` an int64 scalar (`training_noise_stream`, `eval_noise_stream`;
        distinct streams are independent); otherwise drawn by TensorFlow's generator."""
        if self.noise_seed is None:
            return tf.random_uniform(shape)
        return tf.random.stateless_uniform(
            shape, tf.stack([tf.constant(self.noise_seed, tf.int64), stream]))

    def _training_noise(self, rows, k=None):
        """Each layer's uniform noise for the training step at the current global step s,
        [rows, n_hidden] (or [k, rows, n_hidden] for steps s..s+k-1), fed to replay a step;
        with `noise_seed`, keyed by each step's number (`keyed_uniform`)."""
        n_layer, shape = self.hparams.n_layer, [rows, self.hparams.n_hidden]
        steps = [None] if k is None else range(k)
        if self.noise_seed is None:
            defaults = [tf.random_uniform([len(steps)] + shape) for _ in range(n_layer)]
        else:
            s = self.global_step.read_value()
            defaults = [tf.stack([self.keyed_uniform(shape, training_noise_stream(
                s + (j or 0), l, n_layer)) for j in steps]) for l in range(n_layer)]
        if k is None:
            defaults = [d[0] for d in defaults]
        return [tf.placeholder_with_default(d, d.shape, name='u_%d' % l)
                for l, d in enumerate(defaults)]

    def step_noise(self, rows, groups=None):
        """Each layer's noise [rows, n_hidden] (or [groups, rows, n_hidden]) for a Step built
        without noise: an evaluation's, keyed by the global step and `eval_key`; in the
        flexible build also the training step's, keyed by the step when `eval_key` is not
        fed."""
        n_layer = self.hparams.n_layer
        shape = ([] if groups is None else [groups]) + [rows, self.hparams.n_hidden]
        if self.noise_seed is None:
            return [tf.random_uniform(shape) for _ in range(n_layer)]
        s, noise = self.global_step.read_value(), []
        for l in range(n_layer):
            stream = eval_noise_stream(s, tf.maximum(self.eval_key, 0), l, n_layer)
            if not self.static_shapes:
                stream = tf.where(self.eval_key < 0, training_noise_stream(s, l, n_layer),
                                  stream)
            noise.append(self.keyed_uniform(shape, stream))
        return noise

    def _batch_input(self, n_images):
        if self._images is not None:
            return self._images(n_images)
        return tf.placeholder(tf.float32, [n_images, self.hparams.n_input], 'x')

    @property
    def eval(self):
        """The evaluation graph: the training graph, or for static shapes one of EVAL_GROUP
        images x EVAL_SAMPLES samples sharing every variable."""
        if self._eval is None:
            x = tf.placeholder(tf.float32, [EVAL_GROUP, self.hparams.n_input], 'eval_x')
            with tf.name_scope('eval'):
                self._eval = Step(self, x, EVAL_SAMPLES, EVAL_GROUP * EVAL_SAMPLES)
        return self._eval

    @property
    def eval_report(self):
        """The report for evaluation; its moving-average entries are read, not updated."""
        if self._eval_report is None:
            self._eval_report = (self.eval.report
                                 + self._variance_figures(*self._read_averages())[1])
        return self._eval_report

    def eval_groups(self, n_groups):
        """Evaluation of n_groups groups of EVAL_GROUP images in one call, each group exactly
        as `eval` evaluates it (its own Step: the report entries that are statistics of the
        group, such as a leave-one-out signal or tracked gradients, stay per group).

        Inputs: `x` [G, EVAL_GROUP, n_input], `noise[l]` [G, EVAL_GROUP * EVAL_SAMPLES,
        n_hidden] (random by default, fed to replay). Outputs: `image_bounds` [G, EVAL_GROUP],
        `reports` [G, R] (the groups' `eval.report`) and `extras`, the moving-average entries
        of `eval_report`, common to all groups. Static shapes only.
        """
        if not self.static_shapes:
            raise ValueError('Grouped evaluation needs static shapes.')
        if n_groups not in self._eval_groups:
            with tf.name_scope('eval_groups_%d' % n_groups):
                self._eval_groups[n_groups] = self._build_eval_groups(n_groups)
        return self._eval_groups[n_groups]

    def _build_eval_groups(self, g):
        rows = EVAL_GROUP * EVAL_SAMPLES
        x = tf.placeholder(tf.float32, [g, EVAL_GROUP, self.hparams.n_input], 'eval_x')
        noise = [tf.placeholder_with_default(u, [g, rows, self.hparams.n_hidden], name='u_%d' % l)
                 for l, u in enumerate(self.step_noise(rows, g))]

        n_report = len(self.eval.report)

        def group(i, bounds, reports):
            step = Step(self, x[i], EVAL_SAMPLES, rows, [u[i] for u in noise])
            this = tf.equal(tf.range(g), i)   # row i takes group i's figures
            return [i + 1, tf.where(this, tf.broadcast_to(step.image_bounds, bounds.shape), bounds),
                    tf.where(this, tf.broadcast_to(tf.stack(step.report), reports.shape), reports)]

        # Fixed-shape accumulators rather than TensorArrays (whose stacking has a dynamic
        # size); a few groups at a time, to keep the cores busy with bounded memory.
        _, bounds, reports = tf.while_loop(
            lambda i, *_: i < g, group,
            [tf.constant(0), tf.zeros([g, EVAL_GROUP]), tf.zeros([g, n_report])],
            parallel_iterations=4, back_prop=False, maximum_iterations=g)
        extras = self._variance_figures(*self._read_averages())[1]
        return EvalGroups(x, noise, bounds, reports, tf.stack(extras) if extras else
                          tf.zeros([0]))

    @property
    def report_names(self):
        """One name per entry of the training report vector (`train_report`)."""
        return self.train.report_names + self._extra_names()

    @property
    def eval_report_names(self):
        """One name per entry of `partial_eval`'s vector (with fewer than 1000 samples)."""
        return ['iwae_bound'] + self.train.report_names + self._extra_names()

    def _extra_names(self):
        if not self.tracked:
            return []
        return ['deviation/' + name for name in self.in_report] + ['log_mean_gradient_square']

    def evaluations_per_image(self):
        """Forward passes through the generative network per image and training step."""
        return ESTIMATORS[self.estimator].passes(self.hparams) * self.hparams.n_samples

    # -- the parts subclasses choose -------------------------------------------------------
    def estimate(self, step):
        return ESTIMATORS[self.estimator].build(step, self.variables, self.hparams)

    def report(self, step):
        """(name, tensor) pairs: the ELBO, the temperature if learned, then the rest."""
        est = step.estimate
        pairs = list(zip(est.report_names, est.report))
        learned = [('temperature', step.temperature)] if self.learns_temperature else []
        return pairs[:1] + learned + pairs[1:] + est.etas

    # -- training ----------------------------------------------------------------------------
    def _build_training(self, step):
        # learn_prior=false: the prior stays at its start, logits 0 (uniform)
        model_grads = [(g, v) for g, v in zip(step.estimate.grads, self.variables)
                       if g is not None and (self.hparams.learn_prior or v is not self.nets.prior)]
        # Per tracked gradient g (a list of tensors): moving averages of g and of the scalar
        # mean(g^2) (linear in g^2, so its average is mean(E[g^2]) without a second copy of g).
        tracked = step.estimate.tracked or [[g for g, _ in model_grads]]
        tracked_grads = sum(tracked, [])
        mean_squares = [U.mean_square(g) for g in tracked]
        ema_update, read_moments = U.debiased_ema(tracked_grads + mean_squares, 0.999,
                                                  'gradient_moments')
        sizes = [len(g) for g in tracked]

        def read_averages():
            averages, correction = read_moments()
            firsts = [averages[sum(sizes[:k]):sum(sizes[:k + 1])] for k in range(len(sizes))]
            return firsts, averages[-len(sizes):], correction

        # Every update waits for everything the step computes from the variables (the tracked
        # gradients included): no read of a variable in the step can follow its update.
        computed = ([g for g, _ in model_grads + step.control_grads] + tracked_grads
                    + step.report)
        with tf.control_dependencies(computed):
            updates = [self._model_opt.apply_gradients(model_grads, global_step=self.global_step),
                       ema_update]
            if step.control_grads:
                updates.append(self._control_opt.apply_gradients(step.control_grads))
        train_op = tf.group(*updates)
        # Finite only if every gradient entry is (or if a square overflows float32, |g| > 1e19):
        # the mean squares are computed anyway, so the check costs no pass over the gradients.
        grads_finite = tf.is_finite(tf.add_n(
            mean_squares + [tf.reduce_sum(g) for g, _ in step.control_grads]))

        with tf.control_dependencies([train_op]):
            variances, extras = self._variance_figures(*read_averages())
            step_after = self.global_step.read_value()
        return Training(step.x, step, train_op, step.report + extras,
                        variances if self.tracked else variances[0], step_after, grads_finite,
                        read_averages)

    def _variance_figures(self, firsts, mean_squares, correction):
        """Per tracked estimator a variance, mean(E[g^2]) - mean(c^2): for the first
        `in_report` of them (the report vector's; all of one model's single gradient) c = mu,
        the mean of their E[g], as the released code measures its five; for the others c is
        their own E[g] (the released code's shared mu makes a low-variance estimator's figure
        negative once mu's own noise is larger, and an added estimator is not the released
        code's to reproduce). With several tracked, the report's extra entries: each of the
        first ones' mean((E[g] - mu)^2), and log mean(mu^2). No figure depends on which other
        estimators beyond the first are tracked.

        Arguments are the undivided moving averages (E[.] = average / correction): firsts,
        one list of tensors per tracked estimator; mean_squares, one scalar each.
        """
        n = len(self.in_report) if self.tracked else 1
        mu = [tf.add_n(parts) / n if n > 1 else parts[0] for parts in zip(*firsts[:n])]
        mu_square = U.mean_square(mu) / tf.square(correction)
        centres = [mu_square] * n + [U.mean_square(f) / tf.square(correction)
                                     for f in firsts[n:]]
        variances = [s / correction - c for s, c in zip(mean_squares, centres)]
        if not self.tracked:
            return variances, []
        deviations = [U.mean_square([f - m for f, m in zip(first, mu)]) / tf.square(correction)
                      for first in firsts[:n]]
        return variances, deviations + [tf.log(mu_square)]

    def partial_eval(self, sess, xs, n_samples=EVAL_SAMPLES, key=0):
        """[importance-weighted bound with n_samples, report vector...] for a group of images.

        From 1000 samples on, the bound is taken over chunks of 100 samples and only the bound
        is returned (as in the reference, which does so to bound memory).

        key: with `noise_seed`, the noise is a function of (global step, key) (chunk c of the
        1000-sample form takes key + c): calls at one step that should draw apart need keys
        apart, 0 <= key < EVAL_KEYS.
        """
        if n_samples >= 1000 and n_samples % EVAL_SAMPLES:
            raise ValueError('From 1000 samples on, n_samples must be a multiple of %d, got %d.'
                             % (EVAL_SAMPLES, n_samples))
        step = self.eval
        if n_samples < 1000:
            bounds, report = sess.run((step.image_bounds, self.eval_report),
                                      self._eval_feed(xs, n_samples, key))
            return np.array([np.mean(bounds[:len(xs)])] + list(report))
        chunks = [sess.run(step.log_f, self._eval_feed(xs, EVAL_SAMPLES, key + c))[:len(xs)]
                  for c in range(n_samples // EVAL_SAMPLES)]
        return np.array([np.mean(_log_mean_exp(np.concatenate(chunks, 1), axis=1))])

    def _eval_feed(self, xs, n_samples, key):
        """The evaluation graph's feed; the static one takes exactly EVAL_GROUP images (a short
        group is padded, and only its own rows are used) and EVAL_SAMPLES samples."""
        if not 0 <= key < EVAL_KEYS:
            raise ValueError('An evaluation key must be in [0, %d), got %d.' % (EVAL_KEYS, key))
        if not self.static_shapes:
            return {self.eval.x: xs, self.n_samples: n_samples, self.eval_key: key}
        if n_samples != EVAL_SAMPLES:
            raise ValueError('The static-shape build evaluates with %d samples, not %d.'
                             % (EVAL_SAMPLES, n_samples))
        return {self.eval.x: pad_rows(xs, EVAL_GROUP), self.eval_key: key}


def pad_rows(xs, n):
    """xs with copies of its last row appended up to n rows (the static evaluation graph's
    fixed group size; the copies' results are dropped by the caller)."""
    if len(xs) > n:
        raise ValueError('At most %d images per evaluation call, got %d.' % (n, len(xs)))
    return np.concatenate([xs, np.repeat(xs[-1:], n - len(xs), 0)], 0)


def _log_mean_exp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.mean(np.exp(a - m), axis=axis))


# -- the models users name in --hparams ---------------------------------------------------------
class SBN(Model):
    """REINFORCE with a leave-one-out baseline over the batch. Report: [ELBO, rms of the centred
    signal]."""
    estimator = 'REINFORCE'


class SBNNVIL(Model):
    """NVIL. Report: [ELBO]."""
    estimator = 'NVIL'


class SBNSimpleMuProp(Model):
    """MuProp without the linear term. Report: [ELBO, ELBO of the mean pass]."""
    estimator = 'SimpleMuProp'


class SBNMuProp(Model):
    """MuProp. Report: [ELBO, ELBO of the mean pass]."""
    estimator = 'MuProp'


class SBNGumbel(Model):
    """Concrete relaxation at a fixed temperature (biased). Report: [hard ELBO, relaxed ELBO]."""
    estimator = 'Concrete'


class SBNRebar(Model):
    """REBAR at a fixed temperature. Report: [ELBO, each eta]. The generative parameters'
    etas (eta/model/p_*) stay at 1 by construction: the control variate has no gradient in p
    (f~ and f~v take the same value, v being u in value, and log q has no p), so the variance
    objective has none in their etas."""
    estimator = 'REBAR'


class SBNDynamicRebar(Model):
    """REBAR with the temperature learned on the variance objective.

    Report: [ELBO, temperature, each eta]; eta/model/p_* stay at 1 by construction, as
    SBNRebar's.
    """
    estimator = 'DynamicREBAR'
    learns_temperature = True


class SBNARM(Model):
    """ARM (several layers: our variant, 1 + L evaluations of f; see `arm`). Report:
    [ELBO]."""
    estimator = 'ARM'


class SBNDisARM(Model):
    """DisARM (several layers: our variant, 1 + L evaluations of f; see `disarm`). Report:
    [ELBO]."""
    estimator = 'DisARM'


class SBNRelax(Model):
    """RELAX, our variant (see `relax`), its temperature learned on the variance objective.
    Report: [ELBO, temperature, eta]."""
    estimator = 'RELAX'
    learns_temperature = True


class SBNReinforceLOO(Model):
    """REINFORCE with n_samples >= 2 samples per image, each centred on its image's other
    samples. Report: [ELBO, rms of the centred signal]."""
    estimator = 'ReinforceLOO'


class SBNTrackGradVariances(Model):
    """Follows SimpleMuProp and, on its path, tracks the gradient variance of other estimators.

    STEP_VECTOR, the released code's five in its order: NVIL, SimpleMuProp, MuProp,
    DynamicREBAR, REBAR. The report vector (the printed `Step N: [...]`) is theirs alone, as
    the released code prints it: [ELBO, temperature, d variance / d log t, its square, each of
    the five's mean over parameters of (E[g] - mu)^2, log mean(mu^2)], mu the mean of the
    five's moving-average gradients E[g]; 4 + 5 + 1 = 10 entries for any network.

    TRACKED: the five, then ours (ARM, DisARM, RELAX, ReinforceLOO, DoubleCV, RODEO); each has
    a `('NAME', log variance)` line and an entry of the metrics record's `log_grad_variance`
    (see `_variance_figures`: the five's against mu, ours against their own E[g]), and none in
    the report vector. Tracking another estimator is adding its name to TRACKED (and to
    config.TRACKABLE). With `tracked=all` (the default) every one is tracked, except that those
    in config.MULTI_SAMPLE_TRACKABLE (ReinforceLOO, DoubleCV, RODEO) are tracked only with
    n_samples >= 2: with one sample per image there is no other sample to centre on. `tracked=SimpleMuProp+DynamicREBAR+...` tracks only those (our option, for
    speed: every tracked estimator costs its passes at every step); the report vector then holds
    the deviations of the five that are tracked, and mu is their mean (`in_report`). RELAX
    learns a temperature of its own, so the followed path's temperature, and d variance / d log
    t, come from the REBAR variance objectives alone, as in the released code; another tracked
    estimator that learns a temperature needs its own likewise.
    """
    estimator = 'SimpleMuProp'
    learns_temperature = True
    STEP_VECTOR = ('NVIL', 'SimpleMuProp', 'MuProp', 'DynamicREBAR', 'REBAR')
    TRACKED = config.TRACKABLE   # STEP_VECTOR, then ours

    def __init__(self, hparams, *args, **kwargs):
        self.tracked = self.tracked_names(hparams)
        self.in_report = tuple(n for n in self.STEP_VECTOR if n in self.tracked)
        super(SBNTrackGradVariances, self).__init__(hparams, *args, **kwargs)

    @classmethod
    def tracked_names(cls, hparams):
        """The estimators tracked with these hparams, in TRACKED order."""
        chosen = config.tracked_of(hparams)
        if chosen is not None:
            return chosen
        return tuple(n for n in cls.TRACKED
                     if hparams.n_samples >= 2 or n not in config.MULTI_SAMPLE_TRACKABLE)

    def _tracked_estimate(self, step, name):
        if name == 'DynamicREBAR':   # its own etas and baseline beside the tracked REBAR's
            return dynamic_rebar(step, self.variables, self.hparams, scope='dynamic_rebar')
        if name == 'RELAX':   # its own temperature, trained with eta and r
            with tf.variable_scope('relax'):
                log_t = tf.get_variable(
                    'log_temperature', [], tf.float32,
                    tf.constant_initializer(np.log(self.hparams.temperature)), trainable=False,
                    use_resource=True)
            est = relax(step, self.variables, self.hparams,
                        log_t + tf.zeros_like(step.log_temperature))
            est.cv_vars.append(log_t)
            return est
        return ESTIMATORS[name].build(step, self.variables, self.hparams)

    def estimate(self, step):
        parts = [self._tracked_estimate(step, name) for name in self.tracked]
        followed = parts[self.tracked.index('SimpleMuProp')]
        with_objective = [p for p in parts if p.variance_objective is not None]
        return Estimate(followed.grads, [('elbo', followed.report[0])],
                        baseline_losses=sum([p.baseline_losses for p in parts], []),
                        baseline_vars=sum([p.baseline_vars for p in parts], []),
                        cv_vars=sum([p.cv_vars for p in with_objective], []),
                        variance_objective=tf.add_n([p.variance_objective
                                                     for p in with_objective]),
                        tracked=[[U.vectorize(p.grads, self.variables)] for p in parts])

    def evaluations_per_image(self):
        """The followed estimator's passes, and every tracked estimator's (ARM and DisARM
        share theirs)."""
        hp = self.hparams
        relaxed = sum(ESTIMATORS[name].passes(hp) - 1 for name in self.tracked
                      if name in ('DynamicREBAR', 'REBAR', 'RELAX'))
        return (2 + hp.n_layer + relaxed) * hp.n_samples

    def report(self, step):
        t_grad = step.temperature_grad
        return [('elbo', step.estimate.report[0]), ('temperature', step.temperature),
                ('d_variance_d_log_temperature', t_grad),
                ('d_variance_d_log_temperature_squared', t_grad * t_grad)]


class SBNARMS(Model):
    """ARMS with K = n_samples >= 2 samples per image from the Dirichlet copula. Report:
    [ELBO]."""
    estimator = 'ARMS'


class SBNVIMCO(Model):
    """VIMCO with K = n_samples >= 2 samples per image, for `objective` (iwae: the K-sample
    bound). Report: [the objective: K-sample bound (iwae) or ELBO]."""
    estimator = 'VIMCO'


class SBNLocalDisARM(Model):
    """Local DisARM with n = n_samples antithetic pairs per image, for `objective` (iwae: the
    n-sample bound). Report: [the objective: n-sample bound (iwae) or ELBO]."""
    estimator = 'LocalDisARM'
class SBNDoubleCV(Model):
    """Double control variates with n_samples >= 2 samples per image; alpha per layer learned
    on the variance objective. Report: [ELBO, alpha per layer]."""
    estimator = 'DoubleCV'


class SBNRodeo(Model):
    """RODEO with n_samples >= 2 samples per image; alpha, beta and the network h per layer
    learned on the variance objective. Report: [ELBO, alpha and beta per layer]."""
    estimator = 'RODEO'


def build_model(hparams, mean_xs, static_shapes=False, reuse_hard=True, images=None,
                noise_seed=None):
    """The model class named by hparams.model, built in the current default graph."""
    config.validate(hparams)
    return globals()[hparams.model](hparams, mean_xs, static_shapes=static_shapes,
                                    reuse_hard=reuse_hard, images=images, noise_seed=noise_seed)
