"""The estimator papers' toy problem: minimise E[(b - t)^2] over the probability sigma(theta).

b holds D independent bits, b_d ~ Bernoulli(sigma(theta_d)); f(b) = (1/D) sum_d (b_d - t)^2 (the
mean over bits, as the RELAX and double-CV authors' toy code has it), so

    E[f] = (1/D) sum_d [sigma_d (1 - t)^2 + (1 - sigma_d) t^2],
    d E[f] / d theta_d = sigma_d (1 - sigma_d) ((1 - t)^2 - t^2) / D,

positive for t < 1/2 (the optimum is sigma = 0) and tiny when t is close to 1/2. Every estimator
runs through `binary_gradient.estimate`, i.e. the functions of `rebar.ESTIMATORS` unchanged.

    python rebar_toy.py --target=0.45 --estimators=REINFORCE,Concrete,REBAR,RELAX --steps=2000 \
        --out_dir=DIR [--bits=1] [--n_samples=1] [--seed=1] [--learning_rate=0.01]
    python rebar_toy.py --preset=relax2018 --out_dir=DIR
    python rebar_toy.py --check --target=0.499 [--probs=0.05,0.5,0.95] [--draws=4000]

Training: theta starts at 0 (sigma = 1/2) and takes one Adam step per draw of the estimator
(K = n_samples samples of b; Adam's defaults but the learning rate, for theta and for what the
estimator learns, as the RELAX authors' toy code does). Writes DIR/toy.json (settings, and per
estimator and K, per step: `sigma` of bit 0 after the step, `loss` the closed-form E[f]
after it, `log_variance` the log of the gradient's variance, see below) and DIR/toy.png (sigma
and log variance against steps), both atomically.

Variance: exponential moving averages with zero-debiasing (decay --variance_decay, 0.99 by
default, about the last 100 steps) of the drawn gradient g and of g^2, per bit; the value is
log(mean over bits of E[g^2] - E[g]^2). One draw per step serves the update and the average
(as the models' own variance figure does, there with decay 0.999), so no estimator sees extra
draws.

--check draws `--draws` gradients at each probability of --probs (one graph per estimator and
K, the probabilities fed as logit rows, in 50 runs whose means give the standard error) and
prints, per estimator, K and probability, the mean of the first bit's gradient against the
closed form, its standard error and their z-score.

Estimators: any name of `rebar.ESTIMATORS`, or the model class that trains with it (SBNRelax for
RELAX, ...). Every one applies to a single Bernoulli layer: the baselines that read an input
(NVIL, MuProp, REBAR) see a constant one and become learned constants, so NVIL is REINFORCE
with a learned constant baseline; REINFORCE centres f on the step's other samples, and with
n_samples = 1 has none (plain REINFORCE, as in the papers' toys). Estimators that centre each
sample on the other samples of its row need n_samples >= 2 (`binary_gradient.min_samples`).
"""
from __future__ import absolute_import, division, print_function

import argparse
import collections
import os
import sys

import numpy as np

import records
import rundir

# Estimators whose mean is not the gradient of E[f] (the rest must pass --check).
BIASED = ('Concrete',)

# The papers' toys as data. Names not (yet) in rebar.ESTIMATORS are left out with a note, so an
# estimator joins its paper's preset as soon as it is registered.
PRESETS = collections.OrderedDict([
    ('rebar2017', {
        'description': 'REBAR (Tucker et al. 2017), toy of its Figure 1: t = 0.45, one bit',
        'target': 0.45, 'bits': 1, 'n_samples': [1], 'steps': 2000, 'learning_rate': 0.01,
        'estimators': ['REINFORCE', 'Concrete', 'REBAR', 'DynamicREBAR']}),
    ('relax2018', {
        'description': 'RELAX (Grathwohl et al. 2018), toy of its Figure 1: t = 0.499, one bit, '
                       '10,000 steps, Adam 0.01 (the authors\' toy code)',
        'target': 0.499, 'bits': 1, 'n_samples': [1], 'steps': 10000, 'learning_rate': 0.01,
        'estimators': ['REINFORCE', 'Concrete', 'DynamicREBAR', 'RELAX']}),
    ('arms2021', {
        'description': 'ARMS (Dimitriev and Zhou 2021): t = 0.49, one bit, K = 2 to 10 '
                       '(their code: plain gradient steps, variance against sigma)',
        'target': 0.49, 'bits': 1, 'n_samples': [2, 4, 6, 8, 10], 'steps': 2000,
        'learning_rate': 0.01, 'estimators': ['ReinforceLOO', 'ARM', 'DisARM', 'ARMS']}),
    ('doublecv2022', {
        'description': 'Double control variates (Titsias and Shi 2022): t = 0.499, D = 200 '
                       'bits, K = 2, 2,000 steps, Adam 0.01 (the authors\' notebook)',
        'target': 0.499, 'bits': 200, 'n_samples': [2], 'steps': 2000, 'learning_rate': 0.01,
        'estimators': ['REINFORCE', 'ReinforceLOO', 'MuProp', 'DisARM', 'DoubleCV', 'RODEO']}),
])


def closed_form(probs, target, bits=1):
    """Per bit at probabilities sigma(theta) = probs: E[(b - t)^2], and d E[f] / d theta for
    f the mean over `bits` bits."""
    probs = np.asarray(probs, np.float64)
    loss = probs * (1 - target) ** 2 + (1 - probs) * target ** 2
    return loss, probs * (1 - probs) * ((1 - target) ** 2 - target ** 2) / bits


def toy_f(target):
    """f(b) = mean_d (b_d - t)^2, [M, D] -> [M]."""
    import tensorflow.compat.v1 as tf
    return lambda b: tf.reduce_mean(tf.square(b - target), 1)


def resolve(names):
    """Registry names for `names` (registry or model class names); ValueError for others."""
    import binary_gradient
    import rebar
    by_model = dict((cls.__name__, name) for name in rebar.ESTIMATORS
                    for cls in [binary_gradient.model_class(name)] if cls is not None)
    out = []
    for name in names:
        if name not in rebar.ESTIMATORS and name not in by_model:
            raise ValueError('Unknown estimator %r; choose from %s (or their model names %s).'
                             % (name, ', '.join(rebar.ESTIMATORS), ', '.join(sorted(by_model))))
        out.append(by_model.get(name, name))
    return out


def _session_config():
    import tensorflow.compat.v1 as tf
    config = tf.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)
    # grappler costs more than these small graphs save
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return config


def check(estimators, target, bits=1, n_samples=(1,), probs=(0.05, 0.5, 0.95), draws=4000,
          seed=1, batches=50):
    """Mean gradient of `draws` draws per estimator, K and probability, in `batches` session
    runs of draws / batches rows per probability.

    One graph per (estimator, K): the logits are a [len(probs) * draws / batches, bits] feed,
    each row a copy of the toy (the learned parts at their initial values, which leave every
    unbiased estimator unbiased). The standard error comes from the spread of the batches'
    means, not of single rows: rows of one run are not independent for every estimator
    (REINFORCE centres each row on the others). Returns a list of dicts: estimator, n_samples,
    prob, mean and standard error of bit 0's gradient, the closed form, and
    z = (mean - exact) / se (exact agreement counts as z = 0).
    """
    import utils  # noqa: F401  (graph mode in TF 2)
    import tensorflow.compat.v1 as tf
    import binary_gradient
    probs = np.asarray(probs, np.float64)
    rows = max(draws // batches, 1)
    logits = np.repeat(np.log(probs / (1 - probs)), rows)[:, None] * np.ones([1, bits])
    exact = closed_form(probs, target, bits)[1]
    results = []
    for name in estimators:
        for k in n_samples:
            with tf.Graph().as_default():
                tf.set_random_seed(seed)
                feed = tf.placeholder(tf.float32, logits.shape)
                est = binary_gradient.estimate(toy_f(target), feed, name, k)
                with tf.Session(config=_session_config()) as sess:
                    sess.run(tf.global_variables_initializer())
                    # [batches, probs]: each run's mean of bit 0's gradient per probability
                    means = np.array([sess.run(est.gradient, {feed: logits})[:, 0].reshape(
                        len(probs), rows).astype(np.float64).mean(1) for _ in range(batches)])
            for p, column, e in zip(probs, means.T, exact):
                mean, se = column.mean(), column.std(ddof=1) / np.sqrt(batches)
                z = 0.0 if abs(mean - e) <= 1e-7 else (mean - e) / max(se, 1e-30)
                results.append({'estimator': name, 'n_samples': k, 'prob': float(p),
                                'mean': float(mean), 'se': float(se), 'exact': float(e),
                                'z': float(z)})
    return results


def train(name, n_samples, target, bits, steps, learning_rate, seed, variance_decay=0.99,
          control_learning_rate=None):
    """One run of the toy: per step, sigma of bit 0 and the closed-form loss (mean over bits)
    after the update, and the log variance of the drawn gradient (see the module's docstring;
    None while the draws have no spread)."""
    import utils  # noqa: F401
    import tensorflow.compat.v1 as tf
    import binary_gradient
    with tf.Graph().as_default():
        tf.set_random_seed(seed)
        theta = tf.get_variable('theta', [bits], tf.float32, tf.zeros_initializer(),
                                use_resource=True)
        est = binary_gradient.estimate(toy_f(target), theta, name, n_samples,
                                       learning_rate=control_learning_rate or learning_rate,
                                       hparams={'beta2': 0.999})
        with tf.control_dependencies(est.computed):
            step = tf.group(tf.train.AdamOptimizer(learning_rate).apply_gradients(
                [(est.gradient, theta)]), est.update)
        with tf.control_dependencies([step]):
            sigma = tf.sigmoid(theta.read_value())
        with tf.Session(config=_session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            first, second = np.zeros(bits), np.zeros(bits)
            sigmas, losses, log_variances = [], [], []
            for i in range(steps):
                g, s = sess.run([est.gradient, sigma])
                g = g.astype(np.float64)
                first += (1 - variance_decay) * (g - first)
                second += (1 - variance_decay) * (g * g - second)
                debias = 1 - variance_decay ** (i + 1)
                variance = np.mean(second / debias - (first / debias) ** 2)
                sigmas.append(float(s[0]))
                losses.append(float(np.mean(closed_form(s, target)[0])))
                # None (JSON null) while the draws have no spread: the first step, or DisARM
                # at sigma = 1/2 on one bit, where its estimate is exact
                log_variances.append(float(np.log(variance)) if i and variance > 0 else None)
    return {'estimator': name, 'n_samples': n_samples, 'sigma': sigmas, 'loss': losses,
            'log_variance': log_variances}


def plot(path, runs, title):
    """sigma(theta) and log variance against steps, one line per run, to `path` (PNG)."""
    import io
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in runs:
        steps = np.arange(1, len(run['sigma']) + 1)
        axes[0].plot(steps, run['sigma'], label=run['label'])
        axes[1].plot(steps, np.array(run['log_variance'], np.float64), label=run['label'],
                     linewidth=0.8)
    axes[0].set_ylabel('sigma(theta)')
    axes[0].set_ylim(-0.02, 1.02)
    axes[1].set_ylabel('log variance of the gradient')
    for ax in axes:
        ax.set_xlabel('steps')
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=100)
    plt.close(fig)
    rundir.atomic_write(path, buf.getvalue())


def _floats(text, flag):
    try:
        return [float(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise ValueError('%s expects comma-separated numbers, got %r.' % (flag, text))


def settings(args):
    """The run's settings: the preset's, overridden by the flags given; ValueError if bad."""
    values = {'target': 0.45, 'bits': 1, 'n_samples': [1], 'steps': 2000,
              'learning_rate': 0.01, 'estimators': ['REINFORCE', 'Concrete', 'REBAR', 'RELAX']}
    notes = []
    if args.preset:
        if args.preset not in PRESETS:
            raise ValueError('Unknown --preset=%s; choose one of %s.'
                             % (args.preset, ', '.join(PRESETS)))
        import rebar
        values.update((k, v) for k, v in PRESETS[args.preset].items() if k != 'description')
        missing = [n for n in values['estimators'] if n not in rebar.ESTIMATORS]
        values['estimators'] = [n for n in values['estimators'] if n in rebar.ESTIMATORS]
        if missing:
            notes.append('preset %s: %s not in rebar.ESTIMATORS yet, left out'
                         % (args.preset, ', '.join(missing)))
    for key in ('target', 'bits', 'steps', 'learning_rate'):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.n_samples is not None:
        values['n_samples'] = [int(k) for k in _floats(args.n_samples, '--n_samples')]
    if args.estimators is not None:
        values['estimators'] = [n.strip() for n in args.estimators.split(',') if n.strip()]
    values['estimators'] = resolve(values['estimators'])
    if not 0 <= values['target'] <= 1:
        raise ValueError('--target must lie in [0, 1], got %r.' % values['target'])
    if values['bits'] < 1 or values['steps'] < 1 or values['learning_rate'] <= 0:
        raise ValueError('--bits and --steps must be >= 1 and --learning_rate > 0.')
    import binary_gradient
    for name in values['estimators']:
        for k in values['n_samples']:
            try:
                binary_gradient.check_applicable(name, k)
            except ValueError as e:
                raise ValueError('%s Fix: --n_samples=%d or drop %s from --estimators.'
                                 % (str(e).split('; fix')[0] + '.', max(2, k), name))
    values['seed'] = args.seed
    return values, notes


def parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--preset', help='one of: ' + '; '.join(
        '%s (%s)' % (k, v['description']) for k, v in PRESETS.items()))
    p.add_argument('--target', type=float, help='t (default 0.45)')
    p.add_argument('--estimators', help='comma-separated names of rebar.ESTIMATORS or models')
    p.add_argument('--steps', type=int, help='Adam steps (default 2000)')
    p.add_argument('--bits', type=int, help='D, independent bits (default 1)')
    p.add_argument('--n_samples', help='K, samples per step; a comma-separated list runs each')
    p.add_argument('--learning_rate', type=float, help='Adam step (default 0.01, RELAX\'s toy)')
    p.add_argument('--control_learning_rate', type=float,
                   help='Adam step for what the estimator learns (default: --learning_rate)')
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--variance_decay', type=float, default=0.99)
    p.add_argument('--out_dir', help='where toy.json and toy.png go (not with --check)')
    p.add_argument('--check', action='store_true', help='compare mean gradients with the '
                   'closed form instead of training')
    p.add_argument('--probs', default='0.05,0.5,0.95', help='--check: sigma(theta) values')
    p.add_argument('--draws', type=int, default=4000, help='--check: draws per probability')
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        values, notes = settings(args)
        probs = _floats(args.probs, '--probs')
        if not all(0 < q < 1 for q in probs):
            raise ValueError('--probs must lie strictly between 0 and 1, got %s.' % args.probs)
        if not args.check and not args.out_dir:
            raise ValueError('--out_dir is required (or pass --check).')
        if args.draws < 2:
            raise ValueError('--draws must be at least 2.')
    except ValueError as e:
        print('rebar_toy.py: %s' % e, file=sys.stderr)
        return 2
    for note in notes:
        print('note: ' + note)
    if args.check:
        rows = check(values['estimators'], values['target'], values['bits'],
                     values['n_samples'], probs, args.draws, args.seed)
        print('%-14s %2s %6s %12s %12s %10s %7s' % ('estimator', 'K', 'sigma', 'mean', 'exact',
                                                    'se', 'z'))
        for r in rows:
            print('%-14s %2d %6.3f %12.6f %12.6f %10.2e %7.2f%s'
                  % (r['estimator'], r['n_samples'], r['prob'], r['mean'], r['exact'], r['se'],
                     r['z'], '  BIASED?' if abs(r['z']) > 4 else ''))
        return 0
    if not os.path.isdir(args.out_dir):
        os.makedirs(args.out_dir)
    runs = []
    for name in values['estimators']:
        for k in values['n_samples']:
            run = train(name, k, values['target'], values['bits'], values['steps'],
                        values['learning_rate'], values['seed'], args.variance_decay,
                        args.control_learning_rate)
            run['label'] = name if len(values['n_samples']) == 1 else '%s K=%d' % (name, k)
            print('%-20s final sigma %.4f  loss %.6f  log variance %.2f'
                  % (run['label'], run['sigma'][-1], run['loss'][-1], run['log_variance'][-1]))
            runs.append(run)
    record = dict(values, variance='log of the mean over bits of EMA(g^2) - EMA(g)^2, decay %g, '
                  'debiased, one draw per step' % args.variance_decay, runs=runs,
                  preset=args.preset, command=' '.join(['python rebar_toy.py'] + (
                      argv if argv is not None else sys.argv[1:])))
    rundir.atomic_write(os.path.join(args.out_dir, 'toy.json'), records.dumps(record) + '\n')
    plot(os.path.join(args.out_dir, 'toy.png'), runs,
         't = %g, D = %d, Adam %g' % (values['target'], values['bits'], values['learning_rate']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
