"""Hyperparameters: the reference's defaults, typed parsing, and refusals before any graph."""
from __future__ import absolute_import, division, print_function

import pytest

import config


def test_defaults_are_the_references():
    hp = config.HParams()
    assert hp.values() == config.DEFAULTS
    expected = dict(model='SBNGumbel', n_hidden=200, n_input=784, n_layer=1, nonlinear=False,
                    learning_rate=0.001, temperature=0.5, n_samples=1, batch_size=24, trial=1,
                    muprop_relaxation=True, dynamic_b=False, quadratic=True, beta2=0.99999,
                    task='sbn', sp_all_layers=False, reference_quadratic_cv=False,
                    dataset='mnist', nonlinearity='tanh', learn_prior=True,
                    control_learning_rate=0.0)
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
    ('n_layer=0', ['n_layer', 'at least 1']),
    ('temperature=0', ['temperature', '> 0']),
    ('temperature=-0.5', ['temperature', '> 0']),
    ('model=SBNRebbar', ['SBNRebbar', 'SBNDynamicRebar', 'SBNGumbel']),
    ('task=cifar', ['cifar', 'sbn', 'sp', 'omni']),
    ('batch_size=1', ['batch_size', 'at least 2']),
    ('dataset=cifar', ['dataset=cifar', 'mnist, omniglot, fashion_mnist']),
    ('dataset=omni', ['dataset=omni', 'omniglot']),
    ('task=omni,dataset=fashion_mnist', ['task=omni', 'dataset=fashion_mnist', 'task=sbn']),
    ('task=omni,dataset=mnist', ['task=omni', 'dataset=mnist', 'task=sbn']),
    ('dataset=mnist,task=omni', ['task=omni', 'dataset=mnist']),
    ('model', ['name=value']),
    ('nonlinearity=relu', ['nonlinearity=relu', 'tanh, leaky_relu']),
    ('control_learning_rate=-1', ['control_learning_rate', '>= 0']),
    ('model=SBNRodeo,n_samples=1', ['SBNRodeo', 'n_samples=2']),
])
def test_bad_hparams_are_refused_with_a_message_naming_the_problem(spec, words):
    with pytest.raises(ValueError) as err:
        config.parse_hparams(spec)
    for word in words:
        assert word in str(err.value)


def test_bad_values_are_refused_before_any_graph_is_built(graph):
    import rebar
    good = config.parse_hparams('model=SBNRebar')
    with pytest.raises(ValueError):
        rebar.build_model(good.replace(n_layer=0), [0.5] * 784)
    with pytest.raises(ValueError):
        rebar.build_model(good.replace(model='Nope'), [0.5] * 784)
    assert graph.get_operations() == []


def test_round_trip_through_json():
    import json
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
    assert names.index('dataset') > names.index('task')  # after the reference's names


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
