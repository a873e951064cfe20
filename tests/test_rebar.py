"""The estimators: unbiasedness against exact enumeration (and the power to see broken
variants), the conditional noise, the self-tuning temperature and RELAX's learned parts, every
model with every task, variance ordering, the static-shape build, and agreement with numpy."""
from __future__ import absolute_import, division, print_function

import contextlib
import itertools

import numpy as np
import pytest

import config
from conftest import session_config


def _session():
    import tensorflow.compat.v1 as tf
    sess = tf.Session(config=session_config())
    sess.run(tf.global_variables_initializer())
    return sess


@contextlib.contextmanager
def _perturbed_session(model, data, seed):
    """A session at the tiny networks' weights moved off their start, and a feed of `data`
    and 32 rows of noise."""
    import estimator_checks as C
    rng = np.random.RandomState(seed)
    feed = C.noise_feed(model, 32, rng)
    feed[model.x] = data
    with _session() as sess:
        C.load_weights(sess)
        C.perturb(sess, model, rng)
        yield sess, feed


# -- unbiasedness ----------------------------------------------------------------------------
NETWORKS = {
    'linear-1': 'n_layer=1',
    'linear-2': 'n_layer=2',
    'nonlinear-1': 'n_layer=1,nonlinear=true',
    'nonlinear-2': 'n_layer=2,nonlinear=true',
    # the Gaussian likelihood changes f only: one architecture shows every estimator still exact
    'linear-1-gaussian': 'n_layer=1,likelihood=gaussian',
}
UNBIASED = {
    'SBN': 'model=SBN',
    'NVIL': 'model=SBNNVIL',
    'SimpleMuProp': 'model=SBNSimpleMuProp',
    'MuProp': 'model=SBNMuProp',
    'Rebar': 'model=SBNRebar',
    'Rebar-linear-cv': 'model=SBNRebar,quadratic=false',
    'DynamicRebar': 'model=SBNDynamicRebar',
    'DynamicRebar-linear-cv': 'model=SBNDynamicRebar,quadratic=false',
    'ARM': 'model=SBNARM',
    'DisARM': 'model=SBNDisARM',
    'Relax': 'model=SBNRelax',
    'Relax-linear-cv': 'model=SBNRelax,quadratic=false',
    'ReinforceLOO': 'model=SBNReinforceLOO',
}
IMAGES, SAMPLES, RUNS = 2, 256, 100


def _compare_with_exact(spec, perturbed_too=True, seed=0, samples=SAMPLES, bound=False,
                        network=None):
    """Returns [(mean - exact, standard error)] at the initial state (and perturbed).

    Each draw sees the IMAGES images SAMPLES times: with `samples` < SAMPLES, as
    SAMPLES // samples copies of the images with `samples` samples each. The exact gradient
    is the ELBO's, or with `bound` that of the expected `samples`-sample bound. `network`:
    the sizes (default estimator_checks.TINY).
    """
    import estimator_checks as C
    spec = '%s,%s,batch_size=%d,n_samples=%d' % (spec, network or C.TINY,
                                                 IMAGES * (SAMPLES // samples), samples)
    data = C.tiny_data(likelihood=config.parse_hparams(spec).likelihood)
    xs = np.tile(data[:IMAGES], [SAMPLES // samples, 1])
    model = C.build(spec, data.mean(0), static_shapes=True)
    assert C.unknown_dimensions(C.training_fetches(model)) == []   # the NPU build is static
    # the mean over xs' copies
    exact = (C.exact_bound_gradient(model, data[:IMAGES], samples) if bound
             else C.exact_loss_gradient(model, data[:IMAGES]))
    rng = np.random.RandomState(seed)
    results = []
    with _session() as sess:
        C.load_weights(sess, etas=False)   # the same weights in both TensorFlows
        for state in (['initial', 'perturbed'] if perturbed_too else ['initial']):
            if state == 'perturbed':
                C.perturb(sess, model, rng)
            draws = C.sample_gradients(sess, model, xs, RUNS, rng)
            truth = sess.run(exact)
            se = draws.std(0, ddof=1) / np.sqrt(RUNS)
            results.append((state, draws.mean(0) - truth, se, truth))
    return results


@pytest.mark.parametrize('network', sorted(NETWORKS))
@pytest.mark.parametrize('estimator', sorted(UNBIASED))
def test_estimator_is_unbiased_against_exact_enumeration(graph, estimator, network):
    for state, error, se, truth in _compare_with_exact(
            UNBIASED[estimator] + ',' + NETWORKS[network]):
        # 4 standard errors of the 100-draw mean, plus float32 round-off of the exact sum
        tolerance = 4 * se + 1e-5 * (1 + np.abs(truth))
        worst = np.argmax(np.abs(error) / tolerance)
        assert np.all(np.abs(error) <= tolerance), (
            '%s at the %s state: parameter %d off by %.3g (%.1f standard errors)'
            % (estimator, state, worst, error[worst], abs(error[worst]) / se[worst]))


# The configurations training uses that the grid above leaves out: three stochastic layers,
# task=sp (the released model, and with sp_all_layers its erratum's), one sample per image
# (the training default; two for leave-one-out, its least) and plain Concrete relaxation
# (muprop_relaxation=false). Each axis is paired with the estimators whose code it reaches,
# several axes a case, so that each estimator runs once or twice:
# - three layers: a middle layer, whose segment/pair has layers both below and above it:
#   the per-layer estimators (MuProp, REBAR's segments, RELAX, ARM/DisARM's pairs);
# - sp: f = log p(bottom | b) with no log q and the hard terms not reused, from the last
#   layer only or from every layer: the estimators that build other passes (the mean pass,
#   the relaxed ones, the antithetic ones), and SBN/LOO's plain REINFORCE as a control;
# - one sample: SBN's batch-wide centring, DynamicREBAR's and RELAX's per-row temperature;
#   two: ReinforceLOO's 1/(K - 1);
# - muprop_relaxation=false: only the relaxed passes (REBAR, DynamicREBAR, RELAX).
# NVIL and SimpleMuProp add nothing here: the hard pass and the mean pass, covered by MuProp.
TRAINING_CONFIGURATIONS = {
    'MuProp-3layers-sp': ('model=SBNMuProp,n_layer=3,task=sp', 1),
    'Rebar-3layers-concrete': ('model=SBNRebar,n_layer=3,muprop_relaxation=false', 1),
    'DynamicRebar-3layers-sp_all': ('model=SBNDynamicRebar,n_layer=3,task=sp,'
                                    'sp_all_layers=true', 1),
    'DynamicRebar-sp-concrete': ('model=SBNDynamicRebar,n_layer=2,task=sp,'
                                 'muprop_relaxation=false', 1),
    'Relax-3layers-concrete': ('model=SBNRelax,n_layer=3,muprop_relaxation=false', 1),
    'Relax-sp_all': ('model=SBNRelax,n_layer=2,task=sp,sp_all_layers=true', 1),
    'ARM-3layers-sp_all': ('model=SBNARM,n_layer=3,task=sp,sp_all_layers=true', 1),
    'DisARM-3layers': ('model=SBNDisARM,n_layer=3', 1),
    'SBN-3layers-sp_all': ('model=SBN,n_layer=3,task=sp,sp_all_layers=true', 1),
    'ReinforceLOO-3layers-sp': ('model=SBNReinforceLOO,n_layer=3,task=sp', 2),
}


@pytest.mark.parametrize('case', sorted(TRAINING_CONFIGURATIONS))
def test_estimator_is_unbiased_in_the_configurations_training_uses(graph, case):
    spec, samples = TRAINING_CONFIGURATIONS[case]
    for state, error, se, truth in _compare_with_exact(spec, samples=samples):
        tolerance = 4 * se + 1e-5 * (1 + np.abs(truth))
        worst = np.argmax(np.abs(error) / tolerance)
        assert np.all(np.abs(error) <= tolerance), (
            '%s at the %s state: parameter %d off by %.3g (%.1f standard errors)'
            % (case, state, worst, error[worst], abs(error[worst]) / se[worst]))


def _broken_loo(step, variables, hparams):
    """The mistake: each sample's baseline is the mean of all K samples, its own included."""
    import tensorflow.compat.v1 as tf
    import rebar
    hard = step.passes.hard
    f = tf.reshape(hard.elbo, [step.passes.n_samples, -1])
    signal = tf.stop_gradient(tf.reshape(f - tf.reduce_mean(f, 0, keepdims=True), [-1]))
    return rebar.Estimate(rebar._grads(-(signal * tf.add_n(hard.log_q) + hard.log_p), variables),
                          [('elbo', tf.reduce_mean(hard.elbo))])


def _complement_partner(passes, layer):
    """The mistake: ARM's partner taken as 1[u < sigma(-a)] = 1 - b, which is not distributed as
    b. (Replacing u - 1/2 by u would not be one: it adds (f(b) - f(b~))/2, of mean zero.)"""
    import tensorflow.compat.v1 as tf
    flip = [(-1.0 if i == layer else 1.0) for i in range(len(passes.logit_u))]
    return passes._run(lambda i, a: tf.stop_gradient(
        tf.cast(flip[i] * (a + passes.logit_u[i]) > 0, tf.float32)), layer)


def _broken_disarm(step, variables, hparams):
    """The mistake: the sign (-1)^{b~} left out."""
    import tensorflow.compat.v1 as tf
    import rebar
    return rebar._antithetic_estimate(
        step.passes, variables, lambda diff, u, a, b_anti, b: 0.5 * diff[:, None] * tf.cast(
            tf.not_equal(b, b_anti), tf.float32) * tf.sigmoid(tf.abs(a)))


def _replace_estimator(name, broken):
    def patch(monkeypatch, rebar):
        monkeypatch.setitem(rebar.ESTIMATORS, name,
                            rebar.Estimator(broken, rebar.ESTIMATORS[name].passes))
    return patch


# estimator -> (model, samples per image, patch(monkeypatch, rebar) installing the mistake)
BROKEN = {
    'ARM': ('SBNARM', SAMPLES, lambda mp, rebar: mp.setattr(rebar.ForwardPasses, 'antithetic',
                                                             _complement_partner)),
    'DisARM': ('SBNDisARM', SAMPLES, _replace_estimator('DisARM', _broken_disarm)),
    'ReinforceLOO': ('SBNReinforceLOO', 2, _replace_estimator('ReinforceLOO', _broken_loo)),
    # c(z) in place of c(z~): the noise v replaced by u itself, so the REINFORCE term's
    # control variate depends on b and the correction grad c(z) - grad c(z~) vanishes
    'Relax': ('SBNRelax', SAMPLES, lambda mp, rebar: mp.setattr(rebar, 'conditional_noise',
                                                                 lambda logits, u: u)),
}


@pytest.mark.parametrize('estimator', sorted(BROKEN))
def test_a_broken_variant_of_each_new_estimator_is_detected(graph, monkeypatch, estimator):
    """The unbiasedness test has the power to see each estimator's classic mistake."""
    import rebar
    model, samples, patch = BROKEN[estimator]
    patch(monkeypatch, rebar)
    (state, error, se, truth), = _compare_with_exact(
        'model=%s,%s' % (model, NETWORKS['linear-2']), perturbed_too=False, samples=samples)
    tolerance = 4 * se + 1e-5 * (1 + np.abs(truth))
    print('%s broken: worst error / tolerance %.1f'
          % (estimator, np.max(np.abs(error) / tolerance)))
    assert np.any(np.abs(error) > tolerance)


def _assert_unbiased(results, name, n_se=4):
    for state, error, se, truth in results:
        # n_se standard errors of the 100-draw mean, plus float32 round-off of the exact sum
        tolerance = n_se * se + 1e-5 * (1 + np.abs(truth))
        worst = np.argmax(np.abs(error) / tolerance)
        assert np.all(np.abs(error) <= tolerance), (
            '%s at the %s state: parameter %d off by %.3g (%.1f standard errors)'
            % (name, state, worst, error[worst], abs(error[worst]) / se[worst]))


def _assert_detected(results, name):
    (state, error, se, truth), = results
    tolerance = 4 * se + 1e-5 * (1 + np.abs(truth))
    print('%s: worst error / tolerance %.1f' % (name, np.max(np.abs(error) / tolerance)))
    assert np.any(np.abs(error) > tolerance)


# -- the multi-sample estimators: ARMS (ELBO), VIMCO and local DisARM (the K-sample bound) ----
@pytest.mark.parametrize('k', [2, 3, 4])
@pytest.mark.parametrize('network', sorted(NETWORKS))
def test_arms_is_unbiased_for_the_elbo_against_exact_enumeration(graph, network, k):
    _assert_unbiased(_compare_with_exact('model=SBNARMS,' + NETWORKS[network], samples=k),
                     'ARMS K=%d' % k)


# A network small enough to enumerate K-tuples of samples: C = 2^(n_layer * 2) configurations,
# C^K tuples.
BOUND_NETWORK = 'n_input=6,n_hidden=2'
BOUND_CASES = [('linear-1', 2), ('linear-1', 4), ('nonlinear-1', 3), ('linear-2', 2),
               ('nonlinear-2', 2)]


@pytest.mark.parametrize('network, k', BOUND_CASES)
@pytest.mark.parametrize('model', ['SBNVIMCO', 'SBNLocalDisARM'])
def test_multi_sample_estimators_are_unbiased_for_the_bound_against_exact_enumeration(
        graph, model, network, k):
    """The gradient of E[log mean_k exp f(b_k)] over every K-tuple of configurations."""
    _assert_unbiased(_compare_with_exact('model=%s,objective=iwae,%s' % (model, NETWORKS[network]),
                                         samples=k, bound=True, network=BOUND_NETWORK),
                     '%s K=%d' % (model, k))


@pytest.mark.parametrize('model', ['SBNVIMCO', 'SBNLocalDisARM'])
def test_multi_sample_estimators_are_unbiased_for_the_elbo_too(graph, model):
    """Under objective=elbo they estimate the ELBO's gradient (REINFORCE-LOO's and DisARM's,
    each plus a mean-zero term)."""
    _assert_unbiased(_compare_with_exact('model=%s,%s' % (model, NETWORKS['nonlinear-2']),
                                         samples=4), model)


@pytest.mark.parametrize('k', [2, 3, 4, 6])
def test_dirichlet_copula_has_uniform_marginals_and_the_closed_form_pair_probability(graph, k):
    """Per unit, K draws of the copula for 40,000 images: each u'_k is uniform (Kolmogorov-
    Smirnov), each bit is 1 with probability theta, two bits are both 1 with probability
    P11 = C(theta) (theta < 1/2) or 2 theta - 1 + C(1 - theta), C(p) = max(2 p^(1/(K-1)) - 1,
    0)^(K-1), within 4 binomial standard errors; the debiasing factor is theta (1 - theta) /
    (theta - P11)."""
    import scipy.stats
    import tensorflow.compat.v1 as tf
    import rebar
    theta = np.array([0.02, 0.2, 0.45, 0.5, 0.55, 0.8, 0.97])
    images = 40000
    rng = np.random.RandomState(k)
    u = rng.rand(k * images, len(theta)).astype(np.float32)
    logits = np.tile(np.log(theta / (1 - theta)), [k * images, 1]).astype(np.float32)
    copula = rebar.dirichlet_copula(tf.constant(u), k)
    with _session() as sess:
        u_prime, b, debias = sess.run((copula, rebar.dirichlet_copula_sample(logits, copula),
                                       rebar.copula_debias(logits[:1], k)))
    # the first sample of every image and unit: independent draws
    assert scipy.stats.kstest(u_prime[:images].ravel(), 'uniform').pvalue > 1e-3
    closed = lambda p: np.maximum(2 * p ** (1.0 / (k - 1)) - 1, 0) ** (k - 1)
    p11 = np.where(theta < 0.5, closed(theta), 2 * theta - 1 + closed(1 - theta))
    b = b.reshape([k, images, len(theta)])
    for value, expected in [(b.mean((0, 1)), theta), ((b[0] * b[1]).mean(0), p11)]:
        se = np.sqrt(expected * (1 - expected) / images) + 1e-12
        assert np.all(np.abs(value - expected) <= 4 * se), (value, expected)
    assert k > 2 or np.all(p11 == np.maximum(2 * theta - 1, 0))   # K = 2: antithetic pairs
    np.testing.assert_allclose(debias[0], theta * (1 - theta) / (theta - p11), rtol=1e-4)


def _one_layer_gradient(name, spec, xs, noise, n_samples):
    """The loss gradient of model `name` with the shared test weights, on images xs with the
    layer's noise fed; also theta = sigma(first logits), [n_samples * len(xs), n_hidden]."""
    import tensorflow.compat.v1 as tf
    import estimator_checks as C
    import utils as U
    with tf.Graph().as_default():
        model = C.build('model=%s,%s,n_samples=%d,batch_size=%d,%s'
                        % (name, spec, n_samples, len(xs), C.TINY), C.tiny_data().mean(0))
        with _session() as sess:
            C.load_weights(sess)
            return sess.run((U.vectorize(model.grads, model.variables),
                             tf.sigmoid(model.train.passes.first_logits)),
                            {model.x: xs, model.noise[0]: noise})


@pytest.mark.parametrize('nonlinear', ['false', 'true'])
def test_arms_with_two_samples_is_disarm_on_the_same_noise(nonlinear):
    """One layer, K = 2: the copula's pair is (u', 1 - u'); DisARM on the noise
    u = 1 - u' where theta < 1/2 and u' elsewhere draws ARMS's first sample as its hard one and
    the second as its partner, and on 1 - u the other way round. ARMS's gradient is the mean
    of the two (the same encoder term; the decoder term of each member)."""
    import tensorflow.compat.v1 as tf
    import estimator_checks as C
    import rebar
    xs = C.tiny_data()
    spec = 'n_layer=1,nonlinear=' + nonlinear
    w = np.random.RandomState(3).rand(2 * len(xs), 3).astype(np.float32)
    with tf.Graph().as_default(), _session() as sess:
        first = sess.run(rebar.dirichlet_copula(tf.constant(w), 2))[:len(xs)]
    arms, theta = _one_layer_gradient('SBNARMS', spec, xs, w, 2)
    u = np.where(theta[:len(xs)] < 0.5, 1 - first, first)
    disarm = [_one_layer_gradient('SBNDisARM', spec, xs, noise, 1)[0] for noise in (u, 1 - u)]
    assert 0 < np.mean(theta < 0.5) < 1 and np.abs(arms).max() > 1e-2
    np.testing.assert_allclose(arms, np.mean(disarm, 0), rtol=1e-4, atol=1e-6)


def test_arms_with_independent_samples_is_reinforce_loo(monkeypatch):
    """One layer: with the copula replaced by independent uniforms and c = 1, ARMS is
    REINFORCE leave-one-out on noise giving the same bits (u, or 1 - u where theta < 1/2)."""
    import tensorflow.compat.v1 as tf
    import estimator_checks as C
    import rebar
    monkeypatch.setattr(rebar, 'dirichlet_copula', lambda u, k: u)
    monkeypatch.setattr(rebar, 'copula_debias', lambda logits, k: tf.ones_like(logits))
    xs, k = C.tiny_data(), 3
    w = np.random.RandomState(4).rand(k * len(xs), 3).astype(np.float32)
    arms, theta = _one_layer_gradient('SBNARMS', 'n_layer=1', xs, w, k)
    flipped = np.where(theta < 0.5, 1 - w, w)
    loo, _ = _one_layer_gradient('SBNReinforceLOO', 'n_layer=1', xs, flipped, k)
    assert 0 < np.mean(theta < 0.5) < 1 and np.abs(arms).max() > 1e-2
    np.testing.assert_allclose(arms, loo, rtol=1e-4, atol=1e-6)


def _local_disarm_without_pathwise_part(step, variables, hparams):
    """The authors' code's form: the score part alone; the encoder gets no -sum_i w_i grad
    log q(b_i) (log q held constant in f), the decoder the bound's gradient."""
    import tensorflow.compat.v1 as tf
    import rebar
    hard = step.passes.hard
    fixed_q = rebar.KSampleBound(hard.log_p - tf.stop_gradient(tf.add_n(hard.log_q)),
                                 step.passes.n_samples, hparams.objective)
    ours = rebar.local_disarm(step, variables, hparams)
    pathwise = rebar._grads(-fixed_q.value, variables)
    full = rebar._grads(-step.passes.bound.value, variables)
    grads = [g - f + (0.0 if p is None else p) for g, f, p in zip(ours.grads, full, pathwise)]
    return rebar.Estimate(grads, [('k_sample_bound', tf.reduce_mean(fixed_q.value))])


def _vimco_with_own_sample_in_baseline(monkeypatch, rebar):
    """The mistake: L_{-k} built from the mean of all K samples' f, its own included."""
    import tensorflow.compat.v1 as tf
    monkeypatch.setattr(rebar.KSampleBound, 'leave_one_out', property(
        lambda self: self.replaced(tf.tile(tf.reduce_mean(self.f, 0, keepdims=True),
                                           [self.n_samples, 1]))))


def _arms_without_debiasing(monkeypatch, rebar):
    """The mistake: the copula's samples used as if independent (c = 1)."""
    import tensorflow.compat.v1 as tf
    monkeypatch.setattr(rebar, 'copula_debias', lambda logits, k: tf.ones_like(logits))


# model -> (spec, samples, bound?, patch(monkeypatch, rebar) installing the mistake)
MULTI_SAMPLE_BROKEN = {
    'ARMS': ('model=SBNARMS,n_layer=1', 3, False, _arms_without_debiasing),
    'VIMCO': ('model=SBNVIMCO,objective=iwae,n_layer=1', 3, True,
              _vimco_with_own_sample_in_baseline),
    'LocalDisARM': ('model=SBNLocalDisARM,objective=iwae,n_layer=1,nonlinear=true', 3, True,
                    _replace_estimator('LocalDisARM', _local_disarm_without_pathwise_part)),
}


@pytest.mark.parametrize('name', sorted(MULTI_SAMPLE_BROKEN))
def test_a_broken_variant_of_each_multi_sample_estimator_is_detected(graph, monkeypatch, name):
    import rebar
    spec, k, bound, patch = MULTI_SAMPLE_BROKEN[name]
    patch(monkeypatch, rebar)
    _assert_detected(_compare_with_exact(spec, perturbed_too=False, samples=k, bound=bound,
                                         network=BOUND_NETWORK), name + ' broken')


def test_concrete_relaxation_is_detectably_biased(graph):
    (state, error, se, truth), = _compare_with_exact(
        'model=SBNGumbel,temperature=0.5,' + NETWORKS['linear-2'], perturbed_too=False)
    assert np.max(np.abs(error) / (se + 1e-12)) > 8


def test_released_quadratic_control_variate_is_biased_with_two_layers(graph):
    """The released code relaxes the layers above l with v too; the layer-l term then keeps
    -E[f~v_l grad log q(b_{l+1} | b_l)] (see README). This records that the bias is real."""
    (state, error, se, truth), = _compare_with_exact(
        'model=SBNRebar,reference_quadratic_cv=true,' + NETWORKS['linear-2'],
        perturbed_too=False)
    assert np.max(np.abs(error) / (se + 1e-12)) > 8


def test_released_quadratic_control_variate_is_the_same_with_one_layer(graph):
    for state, error, se, truth in _compare_with_exact(
            'model=SBNRebar,reference_quadratic_cv=true,' + NETWORKS['linear-1'],
            perturbed_too=False):
        assert np.all(np.abs(error) <= 4 * se + 1e-5 * (1 + np.abs(truth)))


def test_rebar_etas_of_the_generative_parameters_stay_at_one_by_construction(graph):
    """As docs/models.md says: the control variate has no gradient in p (its relaxed passes
    take the same value, v being u in value, and log q has no p), so eta/model/p_* get no
    gradient and stay at exactly 1 while the q etas move."""
    import estimator_checks as C
    data = C.tiny_data()
    model = C.build('model=SBNDynamicRebar,n_layer=2,batch_size=4,' + C.TINY, data.mean(0),
                    static_shapes=True)
    rng = np.random.RandomState(3)
    with _session() as sess:
        C.load_weights(sess, etas=False)
        for _ in range(3):   # the third step's report holds the etas after two updates
            feed = C.noise_feed(model, 4, rng)
            feed[model.x] = data[:4]
            _, report = sess.run((model.train_op, model.train_report), feed)
            report = dict(zip(model.report_names, report))
    p = [v for name, v in report.items() if name.startswith('eta/model/p_')]
    q = [v for name, v in report.items() if name.startswith('eta/model/q_')]
    assert len(p) == 5 and len(q) == 4   # prior, two layers' weights and biases each
    assert all(v == 1.0 for v in p) and all(v != 1.0 for v in q), report


# -- double control variates and RODEO -------------------------------------------------------
# Every combination of the axes, for each estimator: 1, 2 and 3 stochastic layers, linear and
# nonlinear, K = 2 and 3 samples per image, task=sbn and task=sp, each at the initial state
# (alpha = beta = 0: leave-one-out REINFORCE) and at a perturbed one (random alpha, beta and
# network h). The nonlinear networks use the reference's tanh with K = 2 and the RODEO
# protocol's LeakyReLU(0.3) with K = 3, so both appear at every depth and task.
EXPANSION_MODELS = ('SBNDoubleCV', 'SBNRodeo')


def _expansion_cases():
    """name -> (network spec, K), over the product of the axes."""
    cases = {}
    for depth, nonlinear, k, task in itertools.product((1, 2, 3), (False, True), (2, 3),
                                                       ('sbn', 'sp')):
        kind = ('tanh' if k == 2 else 'leaky_relu') if nonlinear else 'linear'
        spec = 'n_layer=%d,task=%s' % (depth, task)
        if nonlinear:
            spec += ',nonlinear=true,nonlinearity=' + kind
        cases['%d-layers-%s-K%d-%s' % (depth, kind, k, task)] = (spec, k)
    return cases


EXPANSION_CASES = _expansion_cases()
# 96 states of up to 200 parameters: at 4 standard errors (a t test with 99 degrees of freedom
# exceeds it with probability 1.2e-4) about two of the 19,000 comparisons would fail by chance,
# and did (three cases at 4.2 to 4.9; with 1,000 draws, all within 3.5). At 5 (2.5e-6 a
# comparison, 5e-4 a case) a chance failure is unlikely; each broken variant below still
# exceeds 5 many times.
EXPANSION_SE = 5


@pytest.mark.parametrize('case', sorted(EXPANSION_CASES))
@pytest.mark.parametrize('model', EXPANSION_MODELS)
def test_double_cv_and_rodeo_are_unbiased_against_exact_enumeration(graph, model, case):
    network, k = EXPANSION_CASES[case]
    _assert_unbiased(_compare_with_exact('model=%s,n_samples=%d,%s' % (model, k, network),
                                         samples=k), '%s %s' % (model, case), n_se=EXPANSION_SE)


# model -> the mistake: the expansion's known mean not subtracted; the Stein operator weighting
# flip d by q(b_d) instead of q(1 - b_d)
EXPANSION_BROKEN = {
    'SBNDoubleCV': ('expansion_mean', lambda alpha, slopes, theta: 0.0),
    'SBNRodeo': ('stein_weights', lambda b, theta: theta * b + (1.0 - theta) * (1.0 - b)),
}


@pytest.mark.parametrize('model', EXPANSION_MODELS)
def test_a_broken_double_cv_and_rodeo_are_detected(graph, monkeypatch, model):
    """At the perturbed state (alpha, beta != 0; at the start both are 0 and the estimators are
    leave-one-out REINFORCE, broken or not)."""
    import rebar
    monkeypatch.setattr(rebar, *EXPANSION_BROKEN[model])
    _, (state, error, se, truth) = _compare_with_exact(
        'model=%s,n_samples=2,%s' % (model, NETWORKS['linear-2']), samples=2)
    tolerance = EXPANSION_SE * se + 1e-5 * (1 + np.abs(truth))
    print('%s broken: worst error / tolerance %.1f' % (model, np.max(np.abs(error) / tolerance)))
    assert np.any(np.abs(error) > tolerance)


def test_protocol_options_fix_the_prior_use_leaky_relu_and_set_the_control_step(graph):
    """learn_prior=false: the prior's logits stay 0 (uniform) through a step that moves the
    rest; nonlinearity=leaky_relu: the hidden layers are LeakyReLU(0.3); control_learning_rate:
    Adam's first step moves each coefficient by about that much (|m / sqrt(v)| = 1 at step
    one)."""
    import tensorflow.compat.v1 as tf
    import estimator_checks as C
    data = C.tiny_data()
    model = C.build('model=SBNDoubleCV,n_samples=2,batch_size=8,nonlinear=true,'
                    'nonlinearity=leaky_relu,learn_prior=false,control_learning_rate=0.25,'
                    + C.TINY, data.mean(0))
    kinds = set(op.type for op in tf.get_default_graph().get_operations())
    assert 'LeakyRelu' in kinds and 'Tanh' not in kinds
    alpha = [v for v in tf.global_variables() if v.op.name.endswith('layer_0/alpha')][0]
    with _session() as sess:
        before = sess.run(model.variables)
        feed = C.noise_feed(model, 16, np.random.RandomState(2))
        feed[model.x] = data
        sess.run(model.train_op, feed)
        after = sess.run(model.variables)
        moved = abs(sess.run(alpha))
    for v, b, a in zip(model.variables, before, after):
        if v is model.nets.prior:
            assert np.all(a == 0) and np.all(b == 0)
        else:
            assert np.any(a != b), v.op.name
    assert 0.24 < moved <= 0.25   # (Adam's epsilon shortens a tiny first gradient's step)

def _numpy_stein(net, b, theta, g, f):
    """RODEO's control variates written out: every flip y = b_k^(d) built and the network run
    on each (y, other sample j) pair; (A h0)(b_k) and (A [y -> h1(y)(y - theta)])(b_k)."""
    n_k, n_batch, d = b.shape
    a_h0, a_h1 = np.zeros([n_k, n_batch]), np.zeros([n_k, n_batch, d])
    for k in range(n_k):
        for i in range(n_batch):
            def h(y):
                return np.mean([net(g[j, i].dot(y - b[j, i]), f[j, i])
                                for j in range(n_k) if j != k], 0)
            x, t = b[k, i], theta[k, i]
            base = h(x)
            for e in range(d):
                y = x.copy()
                y[e] = 1 - y[e]
                weight = t[e] if x[e] == 0 else 1 - t[e]   # q(y_e), the flipped value
                flipped = h(y)
                a_h0[k, i] += weight * (flipped[0] - base[0]) / d
                a_h1[k, i] += weight * (flipped[1] * (y - t) - base[1] * (x - t)) / d
    return a_h0, a_h1


def _stein_example(rng, n_k, n_batch, d):
    b = (rng.rand(n_k, n_batch, d) < 0.5).astype(np.float32)
    theta = rng.uniform(0.1, 0.9, [n_k, n_batch, d]).astype(np.float32)
    g = rng.randn(n_k, n_batch, d).astype(np.float32)
    f = rng.randn(n_k, n_batch).astype(np.float32)
    return b, theta, g, f


def test_rodeo_flip_evaluations_match_a_numpy_transcription(graph):
    import tensorflow.compat.v1 as tf
    import rebar
    rng = np.random.RandomState(3)
    b, theta, g, f = _stein_example(rng, 3, 2, 4)
    network = lambda x, z: rebar._rodeo_network(x, z, 'h')
    with tf.variable_scope('stein'):
        static = rebar.stein_control_variates(network, *map(tf.constant, (b, theta, g, f)))
        # K unknown when built (the flexible build): every pair, j = k weighted out
        flexible = rebar.stein_control_variates(network, *[
            tf.placeholder_with_default(t, [None] + list(t.shape[1:])) for t in (b, theta, g, f)])
    assert flexible[0].shape.as_list() == [None, 2]
    with _session() as sess:
        for v in tf.global_variables():   # random biases too, so that every term shows
            v.load(rng.randn(*v.shape.as_list()).astype(np.float32), sess)
        ours = sess.run(static) + sess.run(flexible)
        values = dict((v.op.name, sess.run(v)) for v in tf.global_variables())
    w1, c1, w2, c2 = [values['stein/h/%s' % name] for name in (
        'hidden/weights', 'hidden/biases', 'output/weights', 'output/biases')]
    assert w1.shape == (2, rebar.RODEO_HIDDEN) and c2.shape == (2,)

    def net(x, z):
        pre = np.dot([x, z], w1) + c1
        return np.dot(np.where(pre > 0, pre, 0.3 * pre), w2) + c2
    for a, expected in zip(ours, 2 * _numpy_stein(net, b, theta, g, f)):
        assert np.abs(expected).max() > 1e-2
        np.testing.assert_allclose(a, expected, rtol=1e-4, atol=1e-5)


def test_stein_control_variates_have_mean_zero_given_the_other_samples(graph):
    """Sum over every b_0 in {0,1}^D of q(b_0) (A h)(b_0), the other samples fixed, for a random
    network h: zero; the same sum with the wrong weight q(b_d) is not."""
    import tensorflow.compat.v1 as tf
    import rebar
    rng = np.random.RandomState(4)
    d = 5
    configs = np.array(list(itertools.product([0.0, 1.0], repeat=d)), np.float32)
    n = len(configs)
    b, theta, g, f = _stein_example(rng, 3, 1, d)
    theta = np.repeat(theta[:, :1], n, 1)   # one q per sample, every b_0 in the batch
    b, g, f = np.repeat(b, n, 1), np.repeat(g, n, 1), np.repeat(f, n, 1)
    b[0] = configs
    q = np.prod(np.where(configs > 0, theta[0], 1 - theta[0]), 1)
    network = lambda x, z: rebar._rodeo_network(x, z, 'h')
    inputs = [tf.constant(t) for t in (b, theta, g, f)]
    right = rebar.stein_control_variates(network, *inputs)
    rebar_weights = rebar.stein_weights
    try:
        rebar.stein_weights = lambda b, theta: theta * b + (1.0 - theta) * (1.0 - b)
        wrong = rebar.stein_control_variates(network, *inputs)
    finally:
        rebar.stein_weights = rebar_weights
    with _session() as sess:
        for v in tf.global_variables():
            v.load(rng.randn(*v.shape.as_list()).astype(np.float32), sess)
        (a_h0, a_h1), (w_h0, w_h1) = sess.run([right, wrong])
    assert np.abs(a_h0[0]).max() > 1e-2 and np.abs(a_h1[0]).max() > 1e-2
    assert abs(q.dot(a_h0[0])) < 1e-5
    np.testing.assert_allclose(q.dot(a_h1[0]), 0.0, atol=1e-5)
    assert abs(q.dot(w_h0[0])) > 1e-3 or np.abs(q.dot(w_h1[0])).max() > 1e-3


# -- the conditional noise -------------------------------------------------------------------
def test_conditional_noise_keeps_u_and_b_and_has_the_closed_form_gradient(graph):
    import scipy.special
    import tensorflow.compat.v1 as tf
    import rebar
    rng = np.random.RandomState(5)
    a = rng.uniform(-5, 5, size=(200, 4)).astype(np.float32)
    u = rng.rand(200, 4).astype(np.float32)
    logits = tf.constant(a)
    v = rebar.conditional_noise(logits, tf.constant(u))
    logit = lambda p: tf.log(p) - tf.log(1.0 - p)
    b_u = tf.cast(logits + logit(tf.constant(u)) > 0, tf.float32)
    b_v = tf.cast(logits + logit(v) > 0, tf.float32)
    dv_da = tf.gradients(tf.reduce_sum(v), logits)[0]
    with _session() as sess:
        v_, b_u_, b_v_, grad = sess.run([v, b_u, b_v, dv_da])
    np.testing.assert_array_equal(v_, u)
    np.testing.assert_array_equal(b_v_, b_u_)

    a64, u64 = a.astype(np.float64), u.astype(np.float64)
    u_prime = scipy.special.expit(-a64)
    upper = u64 > u_prime          # b = 1: v = u' + (1 - u') r, r = (u - u')/(1 - u')
    r = np.where(upper, (u64 - u_prime) / (1 - u_prime), u64 / u_prime)
    du_prime = -u_prime * (1 - u_prime)
    expected = np.where(upper, du_prime * (1 - r), du_prime * r)
    assert 0.2 < upper.mean() < 0.8   # both branches are exercised
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


# -- the self-tuning temperature -------------------------------------------------------------
@pytest.mark.parametrize('quadratic', ['true', 'false'])
def test_temperature_gradient_matches_a_central_difference(graph, quadratic):
    """d mean(g^2) / d log t against (V(w + h) - V(w - h)) / 2h with the noise held fixed.

    With h = 0.02 the truncation error h^2 V'''/6 and the float32 round-off of V (relative
    1e-6, divided by 2h) are both far below 1% of the gradient here, so 1% is loose enough to be
    stable and tight enough to catch a missing term: without the REINFORCE part (through
    d f~v / d log t) the gradient is off by a factor of 5 or more on these draws.
    """
    import estimator_checks as C
    data = C.tiny_data()
    model = C.build('model=SBNDynamicRebar,n_layer=2,quadratic=%s,batch_size=8,n_samples=4,%s'
                    % (quadratic, C.TINY), data.mean(0), static_shapes=True)
    step = model.train
    with _perturbed_session(model, data, seed=6) as (sess, feed):
        w = sess.run(model.log_temperature)
        grad = sess.run(step.temperature_grad, feed)

        def objective(value):
            model.log_temperature.load(value, sess)
            return float(sess.run(step.estimate.variance_objective, feed))
        h = 0.02
        central = (objective(w + h) - objective(w - h)) / (2 * h)
    assert abs(grad) > 1e-4
    print('d V / d log t: model %.7g, central difference %.7g' % (grad, central))
    assert abs(grad - central) <= 1e-2 * abs(central), (grad, central)


@pytest.mark.parametrize('variable', ['log_temperature', 'estimator/relax/eta',
                                      'estimator/relax/r_1/output/biases'])
def test_relax_variance_objective_gradients_match_central_differences(graph, monkeypatch,
                                                                     variable):
    """RELAX holds c(z~) constant in the model variables only: d mean(g^2) / d w for the
    temperature, eta's w and r's output bias (which moves c(z~) and c(z) alike, so it acts
    through the REINFORCE term alone) against central differences with the noise fixed.

    r is built with tanh here: with ReLU, g holds r's gradient, whose ReLU masks jump as t
    moves the relaxed samples, so mean(g^2) has no derivative a difference quotient can find.
    """
    import tensorflow.compat.v1 as tf
    import estimator_checks as C
    import rebar
    monkeypatch.setattr(rebar, 'RELAX_ACTIVATION', tf.tanh)
    data = C.tiny_data()
    model = C.build('model=SBNRelax,n_layer=2,batch_size=8,n_samples=4,' + C.TINY, data.mean(0),
                    static_shapes=True)
    objective = model.train.estimate.variance_objective
    var = model.log_temperature if variable == 'log_temperature' else [
        v for v in tf.global_variables() if v.op.name == variable][0]
    grad = tf.gradients(objective, var)[0]
    with _perturbed_session(model, data, seed=13) as (sess, feed):
        w = sess.run(var)
        g = sess.run(grad, feed)

        def value(at):
            var.load(at, sess)
            return float(sess.run(objective, feed))
        h = 0.02 * np.ones_like(w)
        central = (value(w + h) - value(w - h)) / (2 * h.ravel()[0])
    g = float(np.sum(g))
    print('d V / d %s: model %.7g, central difference %.7g' % (variable, g, central))
    assert abs(g) > 1e-4
    assert abs(g - central) <= 1e-2 * abs(central), (g, central)


# -- SBNTrackGradVariances against the released code's Step vector ---------------------------
# Each tracked estimator's own model, and its variable scopes in the tracker where they differ.
SINGLE_MODELS = {'NVIL': 'SBNNVIL', 'SimpleMuProp': 'SBNSimpleMuProp', 'MuProp': 'SBNMuProp',
                 'DynamicREBAR': 'SBNDynamicRebar', 'REBAR': 'SBNRebar', 'ARM': 'SBNARM',
                 'DisARM': 'SBNDisARM'}
TRACKER_SCOPES = {'DynamicREBAR': ('estimator/rebar/', 'estimator/dynamic_rebar/')}


def _single_estimator_step(name, spec, mean_xs, values, feed_values):
    """One estimator's own model (a graph of its own) at the tracker's variable values:
    (its gradient vector, its report vector, d variance / d log t or None)."""
    import tensorflow.compat.v1 as tf
    import estimator_checks as C
    import utils as U
    with tf.Graph().as_default():
        model = C.build('model=%s,%s' % (SINGLE_MODELS[name], spec), mean_xs,
                        static_shapes=True)
        old, new = TRACKER_SCOPES.get(name, ('', ''))
        with _session() as sess:
            for v in tf.global_variables():
                if v.op.name.startswith(('model/', 'estimator/', 'log_temperature')):
                    v.load(values[v.op.name.replace(old, new, 1)], sess)
            x, noise = feed_values
            feed = dict(zip(model.noise, noise))
            feed[model.x] = x
            t_grad = model.train.temperature_grad
            return sess.run((U.vectorize(model.grads, model.variables), model.train.report,
                             t_grad if t_grad is not None else tf.constant(0.0)), feed)


def _tracker_beside_own_models(spec, seed):
    """One training step of the tracker `spec` builds, at random weights, etas, baselines and
    temperature, and the same step of each tracked estimator's own model (SINGLE_MODELS) at the
    same values on the same noise. Returns (tracker, its report, its variances, the released
    code's Step vector built by hand from the `in_report` ones, {name: (gradient, report,
    d variance / d log t)}, mu the in_report ones' mean gradient)."""
    import tensorflow.compat.v1 as tf
    import estimator_checks as C
    data = C.tiny_data()
    rng = np.random.RandomState(seed)
    tracker = C.build('model=SBNTrackGradVariances,' + spec, data.mean(0), static_shapes=True)
    rows = 3 * tracker.hparams.n_samples
    noise = [rng.rand(rows, 3).astype(np.float32) for _ in range(2)]
    feed = dict(zip(tracker.noise, noise))
    feed[tracker.x] = data[:3]
    with _session() as sess:
        C.load_weights(sess)
        C.perturb(sess, tracker, rng)
        values = {v.op.name: sess.run(v) for v in tf.global_variables()}
        report, variances = sess.run((tracker.train_report, tracker.grad_variance), feed)
    own_spec = ','.join(item for item in spec.split(',') if not item.startswith('tracked='))
    singles = {name: _single_estimator_step(name, own_spec, data.mean(0), values,
                                            (data[:3], noise))
               for name in SINGLE_MODELS if name in tracker.tracked}
    g = np.array([singles[name][0] for name in tracker.in_report], np.float64)
    mu = g.mean(0)
    t_grad = singles['DynamicREBAR'][2]
    expected = ([singles['SimpleMuProp'][1][0], np.exp(values['log_temperature']), t_grad,
                 t_grad ** 2] + list(np.mean((g - mu) ** 2, 1)) + [np.log(np.mean(mu ** 2))])
    return tracker, report, variances, expected, singles, mu


def _assert_variances_against_mu_or_own(tracker, variances, singles, mu):
    """The in_report ones' variance figures are mean g^2 - mean mu^2, as the released code
    measures its five; ours are against their own average: after one draw no spread, up to
    float32 round-off of two moving averages of size scale."""
    for name, (g, _, _) in singles.items():
        scale = np.mean(g.astype(np.float64) ** 2)
        centre = np.mean(mu ** 2) if name in tracker.in_report else scale
        np.testing.assert_allclose(variances[tracker.tracked.index(name)], scale - centre,
                                   rtol=1e-4, atol=1e-4 * scale, err_msg=name)


def test_tracker_step_vector_is_the_released_codes_whatever_else_is_tracked(graph):
    """The tracker's Step vector equals the released code's, built by hand from the five
    estimators' own models: [ELBO, temperature, d variance / d log t, its square, each one's
    mean (g - mu)^2, log mean mu^2], mu the five's mean gradient (after one step the debiased
    averages are that step's values): 10 entries, though eleven estimators are tracked
    (n_samples = 2 adds ReinforceLOO, DoubleCV and RODEO). Every tracked estimator has a
    variance figure (checked for the five, ARM and DisARM)."""
    import estimator_checks as C
    tracker, report, variances, expected, singles, mu = _tracker_beside_own_models(
        'n_layer=2,batch_size=3,n_samples=2,' + C.TINY, 17)
    five = ('NVIL', 'SimpleMuProp', 'MuProp', 'DynamicREBAR', 'REBAR')   # the released order
    assert tracker.tracked[:5] == tracker.in_report == five and len(tracker.tracked) == 11
    assert len(report) == len(tracker.report_names) == 10
    assert tracker.report_names[4:9] == ['deviation/' + name for name in five]
    np.testing.assert_allclose(report, expected, rtol=1e-4, atol=1e-6)
    assert sorted(singles) == sorted(SINGLE_MODELS)
    _assert_variances_against_mu_or_own(tracker, variances, singles, mu)


def test_a_tracker_of_some_estimators_reports_those_of_the_five_it_tracks(graph):
    """tracked=SimpleMuProp+DynamicREBAR+MuProp+DisARM: the Step vector holds the deviations of
    the three of the five it tracks, from their mean mu, as built by hand from their own
    models; DisARM has its figure against its own mean; nothing else is built."""
    import tensorflow.compat.v1 as tf
    import estimator_checks as C
    tracker, report, variances, expected, singles, mu = _tracker_beside_own_models(
        'tracked=DisARM+MuProp+DynamicREBAR+SimpleMuProp,n_layer=2,batch_size=3,' + C.TINY, 18)
    three = ('SimpleMuProp', 'MuProp', 'DynamicREBAR')   # the released order
    assert tracker.tracked == three + ('DisARM',) and tracker.in_report == three
    assert not [v for v in tf.global_variables() if v.op.name.startswith(
        ('estimator/nvil', 'estimator/rebar/', 'estimator/relax'))]
    assert tracker.report_names[4:] == ['deviation/' + n for n in three] + [
        'log_mean_gradient_square']
    np.testing.assert_allclose(report, expected, rtol=1e-4, atol=1e-6)
    assert sorted(singles) == sorted(three + ('DisARM',))
    _assert_variances_against_mu_or_own(tracker, variances, singles, mu)


# -- the static-shape build ------------------------------------------------------------------
@pytest.mark.parametrize('static', [True, False])
def test_static_build_has_no_unknown_dimension_and_the_default_is_flexible(graph, static):
    """Every other model's static build is walked in the unbiasedness tests; this one covers
    SBNTrackGradVariances and shows the walk does find the flexible build's dynamic batch."""
    import estimator_checks as C
    data = C.tiny_data()
    model = C.build('model=SBNTrackGradVariances,n_layer=2,batch_size=4,' + C.TINY,
                    data.mean(0), static_shapes=static)
    unknown = C.unknown_dimensions(C.training_fetches(model))
    if static:
        assert unknown == []
    else:
        assert model.x in unknown and len(unknown) > 100


# -- the two TensorFlow worlds ---------------------------------------------------------------
def _replayed_by(python, path):
    """Every model's replay (replay_step.replay_all) by the interpreter `python`, written to
    `path`. With REBAR_REPLAY_CACHE (a directory that scripts/test.sh makes for the two worlds
    it runs side by side) it is kept there instead, and made once for both worlds' runs of the
    test below."""
    import os
    import subprocess
    cache = os.environ.get('REBAR_REPLAY_CACHE')
    if cache:
        path = os.path.join(cache, os.path.abspath(python).replace(os.sep, '_') + '.npz')
    if not (cache and os.path.exists(path)):
        subprocess.check_call([python, os.path.join(os.path.dirname(__file__), 'replay_step.py'),
                               path])
    with np.load(path) as replayed:
        return dict(replayed)


def test_same_weights_and_noise_give_the_same_numbers_in_both_tensorflows(tmp_path):
    """Every model replays two training steps (report vector, gradient, gradient variance,
    temperature gradient) and an evaluation here and in the other world's interpreter; they
    must agree to float32 round-off: relative 1e-4, or 1e-5 of each quantity's scale."""
    import os
    import sys
    other = os.environ.get('REBAR_OTHER_PYTHON')
    if not other or not os.path.exists(other):
        pytest.skip('the other TensorFlow world is not set up (bash scripts/test.sh sets both)')
    import replay_step
    ours = _replayed_by(sys.executable, str(tmp_path / 'ours.npz'))
    replay_step.assert_same(ours, _replayed_by(other, str(tmp_path / 'theirs.npz')), 1e-4, 1e-5)


def test_replay_is_deterministic_within_one_world():
    import replay_step
    first, second = replay_step.replay('SBNDynamicRebar'), replay_step.replay('SBNDynamicRebar')
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


# -- variance ordering -----------------------------------------------------------------------
def gradient_variances(specs, n_batches=40, n_hidden=50, n_layer=2):
    """{name: mean per-parameter variance of the loss gradient over n_batches batches of 24
    real digits}, every model from the same initial weights (model variables and baselines)
    and its own noise from one seed. specs: {name: hparams}."""
    import tensorflow.compat.v1 as tf
    import datasets
    import estimator_checks as C
    import utils as U
    train, _, _ = datasets.load_data('mnist', use_sample=True)
    batches = [train[24 * k:24 * (k + 1)] for k in range(n_batches)]
    variance = {}
    for name, spec in specs.items():
        with tf.Graph().as_default():
            model = C.build('%s,n_layer=%d,n_hidden=%d,batch_size=24' % (spec, n_layer, n_hidden),
                            train.mean(0), static_shapes=True)
            grad = U.vectorize(model.grads, model.variables)
            rng = np.random.RandomState(8)
            with _session() as sess:
                C.load_weights(sess, etas=False)   # the same weights for every estimator
                draws = []
                for xs in batches:
                    feed = C.noise_feed(model, 24 * model.hparams.n_samples, rng)
                    feed[model.x] = xs
                    draws.append(sess.run(grad, feed))
        variance[name] = np.mean(np.var(draws, axis=0, ddof=1))
    return variance


def test_rebar_gradients_vary_less_than_reinforce_and_nvil_at_initialisation():
    """Same initial weights, same 40 batches of real digits, same noise: the mean per-parameter
    variance of the gradient over batches is lower for REBAR and dynamic REBAR than for NVIL
    and REINFORCE (SBN)."""
    variance = gradient_variances({name: 'model=' + name for name in
                                   ['SBN', 'SBNNVIL', 'SBNRebar', 'SBNDynamicRebar']})
    print('mean gradient variance at initialisation:', variance)
    for low in ['SBNRebar', 'SBNDynamicRebar']:
        for high in ['SBN', 'SBNNVIL']:
            assert variance[low] < variance[high], (low, high, variance)


def test_disarm_gradients_vary_less_than_arm_at_initialisation():
    """The same comparison: DisARM integrates ARM's noise out given the pair, so its variance
    is lower (Dong et al., 2020)."""
    variance = gradient_variances({'ARM': 'model=SBNARM', 'DisARM': 'model=SBNDisARM'})
    print('mean gradient variance at initialisation:', variance)
    assert variance['DisARM'] < variance['ARM'], variance


# -- the model against a numpy transcription of the SPEC -------------------------------------
def _np_ll(y, logits):
    return np.sum(y * -np.logaddexp(0, -logits) + (1 - y) * (-logits - np.logaddexp(0, -logits)),
                  1)


@pytest.mark.parametrize('task', ['sbn', 'sp'])
def test_hard_pass_elbo_and_sbn_report_match_numpy(graph, task):
    import estimator_checks as C
    rng = np.random.RandomState(9)
    data = (rng.rand(10, 8) < 0.5).astype(np.float32)
    mean_xs = data.mean(0)
    model = C.build('model=SBN,task=%s,n_layer=2,n_input=8,n_hidden=4,batch_size=10' % task,
                    mean_xs)
    feed = C.noise_feed(model, 10, rng)
    feed[model.x] = data
    with _session() as sess:
        w = {v.op.name[len('model/'):]: sess.run(v) for v in model.variables}
        elbo, report = sess.run((model.train.passes.hard.elbo, model.train_report), feed)
    u = [feed[n] for n in model.noise]
    train_bias = -np.log(1 / np.clip(mean_xs, 0.001, 0.999) - 1)
    dense = lambda h, name: h.dot(w[name + '/weights']) + w[name + '/biases']
    logit = lambda p: np.log(np.clip(p, 1e-8, 1)) - np.log(np.clip(1 - p, 1e-8, 1))
    half = 4 if task == 'sp' else 8
    h = data[:, :half] - mean_xs[:half]
    samples, log_q = [], 0
    for i in range(2):
        a = dense(h, 'q_%d' % i)
        b = (a + logit(u[i]) > 0).astype(np.float64)
        log_q += _np_ll(b, a)
        samples.append(b)
        h = 2 * b - 1
    if task == 'sp':   # the released code: bottom half from the last layer only
        expected = _np_ll(data[:, 4:], dense(2 * samples[1] - 1, 'p_1') + train_bias[4:])
    else:
        log_p = _np_ll(samples[1], w['p_prior'][None, :])
        log_p += _np_ll(samples[0], dense(2 * samples[1] - 1, 'p_1'))
        log_p += _np_ll(data, dense(2 * samples[0] - 1, 'p_0') + train_bias)
        expected = log_p - log_q
    np.testing.assert_allclose(elbo, expected, rtol=1e-5, atol=1e-4)
    centred = expected - (expected.sum() - expected) / 9
    np.testing.assert_allclose(report, [expected.mean(), np.sqrt(np.mean(centred ** 2))],
                               rtol=1e-5)


def test_gaussian_hard_pass_elbo_matches_scipy_and_its_variance_floor_holds(graph):
    """likelihood=gaussian: log N(x; p_0 output + training mean, max(softplus(r), 1e-3)) per
    pixel, r started at -0.5; at very negative r the variance sits on the floor."""
    import scipy.stats
    import estimator_checks as C
    rng = np.random.RandomState(11)
    data = rng.uniform(-1, 1, (10, 8)).astype(np.float32)
    mean_xs = data.mean(0)
    model = C.build('model=SBN,likelihood=gaussian,n_input=8,n_hidden=4,batch_size=10', mean_xs)
    feed = C.noise_feed(model, 10, rng)
    feed[model.x] = data
    with _session() as sess:
        raw = model.nets.variance_raw
        np.testing.assert_array_equal(sess.run(raw), np.full(8, -0.5, np.float32))
        for r in (rng.randn(8), np.full(8, -50.0), np.full(8, -1e4)):
            raw.load(r.astype(np.float32), sess)
            w = {v.op.name[len('model/'):]: sess.run(v) for v in model.variables}
            elbo, variance = sess.run((model.train.passes.hard.elbo, model.nets.variance()),
                                      feed)
            expected_variance = np.maximum(np.logaddexp(0, r), 1e-3)
            np.testing.assert_allclose(variance, expected_variance, rtol=1e-6)
            assert np.all(variance >= np.float32(1e-3))
            a = data - mean_xs
            a = a.dot(w['q_0/weights']) + w['q_0/biases']
            u = feed[model.noise[0]]
            b = (a + np.log(u) - np.log1p(-u) > 0).astype(np.float64)
            mean = (2 * b - 1).dot(w['p_0/weights']) + w['p_0/biases'] + mean_xs
            expected = (scipy.stats.norm.logpdf(data, mean, np.sqrt(expected_variance)).sum(1)
                        + _np_ll(b, w['p_prior'][None, :]) - _np_ll(b, a))
            np.testing.assert_allclose(elbo, expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize('muprop_relaxation', [True, False])
def test_relaxed_sample_is_the_specs_formula(graph, muprop_relaxation):
    import scipy.special
    import rebar
    rng = np.random.RandomState(10)
    a = rng.randn(50, 3).astype(np.float32) * 3
    u = rng.rand(50, 3).astype(np.float32)
    t = 0.3
    noise = np.log(u) - np.log(1 - u)
    z = (a + noise) / t + (a * t / (t + 1) if muprop_relaxation else 0)
    with _session() as sess:
        got = sess.run(rebar.relaxed_sample(a, noise, t, muprop_relaxation))
    np.testing.assert_allclose(got, scipy.special.expit(z), rtol=1e-5, atol=1e-6)


# -- the fast build (static shapes, hard terms reused) against the straightforward one ---------
@pytest.mark.parametrize('name', ['SBN', 'SBNNVIL', 'SBNSimpleMuProp', 'SBNMuProp', 'SBNGumbel',
                                  'SBNRebar', 'SBNDynamicRebar', 'SBNTrackGradVariances',
                                  'SBNARM', 'SBNDisARM', 'SBNRelax', 'SBNReinforceLOO',
                                  'SBNARMS', 'SBNVIMCO', 'SBNLocalDisARM'])
def test_fast_build_computes_what_the_straightforward_build_computes(name):
    """Same weights, batches and noise: report vector, gradient, temperature gradient and the
    gradient variance over three steps (the last a partial batch, which the static build runs
    in a graph of its own), and the evaluation bound, agree to float32 round-off between the
    default build and the flexible one that recomputes every relaxed pass's terms."""
    import replay_step
    straightforward = replay_step.replay(name, reuse_hard=False)
    fast = replay_step.replay(name, static_shapes=True)
    replay_step.assert_same(fast, straightforward, 1e-5, 1e-6)


# -- every model, every task: the graphs build, train, and name their reports -----------------
@pytest.mark.parametrize('name', ['SBNRebar', 'SBNDynamicRebar', 'SBNRelax'])
def test_sp_variance_objective_counts_the_prior_without_gradient_as_zeros(graph, name):
    """Under task=sp the prior gets no gradient; the variance objective is the mean of g^2 over
    every model variable's entries, the prior's counted as zeros (as in the released code)."""
    import estimator_checks as C
    data = C.tiny_data()
    model = C.build('model=%s,task=sp,n_layer=2,batch_size=8,%s' % (name, C.TINY), data.mean(0),
                    static_shapes=True)
    grads = model.train.estimate.grads
    assert grads[model.variables.index(model.nets.prior)] is None
    feed = C.noise_feed(model, 8, np.random.RandomState(11))
    feed[model.x] = data
    with _session() as sess:
        C.load_weights(sess)
        values, objective = sess.run(([g for g in grads if g is not None],
                                      model.train.estimate.variance_objective), feed)
        shapes = [v.shape.as_list() for v in model.variables]
    squares = sum(np.sum(np.square(g, dtype=np.float64)) for g in values)
    n = sum(np.prod(shape) for shape in shapes)
    assert n > sum(g.size for g in values)   # the prior's entries are in the denominator
    np.testing.assert_allclose(objective, squares / n, rtol=1e-5)


def test_config_trackable_names_are_the_trackers_and_their_models_kinds():
    """config's lists (which it needs before rebar is imported) match the models: TRACKABLE is
    the tracker's order, and MULTI_SAMPLE_TRACKABLE the trackable estimators whose own model
    needs n_samples >= 2."""
    import rebar
    assert rebar.SBNTrackGradVariances.TRACKED == config.TRACKABLE
    several = set(getattr(rebar, m).estimator for m in config.MULTI_SAMPLE_MODELS)
    assert config.MULTI_SAMPLE_TRACKABLE == tuple(n for n in config.TRACKABLE if n in several)


def test_config_models_are_exactly_the_model_classes():
    import inspect
    import rebar
    classes = {name for name, value in vars(rebar).items()
               if inspect.isclass(value) and issubclass(value, rebar.Model)
               and value is not rebar.Model}
    assert sorted(config.MODELS) == sorted(classes)
    for name in config.MODELS:
        assert getattr(rebar, name).estimator in rebar.ESTIMATORS, name


def test_one_sample_per_image_is_refused_for_reinforce_loo():
    with pytest.raises(ValueError) as err:
        config.parse_hparams('model=SBNReinforceLOO')
    assert 'n_samples=2' in str(err.value)
    assert config.parse_hparams('model=SBNReinforceLOO,n_samples=2').n_samples == 2


# n_layer 1-3 x linear/nonlinear, spread over models and tasks (index by model and task);
# SBNTrackGradVariances, whose graph holds eight estimators or more, at one and two layers only (each
# part is built at three layers by its own model)
SHAPES = ['n_layer=1', 'n_layer=2,nonlinear=true', 'n_layer=3', 'n_layer=1,nonlinear=true',
          'n_layer=2', 'n_layer=3,nonlinear=true']
TRACKER_SHAPES = ['n_layer=1,nonlinear=true', 'n_layer=2']


def _every_model_and_task():
    """(model, task, shape): tasks sbn and sp for every model; omni (the sbn graph on other
    data) once."""
    cases = [('SBN', 'omni', 'n_layer=2')]
    for m, name in enumerate(config.MODELS):
        for t, task in enumerate(['sbn', 'sp']):
            if name == 'SBNTrackGradVariances':
                shape = TRACKER_SHAPES[t]
            else:
                shape = SHAPES[(2 * m + t) % len(SHAPES)]
            if task == 'sp':
                shape += ',sp_all_layers=%s' % ('true' if m % 2 else 'false')
            cases.append((name, task, shape))
    return cases


def test_every_model_builds_with_every_task_and_trains_with_static_shapes():
    """Each model with each task (sbn, sp, omni; n_layer 1-3, linear and nonlinear across
    them) builds the driver's static-shape training graph; its report names match its report
    vectors; its pass count is what the graph builds and runs. The sp cases of one and two
    layers also take two steps with finite reports (sbn steps, and the short last batch of an
    epoch, are replayed for every model by the fast-build test below)."""
    import tensorflow.compat.v1 as tf
    import estimator_checks as C
    import rebar
    rng = np.random.RandomState(12)
    data = (rng.rand(6, 8) < 0.5).astype(np.float32)
    built = {}
    original = rebar.Networks.log_p_terms

    def counting(self, *args, **kwargs):
        built['passes'] += 1
        return original(self, *args, **kwargs)

    for name, task, shape in _every_model_and_task():
        hp = config.parse_hparams('model=%s,task=%s,%s,n_input=8,n_hidden=3,batch_size=4,'
                                  'n_samples=2' % (name, task, shape))
        with tf.Graph().as_default():
            built['passes'] = 0
            rebar.Networks.log_p_terms = counting
            try:
                model = rebar.build_model(hp, data.mean(0), static_shapes=True)
            finally:
                rebar.Networks.log_p_terms = original
            case = (name, task, shape)
            # a pass no training fetch needs (ARMS's hard pass) is built but never run
            unused = model.train.passes.hard.elbo.op not in C.reachable(
                C.training_fetches(model))
            assert (built['passes'] - unused) * hp.n_samples == model.evaluations_per_image(), case
            assert len(model.report_names) == len(model.train_report), case
            assert len(model.eval_report_names) == 1 + len(model.eval_report), case
            assert model.report_names[0] == 'elbo', case
            if task != 'sp' or hp.n_layer > 2:
                continue
            training = model.training(4)
            with tf.Session(config=session_config()) as sess:
                sess.run(tf.global_variables_initializer())
                for _ in range(2):
                    report, variance = sess.run((training.report, training.grad_variance),
                                                {training.x: data[:4]})
                    assert np.all(np.isfinite(report)) and np.all(np.isfinite(variance)), case


@pytest.mark.parametrize('name', config.MODELS)
def test_every_read_of_a_variable_in_a_step_is_ordered_against_its_updates(name):
    """In one training step no variable is read unordered against a write of it (the
    gradients of a tracked estimator, say, read before or after the Adam update depending on
    scheduling): for every read and write of one variable among the step's ops, one runs
    before the other by the graph's data and control edges."""
    import tensorflow.compat.v1 as tf
    import estimator_checks as C
    import rebar
    extra = ',n_samples=2' if name in config.MULTI_SAMPLE_MODELS else ''
    hp = config.parse_hparams('model=%s,n_layer=2,n_input=8,n_hidden=3,batch_size=4%s'
                              % (name, extra))
    with tf.Graph().as_default():
        model = rebar.build_model(hp, np.full(8, 0.5, np.float32), static_shapes=True)
        accesses = {}   # variable handle -> ops reading or writing it in the step
        for op in C.reachable([model.training(4).train_op]):
            handles = [t.op.name for t in op.inputs if t.dtype == tf.resource]
            if handles and op.type != 'VarIsInitializedOp':
                accesses.setdefault(handles[0], []).append(op)
        checked = 0
        for variable, ops in accesses.items():
            for write in [op for op in ops if op.type not in ('ReadVariableOp', 'ResourceGather')]:
                ordered = C.reachable([write]) | C.reachable([write], C.op_consumers)
                for other in ops:
                    if other is not write:
                        assert other in ordered, (variable, other.name, write.name)
                        checked += 1
        assert checked > 0
