"""The metrics records of a run (`metrics.jsonl`, one JSON object a line), written by the driver
and read by the sweep and the report. No TensorFlow.

A training record, after each pass over the training set (and for the partial epoch a run
stops in):

    {"kind": "train", "step": 2084, "epoch": 1, "partial": false, "steps": 2084,
     "report": [...], "fields": {"elbo": -231.0, "temperature": 0.37, "eta/...": 1.0, ...},
     "log_grad_variance": -3.65, "temperature": 0.37, "time": 1795709801.0, "text": "Step ..."}

`report` is the raw vector the reference prints and `fields` the same numbers by name (the
model's report names, docs/models.md); `log_grad_variance` is one number, or for
SBNTrackGradVariances a dict of estimator name to log variance. An evaluation record:

    {"kind": "eval", "step": 41680, "epoch": 20, "valid": [...], "test": [...],
     "valid_fields": {"iwae_bound": -99.1, ...}, "test_fields": {...}, "time": ..., "text": ...}

Every line is strict JSON (RFC 8259), readable by jq, browsers and any language's JSON library: a
number that is not finite (an undefined figure, such as the log variance of a one-step epoch, or a
diverged ELBO) is written as `null`, never as the bare `NaN` or `Infinity` that strict parsers
reject. `dumps` writes a record so; `loads` (and `read`) give such a null back as NaN in the
fields that hold numbers (NUMBER_FIELDS), so readers compute with NaN as before. The `text` line
keeps the printed form (`nan`, `inf`).
"""
from __future__ import absolute_import, division, print_function

import collections
import json
import math
import os
import time

TRAIN, EVAL = 'train', 'eval'
ELBO = 'elbo'
BOUND = 'iwae_bound'
# the first report entry under objective=iwae, the n_samples-sample bound trained in place of
# the ELBO
K_SAMPLE_BOUND = 'k_sample_bound'


def trained(fields):
    """The name of the training objective among a training record's fields: the ELBO, or the
    K-sample bound of an objective=iwae run (ELBO if neither is present)."""
    return K_SAMPLE_BOUND if K_SAMPLE_BOUND in fields and ELBO not in fields else ELBO
# The fields of a record that hold numbers (a number, a list or a dict of them): a null there was
# a non-finite number.
NUMBER_FIELDS = ('report', 'fields', 'log_grad_variance', 'temperature', 'valid', 'test',
                 'valid_fields', 'test_fields')


def _nulls(value):
    """`value` with every non-finite float, at any depth, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return collections.OrderedDict((k, _nulls(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_nulls(v) for v in value]
    return value


def _nans(value):
    """The inverse of _nulls inside a number field: None becomes NaN."""
    if value is None:
        return float('nan')
    if isinstance(value, dict):
        return collections.OrderedDict((k, _nans(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_nans(v) for v in value]
    return value


def dumps(record, indent=None):
    """A record (or any JSON document of ours) as strict JSON: non-finite numbers become null
    (module doc); one line unless `indent`."""
    return json.dumps(_nulls(record), allow_nan=False, indent=indent)


def loads(line):
    """A record from one line; a null in a number field comes back as NaN."""
    record = json.loads(line, object_pairs_hook=collections.OrderedDict)
    for key in NUMBER_FIELDS:
        if key in record:
            record[key] = _nans(record[key])
    return record


def named(names, values):
    """The vector `values` as an ordered dict by `names` (which must match it in length)."""
    values = [float(v) for v in values]
    if len(names) != len(values):
        raise ValueError('%d names for a vector of %d entries: %s'
                         % (len(names), len(values), ', '.join(names)))
    return collections.OrderedDict(zip(names, values))


def train_record(step, epoch, partial, steps, report, names, log_variance, temperature, text):
    """A training record; `log_variance` a float or a dict of estimator name to float."""
    return collections.OrderedDict([
        ('kind', TRAIN), ('step', int(step)), ('epoch', int(epoch)), ('partial', bool(partial)),
        ('steps', int(steps)), ('report', [float(v) for v in report]),
        ('fields', named(names, report)),
        ('log_grad_variance', log_variance), ('temperature', float(temperature)),
        ('time', time.time()), ('text', text)])


def eval_record(step, epoch, valid, test, names, text):
    return collections.OrderedDict([
        ('kind', EVAL), ('step', int(step)), ('epoch', int(epoch)),
        ('valid', [float(v) for v in valid]), ('test', [float(v) for v in test]),
        ('valid_fields', named(names, valid)), ('test_fields', named(names, test)),
        ('time', time.time()), ('text', text)])


def read(path):
    """The records of a metrics.jsonl file (a run directory's path also works); [] if none."""
    if os.path.isdir(path):
        path = os.path.join(path, 'metrics.jsonl')
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [loads(line) for line in f if line.strip()]


def of_kind(records, kind):
    return [r for r in records if r['kind'] == kind]


def train_series(records, field=ELBO):
    """(steps, values) of a training field over the run's epochs."""
    rows = [(r['step'], r['fields'][field]) for r in of_kind(records, TRAIN)
            if field in r.get('fields', {})]
    return [s for s, _ in rows], [v for _, v in rows]


def variance_series(records, estimator=None):
    """(steps, log gradient variance) over the run's epochs; `estimator` names one of
    SBNTrackGradVariances' tracked estimators."""
    rows = []
    for r in of_kind(records, TRAIN):
        value = r['log_grad_variance']
        rows.append((r['step'], value[estimator] if isinstance(value, dict) else value))
    return [s for s, _ in rows], [v for _, v in rows]


def last(records, kind):
    """The last record of a kind, or None."""
    matching = of_kind(records, kind)
    return matching[-1] if matching else None
