"""Hyperparameters: the reference's defaults, typed parsing, and refusals before any graph."""
from __future__ import absolute_import, division, print_function

import json

import pytest

import config


def test_defaults_are_the_references():
    hp = config.HParams()
    assert hp.values() == config.DEFAULTS
    expected = dict(model='SBNGumbel', n_hidden=200, n_input=784, n_layer=1, nonlinear=False,
                    learning_rate=0.001, temperature=0.5, n_samples=1, batch_size=24, trial=1,
                    muprop_relaxation=True, dynamic_b=False, quadratic=True, beta2=0.99999,
                    task='sbn', sp_all_layers=False, reference_quadratic_cv=False,
                    dataset='mnist', likelihood='bernoulli', objective='elbo',
                    nonlinearity='tanh', learn_prior=True, control_learning_rate=0.0,
                    tracked='all')
    assert dict(hp.values()) == expected


def test_parsing_types_values_by_their_default():
    hp = config.parse_hparams('model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn,'
                              'nonlinear=TRUE,quadratic=false,temperature=1')
    assert (hp.model, hp.n_layer, hp.task) == ('SBNDynamicRebar', 2, 'sbn')
    assert hp.learning_rate == 0.0003 and isinstance(hp.learning_rate, float)
    assert hp.temperature == 1.0 and isinstance(hp.temperature, float)
    assert hp.nonlinear is True and hp.quadratic is False
    assert isinstance(hp.n_layer, int)
    assert config.parse_hparams('') == config.HParams()
    assert config.parse_hparams(' n_layer = 3 ,').n_layer == 3


@pytest.mark.parametrize('spec, words', [
    ('n_layers=2', ['Unknown hparam', "'n_layers'", 'n_layer', 'model', 'task']),
    ('n_layer=two', ['n_layer', 'int', "'two'"]),
    ('n_layer=1.5', ['n_layer', 'int']),
    ('nonlinear=maybe', ['nonlinear', 'true or false']),
    ('learning_rate=fast', ['learning_rate', 'float']),
    ('n_layer=0', ['n_layer=0', 'valid range [1, 100]']),
    ('temperature=0', ['temperature=0.0', 'valid range [0.001, 1000]']),
    ('temperature=-0.5', ['temperature=-0.5', 'valid range']),
    ('model=SBNRebbar', ['SBNRebbar', 'SBNDynamicRebar', 'SBNGumbel']),
    ('task=cifar', ['cifar', 'sbn', 'sp', 'omni']),
    ('batch_size=1', ['batch_size=1', 'valid range [2, ']),
    ('dataset=cifar', ['dataset=cifar', 'mnist, omniglot, fashion_mnist']),
    ('dataset=omni', ['dataset=omni', 'omniglot']),
    ('task=omni,dataset=fashion_mnist', ['task=omni', 'dataset=fashion_mnist', 'task=sbn']),
    ('task=omni,dataset=mnist', ['task=omni', 'dataset=mnist', 'task=sbn']),
    ('dataset=mnist,task=omni', ['task=omni', 'dataset=mnist']),
    ('model', ['name=value']),
    ('objective=iwea', ['objective=iwea', 'elbo, iwae']),
    ('model=SBNDisARM,objective=iwae', ['model=SBNDisARM', 'model=SBNVIMCO',
                                        'model=SBNLocalDisARM', 'objective=elbo']),
    ('model=SBNARMS', ['model=SBNARMS', 'n_samples=2']),
    ('model=SBNVIMCO,objective=iwae', ['model=SBNVIMCO', 'n_samples=2']),
    ('likelihood=poisson', ['likelihood=poisson', 'bernoulli, gaussian']),
    ('likelihood=gaussian,dynamic_b=true', ['likelihood=gaussian', 'dynamic_b', 'fix: drop']),
    ('nonlinearity=relu', ['nonlinearity=relu', 'tanh, leaky_relu']),
    ('control_learning_rate=-1', ['control_learning_rate=-1.0', '[0, 1]', '10 x learning_rate']),
    ('model=SBNRodeo,n_samples=1', ['SBNRodeo', 'n_samples=2']),
    ('model=SBNDisARM,tracked=DisARM', ['tracked=DisARM', 'model=SBNDisARM', 'drop tracked']),
    ('model=SBNTrackGradVariances,tracked=SimpleMuProp+DynamicREBAR+DisArm',
     ["'DisArm'", 'did you mean DisARM?', 'tracked=SimpleMuProp+DynamicREBAR+<names>']),
    ('model=SBNTrackGradVariances,tracked=SimpleMuProp+DisARM', ['leaves out DynamicREBAR']),
    ('model=SBNTrackGradVariances,tracked=SimpleMuProp+DynamicREBAR+RODEO',
     ['RODEO', 'n_samples=2']),
])
def test_bad_hparams_are_refused_with_a_message_naming_the_problem(spec, words):
    with pytest.raises(ValueError) as err:
        config.parse_hparams(spec)
    for word in words:
        assert word in str(err.value)


def _out_of_range(name):
    """Values of `name` that must be refused: not finite, and just outside each end."""
    low, high, _ = config.RANGES[name]
    kind = type(config.DEFAULTS[name])
    if kind is int:
        return ['inf', 'nan', str(low - 1), str(high + 1)]
    return ['inf', '-inf', 'nan', repr(low * (1 - 1e-6) if low else -1e-300), repr(high * 1.001)]


@pytest.mark.parametrize('name', [n for n, v in config.DEFAULTS.items()
                                  if type(v) in (int, float)])
def test_numeric_hparam_out_of_range_is_refused_in_one_line_naming_value_and_range(name):
    """Every numeric hparam has a finite range (a new one without a range fails here); a value
    outside it, or not finite, is refused at parse time in one line naming the value and the
    range; both ends are accepted."""
    assert name in config.RANGES
    low, high, _ = config.RANGES[name]
    for value in _out_of_range(name):
        with pytest.raises(ValueError) as err:
            config.parse_hparams('%s=%s' % (name, value))
        message = str(err.value)
        assert '\n' not in message and name in message, message
        if 'valid range' in message:   # a finite number of the right type
            assert '%s=%r' % (name, type(config.DEFAULTS[name])(float(value))) in message
            assert '[%s, %s]' % (config._number(low), config._number(high)) in message
        else:                            # an int hparam given inf or nan: not an int at all
            assert "expects a int, got '%s'" % value in message
    for value in (low, high):
        assert getattr(config.parse_hparams('%s=%r' % (name, value)), name) == value


@pytest.mark.parametrize('spec', ['temperature=inf', 'temperature=1e-45', 'learning_rate=inf'])
def test_values_that_fail_at_the_first_steps_are_refused_at_parse_time(spec):
    """The issue's examples: each passed the old checks and failed at step 1 or 2."""
    name, value = spec.split('=')
    with pytest.raises(ValueError) as err:
        config.parse_hparams(spec)
    assert '%s=%r is outside its valid range [' % (name, float(value)) in str(err.value)


def test_bad_values_are_refused_before_any_graph_is_built(graph):
    import rebar
    good = config.parse_hparams('model=SBNRebar')
    with pytest.raises(ValueError):
        rebar.build_model(good.replace(n_layer=0), [0.5] * 784)
    with pytest.raises(ValueError):
        rebar.build_model(good.replace(model='Nope'), [0.5] * 784)
    assert graph.get_operations() == []


def test_round_trip_through_json():
    hp = config.parse_hparams('model=SBNMuProp,n_layer=3')
    assert config.HParams(**json.loads(hp.to_json())) == hp


@pytest.mark.parametrize('spec, task, dataset', [
    ('', 'sbn', 'mnist'),
    ('task=omni', 'sbn', 'omniglot'),  # the reference's spelling: the sbn objective on Omniglot
    ('task=omni,dataset=omniglot', 'sbn', 'omniglot'),
    ('dataset=omniglot', 'sbn', 'omniglot'),
    (' dataset = fashion_mnist ', 'sbn', 'fashion_mnist'),
    ('task=sp,dataset=fashion_mnist', 'sp', 'fashion_mnist'),
    ('task=sp', 'sp', 'mnist'),
])
def test_dataset_is_separate_from_the_objective(spec, task, dataset):
    hp = config.parse_hparams(spec)
    assert config.dataset_of(hp) == dataset
    assert (hp.task if hp.task != 'omni' else 'sbn') == task
    names = list(hp.values())
    assert names.index('dataset') > names.index('beta2')  # after the reference's names


def test_dataset_names_live_in_config_and_task_omni_round_trips():
    assert config.DATASETS == ('mnist', 'omniglot', 'fashion_mnist')
    assert config.DEFAULTS['dataset'] in config.DATASETS
    hp = config.parse_hparams('task=omni')
    again = config.HParams(**hp.values())  # as a stored hparams.json is read back
    assert again == hp and config.dataset_of(again) == 'omniglot'
    with pytest.raises(ValueError, match='task=omni means'):
        config.HParams(task='omni', dataset='fashion_mnist')
    with pytest.raises(ValueError, match='task=omni means'):
        config.parse_hparams('dataset=mnist', base=hp)  # an explicit clash on top of a base


@pytest.mark.parametrize('spec, likelihood', [
    ('', 'bernoulli'),
    ('likelihood=gaussian', 'gaussian'),
    ('likelihood=gaussian,dataset=fashion_mnist,model=SBNDisARM', 'gaussian'),
    ('likelihood=gaussian,task=omni', 'gaussian'),
])
def test_likelihood_defaults_to_the_references_bernoulli(spec, likelihood):
    hp = config.parse_hparams(spec)
    assert hp.likelihood == likelihood
    assert config.HParams(**json.loads(hp.to_json())) == hp
