"""Trains a sigmoid belief network with REBAR or a baseline estimator: the reference's driver.

    python rebar_train.py --hparams="model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn"

stdout carries the reference's lines and nothing else: the hparams dict, then after every pass
over the training set

    Step 2084: [-231.02647    0.3711713  ...]
    -3.6465678215026855

(one `('NAME', log variance)` line per estimator for SBNTrackGradVariances), and every
--eval_freq epochs `\\nValid N: [...]` and `Test N: [...]\\n`. Everything else (device choice,
data notes, progress with steps/s and ETA, checkpoints, resumption) goes to stderr.

The run directory (--working_dir) holds hparams.json, metrics.jsonl (one JSON record per epoch
and per evaluation, with the printed text), log.txt (the stdout lines), TensorBoard event files,
checkpoints (model.ckpt-STEP.* plus the driver's epoch state model.ckpt-STEP.driver.npz) and
progress.json, the one file that says which checkpoint is complete. Every file but the event
files is written to a temporary name and renamed, and progress.json is replaced only after its
checkpoint is fully on disk, so a kill at any moment leaves the last complete checkpoint usable.
Rerunning the same command resumes from it; docs/training.md has the details.
"""
from __future__ import absolute_import, division, print_function

import collections
import hashlib
import io
import json
import math
import os
import re
import signal
import sys
import time

from absl import app
from absl import flags
import numpy as np

import config
import datasets
import device
import rebar  # (imports utils, which puts TF 2 in graph mode)
import tensorflow.compat.v1 as tf

DEFAULT_MAX_STEPS = 2000000

FLAGS = flags.FLAGS
flags.DEFINE_string('hparams', '', 'Comma separated list of name=value pairs (see SPEC).')
flags.DEFINE_string('working_dir', None,
                    'The run directory. Default: runs/<the hparams that differ from the '
                    'defaults>. Rerunning with the same directory resumes the run.')
flags.DEFINE_string('data_dir', None, 'Where the data files are (default: config.DATA_DIR).')
flags.DEFINE_integer('eval_freq', 20, 'Evaluate every this many epochs, and at the end; 0: '
                     'never.')
flags.DEFINE_integer('max_steps', None, 'Stop after this many training steps (default %d).'
                     % DEFAULT_MAX_STEPS)
flags.DEFINE_enum('device', 'auto', device.DEVICES,
                  'auto: NPU if npu_bridge imports, else GPU if TensorFlow sees one, else CPU.')
flags.DEFINE_enum('precision_mode', device.DEFAULT_PRECISION_MODE, device.PRECISION_MODES,
                  'NPU only: the graph engine\'s precision mode.')
flags.DEFINE_bool('static_shapes', None, 'Build fixed-shape graphs, one per batch size (the '
                  'default on every device; false: the flexible build).')
flags.DEFINE_bool('fast_start', False, 'CPU/GPU: skip TensorFlow\'s graph optimizer (start in '
                  'seconds, run each step 10-20% slower); for smoke tests.')
flags.DEFINE_integer('seed', None, 'Seed for shuffling, binarization and the noise '
                     '(default: unseeded).')
flags.DEFINE_integer('checkpoint_secs', 300, 'Save a checkpoint at least this often (seconds; '
                     '0: only on the step count and at the end).')
flags.DEFINE_integer('checkpoint_steps', 0, 'Also save every this many steps (0: off).')
flags.DEFINE_integer('keep_checkpoints', 3, 'How many complete checkpoints to keep.')
flags.DEFINE_integer('log_every', 0, 'Print a progress line (steps/s, images/s, ETA) on stderr '
                     'every this many steps; 0: every --progress_secs instead.')
flags.DEFINE_integer('progress_secs', 60, 'Seconds between progress lines when --log_every is '
                     '0; 0: none.')
# The Ascend port's flags, aliases of the above; giving both with different values is an error.
flags.DEFINE_string('data_path', None, 'Alias of --data_dir.')
flags.DEFINE_integer('batch_size', None, 'Alias of --hparams=batch_size=N.')
flags.DEFINE_float('learning_rate', None, 'Alias of --hparams=learning_rate=X.')
flags.DEFINE_integer('steps', None, 'Alias of --max_steps.')

OPTION_FLAGS = ('hparams', 'working_dir', 'data_dir', 'eval_freq', 'max_steps', 'device',
                'precision_mode', 'static_shapes', 'fast_start', 'seed', 'checkpoint_secs',
                'checkpoint_steps', 'keep_checkpoints', 'log_every', 'progress_secs',
                'data_path', 'batch_size', 'learning_rate', 'steps')


class UsageError(ValueError):
    """Flags that cannot describe a run."""


class RunDirError(RuntimeError):
    """The run directory belongs to another run, or its state cannot be read."""


class NonFiniteError(RuntimeError):
    """A training step produced a non-finite loss or gradient."""


class Stopped(RuntimeError):
    """Stopped by a signal after saving a checkpoint."""

    def __init__(self, message, signum):
        RuntimeError.__init__(self, message)
        self.signum = signum


# -- options ------------------------------------------------------------------------------------
Options = collections.namedtuple('Options', [
    'hparams', 'working_dir', 'data_dir', 'eval_freq', 'max_steps', 'device', 'precision_mode',
    'static_shapes', 'fast_start', 'seed', 'checkpoint_secs', 'checkpoint_steps',
    'keep_checkpoints', 'log_every', 'progress_secs'])


def make_options(hparams, **kw):
    """Options with the flags' defaults; `hparams` an HParams."""
    values = dict(hparams=hparams, working_dir=None, data_dir=None, eval_freq=20,
                  max_steps=DEFAULT_MAX_STEPS, device='auto',
                  precision_mode=device.DEFAULT_PRECISION_MODE, static_shapes=None,
                  fast_start=False, seed=None, checkpoint_secs=300, checkpoint_steps=0,
                  keep_checkpoints=3, log_every=0, progress_secs=60)
    unknown = set(kw) - set(values)
    if unknown:
        raise TypeError('Unknown options: %s' % ', '.join(sorted(unknown)))
    values.update(kw)
    options = Options(**values)
    _check_options(options)
    return options


def _check_options(o):
    for name in ('eval_freq', 'max_steps', 'checkpoint_secs', 'checkpoint_steps', 'log_every',
                 'progress_secs'):
        if getattr(o, name) < 0:
            raise UsageError('--%s must be >= 0, got %d.' % (name, getattr(o, name)))
    if o.keep_checkpoints < 1:
        raise UsageError('--keep_checkpoints must be >= 1, got %d.' % o.keep_checkpoints)


def resolve_options(hparams='', data_dir=None, data_path=None, batch_size=None,
                    learning_rate=None, max_steps=None, steps=None, **others):
    """Options from flag values (None: not given), with the Ascend port's aliases merged.

    An alias and its flag (or the hparam in --hparams) given with different values is a
    UsageError, as are hparams that config refuses.
    """
    spec = hparams or ''
    named = set(item.split('=', 1)[0].strip() for item in spec.split(',') if '=' in item)
    try:
        hp = config.parse_hparams(spec)
        overrides = {}
        for name, value in (('batch_size', batch_size), ('learning_rate', learning_rate)):
            if value is None:
                continue
            if name in named and getattr(hp, name) != value:
                raise UsageError('--%s=%s conflicts with %s=%s in --hparams; give it once.'
                                 % (name, value, name, getattr(hp, name)))
            overrides[name] = value
        if overrides:
            hp = hp.replace(**overrides)
    except UsageError:
        raise
    except ValueError as e:   # config's refusals, which name the fix
        raise UsageError(str(e))
    return make_options(hp, data_dir=_one_of('data_dir', data_dir, 'data_path', data_path),
                        max_steps=_one_of('max_steps', max_steps, 'steps', steps,
                                          DEFAULT_MAX_STEPS), **others)


def _one_of(name, value, alias, alias_value, default=None):
    if value is not None and alias_value is not None and value != alias_value:
        raise UsageError('--%s=%s conflicts with --%s=%s (an alias); give one of them.'
                         % (name, value, alias, alias_value))
    for v in (value, alias_value):
        if v is not None:
            return v
    return default


def default_run_dir(hparams):
    """runs/ + the hparams that differ from the defaults, as the reference names runs
    ("name_value" joined by ".", sorted); a digest replaces the tail of a long name."""
    items = sorted((k, v) for k, v in hparams.values().items() if config.DEFAULTS[k] != v)
    name = '.'.join('%s_%s' % kv for kv in items) or 'defaults'
    if len(name) > 120:
        name = name[:110] + '.' + hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]
    return os.path.join('runs', name)


# -- files ----------------------------------------------------------------------------------------
def atomic_write(path, data):
    """Writes `data` (str or bytes) to a temporary file beside `path`, then renames it."""
    tmp = '%s.tmp-%d' % (path, os.getpid())
    with open(tmp, 'wb') as f:
        f.write(data.encode('utf-8') if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunDir(object):
    """The files of one run. Nothing here writes before `check_hparams` has passed."""

    HPARAMS = 'hparams.json'
    METRICS = 'metrics.jsonl'
    LOG = 'log.txt'
    STATE = 'progress.json'
    PREFIX = 'model.ckpt'
    _CKPT = re.compile(r'^model\.ckpt-(\d+)\.')

    def __init__(self, path):
        self.path = path

    def join(self, name):
        return os.path.join(self.path, name)

    def check_hparams(self, hparams):
        """Raises RunDirError if the directory holds a run with other hparams."""
        path = self.join(self.HPARAMS)
        if not os.path.exists(path):
            return
        try:
            with open(path) as f:
                stored = json.load(f)
        except (IOError, ValueError) as e:
            raise RunDirError('%s cannot be read (%s); refusing to touch this run directory.'
                              % (path, e))
        current = hparams.values()
        names = list(current) + [k for k in stored if k not in current]
        diffs = ['%s=%s there, %s now' % (k, stored.get(k, config.DEFAULTS.get(k, '(unset)')),
                                          current.get(k, '(unknown)'))
                 for k in names
                 if stored.get(k, config.DEFAULTS.get(k)) != current.get(k)]
        if diffs:
            raise RunDirError(
                '%s holds a run with other hparams (%s). Nothing was changed. Resume it with '
                'its own hparams (see its hparams.json) or give another --working_dir.'
                % (self.path, '; '.join(diffs)))

    def write_hparams(self, hparams):
        if not os.path.exists(self.join(self.HPARAMS)):
            atomic_write(self.join(self.HPARAMS), json.dumps(hparams.values()) + '\n')

    def read_state(self):
        """progress.json as a dict, or None before the first checkpoint."""
        path = self.join(self.STATE)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                state = json.load(f)
            int(state['step']), state['checkpoint'], list(state['checkpoints'])
        except (IOError, ValueError, KeyError, TypeError) as e:
            raise RunDirError('%s cannot be read (%s). It is written atomically, so this run '
                              'directory was changed by hand; restore it or start another.'
                              % (path, e))
        return state

    def write_state(self, state):
        atomic_write(self.join(self.STATE), json.dumps(state, indent=1) + '\n')

    def remove_orphans(self, keep):
        """Deletes checkpoint files not in `keep` (prefix basenames) and leftover temp files:
        what a kill during a save or a prune leaves behind."""
        removed = []
        for name in sorted(os.listdir(self.path)):
            match = self._CKPT.match(name)
            orphan_ckpt = match and ('%s-%s' % (self.PREFIX, match.group(1))) not in keep
            if orphan_ckpt or '.tmp-' in name or 'tempstate' in name:
                os.remove(self.join(name))
                removed.append(name)
        return removed

    def read_records(self):
        path = self.join(self.METRICS)
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def write_records(self, records):
        atomic_write(self.join(self.METRICS), ''.join(json.dumps(r) + '\n' for r in records))
        atomic_write(self.join(self.LOG), ''.join(r['text'] + '\n' for r in records))


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


def scalar_summary(tag, value):
    return tf.Summary(value=[tf.Summary.Value(tag=tag, simple_value=float(value))])


# -- one pass over the training set ----------------------------------------------------------------
class Epoch(object):
    """A shuffled pass over the training set and the per-step numbers seen in it so far."""

    def __init__(self, order, batch_size, n_batches):
        self.order, self.batch_size, self.n_batches = order, batch_size, n_batches
        self.batch = 0
        self.reports, self.variances, self.temperatures = [], [], []

    @property
    def done(self):
        return self.batch >= self.n_batches

    def next_indices(self):
        start = self.batch * self.batch_size
        return self.order[start:start + self.batch_size]

    def add(self, report, variance, temperature):
        self.batch += 1
        self.reports.append(report)
        self.variances.append(variance)
        self.temperatures.append(temperature)

    def to_arrays(self, rng):
        name, keys, pos, has_gauss, cached = rng.get_state()
        return dict(order=self.order, batch=self.batch, batch_size=self.batch_size,
                    n_batches=self.n_batches,
                    reports=np.array(self.reports, np.float32),
                    variances=np.array(self.variances, np.float32),
                    temperatures=np.array(self.temperatures, np.float32),
                    rng_name=np.array(name), rng_keys=keys, rng_pos=pos,
                    rng_has_gauss=has_gauss, rng_cached=cached)

    @classmethod
    def from_arrays(cls, arrays, rng):
        epoch = cls(arrays['order'], int(arrays['batch_size']), int(arrays['n_batches']))
        epoch.batch = int(arrays['batch'])
        epoch.reports = list(arrays['reports'])
        epoch.variances = list(arrays['variances'])
        epoch.temperatures = list(arrays['temperatures'])
        rng.set_state((str(arrays['rng_name']), arrays['rng_keys'], int(arrays['rng_pos']),
                       int(arrays['rng_has_gauss']), float(arrays['rng_cached'])))
        return epoch


def batches_per_epoch(n, batch_size):
    """Full batches, plus the reference's last partial batch unless it holds one image, which
    REINFORCE's leave-one-out baseline cannot centre. (With static shapes the partial batch has
    its own graph.)"""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 else 0)


class DeviceBatches(object):
    """The training set held in the session, and each step's batch taken from it there, so that
    a training step feeds nothing (a fed call costs a fixed ~0.2 ms; light models' steps run
    20-45% faster without it, docs/performance.md). Static shapes only.

    The epoch's order and the global step at which its first batch is taken are loaded once
    an epoch; a step's batch is order[(step - start) * batch_size:][:n], binarised on the
    device when `dynamic_b` (with TensorFlow's generator, like the noise).
    """

    def __init__(self, n_images, n_input, batch_size, dynamic_b):
        self.batch_size, self.dynamic_b = batch_size, dynamic_b
        self.data_in = tf.placeholder(tf.float32, [n_images, n_input], 'training_set')
        self.order_in = tf.placeholder(tf.int32, [n_images], 'epoch_order')
        self.start_in = tf.placeholder(tf.int64, [], 'epoch_start')
        # outside every collection: neither checkpointed nor initialised with the model
        self.data = tf.Variable(self.data_in, trainable=False, collections=[],
                                use_resource=True, name='training_set')
        self.order = tf.Variable(self.order_in, trainable=False, collections=[],
                                 use_resource=True, name='epoch_order')
        self.start = tf.Variable(self.start_in, trainable=False, collections=[],
                                 use_resource=True, name='epoch_start')
        self.load_op = tf.group(self.order.assign(self.order_in),
                                self.start.assign(self.start_in))

    def images(self, n_images):
        """The [n_images, n_input] batch of the current step (before its update)."""
        step = tf.train.get_global_step().read_value()
        first = tf.cast(step - self.start.read_value(), tf.int32) * self.batch_size
        xs = tf.gather(self.data, tf.slice(self.order, [first], [n_images]))
        if self.dynamic_b:
            xs = tf.cast(tf.random_uniform(xs.shape) < xs, tf.float32)
        return xs

    def initialize(self, sess, train_xs):
        sess.run([self.data.initializer, self.order.initializer, self.start.initializer],
                 {self.data_in: train_xs, self.order_in: np.arange(len(train_xs)),
                  self.start_in: 0})

    def load(self, sess, order, start_step):
        sess.run(self.load_op, {self.order_in: order, self.start_in: start_step})


# -- the trainer -----------------------------------------------------------------------------------
class Trainer(object):
    """Builds the model for `options` in its own graph and session, resuming the run directory.

    `data`: (train, valid, test) arrays instead of loading them for the task. `out`/`err`: the
    streams for the reference's lines and for everything else.
    """

    def __init__(self, options, data=None, out=None, err=None):
        self.options = options
        self.hp = hp = options.hparams
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.run_dir = RunDir(options.working_dir or default_run_dir(hp))
        # Refusals first: nothing is written before these pass.
        self.run_dir.check_hparams(hp)
        state = self.run_dir.read_state() if os.path.isdir(self.run_dir.path) else None
        self.backend = device.choose(options.device, options.precision_mode,
                                     options.fast_start, log=self.note)
        self.static_shapes = (self.backend.static_shapes if options.static_shapes is None
                              else options.static_shapes)
        if data is None:
            data = datasets.load_data(hp.task, hp.dynamic_b, options.data_dir)
        self.train_xs, self.valid_xs, self.test_xs = data
        self.n_batches = batches_per_epoch(len(self.train_xs), hp.batch_size)
        if self.n_batches < 1:
            raise UsageError('The training set (%d images) holds no batch of %d.'
                             % (len(self.train_xs), hp.batch_size))

        if state:
            self._check_resumable(state)

        self.say(str(dict(hp.values())))
        if not os.path.isdir(self.run_dir.path):
            os.makedirs(self.run_dir.path)
        self.run_dir.write_hparams(hp)
        self.start_step = state['step'] if state else 0
        removed = self.run_dir.remove_orphans(set(state['checkpoints']) if state else set())
        if removed:
            self.note('removed %d unfinished checkpoint or temporary file(s): %s'
                      % (len(removed), ', '.join(removed)))
        # Records after the checkpoint belong to the lost interval: it is trained again.
        records = self.run_dir.read_records()
        self.records = [r for r in records if r['step'] <= self.start_step]
        if len(self.records) != len(records):
            self.note('dropped %d metrics record(s) after step %d (redone from the checkpoint)'
                      % (len(records) - len(self.records), self.start_step))
            self.run_dir.write_records(self.records)
        evals = [r['step'] for r in self.records if r['kind'] == 'eval']
        self.last_eval_step = evals[-1] if evals else None

        self._build(np.mean(self.train_xs, axis=0))
        self.rng = np.random.RandomState(options.seed)
        self.writer = tf.summary.FileWriter(self.run_dir.path)
        if state:
            self._use_epoch(self._restore(state), state['step'])
            # TensorBoard drops the killed run's events from this step on (it keeps those
            # before), i.e. those after the checkpoint.
            self.writer.add_session_log(tf.SessionLog(status=tf.SessionLog.START),
                                        self.start_step + 1)
        else:
            self.sess.run(self.init_op)
            self._use_epoch(self._new_epoch(), 0)
        self.step = self.start_step
        self.checkpoints = list(state['checkpoints']) if state else []
        self._stop_signal = None

    # -- set-up ----------------------------------------------------------------------------------
    def _build(self, mean_xs):
        self.graph = tf.Graph()
        with self.graph.as_default():
            if self.options.seed is not None:
                # A resumed run draws fresh noise rather than replaying the first steps' noise.
                tf.set_random_seed((self.options.seed * 1000003 + self.start_step) % (2 ** 31 - 1))
            self.batches = None
            if self.static_shapes:
                self.batches = DeviceBatches(len(self.train_xs), self.hp.n_input,
                                             self.hp.batch_size, self.hp.dynamic_b)
            self.model = model = rebar.build_model(
                self.hp, mean_xs, static_shapes=self.static_shapes,
                images=self.batches.images if self.batches else None)
            self.saver = tf.train.Saver(tf.global_variables(), max_to_keep=None)
            self.init_op = tf.global_variables_initializer()
        # With static shapes, the epoch's partial batch and evaluation have graphs of their
        # own, built when first needed (start-up does not wait for them); the graph is
        # finalized once every graph the run needs exists.
        n, batch_size = len(self.train_xs), self.hp.batch_size
        self.batch_sizes = {min(batch_size, n - i * batch_size) for i in range(self.n_batches)}
        if not self.static_shapes:   # one graph serves every batch and evaluation
            with self.graph.as_default():
                model.eval_report
        self.sess = tf.Session(graph=self.graph, config=self.backend.session_config)
        if self.batches:
            self.batches.initialize(self.sess, self.train_xs)
        self.step_fns = {}
        self.eval_built = not self.static_shapes
        self._finalize_when_built()

    def _step_fn(self, n_images):
        """The training step for a batch of n_images, as a session callable (which skips
        sess.run's per-call parsing of fetches and feeds)."""
        if n_images not in self.step_fns:
            with self.graph.as_default():
                t = self.model.training(n_images)
            self.step_fns[n_images] = self.sess.make_callable(
                (t.report, t.grad_variance, t.step_after, self.model.temperature,
                 t.grads_finite), feed_list=[] if self.batches else [t.x])
            self._finalize_when_built()
        return self.step_fns[n_images]

    def _finalize_when_built(self):
        built = set(self.step_fns) | {self.hp.batch_size}
        evaluates = self.options.eval_freq > 0
        if ((self.eval_built or not evaluates)
                and (not self.static_shapes or self.batch_sizes <= built)):
            self.graph.finalize()

    def _use_epoch(self, epoch, step):
        """Makes `epoch` current; its next batch is taken at global step `step`."""
        self.epoch = epoch
        if self.batches:
            self.batches.load(self.sess, epoch.order, step - epoch.batch)

    def _new_epoch(self):
        order = self.rng.permutation(len(self.train_xs))
        return Epoch(order, self.hp.batch_size, self.n_batches)

    def _driver_state(self, state):
        path = self.run_dir.join(state['checkpoint'] + '.driver.npz')
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
        self.saver.restore(self.sess, prefix)
        step = int(self.sess.run(self.model.global_step))
        if step != state['step']:
            raise RunDirError('%s holds step %d but %s says %d.'
                              % (prefix, step, RunDir.STATE, state['step']))
        epoch = Epoch.from_arrays(self._driver_state(state), self.rng)
        self.note('resumed from %s at step %d (temperature %r)'
                  % (state['checkpoint'], step, float(self.sess.run(self.model.temperature))))
        return epoch

    def restore_latest(self):
        """Restores the last complete checkpoint into the session (and the epoch state)."""
        state = self.run_dir.read_state()
        self._use_epoch(self._restore(state), state['step'])
        self.step = state['step']

    # -- output ----------------------------------------------------------------------------------
    def say(self, text):
        """A line of the reference's output (stdout)."""
        self.out.write(text + '\n')
        self.out.flush()

    def note(self, text):
        """Anything else (stderr)."""
        self.err.write('rebar_train: %s\n' % text)
        self.err.flush()

    def _record(self, record):
        record['time'] = time.time()
        self.records.append(record)
        self.run_dir.write_records(self.records)
        self.say(record['text'])

    # -- training --------------------------------------------------------------------------------
    def train(self):
        """Trains to options.max_steps; returns the final step."""
        o = self.options
        if self.step >= o.max_steps:
            self.note('step %d already reaches --max_steps=%d: nothing to do.'
                      % (self.step, o.max_steps))
            return self.step
        handlers = self._catch_signals()
        try:
            self._loop()
        finally:
            self._restore_signals(handlers)
        return self.step

    def _loop(self):
        o = self.options
        self.last_checkpoint_time = time.time()
        self._progress_start(self.step)
        while self.step < o.max_steps:
            if self._stop_signal:
                self.checkpoint()
                raise Stopped('stopped by signal %d at step %d after saving a checkpoint; rerun '
                              'the same command to resume.' % (self._stop_signal, self.step),
                              self._stop_signal)
            indices = self.epoch.next_indices()
            inputs = []
            if not self.batches:   # the flexible build: the batch is fed
                xs = self.train_xs[indices]
                if self.hp.dynamic_b:
                    xs = (self.rng.rand(*xs.shape) < xs).astype(np.float32)
                inputs = [xs]
            started = time.time()
            report, variance, step, temperature, finite = self._step_fn(len(indices))(*inputs)
            self.step_time += time.time() - started
            report = np.array(report)
            if not finite or not np.all(np.isfinite(report)):
                self._non_finite(int(step), report, finite)
            self.step = int(step)
            self.epoch.add(report, variance, temperature)
            self._maybe_progress()
            if self.epoch.done:
                self._end_epoch()
                self._use_epoch(self._new_epoch(), self.step)
            if self._checkpoint_due():
                self.checkpoint()
        if self.epoch.reports:   # the partial epoch at --max_steps
            self._end_epoch(partial=True)
        if o.eval_freq and self.last_eval_step != self.step:
            self._evaluate()
        self.checkpoint()

    def _non_finite(self, step, report, grads_finite):
        what = []
        if not np.all(np.isfinite(report)):
            what.append('report %s' % report)
        if not grads_finite:
            what.append('a gradient')
        if self.checkpoints:
            last = ('the last good checkpoint, %s, is kept; rerun to resume from it after '
                    'lowering learning_rate or checking the data' % self.checkpoints[-1])
        else:
            last = 'no checkpoint was saved yet'
        self.writer.flush()
        raise NonFiniteError('step %d: non-finite %s. Training stopped; %s.'
                             % (step, ' and '.join(what), last))

    def _end_epoch(self, partial=False):
        ep = self.epoch
        mean_report = np.mean(ep.reports, axis=0)
        log_variance = np.log(np.mean(ep.variances, axis=0))
        temperature = float(np.mean(ep.temperatures))
        tracked = self.model.tracked
        epoch = self.epoch_index()
        record = collections.OrderedDict([
            ('kind', 'train'), ('step', self.step), ('epoch', epoch), ('partial', partial),
            ('steps', len(ep.reports)), ('report', mean_report.tolist()),
            ('log_grad_variance', (dict(zip(tracked, log_variance.tolist())) if tracked
                                   else float(log_variance))),
            ('temperature', temperature),
            ('text', epoch_text(self.step, mean_report, log_variance, tracked))])
        self._record(record)
        summaries = [scalar_summary('Train ELBO', mean_report[0]),
                     scalar_summary('Temperature', temperature)]
        if tracked:
            summaries += [scalar_summary('log grad variance/%s' % name, v)
                          for name, v in zip(tracked, log_variance)]
        else:
            summaries.append(scalar_summary('log grad variance', log_variance))
        for summary in summaries:
            self.writer.add_summary(summary, self.step)
        self.writer.flush()
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

    def evaluate(self, xs):
        """The reference's evaluation: np.mean over groups of 5 images of partial_eval."""
        if not self.eval_built:
            with self.graph.as_default():
                self.model.eval_report
            self.eval_built = True
            self._finalize_when_built()
        group = rebar.EVAL_GROUP
        return np.mean([self.model.partial_eval(self.sess, xs[i:i + group])
                        for i in range(0, len(xs), group)], axis=0)

    def _evaluate(self):
        started = time.time()
        valid, test = self.evaluate(self.valid_xs), self.evaluate(self.test_xs)
        epoch = self.epoch_index()
        self._record(collections.OrderedDict([
            ('kind', 'eval'), ('step', self.step), ('epoch', epoch),
            ('valid', valid.tolist()), ('test', test.tolist()),
            ('text', eval_text(self.step, valid, test))]))
        self.last_eval_step = self.step
        self.writer.add_summary(scalar_summary('Valid bound', valid[0]), self.step)
        self.writer.add_summary(scalar_summary('Test bound', test[0]), self.step)
        self.writer.flush()
        self.note('evaluated %d + %d images in %.1f s'
                  % (len(self.valid_xs), len(self.test_xs), time.time() - started))

    # -- checkpoints -------------------------------------------------------------------------------
    def _checkpoint_due(self):
        o = self.options
        if o.checkpoint_steps and self.step % o.checkpoint_steps == 0:
            return True
        return bool(o.checkpoint_secs) and (time.time() - self.last_checkpoint_time
                                            >= o.checkpoint_secs)

    def checkpoint(self):
        """Saves model.ckpt-STEP and the epoch state, then commits them in progress.json."""
        name = '%s-%d' % (RunDir.PREFIX, self.step)
        if self.checkpoints and self.checkpoints[-1] == name:
            return
        prefix = self.run_dir.join(name)
        self.saver.save(self.sess, prefix, write_meta_graph=False, write_state=False)
        buf = io.BytesIO()
        np.savez(buf, **self.epoch.to_arrays(self.rng))
        atomic_write(prefix + '.driver.npz', buf.getvalue())
        kept = (self.checkpoints + [name])[-self.options.keep_checkpoints:]
        self.run_dir.write_state(collections.OrderedDict([
            ('step', self.step), ('checkpoint', name), ('checkpoints', kept),
            ('time', time.time())]))   # the commit point
        # TensorFlow's own pointer (a CheckpointState in text form), for
        # tf.train.latest_checkpoint and other tools.
        atomic_write(self.run_dir.join('checkpoint'),
                     'model_checkpoint_path: "%s"\n' % name
                     + ''.join('all_model_checkpoint_paths: "%s"\n' % k for k in kept))
        for old in self.checkpoints:
            if old not in kept:
                for f in os.listdir(self.run_dir.path):
                    if f.startswith(old + '.'):
                        os.remove(self.run_dir.join(f))
        self.checkpoints = kept
        self.last_checkpoint_time = time.time()
        self.note('checkpoint %s saved' % name)

    # -- progress and signals --------------------------------------------------------------------
    def _progress_start(self, step):
        self.step_time = 0.0
        self.progress_step = step
        self.progress_time = time.time()

    def _maybe_progress(self):
        o = self.options
        steps = self.step - self.progress_step
        if o.log_every:
            due = steps >= o.log_every
        else:
            due = bool(o.progress_secs) and time.time() - self.progress_time >= o.progress_secs
        if not due or self.step_time <= 0:
            return
        rate = steps / self.step_time
        eta = (o.max_steps - self.step) / rate
        self.note('progress: step %d of %d, epoch %d (batch %d of %d), %.2f steps/s, '
                  '%.1f images/s, ETA %s'
                  % (self.step, o.max_steps, self.epoch_index(),
                     self.epoch.batch, self.n_batches, rate, rate * self.hp.batch_size,
                     _duration(eta)))
        self._progress_start(self.step)

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

    def close(self):
        self.writer.close()
        self.sess.close()


def _duration(seconds):
    if not math.isfinite(seconds):
        return '?'
    seconds = int(round(seconds))
    return '%d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def run(options, data=None, out=None, err=None):
    """Trains a run to options.max_steps (resuming it); returns the final step."""
    trainer = Trainer(options, data=data, out=out, err=err)
    try:
        return trainer.train()
    finally:
        trainer.close()


# Errors that end a run with a message rather than a traceback, and their exit codes.
EXIT_CODES = ((UsageError, 2), (RunDirError, 2), (device.DeviceError, 2),
              (datasets.DataError, 2), (NonFiniteError, 1))


def cli(flag_values=None, err=None):
    """Runs from parsed flags; returns the exit code."""
    flag_values = flag_values or FLAGS
    err = err or sys.stderr
    try:
        options = resolve_options(**dict((name, flag_values[name].value)
                                         for name in OPTION_FLAGS))
        run(options)
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
