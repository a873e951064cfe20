"""The TensorFlow side of a training run: its graph, built whole before the first call, and its
session. The driver (rebar_train.py) asks it for steps, evaluations, checkpoints and TensorBoard
scalars, and knows nothing else of TensorFlow.
"""
from __future__ import absolute_import, division, print_function

import numpy as np
import tensorflow.compat.v1 as tf

import rebar

# Groups of rebar.EVAL_GROUP images evaluated per call with static shapes (the last call
# padded): large enough that the per-call cost is small beside the call's work.
EVAL_GROUPS = 20
# A step's evaluations (validation, test) and the session calls each can make, whose noise a
# seeded run keys apart (rebar.EVAL_KEYS of them a step): 2 ** 20 calls of one group are
# 5 million images.
EVAL_SPLITS = 16
EVAL_CALLS = rebar.EVAL_KEYS // EVAL_SPLITS


def grouped_evaluation(evaluate_groups, xs, n_groups):
    """The mean over groups of EVAL_GROUP images of [mean bound of the group's images, group
    report..., extras...], evaluated n_groups groups a call by `evaluate_groups`: [n_groups,
    EVAL_GROUP, n_input] -> (image bounds [n_groups, EVAL_GROUP], reports [n_groups, R],
    extras [E]). As `Model.partial_eval` per group: a short last group is padded with copies
    of its last image, whose bounds are dropped; the last call is padded with copies of its
    last group, dropped.
    """
    size = rebar.EVAL_GROUP
    groups = [rebar.pad_rows(xs[i:i + size], size) for i in range(0, len(xs), size)]
    lengths = [min(size, len(xs) - i) for i in range(0, len(xs), size)]
    rows = []
    for first in range(0, len(groups), n_groups):
        call = groups[first:first + n_groups]
        call += [call[-1]] * (n_groups - len(call))
        bounds, reports, extras = evaluate_groups(np.stack(call))
        for j, n in enumerate(lengths[first:first + n_groups]):
            rows.append(np.concatenate([[np.mean(bounds[j, :n])], reports[j], extras]))
    return np.mean(rows, axis=0)


class RunSession(object):
    """A model for `hparams` in its own graph and session.

    Every graph the run needs (the training step for each batch size an epoch has, evaluation
    when `evaluates`) is built, and the graph finalized, before the first `session.run`: a run
    graph is never changed after it has run. With static shapes the training set is held in the
    session (`batches.DeviceBatches`) and a step feeds nothing; otherwise the batch is fed.
    """

    def __init__(self, hparams, backend, train_xs, batch_sizes, static_shapes, evaluates,
                 random_seed, log_dir, steps_per_call=1, eval_groups=EVAL_GROUPS):
        self.graph = tf.Graph()
        with self.graph.as_default():
            if random_seed is not None:
                tf.set_random_seed(random_seed)
            self.batches = (DeviceBatches(len(train_xs), hparams.n_input, hparams.batch_size,
                                          hparams.dynamic_b, random_seed)
                            if static_shapes else None)
            # a seeded run's noise is a function of the step: the same for every steps_per_call
            # and after a resumption
            self.model = model = rebar.build_model(
                hparams, np.mean(train_xs, axis=0), static_shapes=static_shapes,
                images=self.batches.images if self.batches else None, noise_seed=random_seed)
            trainings = dict((n, model.training(n))
                             for n in (sorted(batch_sizes) if static_shapes else [None]))
            if evaluates:
                model.eval_report   # one group a call (`Model.partial_eval`)
            if evaluates and static_shapes:
                groups = model.eval_groups(eval_groups)
            # built last, so that the ops above (their random ops' seeds too) are the same
            # whatever the number of steps per call
            loop = model.training_loop(steps_per_call) if steps_per_call > 1 else None
            self.saver = tf.train.Saver(tf.global_variables(), max_to_keep=None)
            init_op = tf.global_variables_initializer()
        self.graph.finalize()
        self.sess = tf.Session(graph=self.graph, config=backend.session_config)
        self._init_op = init_op
        if self.batches:
            self.batches.initialize(self.sess, train_xs)
        # session callables skip sess.run's per-call parsing of fetches and feeds
        self._steps = dict(
            (n, self.sess.make_callable((t.report, t.grad_variance, t.step_after,
                                         t.step.temperature, t.grads_finite),
                                        feed_list=[] if self.batches else [t.x]))
            for n, t in trainings.items())
        self.steps_per_call, self._n_eval_groups = steps_per_call, eval_groups
        if loop is not None:
            self._loop = self.sess.make_callable(
                (loop.count, loop.reports, loop.grad_variances, loop.steps_after,
                 loop.temperatures, loop.grads_finite), feed_list=[loop.n])
        if evaluates and static_shapes:
            self._eval_groups = self.sess.make_callable(
                (groups.image_bounds, groups.reports, groups.extras),
                feed_list=[groups.x, model.eval_key])
        self.writer = tf.summary.FileWriter(log_dir)

    @property
    def tracked(self):
        return self.model.tracked

    def initialize(self):
        self.sess.run(self._init_op)

    def step(self, xs_or_n):
        """One training step: on a batch of n images taken in the session (static shapes), or
        on the fed batch xs. Returns (report, gradient variance, global step after it,
        temperature the step used, whether every gradient was finite)."""
        if self.batches:
            return self._steps[xs_or_n]()
        return self._steps[None](xs_or_n)

    def steps(self, n):
        """n (2 to steps_per_call) training steps of full batches in one call, taken in the
        session; a list of what `step` returns for each, ending early after a step that is not
        finite."""
        count, reports, variances, steps, temperatures, finite = self._loop(n)
        return list(zip(reports, variances, steps, temperatures, finite))[:count]

    def load_epoch(self, order, start_step):
        """The epoch's order, whose first batch is taken at global step `start_step`."""
        if self.batches:
            self.batches.load(self.sess, order, start_step)

    def evaluate(self, xs, split=0):
        """The reference's evaluation: the mean over groups of EVAL_GROUP images of
        [importance-weighted bound, evaluation report...]; with static shapes, many groups a
        call (`grouped_evaluation`). `split` (0 to EVAL_SPLITS - 1): which of the step's
        evaluations this is (validation, test), so that with a seed each call of each draws
        its own noise (`rebar.Model.eval_key`)."""
        if not 0 <= split < EVAL_SPLITS:
            raise ValueError('split must be in [0, %d), got %d.' % (EVAL_SPLITS, split))
        keys = iter(range(split * EVAL_CALLS, (split + 1) * EVAL_CALLS))
        if self.batches:
            return grouped_evaluation(lambda groups: self._eval_groups(groups, next(keys)), xs,
                                      self._n_eval_groups)
        group = rebar.EVAL_GROUP
        return np.mean([self.model.partial_eval(self.sess, xs[i:i + group], key=next(keys))
                        for i in range(0, len(xs), group)], axis=0)

    def save(self, prefix):
        """Writes a checkpoint; a failed write (a full disk, say) is an IOError naming why."""
        try:
            self.saver.save(self.sess, prefix, write_meta_graph=False, write_state=False)
        except tf.errors.OpError as e:
            # TensorFlow's message buries the file system's reason ("<file>; No space left on
            # device") among node names and stack traces.
            where = [l for l in e.message.splitlines() if prefix in l and '; ' in l]
            raise IOError(where[0].rsplit('; ', 1)[1].strip() if where
                          else e.message.strip().splitlines()[0])

    def restore(self, prefix):
        """Restores a checkpoint; returns (its global step, temperature)."""
        self.saver.restore(self.sess, prefix)
        return self.sess.run((self.model.global_step, self.model.temperature))

    def scalars(self, values, step):
        """TensorBoard scalars: `values` a list of (tag, number)."""
        self.writer.add_summary(tf.Summary(value=[
            tf.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values]), step)
        self.writer.flush()

    def restart_marker(self, step):
        """Makes TensorBoard drop the events an earlier, killed process of this run wrote at
        `step` or later (they are trained again)."""
        self.writer.add_session_log(tf.SessionLog(status=tf.SessionLog.START), step)
        self.writer.flush()

    def close(self):
        self.writer.close()
        self.sess.close()


class DeviceBatches(object):
    """The training set held in the session, and each step's batch taken from it there, so that
    a training step feeds nothing (a fed call has a fixed cost per step, docs/performance.md).
    Static shapes only.

    The epoch's order and the global step at which its first batch is taken are loaded once
    an epoch; a step's batch is order[(step - start) * batch_size:][:n], binarised on the
    device when `dynamic_b` (with TensorFlow's generator, like the noise; given a `seed`, as a
    function of (seed, step), whichever graph takes the batch).
    """

    def __init__(self, n_images, n_input, batch_size, dynamic_b, seed=None):
        self.batch_size, self.dynamic_b, self.seed = batch_size, dynamic_b, seed
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
        if self.dynamic_b and self.seed is None:
            xs = tf.cast(tf.random_uniform(xs.shape) < xs, tf.float32)
        elif self.dynamic_b:   # a stream of its own (rebar.training_noise_stream)
            seed = tf.stack([tf.constant(self.seed, tf.int64), rebar.binarization_stream(step)])
            xs = tf.cast(tf.random.stateless_uniform(xs.shape, seed) < xs, tf.float32)
        return xs

    def initialize(self, sess, train_xs):
        sess.run([self.data.initializer, self.order.initializer, self.start.initializer],
                 {self.data_in: train_xs, self.order_in: np.arange(len(train_xs)),
                  self.start_in: 0})

    def load(self, sess, order, start_step):
        sess.run(self.load_op, {self.order_in: order, self.start_in: start_step})
