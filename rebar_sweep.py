"""Runs a grid of rebar_train.py runs over seeds, scheduled by Ray; rerunning resumes the sweep.

    python rebar_sweep.py --grid "model=SBNNVIL,SBNMuProp,SBNDynamicRebar;n_layer=1,2" \\
        --seeds 1-5 --max_steps 100000 --sweep_dir sweeps/table1 -- --eval_freq=5
    python rebar_sweep.py --preset rebar2017-table1 --sweep_dir sweeps/table1
    python rebar_report.py sweeps/table1

The grid is a product of value lists (`;` between hparams, `,` between values); `--hparams`
holds common hparams, which the grid's values override key by key. Every (grid point, seed) is
one `rebar_train.py` process in its own run directory `SWEEP_DIR/<grid values>.seed_S`, with
its stdout and stderr in `stdout.log` and `stderr.log` there. Flags after `--`, and flags this
script does not know, go to every rebar_train.py; one that rebar_train.py does not take either (a
typo), or one the sweep sets for each run (--seed, --working_dir, --max_steps, --hparams), stops
the sweep before anything starts, naming it and the nearest flag. Flags are matched exactly:
--max_step is not read as --max_steps.

Each run is a Ray task holding `--cpus_per_run` CPUs (also the trainer's `--threads`), and
`--gpus_per_run` GPUs (Ray sets CUDA_VISIBLE_DEVICES) or `--npus_per_run` of the custom
resource "NPU" (its id becomes the run's ASCEND_DEVICE_ID). Without `--address` Ray starts on
this machine and stops with the sweep; with it the sweep joins a running cluster, whose nodes
must share SWEEP_DIR's file system (docs/experiments.md).

Ctrl-C or SIGTERM stops the runs at a checkpoint (the trainers get SIGTERM) and then the sweep.
Rerunning the same command resumes: runs whose last checkpoint reached max_steps are skipped
without starting a process, the others continue from their checkpoints, and runs that a killed
sweep left training are waited for rather than started twice. A failed run does not stop the
others; it is reported with the end of its stderr, and the sweep exits 1 at the end. The
sweep's definition is kept in SWEEP_DIR/sweep.json; another definition in the same directory is
refused.
"""
from __future__ import absolute_import, division, print_function

import argparse
import itertools
import json
import os
import re
import signal
import socket
import sys
import time

import presets
import rundir

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, 'rebar_train.py')
SWEEP_FILE = 'sweep.json'
STDOUT, STDERR = 'stdout.log', 'stderr.log'
ATTEMPT = 'sweep_attempt.json'   # who is training this run for the sweep (pid, host, session)
HEADER = '==== rebar_sweep: attempt'   # starts each attempt's lines in stderr.log
TAIL_LINES = 15

PROGRESS = re.compile(r'rebar_train: progress: step (\d+) of (\d+), .*?, ([0-9.]+) steps/s')


class SweepError(ValueError):
    """A sweep that cannot run as asked; the message says what to change."""


# -- the definition -------------------------------------------------------------------------------
def parse_grid(text):
    """"model=A,B;n_layer=1,2" as axes [{'name', 'values': [[label, 'k=v']]}]."""
    axes, names = [], set()
    for part in [p.strip() for p in text.split(';') if p.strip()]:
        if '=' not in part:
            raise SweepError('Cannot parse %r in --grid: expected name=value,value,... with ";" '
                             'between hparams, e.g. "model=SBN,SBNNVIL;n_layer=1,2".' % part)
        name, values = [s.strip() for s in part.split('=', 1)]
        values = [v.strip() for v in values.split(',') if v.strip()]
        if not name or not values:
            raise SweepError('--grid entry %r needs a name and at least one value.' % part)
        if name in names:
            raise SweepError('--grid names %s twice; give all its values in one entry.' % name)
        names.add(name)
        axes.append(presets.axis(name, [(v, '%s=%s' % (name, v)) for v in values], named=True))
    return axes


def parse_seeds(text):
    """"1-5", "1,2" or "1-3,7" as a sorted list of distinct ints."""
    seeds = set()
    try:
        for part in [p.strip() for p in str(text).split(',') if p.strip()]:
            if '-' in part:
                first, last = part.split('-', 1)
                seeds.update(range(int(first), int(last) + 1))
            else:
                seeds.add(int(part))
    except ValueError:
        raise SweepError('Cannot parse --seeds %r: give a range "1-5" or a list "1,2".' % text)
    if not seeds:
        raise SweepError('--seeds %r names no seed; give e.g. "1-5".' % text)
    return sorted(seeds)


def parse_hparams(spec):
    """"k=v,k=v" as an ordered list of [name, value] (values stay strings; the driver types
    and checks them, so a bad value fails only its own runs)."""
    pairs = []
    for item in [s.strip() for s in (spec or '').split(',') if s.strip()]:
        if '=' not in item:
            raise SweepError('Cannot parse %r in hparams: expected name=value pairs separated by '
                             'commas, e.g. "n_layer=2,learning_rate=0.0003".' % item)
        name, value = [s.strip() for s in item.split('=', 1)]
        pairs.append([name, value])
    return pairs


def merge_hparams(*specs):
    """The hparams of `specs` merged key by key, later ones winning, as "k=v,k=v"."""
    merged = []
    for spec in specs:
        for name, value in parse_hparams(spec):
            merged = [kv for kv in merged if kv[0] != name] + [[name, value]]
    return ','.join('%s=%s' % tuple(kv) for kv in merged)


def definition(args):
    """The sweep's definition (what sweep.json pins) from the parsed command line."""
    try:
        preset = presets.get(args.preset) if args.preset else None
    except ValueError as e:
        raise SweepError(str(e))
    if preset and args.grid:
        raise SweepError('Give --grid or --preset, not both.')
    if not preset and not args.grid:
        raise SweepError('Nothing to sweep: give --grid "model=SBN,SBNNVIL;n_layer=1,2" or '
                         '--preset NAME (%s).' % ', '.join(sorted(presets.PRESETS)))
    axes = preset['axes'] if preset else parse_grid(args.grid)
    seeds = parse_seeds(args.seeds) if args.seeds else (preset['seeds'] if preset else [1])
    max_steps = args.max_steps if args.max_steps is not None else (
        preset['max_steps'] if preset else None)
    if max_steps is None or max_steps < 1:
        raise SweepError('--max_steps must be given (a positive step count) for a --grid sweep.')
    hparams = merge_hparams(preset['hparams'] if preset else '', args.hparams)
    defn = {'preset': args.preset, 'axes': axes, 'seeds': seeds, 'max_steps': int(max_steps),
            'hparams': hparams}
    if preset and preset.get('skip'):   # only then, so older sweep.json files still match
        defn['skip'] = preset['skip']
    return defn


def _slug(text):
    return re.sub(r'[^A-Za-z0-9_.=+-]+', '_', str(text)).strip('_') or 'x'


def expand(defn):
    """The runs of a definition: dicts with name (the run directory's), row and column (the
    report's configuration and estimator labels), seed and hparams."""
    axes = defn['axes']
    runs = []
    shown = dict((a['name'], a.get('named')) for a in axes)
    for point in itertools.product(*[a['values'] for a in axes]):
        labelled = list(zip([a['name'] for a in axes], point))
        labels = dict((name, label) for name, (label, _) in labelled)
        if any(all(labels.get(k) == v for k, v in skip.items())
               for skip in defn.get('skip', [])):
            continue
        row = ', '.join('%s=%s' % (name, label) if shown[name] else label
                        for name, (label, _) in labelled if name != presets.MODEL)
        model = [label for name, (label, _) in labelled if name == presets.MODEL]
        spec = merge_hparams(defn['hparams'], *[hp for _, (_, hp) in labelled])
        column = model[0] if model else dict(parse_hparams(spec)).get('model', 'default model')
        base = '.'.join('%s_%s' % (_slug(name), _slug(label)) for name, (label, _) in labelled)
        for seed in defn['seeds']:
            runs.append({'name': '%s.seed_%d' % (base, seed), 'row': row or 'all',
                         'column': column, 'seed': seed, 'hparams': spec})
    names = [r['name'] for r in runs]
    if len(set(names)) != len(names):
        raise SweepError('Two grid points give the same run directory name; use distinct '
                         'labels.')
    return runs


def comparable(defn):
    """What makes two definitions the same sweep: the axes' names and values (not how the
    report shows them), seeds, max_steps, hparams and preset, as JSON would give them back."""
    defn = json.loads(json.dumps(defn))
    defn['axes'] = [{'name': a['name'], 'values': a['values']} for a in defn['axes']]
    return defn


def pin_definition(sweep_dir, defn, runs, argv):
    """Writes SWEEP_DIR/sweep.json, or checks that the one there has the same definition."""
    path = os.path.join(sweep_dir, SWEEP_FILE)
    if os.path.exists(path):
        with open(path) as f:
            stored = json.load(f)
        old, new = comparable(stored['definition']), comparable(defn)
        diffs = ['%s: %s there, %s now' % (k, json.dumps(old.get(k)), json.dumps(new[k]))
                 for k in sorted(new) if new[k] != old.get(k)]
        if diffs:
            raise SweepError('%s holds another sweep (%s). Nothing was started. Rerun it with '
                             'its own definition (see %s) or give another --sweep_dir.'
                             % (sweep_dir, '; '.join(diffs), path))
        return
    if not os.path.isdir(sweep_dir):
        os.makedirs(sweep_dir)
    rundir.atomic_write(path, json.dumps({'definition': defn, 'runs': runs,
                                          'command': argv, 'created': time.time()},
                                         indent=1) + '\n')


# -- one run --------------------------------------------------------------------------------------
def train_command(python, run, run_path, max_steps, threads, driver_flags):
    """The trainer's command line; `threads`: its CPUs (a fraction of a CPU gets one thread)."""
    return [python, '-u', DRIVER, '--hparams=' + run['hparams'], '--working_dir=' + run_path,
            '--seed=%d' % run['seed'], '--max_steps=%d' % max_steps,
            '--threads=%d' % max(1, int(threads))] + list(driver_flags)


def run_task(command, run_path, cwd, session, npus, layout):
    """Body of the Ray task: runs one trainer (in `cwd`, where the sweep started, if this host
    has it) with its output in the run directory and returns {'code', 'tail', 'seconds'}.
    Self-contained (module constants and the project's directory come in `layout`), since Ray
    ships it to its workers by value.

    The trainer gets SIGTERM when this worker dies (a killed sweep), on which it saves a
    checkpoint and stops, unless Ray kills it first (recent Ray kills what a dying worker
    started). An NPU's id from Ray becomes ASCEND_DEVICE_ID (a physical id, so
    Ray's ASCEND_RT_VISIBLE_DEVICES, which would renumber it, is dropped).
    """
    import json as json_
    import os as os_
    import signal as signal_
    import socket as socket_
    import subprocess as subprocess_
    import sys as sys_
    import time as time_
    import ray as ray_

    env = dict(os_.environ)
    if npus:
        context = ray_.get_runtime_context()
        if hasattr(context, 'get_accelerator_ids'):
            ids = context.get_accelerator_ids().get('NPU', [])
        else:   # Ray before accelerator ids: the raw assignment (NPU a unit-instance resource)
            from ray._private import worker as worker_
            ids = [i for i, _ in worker_.global_worker.core_worker.resource_ids().get('NPU', [])]
        env.pop('ASCEND_RT_VISIBLE_DEVICES', None)
        env['ASCEND_DEVICE_ID'] = str(ids[0]) if ids else '0'

    def die_with_parent():
        if sys_.platform.startswith('linux'):
            import ctypes
            ctypes.CDLL(None).prctl(1, signal_.SIGTERM)   # PR_SET_PDEATHSIG

    if not os_.path.isdir(run_path):
        os_.makedirs(run_path)
    started = time_.time()
    stderr_path = os_.path.join(run_path, layout['stderr'])
    with open(os_.path.join(run_path, layout['stdout']), 'a') as out, \
            open(stderr_path, 'a') as err:
        err.write('%s (session %s) on %s, pid %d, %s\n'
                  % (layout['header'], session, socket_.gethostname(), os_.getpid(),
                     ' '.join('%s=%s' % (k, env[k]) for k in ('CUDA_VISIBLE_DEVICES',
                                                              'ASCEND_DEVICE_ID') if k in env)))
        err.flush()
        process = subprocess_.Popen(command, stdout=out, stderr=err, env=env,
                                    cwd=cwd if os_.path.isdir(cwd) else None,
                                    preexec_fn=die_with_parent)
        if layout['code'] not in sys_.path:   # the project, at the same path on every host
            sys_.path.insert(0, layout['code'])
        import rundir as rundir_
        rundir_.atomic_write(os_.path.join(run_path, layout['attempt']), json_.dumps(
            {'pid': process.pid, 'host': socket_.gethostname(), 'session': session,
             'started': started}))
        code = process.wait()
    with open(stderr_path) as f:
        lines = f.read().splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith(layout['header'])]
    tail = lines[header[-1] + 1 if header else 0:][-layout['tail']:]
    return {'code': code, 'tail': tail, 'seconds': time_.time() - started}


def live_trainer(run_path):
    """The pid of a trainer working in `run_path`, or None: the run lock's holder, or a live
    rebar_train.py that a sweep started there on this host (which takes the lock only after
    its start-up)."""
    run = rundir.RunDir(run_path)
    holder = run.lock_holder() if run.exists() else None
    if holder is not None:
        return holder
    try:
        with open(run.join(ATTEMPT)) as f:
            attempt = json.load(f)
    except (IOError, ValueError):
        return None
    if attempt.get('host') != socket.gethostname():
        return None
    try:
        with open('/proc/%d/cmdline' % attempt['pid'], 'rb') as f:
            cmdline = f.read().decode('utf-8', 'replace')
    except (IOError, OSError):
        return None
    return attempt['pid'] if 'rebar_train' in cmdline and run_path in cmdline else None


def attempt_session(run_path):
    """The session of the sweep that last started a trainer in `run_path`, or None."""
    try:
        with open(os.path.join(run_path, ATTEMPT)) as f:
            return json.load(f).get('session')
    except (IOError, ValueError):
        return None


def finished_step(run_path, max_steps):
    """The run's committed step if it reached max_steps, else None."""
    state = rundir.RunDir(run_path).read_state() if os.path.isdir(run_path) else None
    return state['step'] if state and state['step'] >= max_steps else None


def last_progress(run_path):
    """(step, steps/s) from the run's last progress line on stderr, or None."""
    path = os.path.join(run_path, STDERR)
    if not os.path.exists(path):
        return None
    with open(path, 'rb') as f:
        f.seek(max(0, os.path.getsize(path) - 20000))
        text = f.read().decode('utf-8', 'replace')
    matches = PROGRESS.findall(text)
    if not matches:
        return None
    step, _, rate = matches[-1]
    return int(step), float(rate)


# -- the schedule ---------------------------------------------------------------------------------
def duration(seconds):
    if seconds is None:
        return '?'
    seconds = int(round(seconds))
    return '%d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def eta(sweep_dir, runs, status, max_steps):
    """Seconds until the sweep ends, from the runs' own rates: the remaining steps of running
    runs at their rate, and of waiting runs at the mean rate of their estimator (or of all),
    shared by as many slots as are running. None before any rate is known."""
    rates, remaining = {}, []
    for run in runs:
        progress = last_progress(os.path.join(sweep_dir, run['name']))
        if progress:
            rates.setdefault(run['column'], []).append(progress[1])
        remaining.append((run, progress))
    if not rates:
        return None
    everyone = [r for rs in rates.values() for r in rs]
    work, slots = 0.0, max(1, sum(1 for s in status.values() if s == 'running'))
    for run, progress in remaining:
        state = status[run['name']]
        if state in ('done', 'failed', 'busy'):
            continue
        model_rates = rates.get(run['column'], everyone)
        rate = progress[1] if progress and state == 'running' else (
            sum(model_rates) / len(model_rates))
        step = progress[0] if progress and state == 'running' else 0
        work += max(0, max_steps - step) / max(rate, 1e-9)
    return work / slots


def check_held(sweep_dir, runs, status, max_steps):
    """Marks 'busy' the waiting runs that a trainer (an earlier sweep's) is working in, and
    'done' or 'waiting' again those it let go of."""
    for run in runs:
        name, path = run['name'], os.path.join(sweep_dir, run['name'])
        if status[name] not in ('waiting', 'busy'):
            continue
        holder = live_trainer(path)
        if holder is not None:
            if status[name] != 'busy':
                say('%s is being trained by process %d (an earlier sweep\'s?): waiting for it '
                    'instead of starting another trainer.' % (name, holder))
            status[name] = 'busy'
        elif finished_step(path, max_steps) is not None:
            status[name] = 'done'
        else:
            status[name] = 'waiting'


def stop_trainers(sweep_dir, runs, session, timeout=120):
    """Sends SIGTERM to the trainers this sweep started on this host (they save a checkpoint
    and stop) and waits for them, so that stopping Ray, which kills what its workers started,
    loses no training."""
    pids = []
    for run in runs:
        path = os.path.join(sweep_dir, run['name'])
        pid = live_trainer(path) if attempt_session(path) == session else None
        if pid is not None and pid > 0:
            try:
                os.kill(pid, signal.SIGTERM)
                pids.append(pid)
            except OSError:
                pass
    if pids:
        say('stopping %d trainer(s) at a checkpoint...' % len(pids))
    deadline = time.time() + timeout
    while pids and time.time() < deadline:
        pids = [p for p in pids if os.path.exists('/proc/%d' % p) and not _zombie(p)]
        time.sleep(0.2)


def _zombie(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except (IOError, OSError, IndexError):
        return False


def say(text):
    sys.stderr.write('rebar_sweep: %s\n' % text)
    sys.stderr.flush()


def report_status(sweep_dir, runs, status, max_steps):
    counts = dict((k, sum(1 for s in status.values() if s == k))
                  for k in ('done', 'running', 'failed', 'waiting', 'queued', 'busy'))
    counts['waiting'] += counts['queued']
    line = ('%(done)d done, %(running)d running, %(failed)d failed, %(waiting)d waiting'
            % counts)
    if counts['busy']:
        line += ', %d held by trainers of an earlier sweep' % counts['busy']
    say('%s (of %d); ETA %s' % (line, len(runs), duration(eta(sweep_dir, runs, status,
                                                              max_steps))))


def start_ray(args):
    """ray.init: local (this machine's CPUs and GPUs, plus --local_npus NPUs) or --address."""
    import ray
    if not hasattr(ray.runtime_context.RuntimeContext, 'get_accelerator_ids'):
        # Older Ray gives a custom resource instance ids only when it is a unit-instance
        # resource; the cluster's nodes need the same setting (docs/experiments.md).
        os.environ.setdefault('RAY_custom_unit_instance_resources', 'neuron_cores,TPU,NPU')
    kw = dict(include_dashboard=False, logging_level='ERROR', log_to_driver=False)
    if args.address:
        ray.init(address=args.address, **kw)
    else:
        resources = {'NPU': args.local_npus} if args.local_npus else None
        ray.init(num_cpus=args.num_cpus, resources=resources, **kw)
    return ray


def run_sweep(args, driver_flags, argv):
    """Runs the sweep; returns the exit code (0: every run finished, 1: some failed)."""
    check_driver_flags(driver_flags)
    defn = definition(args)
    runs = expand(defn)
    sweep_dir = os.path.abspath(args.sweep_dir)
    flags = (presets.PRESETS[args.preset]['driver_flags'] if args.preset else []) + driver_flags
    max_steps = defn['max_steps']
    commands = dict((r['name'], train_command(args.python, r, os.path.join(sweep_dir, r['name']),
                                              max_steps, args.cpus_per_run, flags))
                    for r in runs)
    if args.dry_run:
        for run in runs:
            print(' '.join(commands[run['name']]))
        return 0
    pin_definition(sweep_dir, defn, runs, argv)

    status = {}
    for run in runs:
        path = os.path.join(sweep_dir, run['name'])
        status[run['name']] = 'done' if finished_step(path, max_steps) is not None else 'waiting'
    skipped = sum(1 for s in status.values() if s == 'done')
    if skipped:
        say('%d of %d runs already reached step %d: skipped.' % (skipped, len(runs), max_steps))
    if skipped == len(runs):
        return 0
    check_held(sweep_dir, runs, status, max_steps)

    ray = start_ray(args)
    # SIGTERM stops the sweep as Ctrl-C does (set after Ray, which installs its own handler).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    task = ray.remote(run_task).options(num_cpus=args.cpus_per_run, num_gpus=args.gpus_per_run,
                                        resources=({'NPU': args.npus_per_run}
                                                   if args.npus_per_run else None),
                                        max_retries=0)
    session = '%d-%d' % (os.getpid(), int(time.time()))
    layout = {'stdout': STDOUT, 'stderr': STDERR, 'attempt': ATTEMPT, 'header': HEADER,
              'tail': TAIL_LINES, 'code': HERE}
    pending, failures = {}, []
    last_status = 0.0
    try:
        while True:
            check_held(sweep_dir, runs, status, max_steps)
            for run in runs:   # submit the runs that no trainer holds
                name = run['name']
                if status[name] == 'waiting':
                    pending[task.remote(commands[name], os.path.join(sweep_dir, name),
                                        os.getcwd(), session, args.npus_per_run, layout)] = run
                    status[name] = 'queued'
            for run in pending.values():   # queued until Ray starts the task
                if attempt_session(os.path.join(sweep_dir, run['name'])) == session:
                    status[run['name']] = 'running'
            if not pending and 'busy' not in status.values():
                break
            if pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            else:   # only runs held by other trainers: wait for them to let go
                ready = []
                time.sleep(1.0)
            for ref in ready:
                run = pending.pop(ref)
                result = ray.get(ref)
                path = os.path.join(sweep_dir, run['name'])
                if result['code'] == 0:
                    status[run['name']] = 'done'
                    say('%s finished (%s).' % (run['name'], duration(result['seconds'])))
                elif live_trainer(path) is not None:   # refused: another trainer holds it
                    status[run['name']] = 'busy'
                else:
                    status[run['name']] = 'failed'
                    failures.append((run, result))
                    say('%s FAILED (exit code %d); the end of %s:\n    %s'
                        % (run['name'], result['code'], os.path.join(path, STDERR),
                           '\n    '.join(result['tail'])))
            if ready or time.time() - last_status >= args.status_secs:
                report_status(sweep_dir, runs, status, max_steps)
                last_status = time.time()
    except KeyboardInterrupt:
        stop_trainers(sweep_dir, [pending[ref] for ref in pending], session)
        raise
    finally:
        ray.shutdown()
    if failures:
        say('%d run(s) failed: %s. Fix the cause and rerun the same command: finished runs are '
            'skipped.' % (len(failures), ', '.join(r['name'] for r, _ in failures)))
        return 1
    say('every run reached step %d; report: python rebar_report.py %s' % (max_steps, sweep_dir))
    return 0


# -- command line ---------------------------------------------------------------------------------
# rebar_train flags the sweep sets for each run (train_command): given again for the driver, they
# would override the run's own (every run trained with one seed, in a directory named for
# another), so they are refused.
SET_PER_RUN = ('hparams', 'working_dir', 'seed', 'max_steps', 'steps', 'threads')


def check_driver_flags(flags):
    """Raises SweepError, before anything is written or started, when a flag meant for
    rebar_train.py is one it does not take (a misspelled sweep flag lands here too), naming it
    and the nearest flag of either program, or one the sweep sets for each run."""
    import rebar_train   # its flag table only: no TensorFlow
    try:
        rebar_train.refuse_unknown_flags(flags, program='rebar_sweep.py',
                                         suggest=[a.dest for a in parser()._actions])
    except rebar_train.UsageError as e:
        raise SweepError('%s (flags this script does not take go to every rebar_train.py)' % e)
    clashing = sorted(set(f.lstrip('-').split('=', 1)[0] for f in flags if f.startswith('-'))
                      & set(SET_PER_RUN))
    if clashing:
        raise SweepError('--%s: the sweep sets these for each run (give the sweep\'s --hparams, '
                         '--grid, --seeds or --max_steps instead). Nothing was started.'
                         % ', --'.join(clashing))


def parser():
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], allow_abbrev=False,
        epilog='Presets: ' + '; '.join('%s: %s' % (k, v['description'])
                                       for k, v in sorted(presets.PRESETS.items())))
    p.add_argument('--grid', help='"name=v1,v2;name=v1,v2": the product of value lists')
    p.add_argument('--preset', help='a named sweep: %s' % ', '.join(sorted(presets.PRESETS)))
    p.add_argument('--hparams', default='', help='common hparams, under the grid\'s values')
    p.add_argument('--seeds', help='"1-5" or "1,2" (default: the preset\'s, else 1)')
    p.add_argument('--max_steps', type=int, help='training steps of every run')
    p.add_argument('--sweep_dir', required=True, help='where the run directories go')
    p.add_argument('--python', default=sys.executable,
                   help='interpreter for rebar_train.py (default: this one)')
    p.add_argument('--cpus_per_run', type=float, default=1, help='Ray CPUs (and trainer threads)')
    p.add_argument('--gpus_per_run', type=float, default=0, help='Ray GPUs of a run')
    p.add_argument('--npus_per_run', type=float, default=0, help='Ray "NPU" resources of a run')
    p.add_argument('--address', help='join this Ray cluster (e.g. auto) instead of a local Ray')
    p.add_argument('--num_cpus', type=int, help='local Ray: CPUs to use (default: all)')
    p.add_argument('--local_npus', type=int, default=0, help='local Ray: NPUs of this machine')
    p.add_argument('--status_secs', type=float, default=30, help='seconds between status lines')
    p.add_argument('--dry_run', action='store_true', help='print the commands and stop')
    return p


def parse_args(argv):
    """(args, driver flags): everything after `--` and every unknown flag goes to the driver."""
    if '--' in argv:
        at = argv.index('--')
        argv, passed = argv[:at], argv[at + 1:]
    else:
        passed = []
    args, unknown = parser().parse_known_args(argv)
    return args, unknown + passed


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, driver_flags = parse_args(argv)
    try:
        return run_sweep(args, driver_flags, argv)
    except (SweepError, rundir.RunDirError) as e:
        say('error: %s' % e)
        return 2
    except KeyboardInterrupt:   # Ray has stopped the tasks; their trainers saved checkpoints
        say('interrupted: the runs stopped at their last checkpoint; rerun the same command to '
            'resume.')
        return 130


if __name__ == '__main__':
    sys.exit(main())
