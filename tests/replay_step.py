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


def replay(model_name, steps=2):
    """Runs `steps` training steps; returns {key: array} of reports, gradients and variances."""
    from conftest import session_config
    graph = tf.Graph()
    with graph.as_default():
        data = C.tiny_data(16, seed=1)
        model = C.build('model=%s,%s' % (model_name, SPEC), data.mean(0))
        grad = U.vectorize(model.grads, model.variables)
        fetches = {'report': model.train_report, 'grad': grad,
                   'variance': model.grad_variance}
        if model.train.temperature_grad is not None:
            fetches['temperature_grad'] = model.train.temperature_grad
        out = {}
        rng = np.random.RandomState(7)
        with tf.Session(config=session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            C.load_weights(sess)
            model.log_temperature.load(np.log(0.7), sess)
            for step in range(steps):
                feed = C.noise_feed(model, 16, rng)
                feed[model.x] = data[8 * step:8 * step + 8]
                values, _ = sess.run((fetches, model.train_op), feed)
                for key, value in values.items():
                    out['%s/%d/%s' % (model_name, step, key)] = np.asarray(value, np.float64)
            feed = C.noise_feed(model, 15, rng)
            feed.update({model.x: data[:5], model.n_samples: 3})
            out['%s/iwae' % model_name] = np.asarray(sess.run(model.eval.iwae, feed), np.float64)
    return out


def replay_all():
    out = {}
    for name in config.MODELS:
        out.update(replay(name))
    return out


if __name__ == '__main__':
    np.savez(sys.argv[1], **replay_all())
