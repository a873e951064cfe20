"""Speed of every model at the documented configuration: a table on stdout and a JSON file.

    python scripts/benchmark.py                          # all models, 2 linear layers, batch 24
    python scripts/benchmark.py --flexible               # the flexible-shape build
    python scripts/benchmark.py --models SBNDynamicRebar --hparams nonlinear=true
    python scripts/benchmark.py --sweep                  # steps/s against batch, n_hidden, n_layer

Each model runs in its own process (so peak RSS is its own): graph build seconds (the training
graph, all the driver builds before its first step), session start plus first step, training
steps/s (median and range over --repeats timed blocks after a warm-up), graph op count
(evaluation's included), peak RSS, the importance-weighted bound's images/s (100 samples, groups
of 5, as in training) and evaluation's start (its graph, which the driver builds at its first
evaluation, and first call). Data: the bundled sample of real digits. The session config is the
driver's for this device (device.choose), so the numbers are what a training run sees.
"""
from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import config  # noqa: E402  (after the project's directory is on the path)
import rundir  # noqa: E402

DOCUMENTED = 'learning_rate=0.0003,n_layer=2,task=sbn'
# What a model needs beyond the documented run (before --hparams, which may override it).
MODEL_HPARAMS = dict((m, 'n_samples=2') for m in config.MULTI_SAMPLE_MODELS)
MODEL_HPARAMS.update(SBNVIMCO='n_samples=2,objective=iwae', SBNLocalDisARM='objective=iwae')


def measure(model_name, extra, steps, repeats, eval_images, flexible):
    """Runs one model in this process; returns its figures as a dict."""
    import numpy as np
    import datasets
    import device
    import rebar
    import session
    import tensorflow.compat.v1 as tf

    hp = config.parse_hparams(','.join(
        s for s in ['model=' + model_name, DOCUMENTED, MODEL_HPARAMS.get(model_name), extra] if s))
    train, valid, _ = datasets.load_data('mnist', use_sample=True)
    backend = device.choose('auto', log=lambda message: None)
    static_shapes = backend.static_shapes and not flexible
    batch = hp.batch_size
    start = time.time()
    # the driver's input: static shapes take each batch from the training set in the session
    on_device = (session.DeviceBatches(len(train), hp.n_input, batch, hp.dynamic_b)
                 if static_shapes else None)
    model = rebar.build_model(hp, train.mean(0), static_shapes=static_shapes,
                              images=on_device.images if on_device else None)
    init = tf.global_variables_initializer()
    built = time.time()
    rng = np.random.RandomState(0)
    per_epoch = len(train) // batch
    with tf.Session(config=backend.session_config) as sess:
        sess.run(init)
        if on_device:
            on_device.initialize(sess, train)
        # the driver's training step: the same fetches through a callable
        step = sess.make_callable((model.train_report, model.grad_variance, model.step_after,
                                   model.temperature, model.grads_finite),
                                  feed_list=[] if on_device else [model.x])

        epoch = {}

        def train_step(i):   # i: the global step; a new epoch of full batches every per_epoch
            if i % per_epoch == 0:
                epoch['order'] = rng.permutation(len(train))
                if on_device:
                    on_device.load(sess, epoch['order'], i)
            if on_device:
                return step()
            j = i % per_epoch
            return step(train[epoch['order'][j * batch:(j + 1) * batch]])

        train_step(0)
        first = time.time()
        for i in range(1, 21):   # warm-up
            train_step(i)
        rates = []
        i = 21
        for r in range(repeats):
            t = time.time()
            for _ in range(steps):
                train_step(i)
                i += 1
            rates.append(steps / (time.time() - t))
        t = time.time()
        model.eval_report   # the driver builds evaluation when it first evaluates
        model.partial_eval(sess, valid[:rebar.EVAL_GROUP])   # warm-up: first call prepares
        eval_start = time.time() - t
        t = time.time()
        for i in range(0, eval_images, rebar.EVAL_GROUP):
            model.partial_eval(sess, valid[i:i + rebar.EVAL_GROUP])
        eval_rate = eval_images / (time.time() - t)
    return {
        'model': model_name, 'hparams': hp.values(), 'device': backend.name,
        'static_shapes': static_shapes,
        'tensorflow': tf.__version__, 'python': sys.version.split()[0],
        'build_s': built - start, 'first_step_s': first - built,
        'steps_per_s': float(np.median(rates)), 'steps_per_s_min': min(rates),
        'steps_per_s_max': max(rates), 'graph_ops': len(tf.get_default_graph().get_operations()),
        'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        'eval_images_per_s': eval_rate, 'eval_start_s': eval_start,
    }


def measure_calls(model_name, extra, steps, repeats, eval_images, steps_per_call):
    """The accelerator path in this process, through the driver's session (session.RunSession):
    training steps/s with `steps_per_call` steps a call, and evaluation images/s one group of
    5 a call and session.EVAL_GROUPS groups a call (same figures, docs/performance.md)."""
    import tempfile
    import numpy as np
    import datasets
    import device
    import rebar
    import session

    hp = config.parse_hparams(','.join(
        s for s in ['model=' + model_name, DOCUMENTED, MODEL_HPARAMS.get(model_name), extra] if s))
    train, valid, _ = datasets.load_data('mnist', use_sample=True)
    backend = device.choose('auto', log=lambda message: None)
    run = session.RunSession(hp, backend, train, {hp.batch_size}, True, True, 0,
                             tempfile.mkdtemp(), steps_per_call=steps_per_call)
    run.initialize()
    per_epoch = len(train) // hp.batch_size
    state = {'step': 0, 'epoch_step': per_epoch}
    rng = np.random.RandomState(0)

    def call(n):   # n steps in one call (one step: the single-step graph), within an epoch
        if state['epoch_step'] + n > per_epoch:
            run.load_epoch(rng.permutation(len(train)), state['step'])
            state['epoch_step'] = 0
        results = run.steps(n) if n > 1 else [run.step(hp.batch_size)]
        state['step'] += len(results)
        state['epoch_step'] += len(results)

    n = min(steps_per_call, per_epoch)
    for _ in range(max(1, 20 // n)):   # warm-up
        call(n)
    rates = []
    for _ in range(repeats):
        t = time.time()
        for _ in range(max(1, steps // n)):
            call(n)
        rates.append(max(1, steps // n) * n / (time.time() - t))
    xs = valid[:eval_images]
    figures = {}
    for name, evaluate in (('per_group', lambda: np.mean([
            run.model.partial_eval(run.sess, xs[i:i + rebar.EVAL_GROUP])
            for i in range(0, len(xs), rebar.EVAL_GROUP)], axis=0)),
            ('grouped', lambda: run.evaluate(xs))):
        evaluate()   # warm-up
        t = time.time()
        evaluate()
        figures[name] = len(xs) / (time.time() - t)
    return {'model': model_name, 'device': backend.name, 'steps_per_call': steps_per_call,
            'steps_per_s': float(np.median(rates)), 'steps_per_s_min': min(rates),
            'steps_per_s_max': max(rates), 'eval_images_per_s_per_group': figures['per_group'],
            'eval_images_per_s_grouped': figures['grouped'],
            'eval_groups_per_call': session.EVAL_GROUPS}


def run_child(args, model_name, extra):
    command = [sys.executable, os.path.abspath(__file__), '--child', model_name,
               '--hparams', extra, '--steps', str(args.steps), '--repeats', str(args.repeats),
               '--eval_images', str(args.eval_images)]
    if args.flexible:
        command.append('--flexible')
    out = subprocess.check_output(command, stderr=subprocess.DEVNULL if not args.verbose
                                  else None)
    return json.loads(out.decode('utf-8').strip().splitlines()[-1])


def accelerator_path(args):
    """One child per model and steps per call; a table of steps/s and evaluation images/s."""
    results = []
    for model_name in args.models:
        for k in args.steps_per_call:
            command = [sys.executable, os.path.abspath(__file__), '--child', model_name,
                       '--hparams', args.hparams, '--steps', str(args.steps), '--repeats',
                       str(args.repeats), '--eval_images', str(args.eval_images),
                       '--steps_per_call', str(k)]
            out = subprocess.check_output(command, stderr=None if args.verbose
                                          else subprocess.DEVNULL)
            results.append(json.loads(out.decode('utf-8').strip().splitlines()[-1]))
    rows = [{'model': r['model'], 'steps/call': '%d' % r['steps_per_call'],
             'steps/s': '%.1f (%.1f-%.1f)' % (r['steps_per_s'], r['steps_per_s_min'],
                                              r['steps_per_s_max']),
             'eval img/s 1 group/call': '%.0f' % r['eval_images_per_s_per_group'],
             'eval img/s %d groups/call' % r['eval_groups_per_call']:
                 '%.0f' % r['eval_images_per_s_grouped']} for r in results]
    print('Python %s, device %s' % (sys.version.split()[0], results[0]['device']))
    print_table(rows, list(rows[0]))
    rundir.atomic_write(args.json, json.dumps(results, indent=1))


def print_table(rows, columns):
    widths = [max(len(c), max(len(r[c]) for r in rows)) for c in columns]
    print('  '.join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print('  '.join(r[c].ljust(w) for c, w in zip(columns, widths)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     allow_abbrev=False)   # names match exactly, not by prefix
    parser.add_argument('--models', nargs='+', default=list(config.MODELS))
    parser.add_argument('--hparams', default='', help='extra k=v,... over the documented run')
    parser.add_argument('--steps', type=int, default=200, help='steps per timed block')
    parser.add_argument('--repeats', type=int, default=7, help='timed blocks')
    parser.add_argument('--eval_images', type=int, default=500)
    parser.add_argument('--flexible', action='store_true',
                        help='the flexible-shape build instead of the default static one')
    parser.add_argument('--sweep', action='store_true',
                        help='SBNDynamicRebar steps/s against batch_size, n_hidden and n_layer')
    parser.add_argument('--steps_per_call', type=int, nargs='+',
                        help='the accelerator path instead: training steps/s with each of these '
                        'steps per call, and evaluation images/s one group a call against many '
                        '(e.g. --steps_per_call 1 10 100 --models SBNDynamicRebar)')
    parser.add_argument('--json', default='benchmark.json')
    parser.add_argument('--verbose', action='store_true')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child and args.steps_per_call:
        print(json.dumps(measure_calls(args.child, args.hparams, args.steps, args.repeats,
                                       args.eval_images, args.steps_per_call[0])))
        return
    if args.child:
        print(json.dumps(measure(args.child, args.hparams, args.steps, args.repeats,
                                 args.eval_images, args.flexible)))
        return
    if args.steps_per_call:
        accelerator_path(args)
        return

    if args.sweep:
        base = 'batch_size=24,n_hidden=200,n_layer=2'
        grid = [base] + [base.replace(old, new) for old, new in [
            ('batch_size=24', 'batch_size=12'), ('batch_size=24', 'batch_size=48'),
            ('batch_size=24', 'batch_size=96'), ('n_hidden=200', 'n_hidden=100'),
            ('n_hidden=200', 'n_hidden=400'), ('n_layer=2', 'n_layer=1'),
            ('n_layer=2', 'n_layer=3')]]
        jobs = [('SBNDynamicRebar', ','.join(s for s in [g, args.hparams] if s)) for g in grid]
    else:
        jobs = [(m, args.hparams) for m in args.models]

    results = []
    for model_name, extra in jobs:
        result = run_child(args, model_name, extra)
        result['extra'] = extra
        results.append(result)
        sys.stderr.write('%s %s: %.1f steps/s\n' % (model_name, extra, result['steps_per_s']))
    rows = [{
        'model': r['model'] + (' ' + r['extra'] if r['extra'] else ''),
        'steps/s': '%.1f (%.1f-%.1f)' % (r['steps_per_s'], r['steps_per_s_min'],
                                         r['steps_per_s_max']),
        'build s': '%.1f' % r['build_s'], 'first step s': '%.1f' % r['first_step_s'],
        'ops': '%d' % r['graph_ops'], 'peak RSS MB': '%.0f' % r['peak_rss_mb'],
        'eval img/s': '%.0f' % r['eval_images_per_s'],
        'eval start s': '%.1f' % r['eval_start_s'],
    } for r in results]
    print('Python %s, TensorFlow %s, %s, static shapes %s'
          % (results[0]['python'], results[0]['tensorflow'], results[0]['device'],
             results[0]['static_shapes']))
    print_table(rows, ['model', 'steps/s', 'build s', 'first step s', 'ops', 'peak RSS MB',
                       'eval img/s', 'eval start s'])
    rundir.atomic_write(args.json, json.dumps(results, indent=1))


if __name__ == '__main__':
    main()
