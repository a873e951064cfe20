"""The estimators: unbiasedness against exact enumeration, the conditional noise, the
self-tuning temperature, variance ordering, the static-shape build, and agreement with numpy."""
from __future__ import absolute_import, division, print_function

import numpy as np
import pytest

from conftest import session_config


def _session():
    import tensorflow.compat.v1 as tf
    sess = tf.Session(config=session_config())
    sess.run(tf.global_variables_initializer())
    return sess


# -- unbiasedness ----------------------------------------------------------------------------
NETWORKS = {
    'linear-1': 'n_layer=1',
    'linear-2': 'n_layer=2',
    'nonlinear-1': 'n_layer=1,nonlinear=true',
    'nonlinear-2': 'n_layer=2,nonlinear=true',
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
}
IMAGES, SAMPLES, RUNS = 2, 256, 100


def _compare_with_exact(spec, perturbed_too=True, seed=0):
    """Returns [(mean - exact, standard error)] at the initial state (and perturbed)."""
    import estimator_checks as C
    data = C.tiny_data()
    xs = data[:IMAGES]
    model = C.build('%s,%s,batch_size=%d,n_samples=%d' % (spec, C.TINY, IMAGES, SAMPLES),
                    data.mean(0), static_shapes=True)
    assert C.unknown_dimensions(C.training_fetches(model)) == []   # the NPU build is static
    exact = C.exact_loss_gradient(model, xs)
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
    rng = np.random.RandomState(6)
    feed = C.noise_feed(model, 32, rng)
    feed[model.x] = data
    with _session() as sess:
        C.load_weights(sess)
        C.perturb(sess, model, rng)
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
def test_same_weights_and_noise_give_the_same_numbers_in_both_tensorflows(tmp_path):
    """Every model replays two training steps (report vector, gradient, gradient variance,
    temperature gradient) and an evaluation here and in the other world's interpreter; they
    must agree to float32 round-off: relative 1e-4, or 1e-5 of each quantity's scale."""
    import os
    import subprocess
    other = os.environ.get('REBAR_OTHER_PYTHON')
    if not other or not os.path.exists(other):
        pytest.skip('the other TensorFlow world is not set up (bash scripts/test.sh sets both)')
    import replay_step
    out = str(tmp_path / 'other.npz')
    subprocess.check_call([other, os.path.join(os.path.dirname(__file__), 'replay_step.py'),
                           out])
    replay_step.assert_same(replay_step.replay_all(), dict(np.load(out)), 1e-4, 1e-5)


def test_replay_is_deterministic_within_one_world():
    import replay_step
    first, second = replay_step.replay('SBNDynamicRebar'), replay_step.replay('SBNDynamicRebar')
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


# -- variance ordering -----------------------------------------------------------------------
def test_rebar_gradients_vary_less_than_reinforce_and_nvil_at_initialisation():
    """Same initial weights, same 40 batches of real digits, same noise: the mean per-parameter
    variance of the gradient over batches is lower for REBAR and dynamic REBAR than for NVIL
    and REINFORCE (SBN)."""
    import tensorflow.compat.v1 as tf
    import datasets
    import estimator_checks as C
    import utils as U
    train, _, _ = datasets.load_data('mnist', use_sample=True)
    spec = 'n_layer=2,n_hidden=50,batch_size=24'
    batches = [train[24 * k:24 * (k + 1)] for k in range(40)]
    variance = {}
    for name in ['SBN', 'SBNNVIL', 'SBNRebar', 'SBNDynamicRebar']:
        with tf.Graph().as_default():
            model = C.build('model=%s,%s' % (name, spec), train.mean(0), static_shapes=True)
            grad = U.vectorize(model.grads, model.variables)
            rng = np.random.RandomState(8)
            with _session() as sess:
                C.load_weights(sess, etas=False)   # the same weights for every estimator
                draws = []
                for xs in batches:
                    feed = C.noise_feed(model, 24, rng)
                    feed[model.x] = xs
                    draws.append(sess.run(grad, feed))
        variance[name] = np.mean(np.var(draws, axis=0, ddof=1))
    print('mean gradient variance at initialisation:', variance)
    for low in ['SBNRebar', 'SBNDynamicRebar']:
        for high in ['SBN', 'SBNNVIL']:
            assert variance[low] < variance[high], (low, high, variance)


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
                                  'SBNRebar', 'SBNDynamicRebar', 'SBNTrackGradVariances'])
def test_fast_build_computes_what_the_straightforward_build_computes(name):
    """Same weights, batches and noise: report vector, gradient, temperature gradient and the
    gradient variance over three steps (the last a partial batch, which the static build runs
    in a graph of its own), and the evaluation bound, agree to float32 round-off between the
    default build and the flexible one that recomputes every relaxed pass's terms."""
    import replay_step
    straightforward = replay_step.replay(name, reuse_hard=False)
    fast = replay_step.replay(name, static_shapes=True)
    replay_step.assert_same(fast, straightforward, 1e-5, 1e-6)
