"""device.py: the NPU session config on the protobuf, the CPU fallback here, the static-shape
training graph (no unknown dimension) and the driver's fixed-batch path on the CPU."""
from __future__ import absolute_import, division, print_function

import io
import os

import numpy as np
import pytest

import device
import estimator_checks as C
import rebar_train
import session
import tensorflow.compat.v1 as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2

OFF = rewriter_config_pb2.RewriterConfig.OFF
HERE_HAS_NPU = device.npu_import_error() is None


def npu_options(config):
    optimizers = config.graph_options.rewrite_options.custom_optimizers
    assert [o.name for o in optimizers] == ['NpuOptimizer']
    return optimizers[0].parameter_map


def test_npu_session_config_has_the_npu_optimizer_and_its_options():
    config = device.npu_session_config()
    # a valid, serialisable ConfigProto, as a Session and the adapter receive it
    config = config_pb2.ConfigProto.FromString(config.SerializeToString())
    params = npu_options(config)
    assert params['use_off_line'].b is True
    assert params['precision_mode'].s == b'force_fp32'
    # several steps a call are our graph's own while loop: the adapter's loop sinking stays at
    # one iteration and needs no GetNext sunk to the device; nothing compiles on the host
    assert params['iterations_per_loop'].i == 1
    assert params['mix_compile_mode'].b is False
    assert 'enable_data_pre_proc' not in params
    rewrite = config.graph_options.rewrite_options
    assert rewrite.remapping == OFF
    assert rewrite.memory_optimization == OFF
    assert not rewrite.disable_meta_optimizer   # the NpuOptimizer runs as a Grappler pass


@pytest.mark.parametrize('mode', ['allow_mix_precision', 'must_keep_origin_dtype'])
def test_npu_precision_mode_is_passed_through(mode):
    assert npu_options(device.npu_session_config(mode))['precision_mode'].s == mode.encode()


def test_unknown_precision_mode_is_refused_with_the_valid_ones():
    with pytest.raises(device.DeviceError) as e:
        device.npu_session_config('fp8')
    assert 'force_fp32' in str(e.value) and 'allow_mix_precision' in str(e.value)


def test_gpu_config_grows_memory_and_cpu_config_hides_gpus():
    assert device.gpu_session_config().gpu_options.allow_growth
    cpu = device.cpu_session_config()
    assert cpu.device_count['GPU'] == 0
    # ops side by side, one thread each (the speed issue's measurements)
    assert cpu.intra_op_parallelism_threads == 1
    assert cpu.inter_op_parallelism_threads == (os.cpu_count() or 1)
    assert device.cpu_session_config(fast_start=True).graph_options.rewrite_options \
        .disable_meta_optimizer


@pytest.mark.skipif(HERE_HAS_NPU, reason='npu_bridge imports here: auto picks the NPU')
def test_auto_falls_back_here_and_says_why():
    said = []
    backend = device.choose('auto', log=said.append)
    expected = 'gpu' if device.visible_gpus() else 'cpu'
    assert backend.name == expected
    assert backend.static_shapes is True   # every device builds fixed shapes
    assert len(said) == 1 and said[0].startswith('device: auto: %s' % expected.upper())
    if expected == 'cpu':
        assert 'npu_bridge not importable' in said[0] and 'no GPU' in said[0]
        assert backend.session_config.device_count['GPU'] == 0


@pytest.mark.skipif(HERE_HAS_NPU, reason='npu_bridge imports here')
def test_device_npu_fails_clearly_without_npu_bridge(tmp_path):
    with pytest.raises(device.DeviceError) as e:
        device.choose('npu', log=lambda m: None)
    message = str(e.value)
    assert 'npu_bridge' in message and 'CANN' in message and '--device auto' in message
    # through the command line: exit code 2, the message, and no run directory made
    run_dir = tmp_path / 'run'
    err = io.StringIO()
    flag_values = rebar_train.FLAGS
    flag_values(['rebar_train', '--device=npu', '--working_dir=%s' % run_dir])
    try:
        assert rebar_train.cli(flag_values, err=err) == 2
    finally:
        flag_values.unparse_flags()
    assert 'error: --device npu: npu_bridge cannot be imported' in err.getvalue()
    assert not run_dir.exists()


def _folds_to_a_constant(tensor, memo):
    """True if `tensor` depends only on constants and on shapes of fully known tensors, so
    that constant folding (Grappler's or the Ascend graph engine's) turns it into a constant."""
    op = tensor.op
    if op.name not in memo:
        if op.type == 'Const':
            memo[op.name] = True
        elif op.type in ('Shape', 'ShapeN', 'Size', 'Rank'):
            # the shape of a known-shape tensor, or of one that itself folds to a constant
            memo[op.name] = all(t.shape.is_fully_defined() or _folds_to_a_constant(t, memo)
                                for t in op.inputs)
        elif not op.inputs or op.type.startswith(('Placeholder', 'Random', 'VarHandle',
                                                  'ReadVariable')):
            memo[op.name] = False
        else:
            memo[op.name] = False   # until shown otherwise: a loop's cycle does not fold
            memo[op.name] = all(_folds_to_a_constant(t, memo) for t in op.inputs)
    return memo[op.name]


def test_static_shape_training_has_no_unknown_dimension_and_a_graph_per_batch_size(tmp_path):
    """The NPU build, run on the CPU with 3 steps a call: every tensor of the training steps
    (the full batch's, the epoch's last, partial batch's, and the loop of 3 steps) and of the
    grouped evaluation has a known shape (TF 1.15's gradient code leaves some int32 shape
    arithmetic unknown; it must fold to constants); the partial batch's graph, the loop and
    evaluation's are built, and the graph finalized, before the first step; evaluation pads
    its groups."""
    hp = rebar_train.config.parse_hparams('model=SBNDynamicRebar,n_layer=2,n_hidden=16,'
                                          'batch_size=24,learning_rate=0.0003')
    rng = np.random.RandomState(0)
    data = [(rng.rand(n, 784) < 0.3).astype(np.float32) for n in (100, 7, 6)]
    out = io.StringIO()
    options = rebar_train.make_options(hp, working_dir=str(tmp_path / 'run'), device='cpu',
                                       fast_start=True, max_steps=12, eval_freq=2,
                                       checkpoint_secs=0, progress_secs=0, steps_per_call=3)
    trainer = rebar_train.Trainer(options, data=data, out=out, err=io.StringIO())
    try:
        model = trainer.session.model
        assert trainer.session.batches is not None   # static shapes, the default on the CPU too
        assert model.x.shape.as_list() == [24, 784]
        # every graph the run needs is built, and the graph finalized, before the first step
        assert trainer.session.graph.finalized
        assert sorted(trainer.session._steps) == [4, 24]
        assert trainer.train() == 12
        partial = model.training(4)
        assert partial.x.shape.as_list() == [4, 784]
        ops = C.reachable(tf.nest.flatten(
            [[t.train_op, t.report, t.grad_variance, t.grads_finite]
             for t in (model.training(24), partial)]
            + list(model.training_loop(3)[2:])
            + list(model.eval_groups(session.EVAL_GROUPS)[2:])))
        assert len(ops) > 2000
        assert {'Enter', 'NextIteration'} <= {op.type for op in ops}
        memo, unknown = {}, []
        for op in ops:
            for t in op.outputs:
                if t.shape.is_fully_defined():
                    continue
                if t.dtype in (tf.int32, tf.int64) and _folds_to_a_constant(t, memo):
                    continue
                unknown.append('%s (%s): %s' % (t.name, op.type, t.shape))
        assert not unknown, unknown[:10]
    finally:
        trainer.close()
    # 100 images in batches of 24: 5 steps an epoch (the last of 4 images), so epoch lines at
    # steps 5 and 10, the partial one at 12; evaluation (7 and 6 images, groups padded to 5)
    # at epoch 2 (step 10) and at the end.
    text = out.getvalue()
    assert [int(l.split()[1][:-1]) for l in text.splitlines() if l.startswith('Step ')] \
        == [5, 10, 12]
    assert [int(l.split()[1][:-1]) for l in text.splitlines() if l.startswith('Valid ')] \
        == [10, 12]
