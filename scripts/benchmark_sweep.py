"""Wall time of a sweep of equal runs against the same runs one after another.

    python scripts/benchmark_sweep.py             # 4 x SBNDynamicRebar, 2 layers, 3000 steps
    python scripts/benchmark_sweep.py --steps 1000 --cpus 1 --json out.json

For each --cpus value c: the runs one after another (rebar_train.py with --threads=c), then the
same runs as one rebar_sweep.py with --cpus_per_run=c (a local Ray holding every core, so
cores / c runs at a time). Printed: each mode's wall time, the runs' training steps/s (median
of their progress lines, start-up excluded) and the total throughput (all runs' steps / wall
time). Data: the bundled sample. The figures are only as good as the machine is quiet: other
jobs on the same cores lower them.
"""
from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRESS = re.compile(r'rebar_train: progress: step \d+ of \d+, .*?, ([0-9.]+) steps/s')
DRIVER_FLAGS = ['--eval_freq=0', '--checkpoint_secs=0', '--progress_secs=0']


def median(values):
    values = sorted(values)
    if not values:
        return float('nan')
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def rates(stderr_text):
    """The steps/s of a run's progress lines, the first (start-up) left out."""
    found = [float(r) for r in PROGRESS.findall(stderr_text)]
    return found[1:] or found


def one_after_another(args, cpus, workdir):
    per_run, started = [], time.time()
    for seed in range(1, args.runs + 1):
        command = [args.python, '-u', os.path.join(ROOT, 'rebar_train.py'),
                   '--hparams=' + args.hparams, '--seed=%d' % seed,
                   '--working_dir=' + os.path.join(workdir, 'run_%d' % seed),
                   '--max_steps=%d' % args.steps, '--threads=%d' % cpus,
                   '--log_every=%d' % args.log_every] + DRIVER_FLAGS
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              universal_newlines=True, cwd=ROOT)
        if done.returncode:
            sys.exit('run %d failed:\n%s' % (seed, done.stderr[-2000:]))
        per_run.append(median(rates(done.stderr)))
    return time.time() - started, per_run


def as_sweep(args, cpus, workdir):
    sweep_dir = os.path.join(workdir, 'sweep')
    command = [args.python, os.path.join(ROOT, 'rebar_sweep.py'), '--grid', 'trial=1',
               '--hparams', args.hparams, '--seeds', '1-%d' % args.runs,
               '--max_steps', str(args.steps), '--sweep_dir', sweep_dir,
               '--cpus_per_run', str(cpus), '--status_secs', '600', '--',
               '--log_every=%d' % args.log_every] + DRIVER_FLAGS
    started = time.time()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          universal_newlines=True, cwd=ROOT)
    wall = time.time() - started
    if done.returncode:
        sys.exit('the sweep failed:\n%s' % done.stderr[-3000:])
    per_run = []
    for name in sorted(os.listdir(sweep_dir)):
        log = os.path.join(sweep_dir, name, 'stderr.log')
        if os.path.exists(log):
            with open(log) as f:
                per_run.append(median(rates(f.read())))
    return wall, per_run


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                allow_abbrev=False)   # names match exactly, not by prefix
    p.add_argument('--python', default=sys.executable)
    p.add_argument('--hparams', default='model=SBNDynamicRebar,n_layer=2')
    p.add_argument('--runs', type=int, default=4)
    p.add_argument('--steps', type=int, default=3000)
    p.add_argument('--log_every', type=int, default=500)
    p.add_argument('--cpus', default='1,2', help='cpus_per_run values, comma separated')
    p.add_argument('--json', help='also write the figures here')
    args = p.parse_args()

    results = []
    print('%d runs of %s, %d steps each, bundled sample, %d cores'
          % (args.runs, args.hparams, args.steps, os.cpu_count()))
    print('%-20s %5s %9s %22s %13s' % ('mode', 'cpus', 'wall s', 'run steps/s (median)',
                                       'total steps/s'))
    for cpus in [int(c) for c in args.cpus.split(',')]:
        for mode, fn in (('one after another', one_after_another), ('sweep (Ray)', as_sweep)):
            workdir = tempfile.mkdtemp(prefix='benchmark_sweep_')
            try:
                wall, per_run = fn(args, cpus, workdir)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            total = args.runs * args.steps / wall
            results.append({'mode': mode, 'cpus_per_run': cpus, 'wall_seconds': wall,
                            'run_steps_per_second': per_run, 'total_steps_per_second': total})
            print('%-20s %5d %9.1f %22s %13.1f'
                  % (mode, cpus, wall, ' '.join('%.0f' % r for r in per_run), total))
            sys.stdout.flush()
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'runs': args.runs, 'steps': args.steps, 'hparams': args.hparams,
                       'cores': os.cpu_count(), 'time': time.time(), 'results': results}, f,
                      indent=1)


if __name__ == '__main__':
    main()
