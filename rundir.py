"""The run directory: its file names, what makes a checkpoint complete, atomic writes, the lock.

One run's directory holds

    hparams.json        the run's identity: its hparams and seed (written once)
    provenance.json     where it came from: command line, data files and checksums, versions,
                        device, git commit, start and end times
    notes.log           the run's own stderr lines (data source, progress, checkpoints)
    metrics.jsonl       one JSON record per epoch and per evaluation (see records.py)
    log.txt             the reference's stdout lines
    events.out.tfevents.*  TensorBoard
    model.ckpt-STEP.*   a checkpoint: TensorFlow's files and the driver's STEP.driver.npz
    progress.json       the commit point: the last complete checkpoint and those kept
    checkpoint          TensorFlow's pointer file, for tf.train.latest_checkpoint
    lock                held (an OS lock, released when its process dies) while a trainer works

Every file but the event files is written to a temporary name (`NAME.tmp-PID`) and renamed, and
progress.json is replaced only after its checkpoint is fully on disk, so a kill at any moment
leaves the last complete checkpoint usable. This module imports no TensorFlow: the driver, the
ModelArts boot file, the sweep and the report all read runs through it.
"""
from __future__ import absolute_import, division, print_function

import errno
import fcntl
import json
import os
import re

import records as records_format

HPARAMS = 'hparams.json'
PROVENANCE = 'provenance.json'
NOTES = 'notes.log'
METRICS = 'metrics.jsonl'
LOG = 'log.txt'
STATE = 'progress.json'
TF_POINTER = 'checkpoint'
LOCK = 'lock'
PREFIX = 'model.ckpt'
DRIVER_SUFFIX = '.driver.npz'
_CHECKPOINT_FILE = re.compile(r'^(model\.ckpt-(\d+))\.')


class RunDirError(RuntimeError):
    """The run directory belongs to another run, is in use, or its state cannot be read."""


def atomic_write(path, data):
    """Writes `data` to `path` through a temporary file beside it and a rename, so that `path`
    is never seen half-written. `data`: str, bytes, or a function given the open binary file."""
    tmp = '%s.tmp-%d' % (path, os.getpid())
    try:
        with open(tmp, 'wb') as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode('utf-8') if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def is_temporary(name):
    """A file an unfinished write left: ours (.tmp-PID) or TensorFlow's saver's (tempstate)."""
    return '.tmp-' in name or 'tempstate' in name


def checkpoint_name(step):
    return '%s-%d' % (PREFIX, step)


def checkpoint_of(name):
    """The checkpoint a file belongs to ('model.ckpt-12' for 'model.ckpt-12.index'), or None."""
    match = _CHECKPOINT_FILE.match(name)
    return match.group(1) if match else None


def tf_pointer_text(latest, kept):
    """TensorFlow's CheckpointState in text form."""
    return ('model_checkpoint_path: "%s"\n' % latest
            + ''.join('all_model_checkpoint_paths: "%s"\n' % k for k in kept))


def _read_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except (IOError, ValueError) as e:
        raise RunDirError('%s cannot be read (%s); %s' % (path, e, what))


class RunDir(object):
    """The files of one run directory; `label` names it in messages (default: its path)."""

    def __init__(self, path, label=None):
        self.path = path
        self.label = label or path

    def join(self, name):
        return os.path.join(self.path, name)

    def exists(self):
        return os.path.isdir(self.path)

    # -- identity ----------------------------------------------------------------------------
    def read_hparams(self):
        """The stored identity (hparams and seed) as a dict, or None for a new directory."""
        path = self.join(HPARAMS)
        if not os.path.exists(path):
            return None
        return _read_json(path, 'refusing to touch this run directory.')

    def check_identity(self, identity, defaults, fix):
        """Raises RunDirError if the directory holds a run whose identity (a dict of hparams and
        seed) differs from `identity`; a name missing on one side counts as its default."""
        stored = self.read_hparams()
        if stored is None:
            return
        names = list(identity) + [k for k in stored if k not in identity]
        diffs = ['%s=%s there, %s now' % (k, stored.get(k, defaults.get(k, '(unset)')),
                                          identity.get(k, defaults.get(k, '(unset)')))
                 for k in names
                 if stored.get(k, defaults.get(k)) != identity.get(k, defaults.get(k))]
        if diffs:
            raise RunDirError('%s holds a run with other hparams (%s). Nothing was changed. '
                              'Resume it with its own hparams (see its %s) or %s.'
                              % (self.label, '; '.join(diffs), HPARAMS, fix))

    def write_hparams(self, identity):
        if not os.path.exists(self.join(HPARAMS)):
            atomic_write(self.join(HPARAMS), json.dumps(identity) + '\n')

    # -- checkpoints ---------------------------------------------------------------------------
    def read_state(self):
        """progress.json as a dict (step, checkpoint, checkpoints, time), or None before the
        first checkpoint."""
        path = self.join(STATE)
        if not os.path.exists(path):
            return None
        state = _read_json(path, 'it is written atomically, so this run directory was changed '
                                 'by hand; restore it or start another.')
        try:
            int(state['step']), state['checkpoint'], list(state['checkpoints'])
        except (KeyError, TypeError, ValueError) as e:
            raise RunDirError('%s lacks %s; this run directory was changed by hand.' % (path, e))
        return state

    def commit(self, step, kept):
        """Makes checkpoint `step` the current one, keeping `kept` (names, oldest first): the
        commit point, then TensorFlow's pointer."""
        name = checkpoint_name(step)
        atomic_write(self.join(STATE), json.dumps(
            {'step': step, 'checkpoint': name, 'checkpoints': kept}, indent=1) + '\n')
        atomic_write(self.join(TF_POINTER), tf_pointer_text(name, kept))

    def remove_checkpoints(self, names):
        for name in os.listdir(self.path):
            if checkpoint_of(name) in names:
                os.remove(self.join(name))

    def remove_orphans(self, keep):
        """Deletes checkpoint files not in `keep` and leftover temporary files (what a kill
        during a save or a prune leaves behind); returns their names."""
        removed = []
        for name in sorted(os.listdir(self.path)):
            ckpt = checkpoint_of(name)
            if (ckpt is not None and ckpt not in keep) or is_temporary(name):
                os.remove(self.join(name))
                removed.append(name)
        return removed

    def driver_state_path(self, checkpoint):
        return self.join(checkpoint + DRIVER_SUFFIX)

    # -- records and provenance ---------------------------------------------------------------
    def read_records(self):
        path = self.join(METRICS)
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [records_format.loads(line) for line in f if line.strip()]

    def write_records(self, records):
        atomic_write(self.join(METRICS), ''.join(records_format.dumps(r) + '\n' for r in records))
        atomic_write(self.join(LOG), ''.join(r['text'] + '\n' for r in records))

    def read_provenance(self):
        path = self.join(PROVENANCE)
        return _read_json(path, 'it is written atomically.') if os.path.exists(path) else None

    def write_provenance(self, provenance):
        atomic_write(self.join(PROVENANCE), json.dumps(provenance, indent=1, sort_keys=True)
                     + '\n')

    # -- the lock ------------------------------------------------------------------------------
    def lock(self):
        """Takes the run's lock (the directory must exist) and returns the open lock file; it is
        released when the file is closed or the process dies. A held lock is a RunDirError
        naming the holder's process id."""
        f = open(self.join(LOCK), 'a+')
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as e:
            f.close()
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunDirError('%s is in use by process %s (another trainer is working in it). '
                              'Wait for it to finish, stop it, or give another --working_dir.'
                              % (self.label, self.lock_holder() or '(unknown)'))
        f.seek(0)
        f.truncate()
        f.write('%d\n' % os.getpid())
        f.flush()
        return f

    def lock_holder(self):
        """The process id holding the lock, or None when the run is not in use."""
        path = self.join(LOCK)
        if not os.path.exists(path):
            return None
        with open(path, 'a+') as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (IOError, OSError):
                f.seek(0)
                text = f.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return None
