"""Gradient variance of estimators at equal evaluations of f, on the bundled real digits.

    python scripts/gradient_variance.py                  # the comparisons of docs/models.md
    python scripts/gradient_variance.py --train_steps 0  # at initialisation only

Every estimator is measured at the same model weights: first at the tests' fixed weights
(`estimator_checks.load_weights`, drawn from seeds), then after --train_steps steps of
SBNDisARM (Adam, the given learning rate) from them. At each point each estimator computes its
loss gradient on the same --batches batches of --batch_size training images, with its own noise
(from one numpy seed); the figure is the mean over parameters of the per-parameter variance of
that gradient over the batches (data and noise together, as the training-time figures track
it). Specs are LABEL:HPARAMS over --hparams; a table goes to stdout.
"""
from __future__ import absolute_import, division, print_function

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tests'))

# K = 4 evaluations of f per image for the ELBO estimators (DisARM: two pairs); 2n for the
# bound's (VIMCO with 2n samples, local DisARM with n pairs), one linear layer
DEFAULT_SPECS = [
    'REINFORCE-LOO K=4:model=SBNReinforceLOO,n_samples=4',
    'DisARM 2 pairs:model=SBNDisARM,n_samples=2',
    'ARMS K=4:model=SBNARMS,n_samples=4',
    'VIMCO K=2:model=SBNVIMCO,objective=iwae,n_samples=2',
    'local DisARM n=1:model=SBNLocalDisARM,objective=iwae,n_samples=1',
    'VIMCO K=4:model=SBNVIMCO,objective=iwae,n_samples=4',
    'local DisARM n=2:model=SBNLocalDisARM,objective=iwae,n_samples=2',
    'VIMCO K=10:model=SBNVIMCO,objective=iwae,n_samples=10',
    'local DisARM n=5:model=SBNLocalDisARM,objective=iwae,n_samples=5',
]


def _build(spec, base, batch, mean_xs):
    import estimator_checks as C
    return C.build(','.join([base, spec, 'batch_size=%d' % batch]), mean_xs, static_shapes=True)


def _model_values(sess, model):
    return dict((v.op.name, sess.run(v)) for v in model.variables)


def train_weights(base, batch, steps, train, seed):
    """The model variables after `steps` SBNDisARM steps from the test weights."""
    import tensorflow.compat.v1 as tf
    import estimator_checks as C
    from conftest import session_config
    with tf.Graph().as_default():
        model = _build('model=SBNDisARM', base, batch, train.mean(0))
        rng = np.random.RandomState(seed)
        with tf.Session(config=session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            C.load_weights(sess)
            for _ in range(steps):
                xs = train[rng.randint(len(train), size=batch)]
                sess.run(model.train_op, {model.x: xs})
            return _model_values(sess, model)


def variance(spec, base, batch, batches, weights, mean_xs, seed):
    """Mean per-parameter variance of the loss gradient over `batches`."""
    import tensorflow.compat.v1 as tf
    import estimator_checks as C
    import utils as U
    from conftest import session_config
    with tf.Graph().as_default():
        model = _build(spec, base, batch, mean_xs)
        grad = U.vectorize(model.grads, model.variables)
        rng = np.random.RandomState(seed)
        with tf.Session(config=session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            C.load_weights(sess)
            if weights is not None:
                for v in model.variables:
                    v.load(weights[v.op.name], sess)
            draws = []
            for xs in batches:
                feed = C.noise_feed(model, batch * model.hparams.n_samples, rng)
                feed[model.x] = xs
                draws.append(sess.run(grad, feed))
    return float(np.mean(np.var(draws, axis=0, ddof=1)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--specs', nargs='+', default=DEFAULT_SPECS, help='LABEL:HPARAMS')
    parser.add_argument('--hparams', default='n_layer=1,n_hidden=200,learning_rate=0.001',
                        help='common hparams under each spec')
    parser.add_argument('--batch_size', type=int, default=24)
    parser.add_argument('--batches', type=int, default=100)
    parser.add_argument('--train_steps', type=int, default=2000)
    parser.add_argument('--seed', type=int, default=8)
    args = parser.parse_args(argv)
    import datasets
    train, _, _ = datasets.load_data('mnist', use_sample=True)
    batches = [train[args.batch_size * k:args.batch_size * (k + 1)]
               for k in range(args.batches)]
    points = [('initial', None)]
    if args.train_steps:
        start = time.time()
        points.append(('after %d DisARM steps' % args.train_steps,
                       train_weights(args.hparams, args.batch_size, args.train_steps, train,
                                     args.seed)))
        print('trained in %.0f s' % (time.time() - start))
    print('| estimator | ' + ' | '.join(name for name, _ in points) + ' |')
    print('| --- |' + ' --- |' * len(points))
    for item in args.specs:
        label, spec = item.split(':', 1)
        figures = [variance(spec, args.hparams, args.batch_size, batches, weights,
                            train.mean(0), args.seed) for _, weights in points]
        print('| %s | %s |' % (label, ' | '.join('%.4g' % f for f in figures)))
        sys.stdout.flush()


if __name__ == '__main__':
    main()
