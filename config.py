"""Hyperparameters and paths.

`parse_hparams("model=SBNDynamicRebar,n_layer=2")` returns an `HParams` with the reference's
defaults overridden.  Every value is typed by its default; anything that could not describe a
valid run (unknown name, wrong type, a number that is not finite or lies outside its range in
RANGES, unknown model, task or data set) is refused with a one-line `ValueError`, naming the
value and the valid range, before any graph is built.

`task` is the objective (sbn: the ELBO of the whole image, sp: structured prediction of the bottom
half); `dataset` names the images; `likelihood` is p(x | b_0): the reference's Bernoulli on binary
pixels, or a Gaussian with a learned per-pixel variance on grey pixels in [-1, 1] (the double-CV
and RODEO papers' non-binarized protocol; docs/models.md).  The reference's `task=omni` means the sbn objective on
Omniglot and keeps working; `dataset_of(hparams)` gives the data set a run really uses.
"""
from __future__ import absolute_import, division, print_function

import collections
import difflib
import json
import math
import os

DATA_DIR = os.environ.get('REBAR_DATA_DIR', 'data')

MODELS = ('SBN', 'SBNNVIL', 'SBNMuProp', 'SBNSimpleMuProp', 'SBNRebar', 'SBNDynamicRebar',
          'SBNGumbel', 'SBNTrackGradVariances', 'SBNARM', 'SBNDisARM', 'SBNRelax',
          'SBNReinforceLOO', 'SBNARMS', 'SBNVIMCO', 'SBNLocalDisARM', 'SBNDoubleCV',
          'SBNRodeo')
# Models whose estimator centres each sample on the other samples of its image.
MULTI_SAMPLE_MODELS = ('SBNReinforceLOO', 'SBNARMS', 'SBNVIMCO', 'SBNDoubleCV', 'SBNRodeo')
# objective=elbo trains the mean of n_samples single-sample ELBOs (the reference), iwae the
# n_samples-sample importance-weighted bound, which only IWAE_MODELS estimate.
OBJECTIVES = ('elbo', 'iwae')
IWAE_MODELS = ('SBNVIMCO', 'SBNLocalDisARM')
TASKS = ('sbn', 'sp', 'omni')
NONLINEARITIES = ('tanh', 'leaky_relu')
DATASETS = ('mnist', 'omniglot', 'fashion_mnist')
LIKELIHOODS = ('bernoulli', 'gaussian')
# What SBNTrackGradVariances can track, in its order (rebar.SBNTrackGradVariances.TRACKED): the
# released code's five, whose figures its Step vector holds, then ours. `tracked=all` tracks
# every one (the multi-sample ones with n_samples >= 2); names joined by '+' track those.
TRACKABLE = ('NVIL', 'SimpleMuProp', 'MuProp', 'DynamicREBAR', 'REBAR', 'ARM', 'DisARM', 'RELAX',
             'ReinforceLOO', 'DoubleCV', 'RODEO')
# tracked by every tracker: the followed path, and the estimator whose variance trains its
# temperature
ALWAYS_TRACKED = ('SimpleMuProp', 'DynamicREBAR')
# those that centre each sample on the other samples of its image (need n_samples >= 2)
MULTI_SAMPLE_TRACKABLE = ('ReinforceLOO', 'DoubleCV', 'RODEO')

# The reference's defaults, in the reference's order. The rest are ours (README, "Where we
# differ from the released code"): `sp_all_layers` is the sp erratum's corrected model;
# `reference_quadratic_cv` restores the released code's quadratic control variate; `dataset`
# names the data set apart from the objective `task`; `likelihood` chooses p(x | b_0);
# `objective` chooses what is trained from the n_samples samples of an image (OBJECTIVES);
# `nonlinearity`, `learn_prior` and `control_learning_rate` are the later papers' protocol
# options (tanh, a learned prior and the control variates at 10 x learning_rate are the
# reference's; control_learning_rate=0 keeps it); `tracked` chooses what SBNTrackGradVariances
# tracks (TRACKABLE).
DEFAULTS = collections.OrderedDict([
    ('model', 'SBNGumbel'),
    ('n_hidden', 200),
    ('n_input', 784),
    ('n_layer', 1),
    ('nonlinear', False),
    ('learning_rate', 0.001),
    ('temperature', 0.5),
    ('n_samples', 1),
    ('batch_size', 24),
    ('trial', 1),
    ('muprop_relaxation', True),
    ('dynamic_b', False),
    ('quadratic', True),
    ('beta2', 0.99999),
    ('task', 'sbn'),
    ('sp_all_layers', False),
    ('reference_quadratic_cv', False),
    ('dataset', 'mnist'),
    ('likelihood', 'bernoulli'),
    ('objective', 'elbo'),
    ('nonlinearity', 'tanh'),
    ('learn_prior', True),
    ('control_learning_rate', 0.0),
    ('tracked', 'all'),
])


class HParams(object):
    """An ordered, typed set of hyperparameters with attribute access."""

    def __init__(self, **overrides):
        self._values = collections.OrderedDict(DEFAULTS)
        for name, value in overrides.items():
            self._set(name, value)
        validate(self)

    def _set(self, name, value):
        if name not in DEFAULTS:
            raise ValueError('Unknown hparam %r. Valid names: %s.'
                             % (name, ', '.join(DEFAULTS)))
        self._values[name] = _coerce(name, value)

    def __getattr__(self, name):
        values = self.__dict__.get('_values')
        if values is not None and name in values:
            return values[name]
        raise AttributeError(name)

    def values(self):
        """The hyperparameters as an ordered dict (a copy)."""
        return collections.OrderedDict(self._values)

    def replace(self, **overrides):
        """A new HParams with some values changed."""
        merged = self.values()
        merged.update(overrides)
        return HParams(**merged)

    def to_json(self):
        return json.dumps(self._values, sort_keys=True)

    def __eq__(self, other):
        return isinstance(other, HParams) and dict(self._values) == dict(other._values)

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return 'HParams(%s)' % ', '.join('%s=%r' % kv for kv in self._values.items())


def _coerce(name, value):
    """Casts `value` (a string from the command line, or a Python value) to the default's type."""
    default = DEFAULTS[name]
    kind = type(default)
    hint = ('Fix: pass %s=<%s>, e.g. %s=%s.'
            % (name, kind.__name__, name, str(default).lower() if kind is bool else default))
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ('true', '1'):
            return True
        if text in ('false', '0'):
            return False
        raise ValueError('hparam %s expects true or false, got %r. %s' % (name, value, hint))
    if isinstance(value, bool):
        raise ValueError('hparam %s expects a %s, got the bool %r. %s'
                         % (name, kind.__name__, value, hint))
    try:
        if kind is int:
            as_float = float(value)
            if as_float != int(as_float):
                raise ValueError
            return int(as_float)
        if kind is float:
            return float(value)
    except (TypeError, ValueError, OverflowError):   # int('x'), int(nan), int(inf)
        raise ValueError('hparam %s expects a %s, got %r. %s' % (name, kind.__name__, value, hint))
    return str(value).strip()


# The valid range of every numeric hparam, (low, high), both ends included, and why it ends
# there. Values outside would fail at the first steps (an infinite or vanishing temperature or
# learning rate makes the first gradients non-finite) or could not describe a run at all; the
# ends are far outside any published configuration, so no real run is refused.
RANGES = collections.OrderedDict([
    ('n_hidden', (1, 100000, 'units per stochastic layer')),
    ('n_input', (2, 1000000, 'pixels per image; it must match the data\'s images')),
    ('n_layer', (1, 100, 'stochastic layers')),
    ('learning_rate', (1e-8, 1.0, "Adam's step size")),
    ('temperature', (1e-3, 1e3, 'the relaxation divides the logits by it: outside, the relaxed '
                                'samples and their gradients overflow or vanish in float32')),
    ('n_samples', (1, 10000, 'samples per image')),
    ('batch_size', (2, 1000000, 'REINFORCE centres each sample on the others, so at least 2')),
    ('trial', (-2 ** 31, 2 ** 31 - 1, 'a free label')),
    ('beta2', (0.0, 1 - 1e-9, "Adam's second-moment decay, below 1 so that Adam's bias "
                              'correction is defined')),
    ('control_learning_rate', (0.0, 1.0, "the control variates' Adam step size; 0 means 10 x "
                                         'learning_rate, the reference\'s')),
])


def validate(hparams):
    """Raises ValueError naming the first value that cannot describe a run: a name outside its
    choices, or a number that is not finite or lies outside its range (RANGES)."""
    for name, (low, high, why) in RANGES.items():
        value = getattr(hparams, name)
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError('Bad hparams: %s=%r is outside its valid range [%s, %s] (%s). Fix: '
                             'pass %s=<a value in that range>, e.g. %s=%s.'
                             % (name, value, _number(low), _number(high), why, name, name,
                                DEFAULTS[name]))
    checks = [
        (hparams.model in MODELS, 'model=%s is unknown; valid models: %s.'
         % (hparams.model, ', '.join(MODELS))),
        (hparams.task in TASKS, 'task=%s is unknown; valid tasks: %s.'
         % (hparams.task, ', '.join(TASKS))),
        (hparams.dataset in DATASETS, 'dataset=%s is unknown; valid data sets: %s.'
         % (hparams.dataset, ', '.join(DATASETS))),
        (hparams.task != 'omni' or hparams.dataset in ('mnist', 'omniglot'), _OMNI_CLASH
         % hparams.dataset),
        (hparams.task != 'sp' or hparams.n_input % 2 == 0,
         'n_input must be even for task=sp (it predicts the bottom half), got %d.'
         % hparams.n_input),
        (hparams.likelihood in LIKELIHOODS, 'likelihood=%s is unknown; valid likelihoods: %s.'
         % (hparams.likelihood, ', '.join(LIKELIHOODS))),
        (hparams.likelihood != 'gaussian' or not hparams.dynamic_b,
         'likelihood=gaussian models the grey pixels themselves, so dynamic_b (binarizing each '
         'batch) does not apply; fix: drop dynamic_b=true, or use likelihood=bernoulli.'),
        (hparams.nonlinearity in NONLINEARITIES, 'nonlinearity=%s is unknown; valid: %s.'
         % (hparams.nonlinearity, ', '.join(NONLINEARITIES))),
        (hparams.n_samples >= 2 or hparams.model not in MULTI_SAMPLE_MODELS,
         'model=%s centres each sample on the other samples of its image, so it needs '
         'n_samples of at least 2, got %d; fix: pass n_samples=2 (or more).'
         % (hparams.model, hparams.n_samples)),
        (hparams.objective in OBJECTIVES, 'objective=%s is unknown; valid objectives: %s.'
         % (hparams.objective, ', '.join(OBJECTIVES))),
        (hparams.objective != 'iwae' or hparams.model in IWAE_MODELS,
         'objective=iwae trains the n_samples-sample bound, which model=%s does not estimate; '
         'fix: pass model=%s, or objective=elbo.'
         % (hparams.model, ' or model='.join(IWAE_MODELS))),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError('Bad hparams: ' + message)
    _validate_tracked(hparams)


def tracked_of(hparams):
    """The estimators `tracked` names, in TRACKABLE order; None for tracked=all."""
    if hparams.tracked == 'all':
        return None
    names = _tracked_given(hparams)
    return tuple(n for n in TRACKABLE if n in names)


def _tracked_given(hparams):
    return [n.strip() for n in hparams.tracked.split('+')]


def _validate_tracked(hparams):
    if hparams.tracked == 'all':
        return
    fix = ('Fix: drop tracked (all), or pass tracked=%s+<names>, the names among %s joined by +.'
           % ('+'.join(ALWAYS_TRACKED), ', '.join(TRACKABLE)))
    if hparams.model != 'SBNTrackGradVariances':
        raise ValueError('Bad hparams: tracked=%s chooses what SBNTrackGradVariances tracks; '
                         'model=%s tracks nothing. Fix: drop tracked.'
                         % (hparams.tracked, hparams.model))
    names = _tracked_given(hparams)
    unknown = [n for n in names if n not in TRACKABLE]
    missing = [n for n in ALWAYS_TRACKED if n not in names]
    several = [n for n in names if n in MULTI_SAMPLE_TRACKABLE]
    if unknown:
        near = [m for n in unknown for m in difflib.get_close_matches(n, TRACKABLE, 1, 0.6)]
        raise ValueError('Bad hparams: tracked names %s, which cannot be tracked%s. %s'
                         % (', '.join(repr(n) for n in unknown),
                            ' (did you mean %s?)' % ', '.join(near) if near else '', fix))
    if missing:
        raise ValueError('Bad hparams: tracked leaves out %s (SimpleMuProp is the path followed, '
                         "DynamicREBAR's variance trains its temperature). %s"
                         % (' and '.join(missing), fix))
    if several and hparams.n_samples < 2:
        raise ValueError('Bad hparams: tracked names %s, which centre each sample on the other '
                         'samples of its image; fix: pass n_samples=2 (or more), or leave them '
                         'out.' % ', '.join(several))


def _number(x):
    return '%d' % x if isinstance(x, int) else '%.12g' % x


def named_in(spec):
    """The hparam names a "k=v,k=v" string sets."""
    return [item.split('=', 1)[0].strip() for item in spec.split(',') if '=' in item]


_OMNI_CLASH = ('task=omni means the sbn objective on Omniglot, but dataset=%s. Fix: pass '
               'task=sbn,dataset=<name> for another data set, or drop dataset (task=omni alone, '
               'or task=sbn,dataset=omniglot).')


def dataset_of(hparams):
    """The data set a run trains on: 'omniglot' for the reference's task=omni, else `dataset`."""
    return 'omniglot' if hparams.task == 'omni' else hparams.dataset


def parse_hparams(spec='', base=None):
    """Parses "k=v,k=v" on top of `base` (default: the reference's defaults)."""
    values = (base or HParams()).values()
    given = set()
    for item in [s for s in spec.split(',') if s.strip()]:
        if '=' not in item:
            raise ValueError('Cannot parse %r in --hparams: expected name=value pairs separated '
                             'by commas, e.g. "model=SBNDynamicRebar,n_layer=2".' % item)
        name, value = item.split('=', 1)
        name = name.strip()
        if name not in DEFAULTS:
            raise ValueError('Unknown hparam %r. Valid names: %s.'
                             % (name, ', '.join(DEFAULTS)))
        values[name] = _coerce(name, value)
        given.add(name)
    # dataset=mnist is also the default, so only the spec can tell that it was asked for.
    if 'dataset' in given and values['task'] == 'omni' and values['dataset'] != 'omniglot':
        raise ValueError('Bad hparams: ' + _OMNI_CLASH % values['dataset'])
    return HParams(**values)
