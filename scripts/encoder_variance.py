"""The variance of several estimators' encoder gradients at one set of weights, over batches.

    python scripts/encoder_variance.py RUN_DIR --data_dir DIR [--checkpoint model.ckpt-N] \
        [--estimators ReinforceLOO DisARM DoubleCV RODEO] [--batches 200]

RUN_DIR is a run of SBNTrackGradVariances (its hparams.json gives the network, and its
checkpoint the weights with every tracked estimator's control variates as trained along the
followed path). Without --checkpoint the weights and control variates are fresh (the model's
initialisers, seeded by --seed): the state at initialisation. Each batch is --batch_size images
drawn at random from the training set (binarized afresh when the run's dynamic_b), with fresh
noise; every estimator sees the same batch and noise. Printed: per estimator, the mean over the
encoder's parameters (q's weights and biases) of the variance of the gradient across batches,
and its ratio to the first estimator's. Nothing is trained.
"""
from __future__ import absolute_import, division, print_function

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import config  # noqa: E402  (after the project's directory is on the path)
import rundir  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('run_dir')
    p.add_argument('--data_dir', required=True)
    p.add_argument('--checkpoint', help='a checkpoint name in RUN_DIR; none: fresh weights')
    p.add_argument('--estimators', nargs='+',
                   default=['ReinforceLOO', 'DisARM', 'DoubleCV', 'RODEO'])
    p.add_argument('--batches', type=int, default=200)
    p.add_argument('--seed', type=int, default=1)
    args = p.parse_args(argv)

    stored = rundir.RunDir(args.run_dir).read_hparams()
    if stored is None or stored.get('model') != 'SBNTrackGradVariances':
        sys.exit('encoder_variance: %s is not a run of SBNTrackGradVariances.' % args.run_dir)
    hp = config.HParams(**dict((k, v) for k, v in stored.items() if k in config.DEFAULTS))

    import device
    tf = device.import_tensorflow()   # without TensorFlow's log lines, as the driver runs
    import datasets
    import rebar
    import utils  # noqa: F401  (graph mode in TensorFlow 2)
    train = datasets.load_data(config.dataset_of(hp), hp.dynamic_b, args.data_dir)[0]
    tf.set_random_seed(args.seed)
    model = rebar.build_model(hp, np.mean(train, axis=0))
    missing = [name for name in args.estimators if name not in model.tracked]
    if missing:
        sys.exit('encoder_variance: the run does not track %s (it tracks %s).'
                 % (', '.join(missing), ', '.join(model.tracked)))
    encoder = np.concatenate([np.full(v.shape.num_elements(), v.op.name.startswith('model/q_'))
                              for v in model.variables])
    vectors = [model.train.estimate.tracked[model.tracked.index(name)][0]
               for name in args.estimators]
    rng = np.random.RandomState(args.seed)
    sums = np.zeros([len(vectors), int(encoder.sum())])
    squares = np.zeros_like(sums)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        if args.checkpoint:
            # a run may have tracked fewer estimators than this build: the variables it does
            # not hold keep their initial values (they belong to estimators not measured here)
            path = os.path.join(args.run_dir, args.checkpoint)
            held = set(name for name, _ in tf.train.list_variables(path))
            tf.train.Saver([v for v in tf.global_variables() if v.op.name in held]).restore(
                sess, path)
        for _ in range(args.batches):
            x = train[rng.randint(len(train), size=hp.batch_size)]
            if hp.dynamic_b:
                x = (rng.rand(*x.shape) < x).astype(np.float32)
            grads = np.array(sess.run(vectors, {model.x: x}))[:, encoder]
            sums += grads
            squares += grads ** 2
    mean = sums / args.batches
    variances = (squares / args.batches - mean ** 2).mean(1) * args.batches / (args.batches - 1)
    print('state: %s; %d batches of %d; encoder parameters: %d'
          % (args.checkpoint or 'initialisation', args.batches, hp.batch_size, encoder.sum()))
    for name, v in zip(args.estimators, variances):
        print('%-14s %.4g  (/ %s: %.3f)' % (name, v, args.estimators[0], v / variances[0]))


if __name__ == '__main__':
    main()
