"""The device back end: picks NPU, GPU or CPU and returns the session config for it.

This is the only module that knows which device runs the job. The driver asks `choose()` for a
`Backend` and uses its `session_config` and `static_shapes`; nothing else differs.

- NPU (Ascend, TF 1.15 + the CANN TF adapter `npu_bridge`): the graph is handed to the Ascend
  graph engine by the `NpuOptimizer` custom Grappler optimizer (`use_off_line`), with TF's
  remapping and memory-optimisation passes off (the adapter's documented requirement) and the
  given `precision_mode`; the model is built with fixed shapes, which the graph engine compiles
  once. `force_fp32` is the default because the Ascend port's 3.5-nat gap to the GPU run is what
  fp16 matrix products would cause (docs/training.md, "Precision on Ascend").
  `npu_bridge`'s initialize_system/shutdown_system are not called: the adapter needs them only
  for collective communication or to time start-up separately, neither of which a one-device
  session-run job does.
- GPU: memory growth on, so a job takes what it uses, not the whole card.
- CPU: one thread per op and as many ops side by side as there are cores (GPUs hidden if there
  are any). A REBAR step is thousands of small ops with much independent work; splitting each
  op over cores costs more than it gains (docs/performance.md).

Every device builds fixed-shape graphs (`static_shapes`): the NPU needs them, and on the CPU they
are faster per step and quicker to build; `--static_shapes=false` gives the flexible build.

TensorFlow is imported only when a session config is made, so that the driver can refuse bad
flags in a fraction of a second; `import_tensorflow` imports it with its own logging quieted.
"""
from __future__ import absolute_import, division, print_function

import collections
import contextlib
import importlib
import logging
import os
import sys
import warnings

DEVICES = ('auto', 'npu', 'gpu', 'cpu')

# The CANN TF adapter's precision modes (precision_mode of the NpuOptimizer).
PRECISION_MODES = ('force_fp32', 'allow_fp32_to_fp16', 'force_fp16', 'must_keep_origin_dtype',
                   'allow_mix_precision')
DEFAULT_PRECISION_MODE = 'force_fp32'

NPU_OPTIMIZER = 'NpuOptimizer'
# Importing either registers the adapter with TensorFlow (npu_init since CANN 5; the other
# before it).
NPU_MODULES = ('npu_bridge.npu_init', 'npu_bridge.estimator.npu_ops')

Backend = collections.namedtuple('Backend', 'name session_config static_shapes')
Backend.__doc__ = """What the driver needs from the device: `name` (for logs only),
`session_config` (a tf.ConfigProto) and `static_shapes` (build fixed-shape graphs)."""


class DeviceError(RuntimeError):
    """The requested device cannot be used here; the message says why and what to do."""


def import_tensorflow(verbose=False):
    """Imports tensorflow.compat.v1, by default without its C++ and Python log lines and the
    deprecation warnings its import and graph-mode switch print (so that the project's own
    stderr lines stand out); `verbose` (--tf_log, or REBAR_TF_LOG=1) keeps them."""
    verbose = verbose or os.environ.get('REBAR_TF_LOG', '') not in ('', '0')
    if verbose:
        import tensorflow.compat.v1 as tf
        return tf
    # TensorFlow's C++ errors reach Python as exceptions; its log lines are noise here.
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    with warnings.catch_warnings(), _stderr_silenced():
        warnings.simplefilter('ignore')
        import tensorflow.compat.v1 as tf
        tf.get_logger().setLevel(logging.ERROR)
        import utils  # noqa: F401  (the switch to graph mode warns of deprecations)
    return tf


@contextlib.contextmanager
def _stderr_silenced():
    """File descriptor 2 to /dev/null: TensorFlow 2's C++ code logs while it loads, before its
    log level applies."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def npu_session_config(precision_mode=DEFAULT_PRECISION_MODE):
    """The session config for the Ascend NPU, as npu_bridge's session-run mode expects."""
    if precision_mode not in PRECISION_MODES:
        raise DeviceError('Unknown --precision_mode %r; valid: %s.'
                          % (precision_mode, ', '.join(PRECISION_MODES)))
    import tensorflow.compat.v1 as tf
    from tensorflow.core.protobuf import rewriter_config_pb2
    config = tf.ConfigProto(allow_soft_placement=True)
    rewrite = config.graph_options.rewrite_options
    npu = rewrite.custom_optimizers.add()
    npu.name = NPU_OPTIMIZER
    npu.parameter_map['use_off_line'].b = True   # run on the Ascend device, not the host
    npu.parameter_map['precision_mode'].s = tf.compat.as_bytes(precision_mode)
    # Several steps per call run as a while loop in our own graph (rebar.Model.training_loop),
    # not through the adapter's loop sinking: that repeats a one-step graph iterations_per_loop
    # times and needs its data from a GetNext sunk to the device (enable_data_pre_proc),
    # which this job does not have (the training set is a variable). So the adapter's loop
    # stays at its documented default of one iteration a call, and the whole graph, loop
    # included, goes to the graph engine (no mixed host/device compilation).
    npu.parameter_map['iterations_per_loop'].i = 1
    npu.parameter_map['mix_compile_mode'].b = False
    rewrite.remapping = rewriter_config_pb2.RewriterConfig.OFF
    rewrite.memory_optimization = rewriter_config_pb2.RewriterConfig.OFF
    return config


def gpu_session_config(fast_start=False, threads=None):
    import tensorflow.compat.v1 as tf
    config = tf.ConfigProto(allow_soft_placement=True)
    config.gpu_options.allow_growth = True
    if threads:
        config.intra_op_parallelism_threads = config.inter_op_parallelism_threads = threads
    _maybe_fast_start(config, fast_start)
    return config


def cpu_session_config(fast_start=False, threads=None):
    """One thread per op, and `threads` ops side by side (default: every core)."""
    import tensorflow.compat.v1 as tf
    config = tf.ConfigProto(device_count={'GPU': 0}, intra_op_parallelism_threads=1,
                            inter_op_parallelism_threads=threads or os.cpu_count() or 1)
    _maybe_fast_start(config, fast_start)
    return config


def _maybe_fast_start(config, fast_start):
    # Grappler costs seconds to tens of seconds on REBAR's large graphs and buys 10-20% per
    # step: worth it for a long run, not for a smoke test. (Never on the NPU, where the
    # NpuOptimizer itself is a Grappler pass.)
    if fast_start:
        config.graph_options.rewrite_options.disable_meta_optimizer = True


def npu_import_error():
    """None if npu_bridge imports, else the reason it does not."""
    errors = []
    for name in NPU_MODULES:
        try:
            importlib.import_module(name)
            return None
        except Exception as e:   # ImportError, or a broken CANN install raising anything
            errors.append('%s: %s' % (type(e).__name__, e))
    return errors[0]


def visible_gpus():
    import tensorflow.compat.v1 as tf
    return tf.config.experimental.list_physical_devices('GPU')


def choose(requested='auto', precision_mode=DEFAULT_PRECISION_MODE, fast_start=False, log=None,
           threads=None):
    """The Backend for `requested` (auto|npu|gpu|cpu); logs the choice on `log` (stderr).
    `threads`: ops run side by side on the CPU (default: every core; a sweep sets its runs'
    CPUs).

    auto: the NPU when npu_bridge imports, else a GPU when TensorFlow sees one, else the CPU.
    An explicit device that is not there raises DeviceError.
    """
    log = log or _stderr
    if requested not in DEVICES:
        raise DeviceError('Unknown --device %r; valid: %s.' % (requested, ', '.join(DEVICES)))
    if precision_mode not in PRECISION_MODES:
        raise DeviceError('Unknown --precision_mode %r; valid: %s.'
                          % (precision_mode, ', '.join(PRECISION_MODES)))
    reasons = []
    if requested in ('auto', 'npu'):
        error = npu_import_error()
        if error is None:
            log('device: %s: NPU (npu_bridge imported; precision_mode=%s, static shapes)'
                % (requested, precision_mode))
            return Backend('npu', npu_session_config(precision_mode), True)
        if requested == 'npu':
            raise DeviceError(
                '--device npu: npu_bridge cannot be imported (%s). It comes with the CANN '
                'TensorFlow adapter (tfplugin) on an Ascend machine with TF 1.15: source the CANN '
                'environment scripts first (scripts/run_ascend.sh does), or use --device auto, '
                'gpu or cpu.' % error)
        reasons.append('npu_bridge not importable (%s)' % error)
    if requested in ('auto', 'gpu'):
        gpus = visible_gpus()
        if gpus:
            log('device: %s: GPU (%d visible, memory growth on)' % (requested, len(gpus)))
            return Backend('gpu', gpu_session_config(fast_start, threads), True)
        if requested == 'gpu':
            raise DeviceError('--device gpu: TensorFlow sees no GPU (is this a GPU build of '
                              'TensorFlow with CUDA libraries it can load?). Use --device auto '
                              'or cpu.')
        reasons.append('TensorFlow sees no GPU')
    if requested == 'auto':
        log('device: auto: CPU (%s)' % '; '.join(reasons))
    else:
        log('device: cpu: CPU')
    return Backend('cpu', cpu_session_config(fast_start, threads), True)


def _stderr(message):
    print(message, file=sys.stderr)
    sys.stderr.flush()
