"""session.py and Model.training_loop: K training steps in one session call leave the same
variables and give the same per-step figures as K calls of one step; grouped evaluation gives
the per-group evaluation's figures."""
from __future__ import absolute_import, division, print_function

import numpy as np
import pytest

import config
import device
import rebar
import session
import tensorflow.compat.v1 as tf

BATCH, N_INPUT, N_HIDDEN = 4, 12, 3


def _model(name, n_images=10, seed=0):
    """A small model with its training set held in the session (the driver's static path);
    `name` may carry hparams after the model's name ("SBNVIMCO,objective=iwae")."""
    extra = ',n_samples=2' if name.split(',')[0] in config.MULTI_SAMPLE_MODELS else ''
    hp = config.parse_hparams('model=%s,n_layer=2,n_hidden=%d,n_input=%d,batch_size=%d,'
                              'learning_rate=0.01%s' % (name, N_HIDDEN, N_INPUT, BATCH, extra))
    rng = np.random.RandomState(seed)
    xs = (rng.rand(n_images, N_INPUT) < 0.4).astype(np.float32)
    held = session.DeviceBatches(len(xs), N_INPUT, BATCH, False)
    model = rebar.build_model(hp, xs.mean(0) * 0.9 + 0.05, static_shapes=True,
                              images=held.images)
    return model, held, xs


def _values(sess):
    variables = tf.global_variables()
    return dict(zip([v.op.name for v in variables], sess.run(variables)))


@pytest.mark.parametrize('name', config.MODELS + ('SBNVIMCO,objective=iwae',))
def test_k_steps_in_one_call_equal_k_single_steps(name):
    """From the same variables and with the same noise: every variable (weights, both Adams'
    slots, moving averages, temperature, etas, baselines) and every per-step report, gradient
    variance, global step and temperature, for 1 and 7 steps run by the loop built for K = 7
    (the driver asks for fewer than K steps at an epoch's end)."""
    with tf.Graph().as_default():
        tf.set_random_seed(1)
        model, held, xs = _model(name, n_images=40)
        single = model.training(BATCH)
        loop = model.training_loop(7)
        with tf.Session(config=device.cpu_session_config(fast_start=True)) as sess:
            sess.run(tf.global_variables_initializer())
            held.initialize(sess, xs)
            start = _values(sess)
            for k in (1, 7):
                for var in tf.global_variables():
                    var.load(start[var.op.name], sess)
                noise = sess.run(loop.noise)
                expected = []
                for i in range(k):
                    expected.append(sess.run(
                        (single.report, single.grad_variance, single.step_after,
                         single.step.temperature, single.grads_finite),
                        dict(zip(single.step.noise, [u[i] for u in noise]))))
                after_single = _values(sess)
                for var in tf.global_variables():
                    var.load(start[var.op.name], sess)
                feed = dict(zip(loop.noise, noise))
                feed[loop.n] = k
                got = sess.run(loop[2:], feed)
                assert got[0] == k
                reports, variances, steps, temperatures, finite = [o[:k] for o in got[1:]]
                np.testing.assert_allclose(reports, [e[0] for e in expected], rtol=1e-4,
                                           atol=1e-6)
                # E[g^2] - E[g]^2 and the tracked deviations cancel: round-off grows
                np.testing.assert_allclose(variances, [e[1] for e in expected], rtol=1e-3,
                                           atol=1e-9)
                assert list(steps) == [e[2] for e in expected] == list(range(1, k + 1))
                np.testing.assert_allclose(temperatures, [e[3] for e in expected], rtol=1e-6)
                assert list(finite) == [e[4] for e in expected] == [True] * k
                after_loop = _values(sess)
                for key, value in after_single.items():
                    np.testing.assert_allclose(after_loop[key], value, rtol=2e-4, atol=1e-6,
                                               err_msg='%s, K=%d: %s' % (name, k, key))


@pytest.mark.parametrize('name', config.MODELS)
def test_grouped_evaluation_equals_the_per_group_evaluation(name):
    """Three groups in one call, fed each group's noise, give each group's image bounds and
    report as the one-group evaluation graph does with that noise."""
    with tf.Graph().as_default():
        model, _, _ = _model(name)
        groups = model.eval_groups(3)
        report = model.eval.report
        rng = np.random.RandomState(2)
        xs = (rng.rand(3, rebar.EVAL_GROUP, N_INPUT) < 0.4).astype(np.float32)
        with tf.Session(config=device.cpu_session_config(fast_start=True)) as sess:
            sess.run(tf.global_variables_initializer())
            noise = [rng.rand(*u.shape.as_list()).astype(np.float32) for u in groups.noise]
            feed = dict(zip(groups.noise, noise))
            feed[groups.x] = xs
            bounds, reports = sess.run((groups.image_bounds, groups.reports), feed)
            for g in range(3):
                feed = dict(zip(model.eval.noise, [u[g] for u in noise]))
                feed[model.eval.x] = xs[g]
                one_bounds, one_report = sess.run((model.eval.image_bounds, report), feed)
                np.testing.assert_allclose(bounds[g], one_bounds, rtol=1e-5)
                np.testing.assert_allclose(reports[g], one_report, rtol=1e-5, atol=1e-7)


def test_grouped_evaluation_pads_and_drops_like_the_per_group_one():
    """17 images (groups of 5, 5, 5, 2) two groups a call: the mean over groups of [mean bound
    of the group's own images, report, extras] as the one-group path computes it, with a
    stand-in evaluation whose figures depend on every image of a group."""
    rng = np.random.RandomState(3)
    xs = rng.rand(17, 4)
    extras = np.array([0.5, -2.0])

    def evaluate_groups(groups):
        assert groups.shape == (2, rebar.EVAL_GROUP, 4)
        return (groups.sum(2) * groups.mean((1, 2))[:, None], groups.std((1, 2))[:, None],
                extras)

    per_group = []
    for i in range(0, 17, rebar.EVAL_GROUP):
        own = xs[i:i + rebar.EVAL_GROUP]
        padded = np.concatenate([own, np.repeat(own[-1:], rebar.EVAL_GROUP - len(own), 0)])
        bounds, reports, _ = evaluate_groups(np.stack([padded, padded]))
        per_group.append(np.concatenate([[bounds[0, :len(own)].mean()], reports[0], extras]))
    np.testing.assert_allclose(session.grouped_evaluation(evaluate_groups, xs, 2),
                               np.mean(per_group, 0), rtol=1e-12)


def _run_lines(tmp_path, steps_per_call):
    """A seeded run of 50 images in batches of 4 (12 full batches and one of 2 an epoch)
    stopped at step 20, then resumed to 33: its stdout, without the hparams line."""
    import io
    import rebar_train
    hp = config.parse_hparams('model=SBNDynamicRebar,n_layer=2,n_hidden=3,n_input=%d,'
                              'batch_size=4,learning_rate=0.01' % N_INPUT)
    rng = np.random.RandomState(4)
    data = [(rng.rand(n, N_INPUT) < 0.4).astype(np.float32) for n in (50, 7, 6)]
    out = io.StringIO()
    for max_steps in (20, 33):
        options = rebar_train.make_options(
            hp, working_dir=str(tmp_path / ('k%d' % steps_per_call)), device='cpu',
            fast_start=True, max_steps=max_steps, eval_freq=1, checkpoint_secs=0,
            checkpoint_steps=9, progress_secs=0, seed=5, steps_per_call=steps_per_call)
        rebar_train.run(options, data=data, out=out, err=io.StringIO())
    return [l for l in out.getvalue().splitlines() if l and not l.startswith('{')]


def test_a_run_with_7_steps_a_call_prints_the_lines_of_one_step_a_call(tmp_path):
    """Calls of 7 steps stop at the epoch's partial batch, at checkpoints every 9 steps and at
    --max_steps, and resume from a checkpoint: the same Step, log-variance, Valid and Test
    lines as one step a call (to float32 round-off)."""
    one, seven = _run_lines(tmp_path, 1), _run_lines(tmp_path, 7)
    assert [l.split(':')[0] for l in one] == [l.split(':')[0] for l in seven]
    assert [l.split(':')[0] for l in one if l.startswith('Step')] == \
        ['Step 13', 'Step 20', 'Step 26', 'Step 33']
    for a, b in zip(one, seven):
        numbers = [np.array(l.split(':', 1)[-1].strip(' []').split(), float) for l in (a, b)]
        np.testing.assert_allclose(numbers[0], numbers[1], rtol=1e-4, err_msg=a)
