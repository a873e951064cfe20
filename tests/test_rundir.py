"""rundir.py: atomic writes, what a complete checkpoint is, identity checks and the run lock."""
from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys
import textwrap

import pytest

import rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_atomic_write_replaces_whole_and_leaves_no_temporary_on_failure(tmp_path):
    path = str(tmp_path / 'f.json')
    rundir.atomic_write(path, u'first')
    rundir.atomic_write(path, b'second')
    with open(path) as f:
        assert f.read() == 'second'

    def fails(f):
        f.write(b'half')
        raise IOError('disk full')
    with pytest.raises(IOError):
        rundir.atomic_write(path, fails)
    with open(path) as f:
        assert f.read() == 'second'   # the old file is untouched
    assert os.listdir(str(tmp_path)) == ['f.json']
    rundir.atomic_write(path, lambda f: f.write(b'streamed'))
    with open(path) as f:
        assert f.read() == 'streamed'


def test_checkpoint_names_commit_and_orphans(tmp_path):
    run = rundir.RunDir(str(tmp_path))
    assert rundir.checkpoint_of('model.ckpt-12.index') == 'model.ckpt-12'
    assert rundir.checkpoint_of('model.ckpt-12.driver.npz') == 'model.ckpt-12'
    assert rundir.checkpoint_of('metrics.jsonl') is None
    assert run.read_state() is None
    for name in ('model.ckpt-5.index', 'model.ckpt-5.data-00000-of-00001',
                 'model.ckpt-5.driver.npz', 'model.ckpt-9.index', 'metrics.jsonl.tmp-77',
                 'model.ckpt-9_temp_abc', 'notes.log'):
        (tmp_path / name).write_text(u'x')
    run.commit(5, ['model.ckpt-5'])
    assert run.read_state() == {'step': 5, 'checkpoint': 'model.ckpt-5',
                                'checkpoints': ['model.ckpt-5']}
    with open(run.join('checkpoint')) as f:
        assert f.read() == ('model_checkpoint_path: "model.ckpt-5"\n'
                            'all_model_checkpoint_paths: "model.ckpt-5"\n')
    removed = run.remove_orphans({'model.ckpt-5'})
    assert removed == ['metrics.jsonl.tmp-77', 'model.ckpt-9.index']
    assert 'model.ckpt-9_temp_abc' in os.listdir(str(tmp_path))   # not a checkpoint file name
    run.remove_checkpoints({'model.ckpt-5'})
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith('model.ckpt-5')]


def test_a_hand_edited_state_is_refused(tmp_path):
    run = rundir.RunDir(str(tmp_path))
    (tmp_path / 'progress.json').write_text(u'{"step": 3}')
    with pytest.raises(rundir.RunDirError) as e:
        run.read_state()
    assert 'changed by hand' in str(e.value)


def test_identity_check_names_each_difference_and_the_fix(tmp_path):
    run = rundir.RunDir(str(tmp_path), label='obs://bucket/run')
    defaults = {'model': 'SBNGumbel', 'seed': None, 'new_hparam': 0}
    run.check_identity({'model': 'SBN'}, defaults, 'give another --working_dir')   # new: fine
    run.write_hparams({'model': 'SBN', 'seed': 1})
    run.write_hparams({'model': 'other'})   # written once: the identity is not replaced
    assert run.read_hparams() == {'model': 'SBN', 'seed': 1}
    # a name added since, at its default, counts as equal
    run.check_identity({'model': 'SBN', 'seed': 1, 'new_hparam': 0}, defaults, 'x')
    with pytest.raises(rundir.RunDirError) as e:
        run.check_identity({'model': 'SBN', 'seed': 2}, defaults, 'give another --train_url')
    message = str(e.value)
    assert message.startswith('obs://bucket/run holds a run with other hparams (seed=1 there, '
                              '2 now)')
    assert message.endswith('or give another --train_url.')


LOCK_HOLDER = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, {root!r})
    import rundir
    lock = rundir.RunDir({path!r}).lock()
    print('locked', flush=True)
    time.sleep(60)
''')


def test_the_lock_is_exclusive_names_its_holder_and_dies_with_it(tmp_path):
    run = rundir.RunDir(str(tmp_path))
    assert run.lock_holder() is None
    holder = subprocess.Popen([sys.executable, '-c',
                               LOCK_HOLDER.format(root=ROOT, path=str(tmp_path))],
                              stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        assert run.lock_holder() == holder.pid
        with pytest.raises(rundir.RunDirError) as e:
            run.lock()
        assert 'in use by process %d' % holder.pid in str(e.value)
    finally:
        holder.kill()
        holder.wait()
    assert run.lock_holder() is None   # released by the kernel when its process died
    lock = run.lock()
    try:
        assert run.lock_holder() == os.getpid()
    finally:
        lock.close()
    assert run.lock_holder() is None


def test_records_and_provenance_round_trip(tmp_path):
    run = rundir.RunDir(str(tmp_path))
    records = [{'kind': 'train', 'step': 1, 'text': 'Step 1: [1.]\n0.5'},
               {'kind': 'eval', 'step': 1, 'text': '\nValid 1: [2.]\nTest 1: [3.]\n'}]
    run.write_records(records)
    assert run.read_records() == records
    with open(run.join('log.txt')) as f:
        assert f.read() == 'Step 1: [1.]\n0.5\n\nValid 1: [2.]\nTest 1: [3.]\n\n'
    run.write_provenance({'sessions': [{'python': '3.7'}]})
    assert run.read_provenance() == {'sessions': [{'python': '3.7'}]}
    with open(run.join('provenance.json')) as f:
        assert json.load(f) == {'sessions': [{'python': '3.7'}]}
