"""The epochs of a run: how many batches an epoch has, and each epoch's shuffled order of images
with the per-step numbers seen in it so far (saved with every checkpoint, so that a resumed run
goes on in mid-epoch). No TensorFlow: the session takes each batch by this order
(session.DeviceBatches).
"""
from __future__ import absolute_import, division, print_function

import numpy as np


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
