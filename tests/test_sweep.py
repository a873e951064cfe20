"""rebar_sweep.py: the grid and its run directories, real sweeps on Ray, resumption after a kill,
failed runs, and the resources a run gets.

The real sweeps train tiny runs (n_hidden=16, tens of steps) on the bundled sample; each sweep
is a subprocess with a local Ray, as a user runs it.
"""
from __future__ import absolute_import, division, print_function

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import config
import presets
import rebar_report
import rebar_sweep
import records
import rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ['--eval_freq=0', '--checkpoint_steps=20', '--checkpoint_secs=0', '--fast_start',
        '--progress_secs=0', '--log_every=20']
TINY = '--hparams=n_hidden=16'


def sweep_command(*args):
    return [sys.executable, os.path.join(ROOT, 'rebar_sweep.py'), '--status_secs=1'] + list(args)


def run_sweep(*args, **kw):
    return subprocess.run(sweep_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, cwd=ROOT, timeout=240, **kw)


def headers(run_path):
    """How many times a sweep started a trainer in the run directory."""
    with open(os.path.join(run_path, rebar_sweep.STDERR)) as f:
        return sum(1 for line in f if line.startswith(rebar_sweep.HEADER))


def file_times(directory):
    return dict((os.path.join(d, n), os.stat(os.path.join(d, n)).st_mtime)
                for d, _, names in os.walk(directory) for n in names)


# -- the definition, without Ray ------------------------------------------------------------------
def test_grid_seeds_and_hparams_parse_and_bad_ones_are_named():
    axes = rebar_sweep.parse_grid('model=SBN, SBNNVIL ;n_layer=1,2')
    assert [a['name'] for a in axes] == ['model', 'n_layer']
    assert axes[1]['values'] == [['1', 'n_layer=1'], ['2', 'n_layer=2']] and axes[1]['named']
    assert rebar_sweep.parse_seeds('1-3,7') == [1, 2, 3, 7]
    assert rebar_sweep.parse_seeds('2,1,2') == [1, 2]
    assert (rebar_sweep.merge_hparams('n_layer=1,learning_rate=0.001', 'n_layer=2')
            == 'learning_rate=0.001,n_layer=2')
    for bad, message in (('model', 'Cannot parse'), ('model=SBN;model=SBNNVIL', 'twice'),
                         ('model=', 'at least one value')):
        with pytest.raises(rebar_sweep.SweepError, match=message):
            rebar_sweep.parse_grid(bad)
    with pytest.raises(rebar_sweep.SweepError, match='--seeds'):
        rebar_sweep.parse_seeds('a-b')


def test_runs_are_the_product_of_the_grid_and_seeds_with_readable_names():
    args, flags = rebar_sweep.parse_args(
        ['--grid', 'model=SBN,SBNNVIL;n_layer=1,2', '--hparams', 'n_layer=3,n_hidden=16',
         '--seeds', '1-2', '--max_steps', '9', '--sweep_dir', 'x', '--eval_freq=0', '--',
         '--fast_start'])
    assert flags == ['--eval_freq=0', '--fast_start']
    runs = rebar_sweep.expand(rebar_sweep.definition(args))
    assert len(runs) == 8
    first = runs[0]
    assert first['name'] == 'model_SBN.n_layer_1.seed_1'
    # the grid's value wins over the common hparams, key by key
    assert first['hparams'] == 'n_hidden=16,model=SBN,n_layer=1'
    assert (first['row'], first['column'], first['seed']) == ('n_layer=1', 'SBN', 1)
    assert sorted(set((r['row'], r['column']) for r in runs)) == [
        ('n_layer=1', 'SBN'), ('n_layer=1', 'SBNNVIL'), ('n_layer=2', 'SBN'),
        ('n_layer=2', 'SBNNVIL')]


def test_sweep_json_pins_the_definition_but_not_how_rows_are_shown(tmp_path):
    args, _ = rebar_sweep.parse_args(['--grid', 'model=SBN;n_layer=1,2', '--max_steps', '9',
                                      '--seeds', '1-2', '--sweep_dir', str(tmp_path)])
    defn = rebar_sweep.definition(args)
    runs = rebar_sweep.expand(defn)
    rebar_sweep.pin_definition(str(tmp_path), defn, runs, [])
    shown_otherwise = json.loads(json.dumps(defn))
    for a in shown_otherwise['axes']:
        a['named'] = False
    rebar_sweep.pin_definition(str(tmp_path), shown_otherwise, runs, [])   # the same sweep
    other = dict(defn, seeds=[1, 2, 3])
    with pytest.raises(rebar_sweep.SweepError, match=r'seeds: \[1, 2\] there, \[1, 2, 3\] now'):
        rebar_sweep.pin_definition(str(tmp_path), other, runs, [])


@pytest.mark.parametrize('name', sorted(presets.PRESETS))
def test_every_presets_runs_parse_as_hparams(name):
    """Needs the models and the `dataset` hparam that disarm2020 names (SBNARM, ...); a column
    is labelled by its model (and, where one model has several columns, what differs)."""
    args, _ = rebar_sweep.parse_args(['--preset', name, '--sweep_dir', 'x'])
    runs = rebar_sweep.expand(rebar_sweep.definition(args))
    assert runs
    for run in runs:
        hp = config.parse_hparams(run['hparams'])
        assert run['column'].split(' ')[0] == hp.model
    published = presets.PRESETS[name]['published']
    if published:   # every published cell names a configuration and estimator of the grid
        cells = set((r['row'], r['column']) for r in runs)
        for row, values in published['values'].items():
            for column in values:
                assert (row, column) in cells


def test_table1_preset_is_the_released_codes_documented_run():
    args, _ = rebar_sweep.parse_args(['--preset', 'rebar2017-table1', '--sweep_dir', 'x'])
    defn = rebar_sweep.definition(args)
    runs = rebar_sweep.expand(defn)
    assert defn['max_steps'] == 2000000
    assert len(runs) == 2 * 3 * 5
    for run in runs:
        hp = dict(rebar_sweep.parse_hparams(run['hparams']))
        assert (hp['batch_size'], hp['learning_rate'], hp['reference_quadratic_cv']) == (
            '24', '0.0003', 'true')
    published = presets.PRESETS['rebar2017-table1']['published']['values']
    assert published['MNIST, linear 2 layers']['SBNDynamicRebar'] == -98.8
    assert published['Omniglot, linear 1 layer']['SBNNVIL'] == -117.44


def test_rodeo2022_compares_estimators_at_equal_evaluations_and_its_runs_train(tmp_path):
    """The preset's grid: every row's estimators cost the row's evaluations of f per image
    (DisARM only at 2, RELAX only at 3). Smoke: the runs of one row per budget (MNIST, linear,
    seed 1) train 2 steps on the bundled sample with tiny networks (n_hidden=8, batch 10), and
    the report lists each estimator with its evaluations of f per image."""
    import rebar
    import rebar_train
    import datasets
    args, _ = rebar_sweep.parse_args(['--preset', 'rodeo2022', '--sweep_dir', 'x'])
    defn = rebar_sweep.definition(args)
    runs = rebar_sweep.expand(defn)
    assert defn['max_steps'] == 1000000 and defn['seeds'] == [1, 2, 3, 4, 5]
    assert len(runs) == 3 * 2 * (5 + 5) * 5
    columns = {}
    for run in runs:
        hp = config.parse_hparams(run['hparams'])
        assert (hp.batch_size, hp.learn_prior, hp.nonlinearity) == (100, False, 'leaky_relu')
        cost = rebar.ESTIMATORS[getattr(rebar, hp.model).estimator].passes(hp) * hp.n_samples
        assert run['row'].endswith('evaluations=%d' % cost), (run['row'], hp.model, cost)
        columns.setdefault(cost, set()).add(run['column'])
    assert columns == {2: {'SBNReinforceLOO', 'SBNDisARM', 'SBNARMS', 'SBNDoubleCV', 'SBNRodeo'},
                       3: {'SBNReinforceLOO', 'SBNARMS', 'SBNRelax', 'SBNDoubleCV', 'SBNRodeo'}}

    smoke = [r for r in runs if r['row'].startswith('mnist, linear') and r['seed'] == 1]
    sweep_dir = str(tmp_path)
    with open(os.path.join(sweep_dir, rebar_sweep.SWEEP_FILE), 'w') as f:
        json.dump({'definition': defn, 'runs': smoke}, f)
    data = datasets.load_data('mnist', use_sample=True)
    for run in smoke:
        hp = config.parse_hparams(run['hparams'] + ',n_hidden=8,batch_size=10')
        options = rebar_train.make_options(
            hp, working_dir=os.path.join(sweep_dir, run['name']), max_steps=2, eval_freq=0,
            device='auto', fast_start=True, seed=1, checkpoint_secs=0, progress_secs=0)
        trainer = rebar_train.Trainer(options, data=data, out=io.StringIO(), err=io.StringIO())
        try:
            assert trainer.train() == 2
        finally:
            trainer.close()
    assert rebar_report.main([sweep_dir]) == 0
    with open(os.path.join(sweep_dir, 'report', 'table.md')) as f:
        table = f.read()
    part = table.split('### evaluations of f per image and training step')[1]
    header = [c.strip() for c in part.split('\n')[2].strip('|').split('|')][1:]
    assert sorted(header) == sorted(set(r['column'] for r in smoke))
    for budget in (2, 3):
        row = [l for l in part.split('\n') if l.startswith('| mnist, linear, evaluations=%d '
                                                            % budget)][0]
        cells = [c.strip() for c in row.strip('|').split('|')][1:]
        assert set(cells) == {'%d' % budget, 'n/a'}   # n/a: DisARM at 3, RELAX at 2
        assert cells.count('%d' % budget) == 5

PROGRESS_LINE = ('rebar_train: progress: step %d of %d, epoch %d (batch %d of %d), %.2f steps/s, '
                 '%.1f images/s, ETA %s\n')


def test_eta_comes_from_the_runs_progress_lines(tmp_path):
    """A running run at step 100 of 1000 at 10 steps/s (90 s left), a waiting run of the same
    estimator (1000 steps at its 10 steps/s), another estimator's finished run at 50 steps/s:
    190 s of work for the one running slot."""
    sweep_dir = str(tmp_path)
    runs = [{'name': 'a', 'column': 'SBN'}, {'name': 'b', 'column': 'SBN'},
            {'name': 'c', 'column': 'SBNNVIL'}]
    for name, lines in (('a', [(50, 4.0), (100, 10.0)]), ('c', [(1000, 50.0)])):
        os.makedirs(os.path.join(sweep_dir, name))
        with open(os.path.join(sweep_dir, name, rebar_sweep.STDERR), 'w') as f:
            f.write('rebar_train: checkpoint model.ckpt-20 saved\n')
            for step, rate in lines:
                f.write(PROGRESS_LINE % (step, 1000, 0, step, 334, rate, rate * 24, '0:01:30'))
    assert rebar_sweep.last_progress(os.path.join(sweep_dir, 'a')) == (100, 10.0)
    status = {'a': 'running', 'b': 'waiting', 'c': 'done'}
    assert rebar_sweep.eta(sweep_dir, runs, status, 1000) == pytest.approx(190.0)
    assert rebar_sweep.duration(190.0) == '0:03:10'


# -- a real sweep ---------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def sweep(tmp_path_factory):
    """2 estimators x 2 seeds x 60 steps."""
    sweep_dir = str(tmp_path_factory.mktemp('sweep') / 's')
    args = ['--grid', 'model=SBN,SBNDynamicRebar', '--seeds', '1-2', '--max_steps', '60',
            TINY, '--sweep_dir', sweep_dir, '--cpus_per_run', '1', '--'] + FAST
    first = run_sweep(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    return sweep_dir, args, first


NAMES = ['model_SBN.seed_1', 'model_SBN.seed_2', 'model_SBNDynamicRebar.seed_1',
         'model_SBNDynamicRebar.seed_2']


def test_every_run_trains_in_its_own_directory_to_max_steps(sweep):
    sweep_dir, _, first = sweep
    assert sorted(n for n in os.listdir(sweep_dir) if n != rebar_sweep.SWEEP_FILE) == NAMES
    for name in NAMES:
        path = os.path.join(sweep_dir, name)
        assert rundir.RunDir(path).read_state()['step'] == 60
        assert records.last(records.read(path), records.TRAIN)['step'] == 60
        assert headers(path) == 1
        assert '%s finished' % name in first.stderr
    assert '4 done, 0 running, 0 failed, 0 waiting (of 4)' in first.stderr
    with open(os.path.join(sweep_dir, rebar_sweep.SWEEP_FILE)) as f:
        stored = json.load(f)
    assert stored['definition']['seeds'] == [1, 2]
    assert [r['name'] for r in stored['runs']] == NAMES
    # the seed reaches the trainer: same estimator, other seed, other numbers
    elbo = dict((n, records.train_series(rebar_report.read_run(os.path.join(sweep_dir, n)))[1])
                for n in NAMES)
    assert elbo['model_SBN.seed_1'] != elbo['model_SBN.seed_2']


def test_every_run_directory_has_its_seed_in_its_identity(sweep):
    """Needs the driver that keeps --seed in hparams.json."""
    sweep_dir = sweep[0]
    for name in NAMES:
        hparams = rundir.RunDir(os.path.join(sweep_dir, name)).read_hparams()
        assert hparams['seed'] == int(name[-1])
        assert hparams['model'] == name.split('.')[0][len('model_'):]


def test_a_rerun_starts_no_trainer(sweep):
    sweep_dir, args, _ = sweep
    before = file_times(sweep_dir)
    again = run_sweep(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert '4 of 4 runs already reached step 60: skipped' in again.stderr
    assert file_times(sweep_dir) == before
    assert all(headers(os.path.join(sweep_dir, n)) == 1 for n in NAMES)


def test_another_definition_in_the_same_directory_is_refused(sweep):
    sweep_dir, args, _ = sweep
    changed = [a if a != '60' else '80' for a in args]
    refused = run_sweep(*changed)
    assert refused.returncode == 2
    assert 'holds another sweep' in refused.stderr and 'max_steps: 60 there, 80 now' in \
        refused.stderr


def test_the_report_of_the_sweep_holds_each_runs_numbers(sweep):
    sweep_dir = sweep[0]
    assert rebar_report.main([sweep_dir]) == 0
    with open(os.path.join(sweep_dir, 'report', 'elbo.json')) as f:
        panels = json.load(f)['panels']
    lines = dict((line['estimator'], line) for line in panels[0]['lines'])
    for name in NAMES:
        model, seed = name.split('.')[0][len('model_'):], name[-1]
        steps, values = records.train_series(rebar_report.read_run(os.path.join(sweep_dir,
                                                                                name)))
        assert lines[model]['steps'] == steps
        assert lines[model]['seeds'][seed] == values


# -- failures, kills and resources ----------------------------------------------------------------
def test_a_bad_value_fails_its_run_only_and_the_sweep_exits_non_zero(tmp_path):
    sweep_dir = str(tmp_path / 's')
    result = run_sweep('--grid', 'model=SBN,SBNBogus', '--max_steps', '20', TINY,
                       '--sweep_dir', sweep_dir, '--', *FAST)
    assert result.returncode == 1
    assert 'model_SBNBogus.seed_1 FAILED (exit code 2)' in result.stderr
    assert 'SBNBogus is unknown' in result.stderr   # the end of its stderr
    assert '1 run(s) failed: model_SBNBogus.seed_1' in result.stderr
    assert rundir.RunDir(os.path.join(sweep_dir, 'model_SBN.seed_1')).read_state()['step'] == 20


def descendants(pid):
    """The process ids below `pid` (from /proc)."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/stat' % entry) as f:
                    parent = int(f.read().rsplit(')', 1)[1].split()[1])
            except (IOError, OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid):
    try:
        with open('/proc/%s/cmdline' % pid, 'rb') as f:
            return f.read().decode('utf-8', 'replace').split('\0')
    except (IOError, OSError):
        return []


def is_trainer(pid):
    return any(a.endswith('rebar_train.py') for a in command_line(pid))


def trainers_by_dir(sweep_dir):
    """{run directory: number of live rebar_train.py processes working in it}."""
    counts = {}
    for entry in os.listdir('/proc'):
        argv = command_line(entry)
        if any(a.endswith('rebar_train.py') for a in argv):
            for a in argv:
                if a.startswith('--working_dir=' + sweep_dir):
                    counts[a] = counts.get(a, 0) + 1
    return counts


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc')
def test_a_killed_sweep_resumes_without_redoing_or_doubling_a_run(tmp_path):
    sweep_dir = str(tmp_path / 's')
    args = ['--grid', 'model=SBN,SBNDynamicRebar', '--max_steps', '600', TINY,
            '--sweep_dir', sweep_dir, '--num_cpus', '1', '--'] + FAST
    fast, slow = [os.path.join(sweep_dir, n) for n in ('model_SBN.seed_1',
                                                       'model_SBNDynamicRebar.seed_1')]
    left = []
    process = subprocess.Popen(sweep_command(*args), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 150
        while time.time() < deadline:   # one run finished, the other between checkpoints
            states = [rundir.RunDir(p).read_state() if os.path.isdir(p) else None
                      for p in (fast, slow)]
            steps = sorted(s['step'] if s else 0 for s in states)
            if steps[1] == 600 and 20 <= steps[0] < 600:
                break
            time.sleep(0.05)
        assert steps[1] == 600 and 20 <= steps[0] < 600, steps
        done, unfinished = (fast, slow) if states[0] and states[0]['step'] == 600 else (slow,
                                                                                       fast)
        # The sweep dies whole, as when its job is killed: the driver and Ray's processes, but
        # not the trainers, which get SIGTERM as their worker dies. (Were Ray's processes left
        # alive, the trainer could go on to the end, and the rerun would wait for it instead.)
        left = descendants(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        for pid in left:
            if not is_trainer(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        done_times = file_times(done)
        rerun = run_sweep(*args)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert '1 of 2 runs already reached step 600: skipped' in rerun.stderr
        assert file_times(done) == done_times and headers(done) == 1
        # One trainer start per sweep in the unfinished run (a start that the run's lock refused
        # would be a third header). Live processes are not counted: the killed sweep's trainer
        # may still be exiting, its lock released, when the rerun's trainer starts.
        assert headers(unfinished) == 2
        train = records.of_kind(records.read(unfinished), records.TRAIN)
        # 8,000 images at batch 24: 334 steps an epoch; one full epoch, then 266 steps
        assert [(r['step'], r['partial'], r['steps']) for r in train] == [
            (334, False, 334), (600, True, 266)]
        assert rundir.RunDir(unfinished).read_state()['step'] == 600
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in left:   # what the killed sweep left (Ray's agents); trainers stopped by now
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


FAKE_TRAINER = textwrap.dedent('''\
    #!{python}
    # Stands in for the interpreter: records what a run gets, and holds its resources until
    # {together} runs of the sweep hold theirs at once (or 60 s have passed).
    import json, os, sys, time
    path = [a.split('=', 1)[1] for a in sys.argv if a.startswith('--working_dir=')][0]
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, 'seen.json'), 'w') as f:
        json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, f)
    sweep_dir, deadline = os.path.dirname(path), time.time() + 60
    while time.time() < deadline and sum(
            os.path.exists(os.path.join(sweep_dir, d, 'seen.json'))
            for d in os.listdir(sweep_dir)) < {together}:
        time.sleep(0.1)
''')


def fake_python(tmp_path, together):
    fake = tmp_path / 'fake_python'
    fake.write_text(FAKE_TRAINER.format(python=sys.executable, together=together))
    fake.chmod(0o755)
    return fake


def test_each_run_gets_its_own_npu_and_the_flags(tmp_path):
    fake = fake_python(tmp_path, together=2)
    sweep_dir = str(tmp_path / 's')
    result = run_sweep('--grid', 'model=SBN', '--seeds', '1,2', '--max_steps', '5',
                       '--sweep_dir', sweep_dir, '--python', str(fake), '--num_cpus', '2',
                       '--local_npus', '2', '--npus_per_run', '1', '--eval_freq=3')
    assert result.returncode == 0, result.stderr[-3000:]
    seen = {}
    for seed in (1, 2):
        path = os.path.join(sweep_dir, 'model_SBN.seed_%d' % seed)
        with open(os.path.join(path, 'seen.json')) as f:
            seen[seed] = json.load(f)
        argv = seen[seed]['argv']
        assert argv[:2] == ['-u', os.path.join(ROOT, 'rebar_train.py')]
        for flag in ('--hparams=model=SBN', '--working_dir=' + path, '--seed=%d' % seed,
                     '--max_steps=5', '--eval_freq=3'):
            assert flag in argv
        assert '--threads=1' in argv
        assert 'ASCEND_RT_VISIBLE_DEVICES' not in seen[seed]['env']
    assert sorted(s['env']['ASCEND_DEVICE_ID'] for s in seen.values()) == ['0', '1']


HOLD_LOCK = textwrap.dedent('''\
    import sys, time
    sys.path.insert(0, {root!r})
    import rundir
    lock = rundir.RunDir({path!r}).lock()
    print('locked', flush=True)
    time.sleep(4)
''')


def test_a_run_another_trainer_holds_is_waited_for_not_started_twice(tmp_path):
    fake = fake_python(tmp_path, together=1)
    sweep_dir = str(tmp_path / 's')
    held = os.path.join(sweep_dir, 'model_SBN.seed_1')
    os.makedirs(held)
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK.format(root=ROOT, path=held)],
                              stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        result = run_sweep('--grid', 'model=SBN', '--max_steps', '5', '--sweep_dir', sweep_dir,
                           '--python', str(fake))
        released = time.time()
        assert holder.wait() == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert result.returncode == 0, result.stderr[-3000:]
    assert ('model_SBN.seed_1 is being trained by process %d' % holder.pid) in result.stderr
    # started once, after the holder let go of the lock
    assert headers(held) == 1
    assert os.stat(os.path.join(held, 'seen.json')).st_mtime <= released
    with open(os.path.join(held, rebar_sweep.STDERR)) as f:
        assert 'is in use' not in f.read()


def test_sigterm_stops_the_sweep_with_its_trainers_at_a_checkpoint(tmp_path):
    sweep_dir = str(tmp_path / 's')
    run_path = os.path.join(sweep_dir, 'model_SBN.seed_1')
    flags = [f for f in FAST if not f.startswith('--checkpoint_steps')]   # no step checkpoints
    process = subprocess.Popen(sweep_command('--grid', 'model=SBN', '--max_steps', '100000',
                                             TINY, '--sweep_dir', sweep_dir, '--', *flags),
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               universal_newlines=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and rebar_sweep.last_progress(run_path) is None:
            time.sleep(0.1)   # the trainer is in its training loop
        assert rebar_sweep.last_progress(run_path) is not None
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err[-2000:]
    assert 'interrupted' in err
    with open(os.path.join(run_path, rebar_sweep.STDERR)) as f:
        assert 'stopped by signal %d' % signal.SIGTERM in f.read()
    state = rundir.RunDir(run_path).read_state()
    assert 0 < state['step'] < 100000
    assert trainers_by_dir(sweep_dir) == {}


@pytest.mark.parametrize('argv, words', [
    (['--max_step', '5'], ['unknown flag --max_step (did you mean --max_steps?)']),
    (['--max_steps', '5', '--hparam=n_layer=2'], ['unknown flag --hparam (did you mean '
                                                 '--hparams?)']),
    (['--max_steps', '5', '--', '--eval_freqq=0'], ['unknown flag --eval_freqq (did you mean '
                                                   '--eval_freq?)']),
    (['--max_steps', '5', '--seed=3'], ['--seed', 'the sweep sets these for each run']),
    (['--max_steps', '5', '--', '--working_dir=elsewhere'], ['--working_dir']),
])
def test_a_misspelled_or_per_run_flag_stops_the_sweep_before_anything_starts(tmp_path, capsys,
                                                                              argv, words):
    """Flags the sweep does not take go to every trainer: a typo there used to start every run
    (to fail in each, or, for a prefix of a sweep flag, to be read as that flag), and a per-run
    flag such as --seed overrode each run's own seed under its seed_S name."""
    sweep_dir = str(tmp_path / 'sweep')
    code = rebar_sweep.main(['--grid', 'model=SBN', '--sweep_dir', sweep_dir, '--dry_run'] + argv)
    assert code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err
    assert not os.path.exists(sweep_dir)
