"""rebar_train.py end to end: the reference's lines and what the run directory holds, resuming
after SIGKILL (during training and during a checkpoint write), refusals, a non-finite stop, the
flag aliases, the ModelArts boot file and the ModelZoo scripts.

The three in-process runs share one module fixture (graphs are expensive); the subprocess tests
use a small data directory (10 steps an epoch) so that they cover many epochs quickly.
"""
from __future__ import absolute_import, division, print_function

import ast
import collections
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import scipy.io

import config
import datasets
import rebar
import rebar_train
import rundir
import tensorflow.compat.v1 as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_COMMAND_HPARAMS = 'model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn'
TRACKED = tuple(sorted(rebar.SBNTrackGradVariances.tracked_names(   # as printed (n_samples = 1)
    config.parse_hparams('model=SBNTrackGradVariances'))))


# -- the reference's output format -----------------------------------------------------------------
Entry = collections.namedtuple('Entry', 'kind step values bracket variance')
_HEAD = re.compile(r'^(Step|Valid|Test) (\d+): (\[.*)$')


def parse_reference_output(text):
    """Parses stdout as the reference prints it; any other line fails the parse.

    Returns (hparams dict, [Entry]); a Step entry's `variance` is the float of the next line, or
    for SBNTrackGradVariances the list of ('NAME', float) tuples on the next lines.
    """
    lines = text.split('\n')
    assert lines[-1] == '', 'output must end with a newline'
    hparams = ast.literal_eval(lines[0])
    entries, i = [], 1
    while i < len(lines) - 1:
        line = lines[i]
        if line == '':
            i += 1
            continue
        match = _HEAD.match(line)
        assert match, 'not a reference line: %r' % line
        kind, step, bracket = match.group(1), int(match.group(2)), match.group(3)
        while not bracket.endswith(']'):   # numpy wraps long vectors over several lines
            i += 1
            assert lines[i].startswith(' '), 'not a continuation: %r' % lines[i]
            bracket += '\n' + lines[i]
        values = np.array([float(v) for v in bracket[1:-1].split()])
        variance = None
        if kind == 'Step':
            i += 1
            if lines[i].startswith('('):
                variance = []
                while lines[i].startswith('('):
                    name, value = ast.literal_eval(lines[i])
                    variance.append((name, float(value)))
                    i += 1
                i -= 1
            else:
                variance = float(lines[i])
        entries.append(Entry(kind, step, values, bracket, variance))
        i += 1
    return hparams, entries


def steps_of(entries, kind):
    return [e.step for e in entries if e.kind == kind]


def read_events(run_dir):
    """{tag: [(step, value)]} over the run's event files, in order, as TensorBoard shows them:
    a SessionLog.START (a restart) purges the events seen before it at its step or later."""
    seen = []
    for name in sorted(os.listdir(run_dir)):   # event files are named by creation time
        if name.startswith('events.out.tfevents'):
            for event in tf.train.summary_iterator(os.path.join(run_dir, name)):
                if event.session_log.status == tf.SessionLog.START:
                    seen = [s for s in seen if s[0] < event.step]
                seen += [(event.step, v.tag, v.simple_value) for v in event.summary.value]
    scalars = collections.defaultdict(list)
    for step, tag, value in seen:
        scalars[tag].append((step, value))
    return scalars


def read_records(run_dir):
    with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f]


def dir_snapshot(path):
    """Each file's digest and modification time, but the lock (which a trainer takes before it
    loads data) and notes.log (appended to, checked to keep what it had)."""
    snapshot = {}
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name), 'rb') as f:
            content = f.read()
        if name == 'notes.log':
            snapshot[name] = content
        elif name != 'lock':
            snapshot[name] = (hashlib.sha256(content).hexdigest(),
                              os.stat(os.path.join(path, name)).st_mtime_ns)
    return snapshot


def assert_untouched(path, before):
    after = dir_snapshot(path)
    assert after.pop('notes.log').startswith(before['notes.log'])
    assert after == dict((k, v) for k, v in before.items() if k != 'notes.log')


# -- the three end-to-end runs on the bundled sample -----------------------------------------------
Run = collections.namedtuple('Run', 'hparams run_dir out err data variables')


@pytest.fixture(scope='module')
def sample():
    return datasets.load_data('mnist', use_sample=True)


@pytest.fixture(scope='module')
def runs(sample, tmp_path_factory):
    """340 steps on the bundled sample (8,000 training images: 334 steps an epoch, so one
    epoch line and one partial), evaluated every epoch and at the end. SBNTrackGradVariances is
    evaluated on 50 + 50 images: its evaluation runs every estimator, 100 samples an image."""
    specs = [
        ('SBNDynamicRebar', REFERENCE_COMMAND_HPARAMS + ',n_hidden=16', sample),
        ('SBNNVIL', 'model=SBNNVIL,n_hidden=16', sample),
        ('SBNTrackGradVariances', 'model=SBNTrackGradVariances,n_hidden=16',
         (sample[0], sample[1][:50], sample[2][:50])),
    ]
    results = {}
    for name, spec, data in specs:
        hp = config.parse_hparams(spec)
        run_dir = str(tmp_path_factory.mktemp(name) / 'run')
        out, err = io.StringIO(), io.StringIO()
        options = rebar_train.make_options(hp, working_dir=run_dir, max_steps=340, eval_freq=1,
                                           device='auto', fast_start=True, seed=1,
                                           checkpoint_secs=0, progress_secs=0)
        trainer = rebar_train.Trainer(options, data=data, out=out, err=err)
        try:
            assert trainer.train() == 340
            with trainer.session.graph.as_default():
                variables = tf.global_variables()
            values = dict(zip([v.op.name for v in variables],
                              trainer.session.sess.run(variables)))
        finally:
            trainer.close()
        results[name] = Run(hp, run_dir, out.getvalue(), err.getvalue(), data, values)
    return results


@pytest.mark.parametrize('name', ['SBNDynamicRebar', 'SBNNVIL', 'SBNTrackGradVariances'])
def test_output_parses_as_the_reference_and_matches_the_run_directory(runs, name):
    run = runs[name]
    hparams, entries = parse_reference_output(run.out)
    assert hparams == dict(run.hparams.values())
    assert 'device: auto: CPU' in run.err or 'device: auto: GPU' in run.err
    # one full epoch (334 steps), the partial one at --max_steps; evaluation after each
    assert steps_of(entries, 'Step') == [334, 340]
    assert steps_of(entries, 'Valid') == steps_of(entries, 'Test') == [334, 340]
    # SBNTrackGradVariances, the released code's 10: ELBO, temperature, d variance / d log t,
    # its square, a deviation for each of its five estimators, log mean(mean gradient^2);
    # every tracked estimator (more than five) has its line below and its record entry
    n_report = {'SBNNVIL': 1, 'SBNTrackGradVariances': 10}.get(name)
    for e in entries:
        expected = n_report if e.kind == 'Step' else n_report and n_report + 1
        assert expected is None or len(e.values) == expected, e
        assert np.all(np.isfinite(e.values))
    for e in (e for e in entries if e.kind == 'Step'):
        if name == 'SBNTrackGradVariances':
            assert [n for n, _ in e.variance] == list(TRACKED)
        else:
            assert isinstance(e.variance, float)
    if name == 'SBNDynamicRebar':   # [ELBO, temperature, each eta]
        steps = [e for e in entries if e.kind == 'Step']
        assert all(0 < e.values[1] < 10 and len(e.values) >= 3 for e in steps)

    with open(os.path.join(run.run_dir, 'hparams.json')) as f:   # the run's identity
        assert json.load(f) == dict(run.hparams.values(), seed=1)

    records = read_records(run.run_dir)
    train = [r for r in records if r['kind'] == 'train']
    evals = [r for r in records if r['kind'] == 'eval']
    assert [(r['step'], r['partial']) for r in train] == [(334, False), (340, True)]
    assert [r['steps'] for r in train] == [334, 6]
    assert [r['step'] for r in evals] == [334, 340]
    printed = [e for e in entries if e.kind == 'Step']
    for r, e in zip(train, printed):
        # the printed vector is numpy's str of the float32 mean that the record holds
        assert str(np.array(r['report'], np.float32)) == e.bracket
        if name == 'SBNTrackGradVariances':
            assert sorted(r['log_grad_variance'].items()) == e.variance
        else:
            assert r['log_grad_variance'] == e.variance
    for r, valid, test in zip(evals, [e for e in entries if e.kind == 'Valid'],
                              [e for e in entries if e.kind == 'Test']):
        np.testing.assert_allclose(r['valid'], valid.values, rtol=1e-6)
        np.testing.assert_allclose(r['test'], test.values, rtol=1e-6)
        assert r['valid'][0] < 0 and r['test'][0] < 0   # log-likelihood bounds
    with open(os.path.join(run.run_dir, 'log.txt')) as f:
        assert f.read() == run.out.split('\n', 1)[1]

    events = read_events(run.run_dir)
    assert [s for s, _ in events['Train ELBO']] == [334, 340]
    for (s, v), r in zip(events['Train ELBO'], train):
        assert v == np.float32(r['report'][0])
    for (s, v), r in zip(events['Temperature'], train):
        assert v == np.float32(r['temperature'])
    if name == 'SBNTrackGradVariances':
        for estimator in TRACKED:
            values = [v for _, v in events['log grad variance/' + estimator]]
            assert values == [np.float32(r['log_grad_variance'][estimator]) for r in train]
    else:
        assert [v for _, v in events['log grad variance']] == \
            [np.float32(r['log_grad_variance']) for r in train]
    assert [v for _, v in events['Valid bound']] == [np.float32(r['valid'][0]) for r in evals]
    assert [v for _, v in events['Test bound']] == [np.float32(r['test'][0]) for r in evals]


def test_the_checkpoint_restores_every_variable(runs):
    """Weights, both Adams' slots, gradient EMAs, temperature, etas, baselines, global step:
    a resumed trainer holds the values the run ended with, and restores them again over fresh
    initial values."""
    run = runs['SBNDynamicRebar']
    names = set(run.variables)
    assert {'log_temperature', 'global_step'} <= names
    for part in ('model_adam', 'control_adam', 'gradient_moments', 'eta', 'baseline'):
        assert any(part in n for n in names), part
    options = rebar_train.make_options(run.hparams, working_dir=run.run_dir, max_steps=340,
                                       eval_freq=1, fast_start=True, seed=1)
    trainer = rebar_train.Trainer(options, data=run.data, out=io.StringIO(), err=io.StringIO())
    try:
        session = trainer.session
        with session.graph.as_default():
            variables = tf.global_variables()
        assert set(v.op.name for v in variables) == names
        for v, value in zip(variables, session.sess.run(variables)):
            np.testing.assert_array_equal(value, run.variables[v.op.name], err_msg=v.op.name)
        session.initialize()   # fresh initial values, Adam slots back to zero
        scrambled = session.sess.run(variables)
        changed = [v.op.name for v, a in zip(variables, scrambled)
                   if not np.array_equal(a, run.variables[v.op.name])]
        assert len(changed) > len(variables) // 2
        trainer.restore_latest()
        for v, value in zip(variables, session.sess.run(variables)):
            np.testing.assert_array_equal(value, run.variables[v.op.name], err_msg=v.op.name)
        assert trainer.step == 340
    finally:
        trainer.close()


def test_other_hparams_or_data_are_refused_and_nothing_is_touched(runs):
    run = runs['SBNDynamicRebar']
    before = dir_snapshot(run.run_dir)
    options = rebar_train.make_options(run.hparams.replace(learning_rate=0.001),
                                       working_dir=run.run_dir, max_steps=400)
    with pytest.raises(rebar_train.RunDirError) as e:
        rebar_train.Trainer(options, data=run.data, out=io.StringIO(), err=io.StringIO())
    assert 'learning_rate=0.0003 there, 0.001 now' in str(e.value)
    assert 'Nothing was changed' in str(e.value)
    # the command line: exit code 2 and the message
    err = io.StringIO()
    rebar_train.FLAGS(['rebar_train', '--hparams=model=SBNDynamicRebar,n_layer=1',
                       '--working_dir=%s' % run.run_dir])
    try:
        assert rebar_train.cli(err=err) == 2
    finally:
        rebar_train.FLAGS.unparse_flags()
    assert 'other hparams' in err.getvalue() and 'n_layer=2 there, 1 now' in err.getvalue()
    # the same hparams on other data: refused as well
    options = rebar_train.make_options(run.hparams, working_dir=run.run_dir, max_steps=400,
                                       seed=1)
    with pytest.raises(rebar_train.RunDirError) as e:
        rebar_train.Trainer(options, data=tuple(x[:1000] for x in run.data), out=io.StringIO(),
                            err=io.StringIO())
    assert 'was made with 8000 training images in 334 batches an epoch' in str(e.value)
    assert_untouched(run.run_dir, before)


def test_a_part_epoch_written_by_other_code_is_refused_naming_the_fix(runs, tmp_path):
    """Run 340 of SBNNVIL ends 6 steps into its second epoch, and its checkpoint holds those
    steps' reports. Reports of another width (written by code whose report vector differed)
    stop the resume with the fix, rather than failing at the epoch's end, 500 steps later."""
    run_dir = str(tmp_path / 'run')
    shutil.copytree(runs['SBNNVIL'].run_dir, run_dir)
    state = rundir.RunDir(run_dir).read_state()
    path = rundir.RunDir(run_dir).driver_state_path(state['checkpoint'])
    with np.load(path) as f:
        arrays = dict(f.items())
    assert arrays['reports'].shape == (6, 1)
    arrays['reports'] = np.zeros([6, 3], np.float32)
    np.savez(path, **arrays)
    options = rebar_train.make_options(runs['SBNNVIL'].hparams, working_dir=run_dir,
                                       max_steps=400, seed=1)
    with pytest.raises(rebar_train.RunDirError) as e:
        rebar_train.run(options, data=runs['SBNNVIL'].data, out=io.StringIO(),
                        err=io.StringIO())
    assert ('model.ckpt-340 holds part of an epoch of 3-entry reports; this build of the model '
            'reports 1' in str(e.value)) and 'end of an epoch' in str(e.value)
    assert rundir.RunDir(run_dir).read_state()['step'] == 340


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(runs):
    run = runs['SBNNVIL']
    with open(os.path.join(run.run_dir, 'progress.json')) as f:
        state = json.load(f)
    assert state['step'] == 340
    prefix = os.path.join(run.run_dir, state['checkpoint'])
    with open(prefix + '.data-00000-of-00001', 'rb') as f:
        saved = f.read()
    poisoned = (np.full_like(run.data[0], np.nan),) + tuple(run.data[1:])
    options = rebar_train.make_options(run.hparams, working_dir=run.run_dir, max_steps=400,
                                       fast_start=True, checkpoint_secs=0, checkpoint_steps=1,
                                       seed=1)
    trainer = rebar_train.Trainer(options, data=poisoned, out=io.StringIO(), err=io.StringIO())
    try:
        with pytest.raises(rebar_train.NonFiniteError) as e:
            trainer.train()
    finally:
        trainer.close()
    assert str(e.value).startswith('step 341: non-finite')
    assert 'model.ckpt-340' in str(e.value) and 'is kept' in str(e.value)
    with open(os.path.join(run.run_dir, 'progress.json')) as f:
        assert json.load(f) == state
    with open(prefix + '.data-00000-of-00001', 'rb') as f:
        assert f.read() == saved
    reader = tf.train.NewCheckpointReader(prefix)
    for name in reader.get_variable_to_shape_map():
        assert np.all(np.isfinite(reader.get_tensor(name))), name


def test_sigterm_saves_a_checkpoint_and_stops(sample, tmp_path):
    """What a scheduler's SIGTERM (or Ctrl-C) does: finish the step, checkpoint, stop."""
    hp = config.parse_hparams('model=SBNNVIL,n_hidden=16')
    data = (sample[0][:240], sample[1][:10], sample[2][:10])
    options = rebar_train.make_options(hp, working_dir=str(tmp_path / 'run'),
                                       max_steps=10 ** 9, fast_start=True, checkpoint_secs=0,
                                       progress_secs=0)
    trainer = rebar_train.Trainer(options, data=data, out=io.StringIO(), err=io.StringIO())
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    handler = signal.getsignal(signal.SIGTERM)
    try:
        timer.start()
        with pytest.raises(rebar_train.Stopped) as e:
            trainer.train()
    finally:
        timer.cancel()
        trainer.close()
    assert e.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == handler   # the handler is put back
    with open(str(tmp_path / 'run' / 'progress.json')) as f:
        state = json.load(f)
    assert state['step'] == trainer.step > 0
    assert 'at step %d after saving a checkpoint' % trainer.step in str(e.value)


# -- flags -----------------------------------------------------------------------------------------
def test_the_reference_command_line_works_unchanged():
    rebar_train.FLAGS(['rebar_train.py', '--hparams=' + REFERENCE_COMMAND_HPARAMS])
    try:
        options = rebar_train.options_from_flags(rebar_train.FLAGS)
    finally:
        rebar_train.FLAGS.unparse_flags()
    hp = options.hparams
    assert (hp.model, hp.learning_rate, hp.n_layer, hp.task) == ('SBNDynamicRebar', 0.0003, 2,
                                                                 'sbn')
    assert hp.batch_size == 24 and options.max_steps == 2000000 and options.eval_freq == 20
    assert rebar_train.default_run_dir(hp) == os.path.join(
        'runs', 'learning_rate_0.0003.model_SBNDynamicRebar.n_layer_2')


def test_the_ascend_ports_flags_are_aliases():
    o = rebar_train.resolve_options(hparams='model=SBNNVIL', data_path='/d', batch_size=32,
                                    learning_rate=0.01, steps=500)
    assert (o.data_dir, o.hparams.batch_size, o.hparams.learning_rate, o.max_steps) == \
        ('/d', 32, 0.01, 500)
    # the same value twice is no conflict
    o = rebar_train.resolve_options(hparams='batch_size=32', batch_size=32, data_dir='/d',
                                    data_path='/d', max_steps=5, steps=5)
    assert (o.hparams.batch_size, o.data_dir, o.max_steps) == (32, '/d', 5)


@pytest.mark.parametrize('kw, message', [
    (dict(hparams='batch_size=32', batch_size=24), '--batch_size=24 conflicts with batch_size=32'),
    (dict(hparams='learning_rate=0.1', learning_rate=0.2), 'learning_rate'),
    (dict(max_steps=10, steps=20), '--max_steps=10 conflicts with --steps=20'),
    (dict(data_dir='/a', data_path='/b'), '--data_dir=/a conflicts with --data_path=/b'),
    (dict(hparams='n_layers=2'), "Unknown hparam 'n_layers'"),
    (dict(batch_size=1), 'batch_size=1 is outside its valid range [2, '),
    (dict(eval_freq=-1), '--eval_freq must be >= 0'),
])
def test_conflicting_or_bad_flags_are_usage_errors(kw, message):
    with pytest.raises(rebar_train.UsageError) as e:
        rebar_train.resolve_options(**kw)
    assert message in str(e.value)


# -- subprocesses: SIGKILL, ModelArts, the ModelZoo scripts ----------------------------------------
@pytest.fixture(scope='module')
def small_data(sample, tmp_path_factory):
    """240 / 20 / 20 real digits as binarized_mnist_*.amat: 10 steps an epoch."""
    path = tmp_path_factory.mktemp('small_data')
    for split, images in zip(('train', 'valid', 'test'), (sample[0][:240], sample[1][:20],
                                                          sample[2][:20])):
        with open(str(path / ('binarized_mnist_%s.amat' % split)), 'w') as f:
            f.writelines(' '.join('%d' % v for v in row) + '\n' for row in images)
    return str(path)


def run_process(command, **kw):
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300, **kw)


def train_command(*flags):
    return [sys.executable, '-u', os.path.join(ROOT, 'rebar_train.py')] + list(flags)


def kill_after_checkpoint(command, step, stdout):
    """Runs the trainer `command` and SIGKILLs it as soon as it reports checkpoint `step`
    saved (a job killed right after a checkpoint); returns its stderr lines up to then."""
    process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE,
                               universal_newlines=True)
    watchdog = threading.Timer(300, process.kill)   # never hang the suite
    watchdog.start()
    err = []
    for line in process.stderr:
        err.append(line)
        if 'checkpoint model.ckpt-%d saved' % step in line:
            process.send_signal(signal.SIGKILL)
            break
    process.stderr.close()
    watchdog.cancel()
    assert process.wait(timeout=60) == -signal.SIGKILL, ''.join(err)[-2000:]
    return err


KILL_IN_SAVE = textwrap.dedent('''
    # rebar_train, killed by SIGKILL in the middle of its checkpoint save number {n}: the new
    # checkpoint's data file is half written when the process dies.
    import os, signal, sys
    sys.path.insert(0, {root!r})
    import rebar_train
    from absl import app
    import tensorflow.compat.v1 as tf
    original, calls = tf.train.Saver.save, []
    def save(self, sess, prefix, *args, **kwargs):
        calls.append(prefix)
        result = original(self, sess, prefix, *args, **kwargs)
        if len(calls) == {n}:
            data = prefix + '.data-00000-of-00001'
            with open(data, 'r+b') as f:
                f.truncate(os.path.getsize(data) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    tf.train.Saver.save = save
    app.run(rebar_train.main)
''')


@pytest.mark.parametrize('steps_per_call', [1, 7])
def test_sigkill_during_a_checkpoint_write_and_during_training_then_resume(small_data, tmp_path,
                                                                           steps_per_call):
    """With 7 steps a call, calls stop at the epoch's end (10 steps) and at the checkpoints
    (every 25 steps), so the same checkpoints and lines come out."""
    run_dir = str(tmp_path / 'run')
    common = ['--hparams=model=SBNDynamicRebar,n_layer=1,n_hidden=16', '--data_dir=' + small_data,
              '--working_dir=' + run_dir, '--eval_freq=2', '--checkpoint_steps=25',
              '--checkpoint_secs=0', '--fast_start', '--seed=3', '--log_every=7',
              '--steps_per_call=%d' % steps_per_call]
    if steps_per_call > 1:
        common.append('--static_shapes=true')   # the batches are taken in the session

    # 1. killed while writing its second checkpoint (step 50): the first (25) stays the one
    script = tmp_path / 'kill_in_save.py'
    script.write_text(KILL_IN_SAVE.format(root=ROOT, n=2))
    first = run_process([sys.executable, '-u', str(script)] + common + ['--max_steps=1000'])
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert 'checkpoint model.ckpt-25 saved' in first.stderr
    assert 'model.ckpt-50 saved' not in first.stderr
    assert os.path.exists(os.path.join(run_dir, 'model.ckpt-50.index'))   # the torn one
    with open(os.path.join(run_dir, 'progress.json')) as f:
        assert json.load(f)['step'] == 25
    _, first_entries = parse_reference_output(first.stdout)
    assert steps_of(first_entries, 'Step') == [10, 20, 30, 40, 50]
    temperature_25 = float(np.exp(tf.train.load_variable(os.path.join(run_dir, 'model.ckpt-25'),
                                                         'log_temperature')))

    # 2. resumes from 25; killed from outside while training, after its checkpoint at 75
    with open(str(tmp_path / 'second.out'), 'w') as out:
        second_err = ''.join(kill_after_checkpoint(
            train_command(*common + ['--max_steps=1000']), 75, out))
    resumed = re.search(r'resumed from model\.ckpt-25 at step 25 \(temperature (\S+)\)',
                        second_err)
    assert resumed, second_err[-2000:]
    assert float(resumed.group(1)) == pytest.approx(temperature_25, rel=1e-6)
    removed = re.search(r'removed \d+ unfinished checkpoint or temporary file\(s\): (.*)',
                        second_err)
    assert removed and 'model.ckpt-50.index' in removed.group(1)
    with open(os.path.join(run_dir, 'progress.json')) as f:
        state = json.load(f)
    assert state['step'] >= 75 and 'model.ckpt-75' in state['checkpoints']
    latest = os.path.join(run_dir, state['checkpoint'])
    saved = dict((name, tf.train.load_variable(latest, name))
                 for name, _ in tf.train.list_variables(latest)
                 if name == 'log_temperature' or name.startswith('estimator/rebar/eta'))
    assert len(saved) > 3

    # 3. resumes from the last checkpoint and finishes at step 120 (an epoch boundary)
    third = run_process(train_command(*common + ['--max_steps=120']))
    assert third.returncode == 0, third.stderr[-2000:]
    # progress goes to stderr: stdout stays the reference's lines (parsed strictly below)
    assert re.search(r'progress: step \d+ of 120, .* steps/s, .* images/s, ETA ', third.stderr)
    resumed = re.search(r'resumed from %s at step %d \(temperature (\S+)\)'
                        % (state['checkpoint'], state['step']), third.stderr)
    assert resumed, third.stderr[-2000:]
    assert float(resumed.group(1)) == pytest.approx(
        float(np.exp(saved['log_temperature'])), rel=1e-6)

    # the metrics: every epoch and every evaluation once, in order, no gap
    records = read_records(run_dir)
    train = [r for r in records if r['kind'] == 'train']
    assert [r['step'] for r in train] == list(range(10, 121, 10))
    assert not any(r['partial'] for r in train)
    assert [r['step'] for r in records if r['kind'] == 'eval'] == list(range(20, 121, 20))
    # what the first process printed before its checkpoint at 25 is what the file keeps
    kept = [e for e in first_entries if e.kind == 'Step' and e.step <= 25]
    assert [str(np.array(r['report'], np.float32)) for r in train[:2]] == \
        [e.bracket for e in kept]
    # TensorBoard shows each epoch once, with the values of the metrics file
    events = read_events(run_dir)
    assert events['Train ELBO'] == [(r['step'], np.float32(r['report'][0])) for r in train]
    # the third run printed the epochs after its checkpoint, and nothing before it
    _, third_entries = parse_reference_output(third.stdout)
    assert steps_of(third_entries, 'Step') == [s for s in range(10, 121, 10) if s > state['step']]
    with open(os.path.join(run_dir, 'progress.json')) as f:
        final = json.load(f)
    assert final['step'] == 120 and len(final['checkpoints']) == 3
    # the etas moved on from the checkpoint they were restored from, as training does
    final_path = os.path.join(run_dir, final['checkpoint'])
    assert any(not np.array_equal(tf.train.load_variable(final_path, n), v)
               for n, v in saved.items())


@pytest.mark.parametrize('spec, steps_per_call', [
    ('model=SBNVIMCO,objective=iwae,n_samples=3', 7),
    ('model=SBNLocalDisARM,objective=iwae,n_samples=2,n_layer=2', 1),
    ('model=SBNARMS,n_samples=3,n_layer=2', 7),
])
def test_multi_sample_models_train_through_the_reference_command_and_resume_after_sigkill(
        small_data, tmp_path, spec, steps_per_call):
    """Killed (SIGKILL) after its checkpoint at step 10, a run resumes from it and finishes;
    the output parses as the reference's, the report's first entry the objective trained."""
    run_dir = str(tmp_path / 'run')
    common = ['--hparams=%s,n_hidden=8' % spec, '--data_dir=' + small_data,
              '--working_dir=' + run_dir, '--eval_freq=1', '--checkpoint_steps=10',
              '--checkpoint_secs=0', '--fast_start', '--seed=2',
              '--steps_per_call=%d' % steps_per_call, '--static_shapes=true']
    with open(str(tmp_path / 'first.out'), 'w') as out:
        kill_after_checkpoint(train_command(*common + ['--max_steps=1000']), 10, out)
    second = run_process(train_command(*common + ['--max_steps=30']))
    assert second.returncode == 0, second.stderr[-2000:]
    assert re.search(r'resumed from model\.ckpt-(10|20) at step (10|20)', second.stderr), \
        second.stderr[-2000:]
    hparams, entries = parse_reference_output(second.stdout)
    assert hparams['model'] == config.parse_hparams(spec).model
    assert steps_of(entries, 'Step')[-1] == 30 and steps_of(entries, 'Valid')[-1] == 30
    train = [r for r in read_records(run_dir) if r['kind'] == 'train']
    assert train[-1]['step'] == 30 and np.all(np.isfinite(train[-1]['report']))
    assert list(train[-1]['fields']) == ['k_sample_bound' if 'iwae' in spec else 'elbo']


def test_modelarts_entry_with_local_paths_trains_into_train_url_and_resumes(small_data,
                                                                             tmp_path):
    train_url = str(tmp_path / 'train_url')
    command = [sys.executable, '-u', os.path.join(ROOT, 'modelarts_entry.py'),
               '--data_url=' + small_data, '--train_url=' + train_url,
               '--hparams=model=SBNNVIL,n_hidden=16', '--eval_freq=3', '--fast_start',
               '--sync_secs=1', '--task_name=worker']   # ModelArts adds --task_name
    first = run_process(command + ['--cache_dir=' + str(tmp_path / 'cache1'), '--max_steps=30'])
    assert first.returncode == 0, first.stderr[-2000:]
    assert "ignoring the platform's arguments: --task_name=worker" in first.stderr
    _, entries = parse_reference_output(first.stdout)
    assert steps_of(entries, 'Step') == [10, 20, 30] and steps_of(entries, 'Test') == [30]
    names = set(os.listdir(train_url))
    assert {'hparams.json', 'progress.json', 'checkpoint', 'metrics.jsonl', 'log.txt',
            'model.ckpt-30.index', 'model.ckpt-30.data-00000-of-00001',
            'model.ckpt-30.driver.npz'} <= names
    assert any(n.startswith('events.out.tfevents') for n in names)
    assert not [n for n in names if '.tmp-' in n]
    with open(os.path.join(train_url, 'log.txt')) as f:
        assert f.read() == first.stdout.split('\n', 1)[1]
    with open(os.path.join(train_url, 'checkpoint')) as f:
        assert 'model_checkpoint_path: "model.ckpt-30"' in f.read()

    # a restarted job (new local disk) takes the run from train_url and resumes it
    second = run_process(command + ['--cache_dir=' + str(tmp_path / 'cache2'), '--max_steps=50'])
    assert second.returncode == 0, second.stderr[-2000:]
    assert 'resumed from model.ckpt-30 at step 30' in second.stderr
    with open(os.path.join(train_url, 'progress.json')) as f:
        assert json.load(f)['step'] == 50
    names = set(os.listdir(train_url))
    assert 'model.ckpt-50.index' in names and 'model.ckpt-30.index' not in names
    assert [r['step'] for r in read_records(train_url) if r['kind'] == 'train'] == \
        [10, 20, 30, 40, 50]


def _summary(stdout):
    fields = dict(re.findall(r'^(\w+) = (.*)$', stdout, re.M))
    for name in ('Network', 'RankSize', 'BatchSize', 'DeviceType', 'CaseName', 'ActualFPS',
                 'TrainingTime', 'ActualLoss', 'E2ETrainingTime'):
        assert name in fields, (name, stdout)
    return fields


@pytest.mark.parametrize('script', ['train_full_1p.sh', 'train_performance_1p.sh'])
def test_modelzoo_scripts_train_on_the_cpu_and_print_the_summary(script, small_data, tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, ASCEND_DEVICE_ID='5')
    command = ['bash', os.path.join(ROOT, 'scripts', script), '--data_path=' + small_data,
               '--output_path=' + str(tmp_path / 'output'), '--train_steps=40', '--batch_size=24',
               '--hparams=n_layer=1,n_hidden=16', '--fast_start']
    result = run_process(command, env=env)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    fields = _summary(result.stdout)
    out_dir = tmp_path / 'output' / '5'
    with open(str(out_dir / 'train_5.log')) as f:
        log = f.read()
    # the documented configuration, with --hparams applied over it
    printed = ast.literal_eval([l for l in log.splitlines() if l.startswith('{')][0])
    assert (printed['model'], printed['learning_rate'], printed['n_layer']) == \
        ('SBNDynamicRebar', 0.0003, 1)
    mode = 'acc' if 'full' in script else 'perf'
    assert fields['CaseName'] == 'REBAR_SBNDynamicRebar_for_TensorFlow_bs24_1p_' + mode
    assert (out_dir / (fields['CaseName'] + '.log')).exists()
    assert fields['BatchSize'] == '24' and fields['RankSize'] == '1'
    # the numbers are those of the log
    last_step = [l for l in log.splitlines() if l.startswith('Step ')][-1]
    assert last_step.startswith('Step 40: [')
    elbo = float(last_step.split('[')[1].split()[0])
    assert float(fields['ActualLoss']) == pytest.approx(-elbo, abs=1e-4)
    rates = [float(r) for r in re.findall(r'([0-9.]+) images/s', log)]
    assert len(rates) >= (10 if mode == 'perf' else 1)
    expected = np.mean(rates[1:]) if len(rates) > 1 else rates[0]
    assert float(fields['ActualFPS']) == pytest.approx(expected, abs=0.01)
    assert float(fields['TrainingTime']) == pytest.approx(24 * 1000 / float(fields['ActualFPS']),
                                                          abs=0.01)
    assert int(fields['E2ETrainingTime']) >= 0
    if mode == 'acc':
        last_test = [l for l in log.splitlines() if l.startswith('Test ')][-1]
        assert float(fields['TrainAccuracy']) == float(last_test.split('[')[1].split()[0]) < 0
        # rerun (a resume that has nothing left to do): the log is kept and the summary too
        again = run_process(command, env=env)
        assert again.returncode == 0, again.stderr[-2000:]
        refields = _summary(again.stdout)
        assert refields['ActualLoss'] == fields['ActualLoss']
        assert refields['TrainAccuracy'] == fields['TrainAccuracy']
        with open(str(out_dir / 'train_5.log')) as f:
            assert f.read().startswith(log)
    else:
        assert 'Test ' not in log   # no evaluation in a performance run


def test_modelzoo_scripts_stop_before_the_summary_without_tensorflow(small_data, tmp_path):
    env = dict(os.environ, PYTHON='/bin/false', ASCEND_DEVICE_ID='5')
    result = run_process(['bash', os.path.join(ROOT, 'scripts', 'train_full_1p.sh'),
                          '--data_path=' + small_data, '--output_path=' + str(tmp_path)],
                         env=env)
    assert result.returncode == 1
    assert 'Final result' not in result.stdout and ' = ' not in result.stdout
    assert 'no interpreter that imports tensorflow and absl (tried: /bin/false)' \
        in result.stderr
    assert 'scripts/setup_env.sh' in result.stderr


def _record_batches(trainer, seen):
    """Wraps the session's step so that each step first reads the batch its graph will take."""
    session = trainer.session
    step = session.step

    def recording(n_images):
        taken = session.sess.run(session.model.training(n_images).x)
        seen.append((taken, trainer.train_xs[trainer.epoch.next_indices()]))
        return step(n_images)
    session.step = recording


@pytest.mark.parametrize('dynamic_b', [False, True])
def test_batches_taken_in_the_session_are_the_epochs_batches(tmp_path, dynamic_b):
    """With static shapes the step feeds nothing: its batch is taken from the training set
    held in the session. Over 12 steps (100 images in batches of 24: two epoch ends and two
    partial batches of 4) and after resuming mid-epoch, every batch is the epoch's next one
    (dynamic_b: a binarisation of it, 0 and 1 kept)."""
    hp = config.parse_hparams('model=SBN,n_layer=1,n_hidden=8,batch_size=24,'
                              'learning_rate=0.0003,dynamic_b=%s' % str(dynamic_b).lower())
    rng = np.random.RandomState(3)
    train = rng.rand(100, 784).astype(np.float32)
    train[:, :100] = 0.0
    train[:, 100:200] = 1.0
    data = (train, train[:7], train[:6])
    seen = []
    for max_steps in (12, 15):   # the second run resumes at step 12, epoch 3's third batch
        options = rebar_train.make_options(hp, working_dir=str(tmp_path / 'run'), eval_freq=0,
                                           max_steps=max_steps, checkpoint_secs=0,
                                           progress_secs=0, fast_start=True, seed=1)
        trainer = rebar_train.Trainer(options, data=data, out=io.StringIO(), err=io.StringIO())
        try:
            assert trainer.session.batches is not None
            _record_batches(trainer, seen)
            trainer.train()
        finally:
            trainer.close()
    assert [len(taken) for taken, _ in seen] == [24, 24, 24, 24, 4] * 3
    for taken, expected in seen:
        if dynamic_b:
            assert set(np.unique(taken)) <= {0.0, 1.0}
            np.testing.assert_array_equal(taken[:, :200], expected[:, :200])
        else:
            np.testing.assert_array_equal(taken, expected)


# -- robustness: what a new user runs into ---------------------------------------------------------
def test_launchers_merge_hparams_over_the_documented_configuration(small_data, tmp_path):
    """--hparams and the aliases change the documented configuration name by name."""
    doc = REFERENCE_COMMAND_HPARAMS
    o = rebar_train.resolve_options(base_hparams=doc, hparams=['nonlinear=true'])
    assert (o.hparams.model, o.hparams.n_layer, o.hparams.learning_rate, o.hparams.nonlinear) \
        == ('SBNDynamicRebar', 2, 0.0003, True)
    o = rebar_train.resolve_options(base_hparams=doc, learning_rate=0.001)
    assert o.hparams.learning_rate == 0.001 and o.hparams.model == 'SBNDynamicRebar'
    o = rebar_train.resolve_options(hparams=['model=SBN,n_layer=3', 'n_layer=2'])
    assert (o.hparams.model, o.hparams.n_layer) == ('SBN', 2)
    with pytest.raises(rebar_train.UsageError):   # the user's own two values still conflict
        rebar_train.resolve_options(base_hparams=doc, hparams=['learning_rate=0.01'],
                                    learning_rate=0.001)
    # through the launcher: the hparams line it prints is the merged configuration
    for extra, expected in ((['--hparams=nonlinear=true,n_hidden=8'],
                             dict(nonlinear=True, learning_rate=0.0003)),
                            (['--hparams=n_hidden=8', '--learning_rate=0.001'],
                             dict(nonlinear=False, learning_rate=0.001))):
        result = run_process(
            ['bash', os.path.join(ROOT, 'scripts', 'run_workstation.sh'), '--max_steps=0',
             '--data_dir=' + small_data, '--working_dir=' + str(tmp_path / extra[-1][2:8]),
             '--fast_start'] + extra, env=dict(os.environ, PYTHON=sys.executable))
        assert result.returncode == 0, result.stderr[-2000:]
        printed = ast.literal_eval(result.stdout.splitlines()[0])
        assert (printed['model'], printed['n_layer'], printed['n_hidden']) == \
            ('SBNDynamicRebar', 2, 8)
        for name, value in expected.items():
            assert printed[name] == value, name


def test_hparam_typos_are_refused_before_tensorflow_is_imported(tmp_path):
    """The refusal comes from the flags alone: TensorFlow is never loaded."""
    probe = textwrap.dedent('''
        import runpy, sys
        sys.path.insert(0, {root!r})
        sys.argv = ['rebar_train.py', '--hparams=modle=SBN', '--working_dir={run}']
        try:
            runpy.run_path({script!r}, run_name='__main__')
        except SystemExit as e:
            print('exit', e.code, 'tensorflow' in sys.modules)
    ''').format(root=ROOT, run=str(tmp_path / 'run'),
                script=os.path.join(ROOT, 'rebar_train.py'))
    result = run_process([sys.executable, '-c', probe])
    assert result.stdout.split() == ['exit', '2', 'False'], result.stdout + result.stderr
    assert "Unknown hparam 'modle'" in result.stderr and 'Valid names' in result.stderr
    assert not (tmp_path / 'run').exists()


def test_a_working_dir_that_cannot_be_written_is_refused_before_loading_data(small_data,
                                                                             tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text(u'not a directory')
    result = run_process(train_command('--hparams=model=SBN,n_hidden=8', '--max_steps=5',
                                       '--data_dir=' + small_data,
                                       '--working_dir=' + str(blocker / 'run')))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ['rebar_train: error: cannot write the run directory %s (Not a directory). '
                     'Give a --working_dir in a writable place.' % (blocker / 'run')], lines
    assert result.stdout == ''   # not even the hparams line: nothing was loaded or built


def _limit_file_size(n_bytes):
    """For subprocess preexec_fn: writes past n_bytes fail with EFBIG, as on a full disk
    (Python ignores SIGXFSZ, so the write returns an error instead of killing the process)."""
    import resource
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))


def test_a_failing_checkpoint_write_ends_with_one_line_and_keeps_the_last_good_one(small_data,
                                                                                   tmp_path):
    run_dir = str(tmp_path / 'run')
    common = ['--hparams=model=SBNNVIL,n_hidden=16', '--data_dir=' + small_data,
              '--working_dir=' + run_dir, '--eval_freq=0', '--checkpoint_steps=10',
              '--checkpoint_secs=0', '--fast_start', '--seed=1']
    first = run_process(train_command(*common + ['--max_steps=10']))
    assert first.returncode == 0, first.stderr[-2000:]
    with open(os.path.join(run_dir, 'model.ckpt-10.data-00000-of-00001'), 'rb') as f:
        saved = f.read()
    assert len(saved) > 100000
    # resumed with writes capped below a checkpoint's size: its next save fails
    second = subprocess.run(train_command(*common + ['--max_steps=30']), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=300,
                            preexec_fn=_limit_file_size(50000))
    assert second.returncode == 1, second.stderr[-3000:]
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith('rebar_train: error: could not save checkpoint model.ckpt-20 in %s ('
                           % run_dir), last
    assert 'The last good checkpoint, model.ckpt-10, is kept' in last
    assert 'rerun the same command to resume' in last
    assert 'Traceback' not in second.stderr
    with open(os.path.join(run_dir, 'progress.json')) as f:
        assert json.load(f)['step'] == 10
    with open(os.path.join(run_dir, 'model.ckpt-10.data-00000-of-00001'), 'rb') as f:
        assert f.read() == saved
    # with room again, the same command resumes from it
    third = run_process(train_command(*common + ['--max_steps=30']))
    assert third.returncode == 0, third.stderr[-2000:]
    assert 'resumed from model.ckpt-10 at step 10' in third.stderr
    assert [r['step'] for r in read_records(run_dir) if r['kind'] == 'train'] == [10, 20, 30]


def test_a_fresh_start_after_a_kill_before_any_checkpoint_leaves_one_curve(small_data, tmp_path):
    """kill -9 after two epochs and before any checkpoint; the rerun starts again from step 0.
    TensorBoard (its own event reader, purging as it does) shows one curve, that of the
    metrics file, and stderr says why the old records went."""
    from tensorboard.backend.event_processing import event_accumulator
    run_dir = str(tmp_path / 'run')
    command = train_command('--hparams=model=SBNNVIL,n_hidden=16', '--data_dir=' + small_data,
                            '--working_dir=' + run_dir, '--eval_freq=0', '--checkpoint_secs=0',
                            '--fast_start', '--seed=2', '--max_steps=1000000')
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               universal_newlines=True)
    try:
        seen = 0
        while seen < 2:   # two epoch lines printed: steps 10 and 20
            line = process.stdout.readline()
            assert line, 'the run ended early'
            seen += line.startswith('Step ')
    finally:
        process.kill()
        process.wait()
    assert not os.path.exists(os.path.join(run_dir, 'progress.json'))
    again = run_process(command[:-1] + ['--max_steps=35'])
    assert again.returncode == 0, again.stderr[-2000:]
    assert 'after step 0 (no checkpoint was saved: training starts again from step 0)' \
        in again.stderr
    records = read_records(run_dir)
    assert [r['step'] for r in records] == [10, 20, 30, 35]
    events = event_accumulator.EventAccumulator(run_dir, purge_orphaned_data=True)
    events.Reload()
    shown = [(e.step, e.value) for e in events.Scalars('Train ELBO')]
    assert shown == [(r['step'], pytest.approx(r['report'][0], rel=1e-6)) for r in records]


def test_a_default_run_prints_no_tensorflow_noise(small_data, tmp_path):
    """stderr holds the project's own lines only (TensorFlow's log lines and warnings are off
    unless --tf_log), the first naming the run directory, and stdout the reference's."""
    result = run_process(train_command('--hparams=model=SBNDynamicRebar,n_layer=2,n_hidden=16',
                                       '--data_dir=' + small_data, '--max_steps=25',
                                       '--working_dir=' + str(tmp_path / 'run'),
                                       '--eval_freq=2', '--log_every=10'))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines and all(l.startswith(('rebar_train: ', 'datasets: ')) for l in lines), lines
    assert lines[0] == 'rebar_train: run directory %s (a new run)' % (tmp_path / 'run')
    parse_reference_output(result.stdout)


def test_a_run_that_fails_before_its_first_step_leaves_nothing_that_blocks_a_rerun(tmp_path):
    hp = config.parse_hparams('model=SBN,n_hidden=8')
    run_dir = tmp_path / 'run'
    options = rebar_train.make_options(hp, working_dir=str(run_dir), max_steps=5, eval_freq=0,
                                       fast_start=True, progress_secs=0)
    too_small = tuple(np.zeros((1, 784), np.float32) for _ in range(3))
    with pytest.raises(rebar_train.UsageError) as e:
        rebar_train.run(options, data=too_small, out=io.StringIO(), err=io.StringIO())
    assert 'holds no batch' in str(e.value)
    assert not run_dir.exists()
    # a directory made beforehand (a sweep's) keeps what was there, and loses the run's identity
    run_dir.mkdir()
    (run_dir / 'stdout.log').write_text(u'kept')
    with pytest.raises(rebar_train.UsageError):
        rebar_train.run(options, data=too_small, out=io.StringIO(), err=io.StringIO())
    assert not (run_dir / 'hparams.json').exists() and (run_dir / 'stdout.log').exists()
    data = tuple(np.random.RandomState(0).rand(n, 784).astype(np.float32) for n in (48, 5, 5))
    corrected = options._replace(hparams=hp.replace(n_hidden=4))
    assert rebar_train.run(corrected, data=data, out=io.StringIO(), err=io.StringIO()) == 5


# -- a run's identity and provenance ---------------------------------------------------------------
def test_the_seed_is_part_of_a_runs_identity(tmp_path, monkeypatch):
    monkeypatch.chdir(str(tmp_path))
    hp = config.parse_hparams('model=SBN,n_hidden=8')
    data = tuple(np.random.RandomState(0).rand(n, 784).astype(np.float32) for n in (48, 5, 5))

    def train(seed, max_steps):
        options = rebar_train.make_options(hp, seed=seed, max_steps=max_steps, eval_freq=0,
                                           fast_start=True, progress_secs=0, checkpoint_secs=0)
        err = io.StringIO()
        rebar_train.run(options, data=data, out=io.StringIO(), err=err)
        return err.getvalue()

    train(1, 4)
    train(2, 4)
    assert sorted(os.listdir('runs')) == ['model_SBN.n_hidden_8.seed_1',
                                          'model_SBN.n_hidden_8.seed_2']
    assert 'resumed from model.ckpt-4 at step 4' in train(1, 6)
    with open(os.path.join('runs', 'model_SBN.n_hidden_8.seed_1', 'hparams.json')) as f:
        assert json.load(f)['seed'] == 1
    other = rebar_train.make_options(hp, seed=3, working_dir='runs/model_SBN.n_hidden_8.seed_1')
    with pytest.raises(rebar_train.RunDirError) as e:
        rebar_train.Trainer(other, data=data, out=io.StringIO(), err=io.StringIO())
    assert 'seed=1 there, 3 now' in str(e.value)


def test_a_run_directory_in_use_is_refused_naming_its_holder(tmp_path):
    hp = config.parse_hparams('model=SBN,n_hidden=8')
    data = tuple(np.random.RandomState(0).rand(n, 784).astype(np.float32) for n in (48, 5, 5))
    options = rebar_train.make_options(hp, working_dir=str(tmp_path / 'run'), max_steps=4,
                                       eval_freq=0, fast_start=True, progress_secs=0)
    holder = rebar_train.Trainer(options, data=data, out=io.StringIO(), err=io.StringIO())
    try:
        with pytest.raises(rebar_train.RunDirError) as e:
            rebar_train.Trainer(options, data=data, out=io.StringIO(), err=io.StringIO())
        assert 'is in use by process %d' % os.getpid() in str(e.value)
        assert os.path.exists(str(tmp_path / 'run' / 'hparams.json'))   # the holder's, kept
    finally:
        holder.close()
    assert rebar_train.run(options, data=data, out=io.StringIO(), err=io.StringIO()) == 4


def test_provenance_and_named_metrics_fields(small_data, tmp_path):
    """provenance.json says where the run came from (the data files' checksums equal those of
    the files read); metrics records name every entry of the printed vectors; notes.log keeps
    the run's stderr lines."""
    import platform
    run_dir = str(tmp_path / 'run')
    command = train_command('--hparams=model=SBNDynamicRebar,n_layer=2,n_hidden=16',
                            '--data_dir=' + small_data, '--working_dir=' + run_dir,
                            '--max_steps=20', '--eval_freq=1', '--fast_start', '--seed=4')
    result = run_process(command)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(os.path.join(run_dir, 'provenance.json')) as f:
        sessions = json.load(f)['sessions']
    assert len(sessions) == 1
    s = sessions[0]
    assert s['command'][1:] == command[2:]
    assert s['python'] == platform.python_version() and s['tensorflow'] == tf.__version__
    assert s['numpy'] == np.__version__ and s['device'] == 'cpu'
    assert s['start_step'] == 0 and s['end_step'] == 20 and s['outcome'] == 'finished'
    assert s['started'] <= s['ended']
    assert s['evaluations_per_image'] == 5   # REBAR, two segments: 1 + 2 x 2 passes, K = 1
    files = dict((os.path.basename(f['path']), f['sha256']) for f in s['data']['files'])
    assert sorted(files) == ['binarized_mnist_%s.amat' % n for n in ('test', 'train', 'valid')]
    for name, digest in files.items():
        with open(os.path.join(small_data, name), 'rb') as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest
    records = read_records(run_dir)
    names = ['elbo', 'temperature'] + ['eta/' + n for n in (
        'model/p_prior', 'model/q_0/weights', 'model/q_0/biases', 'model/q_1/weights',
        'model/q_1/biases', 'model/p_1/weights', 'model/p_1/biases', 'model/p_0/weights',
        'model/p_0/biases')]
    for r in records:
        if r['kind'] == 'train':
            assert list(r['fields']) == names
            assert list(r['fields'].values()) == r['report']
        else:
            for split in ('valid', 'test'):
                fields = r[split + '_fields']
                assert list(fields)[:len(names) + 1] == ['iwae_bound'] + names
                assert list(fields.values()) == r[split]
    with open(os.path.join(run_dir, 'notes.log')) as f:
        notes = f.read()
    for line in result.stderr.splitlines():
        if line.startswith('rebar_train: '):
            assert line in notes


def test_dynamic_binarization_differs_each_epoch_and_a_seed_reproduces_it(tmp_path):
    """dynamic_b draws a new binarization each time an image is drawn (in the session, by
    TensorFlow's generator); the same --seed draws the same ones again."""
    hp = config.parse_hparams('model=SBN,n_layer=1,n_hidden=8,batch_size=24,dynamic_b=true')
    train = np.full((48, 784), 0.5, np.float32)
    data = (train, train[:5], train[:5])
    draws = []
    for name in ('first', 'again'):
        seen = []
        options = rebar_train.make_options(hp, working_dir=str(tmp_path / name), eval_freq=0,
                                           max_steps=4, checkpoint_secs=0, progress_secs=0,
                                           fast_start=True, seed=7)
        trainer = rebar_train.Trainer(options, data=data, out=io.StringIO(), err=io.StringIO())
        try:
            _record_batches(trainer, seen)
            orders = []
            new_epoch = trainer._new_epoch

            def recording_epoch():
                epoch = new_epoch()
                orders.append(epoch.order)
                return epoch
            trainer._new_epoch = recording_epoch
            orders.append(trainer.epoch.order)
            trainer.train()
        finally:
            trainer.close()
        # each image's binarization, by image index, in epochs 1 and 2 (two steps each)
        per_epoch = []
        for e in range(2):
            images = np.concatenate([taken for taken, _ in seen[2 * e:2 * e + 2]])
            per_epoch.append(images[np.argsort(orders[e])])
        draws.append(per_epoch)
    first, again = draws
    for e in range(2):
        np.testing.assert_array_equal(first[e], again[e])
        assert set(np.unique(first[e])) == {0.0, 1.0}
        assert 0.45 < first[e].mean() < 0.55
    assert np.mean(first[0] != first[1]) > 0.4   # a new draw each epoch: about half differ


def test_a_named_data_dir_without_data_stops_the_run_before_training(tmp_path):
    missing = str(tmp_path / 'MNIST')
    for flag in ('--data_dir=', '--data_path='):
        result = run_process(train_command('--hparams=model=SBN,n_hidden=8', flag + missing,
                                           '--working_dir=' + str(tmp_path / 'run'),
                                           '--max_steps=5'))
        assert result.returncode == 2, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith('rebar_train: error: ') and missing in last
        assert 'binarized_mnist_{train,valid,test}.amat' in last and 'download.py' in last
        assert 'Step ' not in result.stdout
        assert not (tmp_path / 'run').exists()   # nothing left to block the corrected command


def test_modelarts_entry_removes_its_cache_and_names_train_url_in_refusals(small_data,
                                                                           tmp_path):
    train_url = str(tmp_path / 'train_url')
    temp = tmp_path / 'tmp'
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp))
    command = [sys.executable, '-u', os.path.join(ROOT, 'modelarts_entry.py'),
               '--data_url=' + small_data, '--train_url=' + train_url, '--fast_start',
               '--eval_freq=0', '--max_steps=10']
    first = run_process(command + ['--hparams=model=SBNNVIL,n_hidden=16'], env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert os.listdir(str(temp)) == []   # the local copy of the run is gone; it is at train_url
    assert os.path.exists(os.path.join(train_url, 'progress.json'))
    other = run_process(command + ['--hparams=model=SBNNVIL,n_hidden=8'], env=env)
    assert other.returncode == 2
    assert '%s holds a run with other hparams (n_hidden=16 there, 8 now)' % train_url \
        in other.stderr
    assert 'give another --train_url' in other.stderr and '--working_dir' not in other.stderr
    assert os.listdir(str(temp)) == []


# -- integrity: strict JSON records, data that does not fit the hparams ----------------------------
def test_non_finite_figures_of_a_one_step_run_are_null_in_strict_json(sample, tmp_path):
    """A --max_steps=1 run's epoch record holds an undefined figure (the log variance of one
    step); metrics.jsonl must still be JSON to a strict parser (jq, browsers), with null there."""
    hp = config.parse_hparams('model=SBNDynamicRebar,n_hidden=3')
    run_dir = str(tmp_path / 'run')
    options = rebar_train.make_options(hp, working_dir=run_dir, max_steps=1, eval_freq=1,
                                       fast_start=True, seed=1, checkpoint_secs=0,
                                       progress_secs=0)
    data = (sample[0][:48], sample[1][:5], sample[2][:5])
    assert rebar_train.run(options, data=data, out=io.StringIO(), err=io.StringIO()) == 1

    def refuse(constant):
        raise ValueError('%s is not JSON' % constant)
    with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
        lines = f.read().splitlines()
    parsed = [json.loads(line, parse_constant=refuse) for line in lines]
    train = [r for r in parsed if r['kind'] == 'train']
    assert train and train[-1]['step'] == 1
    numbers = json.dumps([r.get('log_grad_variance') for r in train] + [r['report'] for r in train])
    assert 'null' in numbers   # the undefined figure is there, as null
    assert 'nan' in train[-1]['text'] or 'inf' in train[-1]['text']


def test_n_input_that_does_not_match_the_images_is_one_line_before_the_graph(small_data,
                                                                             tmp_path):
    result = run_process(train_command('--hparams=model=SBN,n_hidden=8,n_input=100',
                                       '--data_dir=' + small_data,
                                       '--working_dir=' + str(tmp_path / 'run'), '--max_steps=5',
                                       '--fast_start'))
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('rebar_train: error: n_input=100 does not match the data')
    assert 'shape [240, 784]' in last and 'Fix: pass n_input=784.' in last
    assert 'Step ' not in result.stdout and not (tmp_path / 'run').exists()


def test_a_misspelled_flag_stops_every_training_entry_point_naming_the_near_miss(small_data,
                                                                                 tmp_path):
    """The ModelArts boot file refuses a flag rebar_train does not take (the issue's --hparam,
    which used to train the default model), naming it and the near miss, before anything is
    copied or trained; the arguments ModelArts adds to every job (and --platform_args names) go
    through. rebar_train itself and the ModelZoo launcher refuse unknown flags the same way."""
    train_url = str(tmp_path / 'train_url')
    boot = [sys.executable, '-u', os.path.join(ROOT, 'modelarts_entry.py'),
            '--data_url=' + small_data, '--train_url=' + train_url, '--fast_start',
            '--eval_freq=0', '--max_steps=2']
    platform = ['--task_name=worker', '--world_size=1', '--rank', '0']
    result = run_process(boot + platform + ['--hparam=model=SBNNVIL,n_hidden=8'])
    assert result.returncode == 2, result.stderr[-2000:]
    line, = [l for l in result.stderr.splitlines() if 'error' in l]
    assert 'unknown flag --hparam (did you mean --hparams?)' in line
    assert 'task_name' not in line and 'world_size' not in line and 'rank' not in line
    assert 'Step ' not in result.stdout and not os.path.exists(train_url)
    result = run_process(boot + ['--platform_args=num_gpus', '--num_gpus=1', '--max_step=5',
                                 '--data_ur=x'])
    assert result.returncode == 2
    assert ('unknown flag --max_step (did you mean --max_steps?); unknown flag --data_ur (did '
            'you mean --data_url?)') in result.stderr and 'num_gpus' not in result.stderr
    result = run_process(train_command('--hparam=model=SBN', '--working_dir=' +
                                       str(tmp_path / 'run')))
    assert result.returncode != 0 and "Unknown command line flag 'hparam'" in result.stderr
    assert 'hparams' in result.stderr.split("'hparam'")[1] and not (tmp_path / 'run').exists()
    result = run_process(['bash', os.path.join(ROOT, 'scripts', 'train_performance_1p.sh'),
                          '--data_path=' + small_data, '--output_path=' + str(tmp_path / 'out'),
                          '--train_steps=2', '--fast_strat'],
                         env=dict(os.environ, PYTHON=sys.executable))
    assert result.returncode != 0 and "Unknown command line flag 'fast_strat'" in result.stderr
    assert 'Final Performance' not in result.stdout


# -- likelihood=gaussian: grey digits in [-1, 1] ---------------------------------------------------
def grey_digits(images, seed):
    """Real digits made grey (a binary pixel b becomes 0.15 + 0.7 b + 0.15 u), as x * 2 - 1."""
    rng = np.random.RandomState(seed)
    return datasets.signed_grey(0.15 + 0.7 * images + 0.15 * rng.rand(*images.shape))


def test_gaussian_likelihood_through_the_command_line_resumes_after_sigkill(sample, tmp_path):
    """The reference's command line on a grey Omniglot file (chardata.mat), 7 steps a call:
    killed after its checkpoint at step 20, it resumes there, evaluates and finishes; a new
    trainer restores the learned variance from the last checkpoint over fresh values."""
    n_train = datasets.OMNIGLOT_VALIDATION + 200
    images = np.concatenate([sample[0], sample[1]])[:n_train + 20]
    grey = (grey_digits(images, 4) + 1) / 2
    columns = lambda x: np.stack([im.reshape(28, 28).flatten(order='F') for im in x], axis=1)
    scipy.io.savemat(str(tmp_path / 'chardata.mat'), {'data': columns(grey[:n_train]),
                                                      'testdata': columns(grey[n_train:])})
    run_dir = str(tmp_path / 'run')
    common = ['--hparams=model=SBNDynamicRebar,likelihood=gaussian,dataset=omniglot,n_hidden=8,'
              'batch_size=20', '--data_dir=' + str(tmp_path), '--working_dir=' + run_dir,
              '--eval_freq=2', '--checkpoint_steps=20', '--checkpoint_secs=0', '--fast_start',
              '--seed=3', '--steps_per_call=7', '--static_shapes=true']
    with open(os.devnull, 'w') as out:
        err = kill_after_checkpoint(train_command(*common + ['--max_steps=1000']), 20, out)
    assert any('likelihood=gaussian' in line and '[-1, 1]' in line for line in err)
    saved = tf.train.load_variable(os.path.join(run_dir, 'model.ckpt-20'),
                                   'model/p_x_variance_raw')
    assert saved.shape == (784,) and np.all(saved != np.float32(-0.5))
    second = run_process(train_command(*common + ['--max_steps=40']))
    assert second.returncode == 0, second.stderr[-2000:]
    assert 'resumed from model.ckpt-20 at step 20' in second.stderr
    hparams, entries = parse_reference_output(second.stdout)
    assert hparams['likelihood'] == 'gaussian' and steps_of(entries, 'Step') == [30, 40]
    assert steps_of(entries, 'Valid') == steps_of(entries, 'Test') == [40]
    assert all(np.all(np.isfinite(e.values)) for e in entries)
    last = tf.train.load_variable(os.path.join(run_dir, 'model.ckpt-40'), 'model/p_x_variance_raw')
    assert not np.array_equal(last, saved)   # trained on after the resumption

    options = rebar_train.make_options(config.parse_hparams(common[0].split('=', 1)[1]),
                                       working_dir=run_dir, data_dir=str(tmp_path),
                                       max_steps=40, eval_freq=0, fast_start=True, seed=3)
    trainer = rebar_train.Trainer(options, out=io.StringIO(), err=io.StringIO())
    try:
        session = trainer.session
        with session.graph.as_default():
            raw, = [v for v in tf.global_variables() if v.op.name == 'model/p_x_variance_raw']
        np.testing.assert_array_equal(session.sess.run(raw), last)
        session.initialize()
        np.testing.assert_array_equal(session.sess.run(raw), np.full(784, -0.5, np.float32))
        trainer.restore_latest()
        np.testing.assert_array_equal(session.sess.run(raw), last)
    finally:
        trainer.close()


# -- a resumed seeded run is the uninterrupted run -------------------------------------------------
# Evaluation noise is drawn by code every model shares (rebar.Model.step_noise), and evaluation
# graphs double a model's build: it is checked on a model that learns its temperature and one
# that does not.
EVALUATED = ('SBN', 'SBNDynamicRebar')


def _seeded_lines(model, working_dir, steps_per_call, static_shapes=True, snapshot=None):
    """stdout (without the hparams line) of a seeded run of `model` to step 11: 20 grey images
    in batches of 4 (5 steps an epoch), dynamically binarized, checkpointed at step 7, and for
    the models of EVALUATED evaluated every epoch and at the end on 5 + 5 images. With
    `snapshot`, the run directory is copied there right after that checkpoint is committed:
    what a kill -9 at step 7 leaves on disk, and SIGTERM's checkpoint and stop. A run directory
    holding a checkpoint resumes from it.
    """
    hp = config.parse_hparams(
        'model=%s,n_hidden=3,n_input=6,batch_size=4,dynamic_b=true,n_samples=%d'
        % (model, 2 if model in config.MULTI_SAMPLE_MODELS else 1))
    rng = np.random.RandomState(8)
    data = [rng.rand(n, 6).astype(np.float32) for n in (20, 5, 5)]
    options = rebar_train.make_options(
        hp, working_dir=working_dir, device='cpu', fast_start=True, max_steps=11,
        eval_freq=1 if model in EVALUATED else 0, checkpoint_secs=0,
        checkpoint_steps=7, progress_secs=0, seed=7, steps_per_call=steps_per_call,
        static_shapes=static_shapes)
    out = io.StringIO()
    trainer = rebar_train.Trainer(options, data=data, out=out, err=io.StringIO())
    try:
        if snapshot:
            save = trainer.checkpoints.save

            def save_and_copy(session, step, arrays):
                save(session, step, arrays)
                if step == 7:
                    shutil.copytree(working_dir, snapshot)
            trainer.checkpoints.save = save_and_copy
        assert trainer.train() == 11
    finally:
        trainer.close()
    return out.getvalue().splitlines()[1:]


@pytest.mark.parametrize('model,static_shapes', [(m, True) for m in config.MODELS]
                         + [('SBN', False)])
def test_a_resumed_seeded_run_prints_the_uninterrupted_runs_lines(tmp_path, model,
                                                                  static_shapes):
    """A seeded run with one step a call, stopped after its checkpoint at step 7 (mid-epoch,
    between evaluations), then resumed with 7 steps a call (calls of 3 steps, to the epoch's
    end, and of 1, to --max_steps: both graphs), prints exactly the lines the uninterrupted
    run prints after step 7: the same training noise, batches, binarizations and evaluation
    noise, whatever process and graph draws them. The last epoch is partial. The flexible
    build (one step a call only; its one Step draws training and evaluation noise) is checked
    on one model."""
    k = 7 if static_shapes else 1
    uninterrupted = _seeded_lines(model, str(tmp_path / 'run'), 1, static_shapes,
                                  snapshot=str(tmp_path / 'stopped'))
    resumed = _seeded_lines(model, str(tmp_path / 'stopped'), k, static_shapes)
    heads = [l.split(':')[0] for l in uninterrupted if l.split(' ')[0] in
             ('Step', 'Valid', 'Test')]
    assert heads == (['Step 5', 'Valid 5', 'Test 5', 'Step 10', 'Valid 10', 'Test 10',
                      'Step 11', 'Valid 11', 'Test 11'] if model in EVALUATED
                     else ['Step 5', 'Step 10', 'Step 11'])
    after_7 = uninterrupted[[l.split(' ')[:2] for l in uninterrupted].index(['Step', '10:']):]
    assert resumed == after_7


@pytest.mark.parametrize('model,steps_per_call', [('SBNDoubleCV', 1), ('SBNRodeo', 7)])
def test_double_cv_and_rodeo_resume_after_sigkill_with_their_learned_parts(
        small_data, tmp_path, model, steps_per_call):
    """Through the reference command line: killed (SIGKILL) after its checkpoint at step 25,
    resumed to step 30. The learned parts (alpha; RODEO's beta and network h) are in the
    checkpoint, moved from their start, and the resumed run continues from them: at step 30
    each is within 5 Adam steps of its value at 25 (a fresh start would put alpha back near 0
    and redraw h's weights)."""
    run_dir = str(tmp_path / 'run')
    control_lr = 0.01   # the default, 10 x learning_rate
    common = ['--hparams=model=%s,n_samples=2,n_hidden=8,control_learning_rate=%g'
              % (model, control_lr),
              '--data_dir=' + small_data, '--working_dir=' + run_dir, '--eval_freq=2',
              '--checkpoint_steps=25', '--checkpoint_secs=0', '--fast_start', '--seed=3',
              '--steps_per_call=%d' % steps_per_call]
    if steps_per_call > 1:
        common.append('--static_shapes=true')
    with open(str(tmp_path / 'first.out'), 'w') as out:
        kill_after_checkpoint(train_command(*common + ['--max_steps=1000']), 25, out)
    with open(str(tmp_path / 'first.out')) as f:
        hparams, entries = parse_reference_output(f.read())
    assert hparams['model'] == model and steps_of(entries, 'Step')[:2] == [10, 20]
    n_layer_report = 1 if model == 'SBNDoubleCV' else 2   # [ELBO, alpha (, beta)]
    assert all(len(e.values) == 1 + n_layer_report for e in entries if e.kind == 'Step')

    def learned(step):
        path = os.path.join(run_dir, 'model.ckpt-%d' % step)
        return dict((name, tf.train.load_variable(path, name))
                    for name, _ in tf.train.list_variables(path)
                    if name.startswith('estimator/') and 'adam' not in name)
    at_25 = learned(25)
    expected = {'SBNDoubleCV': ['alpha'], 'SBNRodeo': ['alpha', 'beta', 'h/hidden/weights']}
    for part in expected[model]:
        name = [n for n in at_25 if n.endswith('layer_0/' + part)]
        assert name and np.any(at_25[name[0]] != 0), (part, sorted(at_25))

    second = run_process(train_command(*common + ['--max_steps=30']))
    assert second.returncode == 0, second.stderr[-2000:]
    assert 'resumed from model.ckpt-25 at step 25' in second.stderr
    _, entries = parse_reference_output(second.stdout)
    assert steps_of(entries, 'Step') == [30]
    at_30 = learned(30)
    assert sorted(at_30) == sorted(at_25)
    for name, value in at_25.items():
        moved = np.abs(at_30[name] - value).max()
        assert 0 < moved <= 5 * 1.5 * control_lr, (name, moved)
