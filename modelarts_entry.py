"""ModelArts boot file: copies the data in, trains with rebar_train, copies the run out.

    python modelarts_entry.py --data_url=obs://bucket/mnist/ --train_url=obs://bucket/rebar/run1/ \\
        --hparams="model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn"

ModelArts gives the boot file --data_url and --train_url plus the job's parameters. The job's
parameters that rebar_train knows are passed to it unchanged. Any other argument stops the job
before anything is copied or trained, naming it and the nearest known flag (a misspelled
--hparam would otherwise train the default model), except the arguments ModelArts itself adds
(MODELARTS_ARGS, with where that is documented), which are listed on stderr and ignored, and the
names given in --platform_args. --data_dir and --working_dir are set here, so they (and
--data_path) may not be given.

With `moxing` importable (it is on ModelArts) the URLs are OBS paths: the data is copied to local
disk with mox.file.copy_parallel, training writes to local disk, and the run directory is copied
to --train_url every --sync_secs and at the end. Without moxing the URLs are local paths: the
data is read in place and the run is copied the same way, with shutil. A restarted job finds its
run at --train_url, copies it in and resumes from the last complete checkpoint.

What is copied out is always consistent: the latest complete checkpoint (as named by
progress.json at the start of the copy), the metrics, logs and event files, and progress.json
last; checkpoints still being written are left for the next copy.
"""
from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading

import rundir

OWN_FLAGS = ('data_dir', 'working_dir', 'data_path')
# Arguments ModelArts passes to a boot file besides --data_url and --train_url (the job's input
# and output paths, the boot file's own arguments here), accepted and ignored:
# - task_name: generated for every task of a distributed TensorFlow job, "ps" or "worker"
#   (Huawei Cloud ModelArts FAQ "In a Multi-Node Training, the TensorFlow PS Node ... Which Node
#   Is a Worker?", modelarts_05_0382);
# - world_size, rank: the hyperparameters of a multi-card PyTorch job (ModelArts guide "Example
#   of Starting PyTorch DDP Training Based on a Training Job", modelarts-distributed-0011).
# Any other argument an engine adds (older engines' --init_method or --num_gpus, say, which we
# found no documentation for) is named in the refusal; --platform_args=NAME,... lets it through.
MODELARTS_ARGS = ('task_name', 'world_size', 'rank')
BOOT_ARGS = ('data_url', 'train_url', 'cache_dir', 'sync_secs', 'platform_args')   # parse_args'


def note(message):
    sys.stderr.write('modelarts_entry: %s\n' % message)
    sys.stderr.flush()


class LocalFiles(object):
    """URLs that are local paths."""
    name = 'local paths'

    @staticmethod
    def join(url, name):
        return os.path.join(url, name)

    def exists(self, url):
        return os.path.exists(url)

    def list(self, url):
        return os.listdir(url) if os.path.isdir(url) else []

    def make_dirs(self, url):
        if not os.path.isdir(url):
            os.makedirs(url)

    def copy_in(self, url, local):
        """A whole directory from url to the local disk."""
        self.make_dirs(local)
        for name in self.list(url):
            if os.path.isfile(os.path.join(url, name)):
                shutil.copyfile(os.path.join(url, name), os.path.join(local, name))

    def copy_out(self, local, url):
        """One file out; the destination is replaced whole, never seen half-written."""
        with open(local, 'rb') as f:
            rundir.atomic_write(url, lambda out: shutil.copyfileobj(f, out))

    def remove(self, url):
        os.remove(url)


class MoxFiles(object):
    """OBS URLs through moxing's mox.file."""
    name = 'moxing'

    def __init__(self, mox):
        self.mox = mox

    @staticmethod
    def join(url, name):
        return url.rstrip('/') + '/' + name

    def exists(self, url):
        return self.mox.file.exists(url)

    def list(self, url):
        return self.mox.file.list_directory(url) if self.mox.file.exists(url) else []

    def make_dirs(self, url):
        self.mox.file.make_dirs(url)

    def copy_in(self, url, local):
        self.mox.file.copy_parallel(url, local)

    def copy_out(self, local, url):
        self.mox.file.copy(local, url)   # an OBS object is replaced whole

    def remove(self, url):
        self.mox.file.remove(url, recursive=False)


def file_system():
    try:
        import moxing as mox
    except ImportError:
        return LocalFiles()
    return MoxFiles(mox)


class Syncer(object):
    """Copies a run directory to a URL, consistently, now and every `secs` in a thread."""

    def __init__(self, files, local, url, secs):
        self.files, self.local, self.url, self.secs = files, local, url, secs
        self._copied = {}   # name -> (size, mtime) at the last copy
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        if self.secs > 0:
            self._thread = threading.Thread(target=self._loop, name='sync')
            self._thread.daemon = True
            self._thread.start()

    def _loop(self):
        while not self._stop.wait(self.secs):
            try:
                self.sync()
            except Exception as e:   # keep training; the next copy or the final one retries
                note('copy to %s failed (%s: %s); retrying later' % (self.url, type(e).__name__, e))

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def sync(self):
        with self._lock:
            self._sync()

    def _sync(self):
        if not os.path.isdir(self.local):
            return
        state = rundir.RunDir(self.local).read_state()
        latest = state['checkpoint'] if state else None
        self.files.make_dirs(self.url)
        names = sorted(os.listdir(self.local))
        # Checkpoint files first, then everything else, then the pointers that commit them.
        order = sorted(names, key=lambda n: 0 if rundir.checkpoint_of(n) else 1)
        for name in order:
            ckpt = rundir.checkpoint_of(name)
            if (name in (rundir.STATE, rundir.TF_POINTER, rundir.LOCK) or rundir.is_temporary(name)
                    or (ckpt is not None and ckpt != latest)):
                continue
            path = os.path.join(self.local, name)
            try:
                stat = os.stat(path)
            except OSError:   # replaced or pruned meanwhile
                continue
            key = (stat.st_size, stat.st_mtime)
            if not os.path.isfile(path) or self._copied.get(name) == key:
                continue
            self.files.copy_out(path, self.files.join(self.url, name))
            self._copied[name] = key
        if state is None:
            return
        # Out there, only the latest checkpoint is kept.
        state['checkpoints'] = [latest]
        for name, text in ((rundir.TF_POINTER, rundir.tf_pointer_text(latest, [latest])),
                           (rundir.STATE, json.dumps(state, indent=1) + '\n')):
            with tempfile.NamedTemporaryFile('w', suffix='.' + name, delete=False) as f:
                f.write(text)
            try:
                self.files.copy_out(f.name, self.files.join(self.url, name))
            finally:
                os.remove(f.name)
        for name in self.files.list(self.url):
            ckpt = rundir.checkpoint_of(name)
            if ckpt is not None and ckpt != latest:
                self.files.remove(self.files.join(self.url, name))


def default_cache():
    """A fresh local directory for the data and the run, removed at the end (the run is at
    --train_url by then)."""
    if os.path.isdir('/cache') and os.access('/cache', os.W_OK):
        return tempfile.mkdtemp(prefix='rebar_', dir='/cache')
    return tempfile.mkdtemp(prefix='rebar_')


def parse_args(argv):
    """(this file's arguments, the rest for rebar_train); only exact names (no abbreviations:
    --data_ur is refused, not read as --data_url)."""
    parser = argparse.ArgumentParser(
        description='ModelArts boot file for rebar_train.py; other flags go to rebar_train.',
        allow_abbrev=False)
    parser.add_argument('--data_url', required=True,
                        help='Where the data files are (OBS path, or a local path without moxing).')
    parser.add_argument('--train_url', required=True,
                        help='Where the run directory goes (OBS path or local path).')
    parser.add_argument('--cache_dir', default=None,
                        help='Local disk for the data and the run (default: under /cache).')
    parser.add_argument('--sync_secs', type=int, default=300,
                        help='Copy the run to --train_url this often (seconds; 0: at the end '
                        'only).')
    parser.add_argument('--platform_args', default='',
                        help='Names of further arguments the platform adds to every job, '
                        'comma separated, to accept and ignore (default: only %s).'
                        % ', '.join(MODELARTS_ARGS))
    return parser.parse_known_args(argv)


def main(argv=None):
    args, rest = parse_args(sys.argv[1:] if argv is None else argv)
    import rebar_train   # TensorFlow is loaded only once the arguments are known to be good
    platform = MODELARTS_ARGS + tuple(n.strip().lstrip('-') for n in args.platform_args.split(',')
                                      if n.strip())
    try:
        rebar_train.refuse_unknown_flags(
            rest, also=BOOT_ARGS, platform=platform,
            program='modelarts_entry.py')
    except rebar_train.UsageError as e:
        note('error: %s' % e)
        return 2
    flag_values = rebar_train.FLAGS
    flag_values.unparse_flags()
    ignored = flag_values(['modelarts_entry'] + rest, known_only=True)[1:]
    if ignored:
        note("ignoring the platform's arguments: %s" % ' '.join(ignored))
    given = [name for name in OWN_FLAGS if flag_values[name].present]
    if given:
        note('error: --%s is set by this boot file from --data_url/--train_url; remove it.'
             % ', --'.join(given))
        return 2

    files = file_system()
    cache = args.cache_dir or default_cache()
    try:
        return _train(args, files, cache, flag_values, rebar_train)
    finally:
        if args.cache_dir is None:
            shutil.rmtree(cache, ignore_errors=True)


def _train(args, files, cache, flag_values, rebar_train):
    local_run = os.path.join(cache, 'run')
    if isinstance(files, LocalFiles):
        data_dir = args.data_url
    else:
        data_dir = os.path.join(cache, 'data')
        note('copying %s to %s' % (args.data_url, data_dir))
        files.copy_in(args.data_url, data_dir)
    if not os.path.exists(os.path.join(local_run, rundir.STATE)) and (
            files.exists(files.join(args.train_url, rundir.STATE))
            or files.exists(files.join(args.train_url, rundir.HPARAMS))):
        note('found a run at %s: copying it in to resume' % args.train_url)
        files.copy_in(args.train_url, local_run)
    note('files: %s; data %s; run %s, copied to %s every %d s and at the end'
         % (files.name, data_dir, local_run, args.train_url, args.sync_secs))
    flag_values['data_dir'].value = data_dir
    flag_values['working_dir'].value = local_run

    syncer = Syncer(files, local_run, args.train_url, args.sync_secs)
    syncer.start()
    try:
        code = rebar_train.cli(flag_values, label=args.train_url,
                               fix='give another --train_url')
    finally:
        syncer.stop()
        syncer.sync()
        note('run copied to %s' % args.train_url)
    return code

if __name__ == '__main__':
    sys.exit(main())
