"""utils.py against numpy/scipy."""
from __future__ import absolute_import, division, print_function

import numpy as np
import pytest
import scipy.special
import scipy.stats

from conftest import session_config


def run(fetches):
    import tensorflow.compat.v1 as tf
    with tf.Session(config=session_config()) as sess:
        sess.run(tf.global_variables_initializer())
        return sess.run(fetches)


def test_bernoulli_log_likelihood_matches_scipy_on_binary_data(graph):
    import utils as U
    rng = np.random.RandomState(0)
    # |logits| <= 15 keeps scipy's own 1 - p accurate in float64
    logits = rng.uniform(-15, 15, size=(50, 7)).astype(np.float32)
    y = (rng.rand(50, 7) < 0.5).astype(np.float32)
    p = scipy.special.expit(logits.astype(np.float64))
    expected = scipy.stats.bernoulli.logpmf(y, p).sum(1)
    np.testing.assert_allclose(run(U.bernoulli_log_likelihood(y, logits)), expected,
                               rtol=1e-5, atol=1e-4)


def test_gaussian_log_likelihood_matches_scipy_summed_over_pixels(graph):
    import tensorflow.compat.v1 as tf
    import utils as U
    rng = np.random.RandomState(2)
    y = rng.uniform(-1, 1, size=(30, 7)).astype(np.float32)
    mean = rng.randn(30, 7).astype(np.float32)
    variance = np.exp(rng.uniform(np.log(1e-3), np.log(5.0), size=7)).astype(np.float32)
    expected = scipy.stats.norm.logpdf(y, mean, np.sqrt(variance)).sum(1)
    ll = U.gaussian_log_likelihood(y, tf.constant(mean), tf.constant(variance))
    np.testing.assert_allclose(run(ll), expected, rtol=1e-5, atol=1e-3)


def test_gaussian_log_likelihood_gradients_are_the_closed_form(graph):
    import tensorflow.compat.v1 as tf
    import utils as U
    rng = np.random.RandomState(3)
    y = rng.uniform(-1, 1, size=(4, 5)).astype(np.float32)
    mean = tf.constant(rng.randn(4, 5).astype(np.float32))
    variance = tf.constant(rng.uniform(0.1, 2.0, size=5).astype(np.float32))
    total = tf.reduce_sum(U.gaussian_log_likelihood(y, mean, variance))
    (d_mean, d_var), (m, v) = run((tf.gradients(total, [mean, variance]), (mean, variance)))
    np.testing.assert_allclose(d_mean, (y - m) / v, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_var, (((y - m) ** 2 / v - 1) / (2 * v)).sum(0), rtol=1e-4)


def test_floored_softplus_never_falls_below_its_floor(graph):
    import tensorflow.compat.v1 as tf
    import utils as U
    raw = tf.constant([-1e4, -60.0, -8.0, -7.0, -0.5, 0.0, 3.0])
    value, grad = run((U.floored_softplus(raw, 1e-3),
                       tf.gradients(tf.reduce_sum(U.floored_softplus(raw, 1e-3)), raw)[0]))
    softplus = np.logaddexp(0, [-1e4, -60.0, -8.0, -7.0, -0.5, 0.0, 3.0])
    assert np.all(value >= np.float32(1e-3))
    np.testing.assert_allclose(value, np.maximum(softplus, 1e-3), rtol=1e-6)
    # softplus(-7) = 9.1e-4 is under the floor: held there, with no gradient pushing it lower
    np.testing.assert_array_equal(grad[:4], 0.0)
    np.testing.assert_allclose(grad[4:], scipy.special.expit([-0.5, 0.0, 3.0]), rtol=1e-6)


def test_bernoulli_log_likelihood_of_relaxed_values_is_the_cross_entropy(graph):
    import utils as U
    rng = np.random.RandomState(1)
    logits = rng.uniform(-60, 60, size=(40, 5)).astype(np.float32)
    y = rng.rand(40, 5).astype(np.float32)
    l64 = logits.astype(np.float64)
    expected = (-y * np.logaddexp(0, -l64) - (1 - y) * np.logaddexp(0, l64)).sum(1)
    np.testing.assert_allclose(run(U.bernoulli_log_likelihood(y, logits)), expected,
                               rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize('scale', [1.0, 1000.0])
def test_log_mean_exp_matches_scipy(graph, scale):
    import utils as U
    x = (np.random.RandomState(2).randn(6, 100) * scale).astype(np.float32)
    expected = scipy.special.logsumexp(x.astype(np.float64), axis=1) - np.log(100)
    np.testing.assert_allclose(run(U.log_mean_exp(x, 1)), expected, rtol=1e-6, atol=1e-4)


def test_leave_one_out_centre_subtracts_the_mean_of_the_others(graph):
    import utils as U
    x = np.random.RandomState(3).randn(9).astype(np.float32)
    expected = np.array([x[i] - np.delete(x, i).mean() for i in range(len(x))])
    np.testing.assert_allclose(run(U.leave_one_out_centre(x)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(run(U.leave_one_out_centre(x[:1])), x[:1])   # no others


def test_noise_logs_are_clipped_and_finite(graph):
    import utils as U
    u = np.array([0.0, 1e-12, 0.5, 1.0], np.float32)
    out = run(U.logit_noise(u))
    np.testing.assert_allclose(out, [np.log(1e-8), np.log(1e-8), 0.0, -np.log(1e-8)],
                               rtol=1e-5)


def test_vectorize_skips_or_zero_fills_missing_gradients(graph):
    import tensorflow.compat.v1 as tf
    import utils as U
    a = tf.constant([[1.0, 2.0]])
    v = tf.zeros([3])
    b = tf.constant([5.0])
    np.testing.assert_array_equal(run(U.vectorize([a, None, b])), [1, 2, 5])
    np.testing.assert_array_equal(run(U.vectorize([a, None, b], [a, v, b])), [1, 2, 0, 0, 0, 5])


def test_debiased_ema_matches_the_recursion(graph):
    import tensorflow.compat.v1 as tf
    import utils as U
    x = tf.placeholder(tf.float32, [3])
    update, read = U.debiased_ema([x, tf.square(x)], 0.9, 'ema')
    with tf.control_dependencies([update]):
        after = read()
    before = read()
    data = np.random.RandomState(4).randn(5, 3).astype(np.float32)
    with tf.Session(config=session_config()) as sess:
        sess.run(tf.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(before)[0][0], np.zeros(3))
        m1 = m2 = 0.0
        for n, row in enumerate(data, 1):
            m1 = 0.9 * m1 + 0.1 * row
            m2 = 0.9 * m2 + 0.1 * row ** 2
            (got1, got2), correction = sess.run(after, {x: row})
            np.testing.assert_allclose(correction, 1 - 0.9 ** n, rtol=1e-6)
            np.testing.assert_allclose(got1, m1, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(got2, m2, rtol=1e-5, atol=1e-7)


def test_mean_square_over_tensors(graph):
    import tensorflow.compat.v1 as tf
    import utils as U
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([-1.5], np.float32)
    expected = (np.sum(a ** 2) + np.sum(b ** 2)) / 7.0
    np.testing.assert_allclose(run(U.mean_square([tf.constant(a), tf.constant(b)])), expected,
                               rtol=1e-6)
