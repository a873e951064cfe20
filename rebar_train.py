"""Trains a sigmoid belief network with REBAR or a baseline estimator: the reference's driver.

    python rebar_train.py --hparams="model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn"

stdout carries the reference's lines and nothing else: the hparams dict, then after every pass
over the training set

    Step 2084: [-231.02647    0.3711713  ...]
    -3.6465678215026855

(one `('NAME', log variance)` line per estimator for SBNTrackGradVariances), and every
--eval_freq epochs `\\nValid N: [...]` and `Test N: [...]\\n`. Everything else (device choice,
data notes, progress with steps/s and ETA, checkpoints, resumption) goes to stderr, each line
starting `rebar_train: `, and to the run directory's notes.log.

The run directory (--working_dir; its files are described in rundir.py and docs/training.md)
is locked while a trainer works in it. Rerunning the same command resumes from its last
complete checkpoint. Flags and hparams are checked before TensorFlow is imported.
"""
from __future__ import absolute_import, division, print_function

import collections
import difflib
import hashlib
import io
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np

import batches
import config
import datasets
import device
import records
import rundir

DEFAULT_MAX_STEPS = 2000000
ACCELERATOR_STEPS_PER_CALL = 100
ROOT = os.path.dirname(os.path.abspath(__file__))

# -- flags, each declared once: (name, kind, default, help) -------------------------------------
FLAG_SPECS = (
    ('hparams', 'multi_string', [], 'Comma separated name=value pairs (docs/training.md). May be '
     'given several times: later values win, name by name.'),
    ('base_hparams', 'string', '', 'hparams that --hparams and the aliases override name by '
     'name (the launchers give the documented configuration here).'),
    ('working_dir', 'string', None, 'The run directory. Default: runs/<the hparams that differ '
     'from the defaults>[.seed_S]. Rerunning with the same directory resumes the run.'),
    ('data_dir', 'string', None, 'Where the data files are (default: %s, where a fresh '
     'checkout falls back to the bundled sample). A directory named here must hold the data.'
     % config.DATA_DIR),
    ('eval_freq', 'integer', 20, 'Evaluate every this many epochs, and at the end; 0: never.'),
    ('max_steps', 'integer', DEFAULT_MAX_STEPS, 'Stop after this many training steps.'),
    ('device', 'enum', 'auto', 'auto: NPU if npu_bridge imports, else GPU if TensorFlow sees '
     'one, else CPU.', device.DEVICES),
    ('precision_mode', 'enum', device.DEFAULT_PRECISION_MODE, "NPU only: the graph engine's "
     'precision mode.', device.PRECISION_MODES),
    ('static_shapes', 'bool', None, 'Build fixed-shape graphs, one per batch size (the default '
     'on every device; false: the flexible build).'),
    ('fast_start', 'bool', False, "CPU/GPU: skip TensorFlow's graph optimizer (start in "
     'seconds, run each step 10-20% slower); for smoke tests.'),
    ('seed', 'integer', None, 'Seed for shuffling, binarization and the noise (default: '
     'unseeded). Part of the run\'s identity: another seed is another run.'),
    ('checkpoint_secs', 'integer', 300, 'Save a checkpoint at least this often (seconds; 0: '
     'only on the step count and at the end).'),
    ('checkpoint_steps', 'integer', 0, 'Also save every this many steps (0: off).'),
    ('keep_checkpoints', 'integer', 3, 'How many complete checkpoints to keep.'),
    ('log_every', 'integer', 0, 'Print a progress line (steps/s, images/s, ETA) on stderr every '
     'this many steps; 0: every --progress_secs instead.'),
    ('progress_secs', 'integer', 60, 'Seconds between progress lines when --log_every is 0; '
     '0: none.'),
    ('steps_per_call', 'integer', None, 'Training steps per session call, run in a loop in the '
     'graph (default: 1 on the CPU, where a call costs little and the graph stays small; %d '
     'on an NPU or GPU, where each call is a round trip to the device). A seeded run prints '
     'the same lines for every value.' % ACCELERATOR_STEPS_PER_CALL),
    ('threads', 'integer', None, 'CPU/GPU: TensorFlow ops run side by side (default: every '
     'core). A sweep sets it to its runs\' CPUs.'),
    ('tf_log', 'bool', False, "Keep TensorFlow's own log lines and warnings (also "
     'REBAR_TF_LOG=1).'),
    # The Ascend port's flags, aliases of the above: both given with different values is an error.
    ('data_path', 'string', None, 'Alias of --data_dir.'),
    ('batch_size', 'integer', None, 'Alias of --hparams=batch_size=N.'),
    ('learning_rate', 'float', None, 'Alias of --hparams=learning_rate=X.'),
    ('steps', 'integer', None, 'Alias of --max_steps.'),
)
# Flags that are resolved into others rather than kept as options.
_INPUT_ONLY = ('hparams', 'base_hparams', 'data_path', 'batch_size', 'learning_rate', 'steps')

FLAGS = flags.FLAGS


def _define_flags():
    for spec in FLAG_SPECS:
        name, kind, default, help_text = spec[:4]
        if kind == 'enum':
            flags.DEFINE_enum(name, default, spec[4], help_text)
        else:
            getattr(flags, 'DEFINE_' + kind)(name, default, help_text)


_define_flags()

Options = collections.namedtuple('Options', ['hparams'] + [
    s[0] for s in FLAG_SPECS if s[0] not in _INPUT_ONLY])
_DEFAULTS = dict((s[0], s[2]) for s in FLAG_SPECS)


class UsageError(ValueError):
    """Flags that cannot describe a run, or a run directory that cannot be written."""


RunDirError = rundir.RunDirError


class NonFiniteError(RuntimeError):
    """A training step produced a non-finite loss or gradient."""


class WriteError(RuntimeError):
    """A file of the run could not be written (disk full, read-only, ...)."""


class Stopped(RuntimeError):
    """Stopped by a signal after saving a checkpoint."""

    def __init__(self, message, signum):
        RuntimeError.__init__(self, message)
        self.signum = signum


# -- options ------------------------------------------------------------------------------------
def make_options(hparams, **kw):
    """Options with the flags' defaults; `hparams` an HParams."""
    unknown = set(kw) - set(Options._fields)
    if unknown:
        raise TypeError('Unknown options: %s' % ', '.join(sorted(unknown)))
    values = dict((name, _DEFAULTS[name]) for name in Options._fields if name != 'hparams')
    values.update(kw, hparams=hparams)
    options = Options(**values)
    for name in ('eval_freq', 'max_steps', 'checkpoint_secs', 'checkpoint_steps', 'log_every',
                 'progress_secs'):
        if getattr(options, name) < 0:
            raise UsageError('--%s must be >= 0, got %d.' % (name, getattr(options, name)))
    if options.keep_checkpoints < 1:
        raise UsageError('--keep_checkpoints must be >= 1, got %d.' % options.keep_checkpoints)
    if options.steps_per_call is not None and options.steps_per_call < 1:
        raise UsageError('--steps_per_call must be >= 1, got %d.' % options.steps_per_call)
    if options.threads is not None and options.threads < 1:
        raise UsageError('--threads must be >= 1, got %d.' % options.threads)
    return options


def resolve_options(hparams=(), base_hparams='', data_dir=None, data_path=None,
                    batch_size=None, learning_rate=None, max_steps=None, steps=None, **others):
    """Options from flag values (None: not given): `base_hparams`, then each --hparams in turn,
    then the Ascend port's aliases, applied name by name.

    An alias and its flag (or the same hparam in --hparams) given with different values is a
    UsageError, as are hparams that config refuses.
    """
    specs = [hparams] if isinstance(hparams, str) else list(hparams or ())
    try:
        hp = config.parse_hparams(base_hparams or '')
        named = {}
        for spec in specs:
            hp = config.parse_hparams(spec, base=hp)
            named.update((k, getattr(hp, k)) for k in config.named_in(spec))
        overrides = {}
        for name, value in (('batch_size', batch_size), ('learning_rate', learning_rate)):
            if value is None:
                continue
            if name in named and named[name] != value:
                raise UsageError('--%s=%s conflicts with %s=%s in --hparams; give it once.'
                                 % (name, value, name, named[name]))
            overrides[name] = value
        if overrides:
            hp = hp.replace(**overrides)
    except UsageError:
        raise
    except ValueError as e:   # config's refusals, which name the fix
        raise UsageError(str(e))
    if max_steps == DEFAULT_MAX_STEPS:
        max_steps = None   # the flag's default: --steps may set it
    return make_options(hp, data_dir=_one_of('data_dir', data_dir, 'data_path', data_path),
                        max_steps=_one_of('max_steps', max_steps, 'steps', steps,
                                          DEFAULT_MAX_STEPS), **others)


def refuse_unknown_flags(argv, also=(), platform=(), program='rebar_train', suggest=()):
    """Raises UsageError, in one line, naming every argument of `argv` that rebar_train's flags
    (or the names in `also`, a wrapper's own) do not take, each with the nearest known name
    (difflib), so that a misspelled flag stops the job instead of running the default one.
    Names in `platform` (arguments a launcher adds to every job) are let through with their
    values; names in `suggest` are offered as near misses only. Flags are `--name=value`,
    `--name value`, `--name` or `--noname` (booleans)."""
    booleans = set(name for name in FLAGS if FLAGS[name].boolean)
    negated = set('no' + name for name in booleans)
    known = set(FLAGS) | set(also) | negated
    problems, expecting_value = [], None
    for token in argv:
        if not token.startswith('-') or token in ('-', '--'):
            if expecting_value is None:
                problems.append('unexpected argument %r' % token)
            expecting_value = None
            continue
        name = token.lstrip('-').split('=', 1)[0]
        takes_value = '=' not in token and name not in booleans and name not in negated
        if name in known or name in platform:
            expecting_value = name if takes_value else None
            continue
        expecting_value = None
        near = difflib.get_close_matches(name, sorted(known | set(suggest)), n=1, cutoff=0.6)
        problems.append('unknown flag --%s%s' % (name, ' (did you mean --%s?)' % near[0]
                                                 if near else ''))
    if problems:
        raise UsageError('%s. Nothing was started; %s --help lists the flags.'
                         % ('; '.join(problems), program))


def options_from_flags(flag_values):
    return resolve_options(**dict((s[0], flag_values[s[0]].value) for s in FLAG_SPECS))


def _one_of(name, value, alias, alias_value, default=None):
    if value is not None and alias_value is not None and value != alias_value:
        raise UsageError('--%s=%s conflicts with --%s=%s (an alias); give one of them.'
                         % (name, value, alias, alias_value))
    for v in (value, alias_value):
        if v is not None:
            return v
    return default


def identity(options):
    """What makes a run this run: its hparams and its seed (stored in hparams.json)."""
    values = options.hparams.values()
    values['seed'] = options.seed
    return values


IDENTITY_DEFAULTS = dict(config.DEFAULTS, seed=None)


def default_run_dir(hparams, seed=None):
    """runs/ + the hparams that differ from the defaults, as the reference names runs
    ("name_value" joined by ".", sorted), + ".seed_S" for a seeded run; a digest replaces the
    tail of a long name."""
    items = sorted((k, v) for k, v in hparams.values().items() if config.DEFAULTS[k] != v)
    name = '.'.join('%s_%s' % kv for kv in items) or 'defaults'
    if len(name) > 120:
        name = name[:110] + '.' + hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]
    return os.path.join('runs', name + ('' if seed is None else '.seed_%d' % seed))


# -- the reference's lines -------------------------------------------------------------------------
def epoch_text(step, mean_report, log_variance, tracked):
    """`Step N: [report]` and the log gradient variance line(s), as the reference prints them."""
    if tracked:
        lines = [str((name, float(v))) for name, v in sorted(zip(tracked, log_variance))]
    else:
        lines = [str(float(log_variance))]
    return 'Step %d: %s\n%s' % (step, str(mean_report), '\n'.join(lines))


def eval_text(step, valid, test):
    return '\nValid %d: %s\nTest %d: %s\n' % (step, str(valid), step, str(test))


def _duration(seconds):
    if not math.isfinite(seconds):
        return '?'
    seconds = int(round(seconds))
    return '%d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def _git_commit():
    try:
        out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# -- pieces of the loop ----------------------------------------------------------------------------
class Progress(object):
    """Progress lines on stderr: steps/s and images/s over training time only, and an ETA."""

    def __init__(self, options, batch_size, note):
        self.options, self.batch_size, self.note = options, batch_size, note

    def start(self, step):
        self.step_time, self.step, self.time = 0.0, step, time.time()

    def after_step(self, step, seconds, where):
        """`where`: (epoch, batch, batches per epoch)."""
        self.step_time += seconds
        o = self.options
        steps = step - self.step
        if o.log_every:
            due = steps >= o.log_every
        else:
            due = bool(o.progress_secs) and time.time() - self.time >= o.progress_secs
        if not due or self.step_time <= 0:
            return
        rate = steps / self.step_time
        self.note('progress: step %d of %d, epoch %d (batch %d of %d), %.2f steps/s, '
                  '%.1f images/s, ETA %s'
                  % ((step, o.max_steps) + where
                     + (rate, rate * self.batch_size, _duration((o.max_steps - step) / rate))))
        self.start(step)


class Checkpoints(object):
    """Saves checkpoints into the run directory and commits them: the TensorFlow files and the
    driver's epoch state first, then progress.json (the commit point), then old ones pruned."""

    def __init__(self, run_dir, options, kept, note):
        self.run_dir, self.options, self.kept, self.note = run_dir, options, list(kept), note
        self.last_time = time.time()

    @property
    def latest(self):
        return self.kept[-1] if self.kept else None

    def due(self, step):
        o = self.options
        if o.checkpoint_steps and step % o.checkpoint_steps == 0:
            return True
        return bool(o.checkpoint_secs) and time.time() - self.last_time >= o.checkpoint_secs

    def save(self, session, step, driver_arrays):
        name = rundir.checkpoint_name(step)
        if self.latest == name:
            return
        try:
            session.save(self.run_dir.join(name))
            buf = io.BytesIO()
            np.savez(buf, **driver_arrays)
            rundir.atomic_write(self.run_dir.driver_state_path(name), buf.getvalue())
            kept = (self.kept + [name])[-self.options.keep_checkpoints:]
            self.run_dir.commit(step, kept)
        except EnvironmentError as e:
            raise WriteError('could not save checkpoint %s in %s (%s). %s'
                             % (name, self.run_dir.path, _reason(e), self.resume_hint()))
        self.run_dir.remove_checkpoints(set(self.kept) - set(kept))
        self.kept = kept
        self.last_time = time.time()
        self.note('checkpoint %s saved' % name)

    def resume_hint(self):
        if self.latest:
            return ('The last good checkpoint, %s, is kept: free space or fix the directory, '
                    'then rerun the same command to resume from it.' % self.latest)
        return ('No checkpoint was saved yet: free space or fix the directory, then rerun the '
                'same command to start again.')


def _describe_data(data):
    """What provenance.json says of the data: the data set's description and each file read
    (path, size, SHA-256); arrays given by a caller have neither."""
    return collections.OrderedDict([
        ('description', getattr(data, 'description', 'arrays given by the caller')),
        ('files', [collections.OrderedDict(zip(('path', 'size', 'sha256'), source))
                   for source in getattr(data, 'sources', ())])])


def check_data_matches(hp, data, what):
    """Raises UsageError, in one line, when the images do not fit the hparams: each split must be
    [N, n_input] (the network's input and output layers are built n_input wide). Runs right
    after the data is loaded, before the graph is built."""
    for name, xs in zip(('train', 'valid', 'test'), data):
        shape = list(np.shape(xs))
        if len(shape) != 2 or shape[1] != hp.n_input:
            raise UsageError('n_input=%d does not match the data: the %s images have shape %s '
                             '(%s). Fix: pass n_input=%s.'
                             % (hp.n_input, name, shape, what.split('. ')[0],
                                shape[1] if len(shape) == 2 else '<pixels per image>'))


def _reason(error):
    return getattr(error, 'strerror', None) or str(error).strip().split('\n')[0]


# -- the trainer -----------------------------------------------------------------------------------
class Trainer(object):
    """One run: its directory (checked, locked), data, graph and session, resumed from the last
    complete checkpoint. `train()` is the main loop.

    `data`: (train, valid, test) arrays instead of loading them. `out`/`err`: the streams for the
    reference's lines and for everything else. `label`/`fix`: how messages name the run
    directory and what they tell the user to do about another run's directory (the ModelArts
    boot file names its --train_url).
    """

    def __init__(self, options, data=None, out=None, err=None, label=None,
                 fix='give another --working_dir'):
        self.options = o = options
        self.hp = hp = options.hparams
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.run_dir = rundir.RunDir(o.working_dir or default_run_dir(hp, o.seed), label)
        self.notes = self.session = None
        # Refusals first: nothing is written before these pass.
        self.run_dir.check_identity(identity(o), IDENTITY_DEFAULTS, fix)
        state = self.run_dir.read_state() if self.run_dir.exists() else None
        old_records = self.run_dir.read_records() if self.run_dir.exists() else []
        self._created = self._open_run_dir()
        self.fresh = state is None and not old_records
        try:
            self._start(state, old_records, data)
        except BaseException:
            self.close(discard=self.fresh)
            raise

    def _open_run_dir(self):
        """Creates (if need be) and locks the run directory, before data and graph: a directory
        that cannot be written is refused now, not after minutes of set-up."""
        path = self.run_dir.path
        created = not os.path.isdir(path)
        try:
            if created:
                os.makedirs(path)
            self._lock = self.run_dir.lock()
            self.notes = open(self.run_dir.join(rundir.NOTES), 'a')
        except EnvironmentError as e:
            raise UsageError('cannot write the run directory %s (%s). Give a --working_dir in a '
                             'writable place.' % (path, _reason(e)))
        return created

    def _start(self, state, old_records, data):
        o, hp = self.options, self.hp
        self.started = time.time()
        self.note('run directory %s (%s)' % (self.run_dir.path, 'resuming at step %d'
                                              % state['step'] if state else 'a new run'))
        tf = device.import_tensorflow(o.tf_log)
        backend = device.choose(o.device, o.precision_mode, o.fast_start, log=self.note,
                                threads=o.threads)
        if data is None:
            data = (datasets.load_grey(config.dataset_of(hp), o.data_dir)
                    if hp.likelihood == 'gaussian'
                    else datasets.load_data(config.dataset_of(hp), hp.dynamic_b, o.data_dir))
        self.data_sources = _describe_data(data)
        check_data_matches(hp, data, getattr(data, 'description', 'the data given'))
        self.train_xs, self.valid_xs, self.test_xs = data
        self.n_batches = batches.batches_per_epoch(len(self.train_xs), hp.batch_size)
        if self.n_batches < 1:
            raise UsageError('The training set (%d images) holds no batch of %d.'
                             % (len(self.train_xs), hp.batch_size))
        if state:
            self._check_resumable(state)

        self.say(str(dict(hp.values())))
        self.run_dir.write_hparams(identity(o))
        self.start_step = state['step'] if state else 0
        self.sessions = (self.run_dir.read_provenance() or {}).get('sessions', [])
        self.sessions.append(self._provenance(tf, backend))
        self.run_dir.write_provenance({'sessions': self.sessions})
        removed = self.run_dir.remove_orphans(set(state['checkpoints']) if state else set())
        if removed:
            self.note('removed %d unfinished checkpoint or temporary file(s): %s'
                      % (len(removed), ', '.join(removed)))
        # Records after the checkpoint belong to the lost interval: it is trained again.
        self.records = [r for r in old_records if r['step'] <= self.start_step]
        if len(self.records) != len(old_records):
            self.note('dropped %d metrics record(s) after step %d (%s)'
                      % (len(old_records) - len(self.records), self.start_step,
                         'redone from the checkpoint' if state else
                         'no checkpoint was saved: training starts again from step 0'))
            self.run_dir.write_records(self.records)
        evals = [r['step'] for r in self.records if r['kind'] == records.EVAL]
        self.last_eval_step = evals[-1] if evals else None

        import session   # TensorFlow's side, imported once the run is known to be good
        n, batch_size = len(self.train_xs), hp.batch_size
        seed = o.seed
        static_shapes = backend.static_shapes if o.static_shapes is None else o.static_shapes
        self.steps_per_call = self._steps_per_call(backend, static_shapes)
        self.session = session.RunSession(
            hp, backend, self.train_xs,
            batch_sizes={min(batch_size, n - i * batch_size) for i in range(self.n_batches)},
            static_shapes=static_shapes, evaluates=o.eval_freq > 0,
            steps_per_call=self.steps_per_call,
            # the same in every process of the run: a seeded run's noise is keyed by the step
            # (rebar.Model.keyed_uniform), so a resumed run draws what the uninterrupted one does
            random_seed=None if seed is None else seed * 1000003 % (2 ** 31 - 1),
            log_dir=self.run_dir.path)
        # the estimator's cost, for the report (which reads no TensorFlow)
        self.sessions[-1]['evaluations_per_image'] = self.session.model.evaluations_per_image()
        self.run_dir.write_provenance({'sessions': self.sessions})
        self.rng = np.random.RandomState(seed)
        # TensorBoard drops the events of an earlier, killed process after this run's start
        self.session.restart_marker(self.start_step + 1)
        self.checkpoints = Checkpoints(self.run_dir, o, state['checkpoints'] if state else [],
                                       self.note)
        if state:
            self._use_epoch(self._restore(state), state['step'])
        else:
            self.session.initialize()
            self._use_epoch(self._new_epoch(), 0)
        self.step = self.start_step
        self.progress = Progress(o, hp.batch_size, self.note)
        self._stop_signal = None

    def _steps_per_call(self, backend, static_shapes):
        k = self.options.steps_per_call
        if k is None:
            return 1 if backend.name == 'cpu' or not static_shapes else ACCELERATOR_STEPS_PER_CALL
        if k > 1 and not static_shapes:
            raise UsageError('--steps_per_call=%d needs static shapes (the batches are taken in '
                             'the session); drop --static_shapes=false or use '
                             '--steps_per_call=1.' % k)
        return k

    def _provenance(self, tf, backend):
        return collections.OrderedDict([
            ('command', [sys.executable] + sys.argv), ('cwd', os.getcwd()),
            ('host', platform.node()), ('python', platform.python_version()),
            ('tensorflow', tf.__version__), ('numpy', np.__version__),
            ('device', backend.name), ('git_commit', _git_commit()),
            ('data', self.data_sources), ('start_step', self.start_step),
            ('started', self.started), ('ended', None), ('end_step', None),
            ('outcome', None)])

    def _end_provenance(self, outcome):
        if not getattr(self, 'sessions', None):
            return
        self.sessions[-1].update(ended=time.time(), end_step=self.step, outcome=outcome)
        self.run_dir.write_provenance({'sessions': self.sessions})

    # -- the epoch and its batches ------------------------------------------------------------
    def _use_epoch(self, epoch, step):
        """Makes `epoch` current; its next batch is taken at global step `step`."""
        self.epoch = epoch
        self.session.load_epoch(epoch.order, step - epoch.batch)

    def _new_epoch(self):
        return batches.Epoch(self.rng.permutation(len(self.train_xs)), self.hp.batch_size,
                             self.n_batches)

    def _driver_state(self, state):
        path = self.run_dir.driver_state_path(state['checkpoint'])
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return dict(arrays.items())
        except (IOError, ValueError) as e:
            raise RunDirError('%s cannot be read (%s); the run directory was changed by hand.'
                              % (path, e))

    def _check_resumable(self, state):
        """Refuses a checkpoint whose epochs do not fit the data (before anything is written)."""
        arrays = self._driver_state(state)
        n_images, n_batches = len(arrays['order']), int(arrays['n_batches'])
        if (n_images, n_batches) != (len(self.train_xs), self.n_batches):
            raise RunDirError('%s was made with %d training images in %d batches an epoch; the '
                              'data now give %d in %d. Resume on the same data.'
                              % (state['checkpoint'], n_images, n_batches, len(self.train_xs),
                                 self.n_batches))

    def _restore(self, state):
        prefix = self.run_dir.join(state['checkpoint'])
        step, temperature = self.session.restore(prefix)
        if step != state['step']:
            raise RunDirError('%s holds step %d but %s says %d.'
                              % (prefix, step, rundir.STATE, state['step']))
        arrays = self._driver_state(state)
        width = len(self.session.model.report_names)
        if len(arrays['reports']) and arrays['reports'].shape[1:] != (width,):
            raise RunDirError(
                '%s holds part of an epoch of %d-entry reports; this build of the model reports '
                '%d (the code changed since). Resume with the code that wrote it, or from a '
                'checkpoint at the end of an epoch (%s lists them).'
                % (state['checkpoint'], arrays['reports'].shape[-1], width, rundir.STATE))
        self.note('resumed from %s at step %d (temperature %r)'
                  % (state['checkpoint'], step, float(temperature)))
        return batches.Epoch.from_arrays(arrays, self.rng)

    def restore_latest(self):
        """Restores the last complete checkpoint into the session (and the epoch state)."""
        state = self.run_dir.read_state()
        self._use_epoch(self._restore(state), state['step'])
        self.step = state['step']

    # -- output --------------------------------------------------------------------------------
    def say(self, text):
        """A line of the reference's output (stdout)."""
        self.out.write(text + '\n')
        self.out.flush()

    def note(self, text):
        """Anything else: stderr, and the run's notes.log."""
        line = 'rebar_train: %s\n' % text
        self.err.write(line)
        self.err.flush()
        if self.notes is not None:
            self.notes.write(time.strftime('%Y-%m-%d %H:%M:%S ') + line)
            self.notes.flush()

    def _record(self, record):
        self.records.append(record)
        self.run_dir.write_records(self.records)
        self.say(record['text'])

    # -- training ------------------------------------------------------------------------------
    def train(self):
        """Trains to options.max_steps; returns the final step."""
        o = self.options
        if self.step >= o.max_steps:
            self.note('step %d already reaches --max_steps=%d: nothing to do.'
                      % (self.step, o.max_steps))
            self._end_provenance('finished')
            return self.step
        handlers = self._catch_signals()
        outcome = 'failed'
        try:
            self._loop()
            outcome = 'finished'
        except Stopped:
            outcome = 'stopped'
            raise
        except EnvironmentError as e:
            raise WriteError('could not write the run directory %s (%s). %s'
                             % (self.run_dir.path, _reason(e), self.checkpoints.resume_hint()))
        finally:
            self._restore_signals(handlers)
            if self.step > self.start_step or not self.fresh:
                self._end_provenance(outcome)
            else:
                self.fresh_failure = True
        return self.step

    def _loop(self):
        o = self.options
        self.checkpoints.last_time = time.time()
        self.progress.start(self.step)
        while self.step < o.max_steps:
            if self._stop_signal:
                self.checkpoint()
                raise Stopped('stopped by signal %d at step %d after saving a checkpoint; rerun '
                              'the same command to resume.' % (self._stop_signal, self.step),
                              self._stop_signal)
            started = time.time()
            results = self._call_session()
            seconds = (time.time() - started) / len(results)
            for report, variance, step, temperature, finite in results:
                report = np.array(report)
                if not finite or not np.all(np.isfinite(report)):
                    self._non_finite(int(step), report, finite)
                self.step = int(step)
                self.epoch.add(report, variance, temperature)
                self.progress.after_step(self.step, seconds, (self.epoch_index(),
                                                              self.epoch.batch, self.n_batches))
            # a call never crosses an epoch end or a step-count checkpoint (_steps_in_call)
            if self.epoch.done:
                self._end_epoch()
                self._use_epoch(self._new_epoch(), self.step)
            if self.checkpoints.due(self.step):
                self.checkpoint()
        if self.epoch.reports:   # the partial epoch at --max_steps
            self._end_epoch(partial=True)
        if o.eval_freq and self.last_eval_step != self.step:
            self._evaluate()
        self.checkpoint()

    def _call_session(self):
        """The next steps in one session call: [(report, variance, step, temperature,
        finite)], one entry per step."""
        n = self._steps_in_call()
        if n > 1:
            return self.session.steps(n)
        indices = self.epoch.next_indices()
        if self.session.batches:   # static shapes: the batch is taken in the session
            batch = len(indices)
        else:
            batch = self.train_xs[indices]
            if self.hp.dynamic_b:
                batch = (self.rng.rand(*batch.shape) < batch).astype(np.float32)
        return [self.session.step(batch)]

    def _steps_in_call(self):
        """Up to --steps_per_call full batches, within the epoch (the last, partial batch
        has its own graph and runs alone), --max_steps and the next --checkpoint_steps."""
        o = self.options
        full_batches = min(self.n_batches, len(self.train_xs) // self.hp.batch_size)
        n = min(self.steps_per_call, full_batches - self.epoch.batch, o.max_steps - self.step)
        if o.checkpoint_steps:
            n = min(n, o.checkpoint_steps - self.step % o.checkpoint_steps)
        return max(n, 1)

    def checkpoint(self):
        self.checkpoints.save(self.session, self.step, self.epoch.to_arrays(self.rng))

    def _non_finite(self, step, report, grads_finite):
        what = []
        if not np.all(np.isfinite(report)):
            what.append('report %s' % report)
        if not grads_finite:
            what.append('a gradient')
        if self.checkpoints.latest:
            last = ('the last good checkpoint, %s, is kept; rerun to resume from it after '
                    'lowering learning_rate or checking the data' % self.checkpoints.latest)
        else:
            last = 'no checkpoint was saved yet'
        raise NonFiniteError('step %d: non-finite %s. Training stopped; %s.'
                             % (step, ' and '.join(what), last))

    def _end_epoch(self, partial=False):
        ep, tracked = self.epoch, self.session.tracked
        mean_report = np.mean(ep.reports, axis=0)
        log_variance = np.log(np.mean(ep.variances, axis=0))
        temperature = float(np.mean(ep.temperatures))
        epoch = self.epoch_index()
        self._record(records.train_record(
            self.step, epoch, partial, len(ep.reports), mean_report,
            self.session.model.report_names,
            (dict(zip(tracked, log_variance.tolist())) if tracked else float(log_variance)),
            temperature, epoch_text(self.step, mean_report, log_variance, tracked)))
        scalars = [('Train ELBO', mean_report[0]), ('Temperature', temperature)]
        if tracked:
            scalars += [('log grad variance/%s' % name, v)
                        for name, v in zip(tracked, log_variance)]
        else:
            scalars.append(('log grad variance', log_variance))
        self.session.scalars(scalars, self.step)
        if not partial and self.options.eval_freq and epoch % self.options.eval_freq == 0:
            self._evaluate()

    def epoch_index(self):
        """The reference's epoch index, int(step / (n / batch_size)); when a last batch of one
        image is dropped, int(step / batches per epoch), which the reference's formula would
        put one epoch behind."""
        n, batch_size = len(self.train_xs), self.hp.batch_size
        if self.n_batches * batch_size >= n:
            return int(self.step / (n / batch_size))
        return self.step // self.n_batches

    def evaluate(self, xs, split=0):
        return self.session.evaluate(xs, split)

    def _evaluate(self):
        started = time.time()
        valid, test = self.evaluate(self.valid_xs, 0), self.evaluate(self.test_xs, 1)
        self._record(records.eval_record(self.step, self.epoch_index(), valid, test,
                                         self.session.model.eval_report_names,
                                         eval_text(self.step, valid, test)))
        self.last_eval_step = self.step
        self.session.scalars([('Valid bound', valid[0]), ('Test bound', test[0])], self.step)
        self.note('evaluated %d + %d images in %.1f s'
                  % (len(self.valid_xs), len(self.test_xs), time.time() - started))

    # -- signals and the end ---------------------------------------------------------------------
    def _catch_signals(self):
        def stop(signum, frame):
            self._stop_signal = signum
        handlers = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                handlers[signum] = signal.signal(signum, stop)
            except ValueError:   # not the main thread: leave signals alone
                pass
        return handlers

    @staticmethod
    def _restore_signals(handlers):
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    def close(self, discard=None):
        """Closes the session and releases the run directory. A fresh run that failed before
        its first step leaves nothing that would refuse a corrected rerun."""
        if discard is None:
            discard = getattr(self, 'fresh_failure', False)
        if self.session is not None:
            self.session.close()
            self.session = None
        if self.notes is not None:
            self.notes.close()
            self.notes = None
        if discard:
            self._discard()
        if getattr(self, '_lock', None) is not None:
            self._lock.close()
            self._lock = None

    def _discard(self):
        if self._created:
            shutil.rmtree(self.run_dir.path, ignore_errors=True)
            return
        for name in os.listdir(self.run_dir.path):
            if name in (rundir.HPARAMS, rundir.PROVENANCE) or name.startswith('events.out'):
                os.remove(self.run_dir.join(name))


def run(options, data=None, out=None, err=None, **kw):
    """Trains a run to options.max_steps (resuming it); returns the final step."""
    trainer = Trainer(options, data=data, out=out, err=err, **kw)
    try:
        return trainer.train()
    finally:
        trainer.close()


# Errors that end a run with one message rather than a traceback, and their exit codes.
EXIT_CODES = ((UsageError, 2), (RunDirError, 2), (device.DeviceError, 2),
              (datasets.DataError, 2), (NonFiniteError, 1), (WriteError, 1))


def cli(flag_values=None, err=None, **kw):
    """Runs from parsed flags; returns the exit code. `kw` goes to Trainer (label, fix)."""
    flag_values = flag_values or FLAGS
    err = err or sys.stderr
    try:
        run(options_from_flags(flag_values), err=err, **kw)
    except Stopped as e:
        err.write('rebar_train: %s\n' % e)
        return 128 + e.signum
    except tuple(kind for kind, _ in EXIT_CODES) as e:
        code = next(c for kind, c in EXIT_CODES if isinstance(e, kind))
        err.write('rebar_train: error: %s\n' % e)
        return code
    return 0


def main(argv):
    if len(argv) > 1:
        raise app.UsageError('Unexpected arguments: %s' % ' '.join(argv[1:]))
    return cli()


if __name__ == '__main__':
    app.run(main)
