"""binary_gradient.estimate: every registered estimator on a function that is not the toy (a
random quadratic form over 6 bits) against the exact gradient from enumerating its 64 states;
the [D] and [N, D] forms of the logits against each other; what is learned and trained; bad
input refused before anything is built."""
from __future__ import absolute_import, division, print_function

import itertools

import numpy as np
import pytest

import binary_gradient
import rebar
import rebar_toy
from conftest import session_config

D = 6
DRAWS = 4000
RNG = np.random.RandomState(19)
A = RNG.randn(D, D).astype(np.float32)
C = RNG.randn(D).astype(np.float32)
LOGITS = RNG.uniform(-1.5, 1.5, D).astype(np.float32)


def quadratic(b):
    import tensorflow.compat.v1 as tf
    return tf.reduce_sum(tf.matmul(b, A) * b, 1) + tf.reduce_sum(b * C, 1)


def exact_gradient(logits):
    """d E[b^T A b + c^T b] / d logits by summing over all 2^D states:
    d q(b) / d logits_d = q(b) (b_d - sigma_d)."""
    sigma = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    grad = np.zeros(D)
    for bits in itertools.product([0.0, 1.0], repeat=D):
        b = np.array(bits)
        q = np.prod(np.where(b > 0, sigma, 1 - sigma))
        grad += q * (b.dot(A).dot(b) + C.dot(b)) * (b - sigma)
    return grad


def _draws(name, n_samples, logits=LOGITS, draws=DRAWS):
    """`draws` independent estimates [draws, D] (logit rows fed as copies of `logits`)."""
    import tensorflow.compat.v1 as tf
    with tf.Graph().as_default():
        tf.set_random_seed(3)
        feed = tf.placeholder(tf.float32, [draws, D])
        est = binary_gradient.estimate(quadratic, feed, name, n_samples)
        with tf.Session(config=session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            return sess.run(est.gradient, {feed: np.tile(logits, [draws, 1])}).astype(np.float64)


@pytest.mark.parametrize('name', list(rebar.ESTIMATORS))
def test_quadratic_form_matches_enumeration(name):
    g = _draws(name, binary_gradient.min_samples(name))
    z = (g.mean(0) - exact_gradient(LOGITS)) / (g.std(0, ddof=1) / np.sqrt(DRAWS))
    if name in rebar_toy.BIASED:
        assert np.max(np.abs(z)) > 4, z   # the test can see a biased estimator
    else:
        assert np.all(np.abs(z) < 4), z


def test_enumeration_against_finite_differences():
    """The reference itself: E[f] by enumeration, differentiated numerically."""
    def expectation(logits):
        sigma = 1.0 / (1.0 + np.exp(-logits))
        total = 0.0
        for bits in itertools.product([0.0, 1.0], repeat=D):
            b = np.array(bits)
            total += np.prod(np.where(b > 0, sigma, 1 - sigma)) * (b.dot(A).dot(b) + C.dot(b))
        return total
    logits = LOGITS.astype(np.float64)
    numeric = [(expectation(logits + 1e-5 * e) - expectation(logits - 1e-5 * e)) / 2e-5
               for e in np.eye(D)]
    np.testing.assert_allclose(exact_gradient(LOGITS), numeric, rtol=1e-6, atol=1e-8)


def test_vector_logits_average_their_samples(graph):
    """Logits [D] with K samples give the mean of the K per-row estimates that logits [K, D]
    give on the same noise (DisARM: a function of the noise alone, nothing learned)."""
    import tensorflow.compat.v1 as tf
    k = 3
    one = binary_gradient.estimate(quadratic, tf.constant(LOGITS), 'DisARM', k, scope='one')
    rows = binary_gradient.estimate(quadratic, tf.constant(np.tile(LOGITS, [k, 1])), 'DisARM',
                                    1, scope='rows')
    u = np.random.RandomState(0).uniform(size=[k, D]).astype(np.float32)
    with tf.Session(config=session_config()) as sess:
        g_one, g_rows = sess.run([one.gradient, rows.gradient], {one.noise: u, rows.noise: u})
    assert g_one.shape == (D,) and g_rows.shape == (k, D)
    np.testing.assert_allclose(g_one, g_rows.mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name,learns_temperature', [('ARM', False), ('REBAR', False),
                                                     ('DynamicREBAR', True), ('RELAX', True)])
def test_update_trains_what_the_estimator_learns(graph, name, learns_temperature):
    import tensorflow.compat.v1 as tf
    logits = tf.get_variable('logits', [D], initializer=tf.constant_initializer(LOGITS))
    est = binary_gradient.estimate(quadratic, logits, name, learning_rate=0.1)
    names = [v.op.name for v in est.learned]
    assert any(n.endswith('log_temperature') for n in names) == learns_temperature
    with tf.Session(config=session_config()) as sess:
        sess.run(tf.global_variables_initializer())
        before = sess.run(est.learned + [logits])
        for _ in range(2):   # the baseline's output weights move from the second step on
            sess.run(est.update)
        after = sess.run(est.learned + [logits])
    np.testing.assert_array_equal(before[-1], after[-1])   # the update leaves the logits alone
    for v, b, a in zip(names, before, after):
        # the baseline's weights on its (zero, constant) input get no gradient
        assert np.array_equal(b, a) == v.endswith('baseline/hidden/weights'), v
    if name == 'ARM':
        assert est.learned == []


def test_bad_input_is_one_clear_error(graph):
    import tensorflow.compat.v1 as tf
    logits = tf.zeros([D])
    cases = [(('NoSuch', 1), 'Unknown estimator'), (('ReinforceLOO', 1), 'n_samples=2')]
    for (name, k), message in cases:
        with pytest.raises(ValueError, match=message):
            binary_gradient.estimate(quadratic, logits, name, k)
    with pytest.raises(ValueError, match=r'static shape \[D\] or \[N, D\]'):
        binary_gradient.estimate(quadratic, tf.zeros([2, 3, D]), 'ARM')
    with pytest.raises(ValueError, match='f must map'):
        binary_gradient.estimate(lambda b: b, logits, 'ARM')


def test_one_row_reinforce_is_plain_reinforce(graph):
    """With one sample of one row there is no other sample to centre on: f(b) (b - sigma)."""
    import tensorflow.compat.v1 as tf
    est = binary_gradient.estimate(quadratic, tf.constant(LOGITS), 'REINFORCE')
    u = np.random.RandomState(1).uniform(size=[1, D]).astype(np.float32)
    with tf.Session(config=session_config()) as sess:
        g = sess.run(est.gradient, {est.noise: u})
    sigma = 1 / (1 + np.exp(-LOGITS.astype(np.float64)))
    b = (u[0] > 1 - sigma).astype(np.float64)
    np.testing.assert_allclose(g, (b.dot(A).dot(b) + C.dot(b)) * (b - sigma), rtol=1e-5)
