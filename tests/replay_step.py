"""Replays training steps from fixed weights and fed noise, for comparing TensorFlow worlds.

    python tests/replay_step.py OUT.npz    # writes every model's replayed numbers

Weights, etas, baselines, temperature, data and noise all come from numpy seeds, so the only
difference between two runs is the TensorFlow doing the arithmetic.
"""
from __future__ import absolute_import, division, print_function

import os
import sys
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import config  # noqa: E402
import estimator_checks as C  # noqa: E402
import utils as U  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

SPEC = 'n_layer=2,n_input=6,n_hidden=3,batch_size=8,n_samples=2,temperature=0.7'


def replay(model_name, static_shapes=False, reuse_hard=True):
    """Runs three training steps, the last on a smaller batch (with static shapes, a graph of
    its own); returns {key: array} of reports, gradients, variances and the bound."""
    from conftest import session_config
    graph = tf.Graph()
    with graph.as_default():
        data = C.tiny_data(16, seed=1)
        model = C.build('model=%s,%s' % (model_name, SPEC), data.mean(0), static_shapes,
                        reuse_hard)
        out = {}
        rng = np.random.RandomState(7)
        with tf.Session(config=session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            C.load_weights(sess)
            model.log_temperature.load(np.log(0.7), sess)
            for step, xs in enumerate([data[:8], data[8:], data[3:8]]):
                training = model.training(len(xs))
                fetches = {'report': training.report, 'variance': training.grad_variance,
                           'grad': U.vectorize(training.step.estimate.grads, model.variables)}
                if training.step.temperature_grad is not None:
                    fetches['temperature_grad'] = training.step.temperature_grad
                feed = C.noise_feed(training.step, len(xs) * model.hparams.n_samples, rng)
                feed[training.x] = xs
                values, _ = sess.run((fetches, training.train_op), feed)
                for key, value in values.items():
                    out['%s/%d/%s' % (model_name, step, key)] = np.asarray(value, np.float64)
            evaluation = model.eval   # 5 images x 100 samples, as in training
            feed = {u: rng.rand(500, model.hparams.n_hidden).astype(np.float32)
                    for u in evaluation.noise}
            feed[evaluation.x] = data[:5]
            if not static_shapes:
                feed[model.n_samples] = 100
            out['%s/bounds' % model_name] = np.asarray(sess.run(evaluation.image_bounds, feed),
                                                       np.float64)
    return out


def assert_same(ours, theirs, rtol, relative_atol):
    """Every replayed quantity agrees within rtol, or relative_atol of its own scale."""
    assert sorted(theirs) == sorted(ours)
    for key in sorted(ours):
        if key.endswith('/0/variance') and ours[key].ndim == 0:
            # after one step the averages are g and g^2, so E[g^2] - E[g]^2 is round-off only
            grad_scale = np.mean(ours[key[:-len('variance')] + 'grad'] ** 2)
            np.testing.assert_allclose(ours[key], 0, atol=1e-4 * grad_scale, err_msg=key)
            np.testing.assert_allclose(theirs[key], 0, atol=1e-4 * grad_scale, err_msg=key)
            continue
        scale = np.max(np.abs(ours[key])) + 1e-30
        np.testing.assert_allclose(ours[key], theirs[key], rtol=rtol,
                                   atol=relative_atol * scale, err_msg=key)


def replay_all():
    out = {}
    for name in config.MODELS:
        out.update(replay(name))
    return out


def save(path, replayed):
    """Writes `replayed` to path (.npz) whole or not at all: a reader never sees part of it."""
    partial = '%s.%d.partial.npz' % (path, os.getpid())
    np.savez(partial, **replayed)
    os.rename(partial, path)


if __name__ == '__main__':
    save(sys.argv[1], replay_all())
