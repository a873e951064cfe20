"""rebar_toy.py: every registered unbiased estimator's mean gradient against the closed form at
three probabilities and K = 1-3, Concrete's bias seen at t = 0.499, the closed form against
finite differences, a short training run's toy.json and toy.png, the presets, and bad flags
refused before anything is written."""
from __future__ import absolute_import, division, print_function

import json
import os

import numpy as np
import pytest

import binary_gradient
import rebar
import rebar_toy

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
PROBS = (0.05, 0.5, 0.95)


def _ks(name):
    return list(range(binary_gradient.min_samples(name), 4))


@pytest.mark.parametrize('name', [n for n in rebar.ESTIMATORS if n not in rebar_toy.BIASED])
def test_check_unbiased_against_closed_form(name):
    # t = 0.45: a gradient large enough (0.025 at sigma = 1/2) for the check to have power
    rows = rebar_toy.check([name], 0.45, 1, _ks(name), PROBS, draws=2000)
    assert len(rows) == 3 * len(_ks(name))
    exact = rebar_toy.closed_form(np.array(PROBS), 0.45)[1]
    np.testing.assert_allclose([r['exact'] for r in rows], np.tile(exact, len(_ks(name))))
    assert all(abs(r['z']) < 4 for r in rows), rows


def test_check_sees_concrete_bias_at_0499():
    rows = rebar_toy.check(['Concrete'], 0.499, 1, [1], PROBS, draws=4000)
    assert max(abs(r['z']) for r in rows) > 4, rows


def test_closed_form_against_finite_differences():
    """d E[f] / d theta_d for f the mean over 4 bits: the per-bit loss's derivative over 4."""
    probs, t = np.array([0.05, 0.3, 0.5, 0.95]), 0.499
    theta = np.log(probs / (1 - probs))

    def loss(th):
        return rebar_toy.closed_form(1 / (1 + np.exp(-th)), t)[0]
    numeric = (loss(theta + 1e-6) - loss(theta - 1e-6)) / 2e-6 / 4
    np.testing.assert_allclose(rebar_toy.closed_form(probs, t, 4)[1], numeric, rtol=1e-5)


def test_check_over_several_bits():
    rows = rebar_toy.check(['DisARM'], 0.45, 3, [2], PROBS, draws=2000)
    np.testing.assert_allclose([r['exact'] for r in rows],
                               rebar_toy.closed_form(np.array(PROBS), 0.45)[1] / 3)
    assert all(abs(r['z']) < 4 for r in rows), rows


def test_training_writes_json_and_png(tmp_path):
    out = str(tmp_path / 'toy')
    assert rebar_toy.main(['--target=0.45', '--estimators=ARM,SBNRelax', '--steps=25',
                           '--n_samples=1,2', '--bits=2', '--out_dir=' + out]) == 0
    with open(os.path.join(out, 'toy.json')) as f:
        record = json.load(f)
    assert [(r['estimator'], r['n_samples']) for r in record['runs']] == [
        ('ARM', 1), ('ARM', 2), ('RELAX', 1), ('RELAX', 2)]
    for run in record['runs']:
        assert len(run['sigma']) == len(run['loss']) == len(run['log_variance']) == 25
        assert run['log_variance'][0] is None   # one draw has no variance
        # None while every draw so far was equal (ARM's first draws can all be 0 on 2 bits)
        drawn = [v for v in run['log_variance'] if v is not None]
        assert len(drawn) >= 20 and all(np.isfinite(drawn))
        sigma = np.array(run['sigma'])
        assert np.all((sigma > 0) & (sigma < 1))
        # E[(b - t)^2] per bit lies between t^2 (sigma = 0) and (1 - t)^2 (sigma = 1)
        assert np.all((np.array(run['loss']) >= 0.45 ** 2) & (np.array(run['loss']) <= 0.55 ** 2))
    assert record['target'] == 0.45 and record['bits'] == 2
    with open(os.path.join(out, 'toy.png'), 'rb') as f:
        assert f.read(8) == PNG_SIGNATURE


def test_one_bit_loss_is_the_closed_form_of_sigma(tmp_path):
    out = str(tmp_path / 'toy')
    assert rebar_toy.main(['--target=0.3', '--estimators=ARM', '--steps=5',
                           '--out_dir=' + out]) == 0
    with open(os.path.join(out, 'toy.json')) as f:
        run = json.load(f)['runs'][0]
    np.testing.assert_allclose(run['loss'], rebar_toy.closed_form(run['sigma'], 0.3)[0],
                               rtol=1e-6)


@pytest.mark.parametrize('preset', list(rebar_toy.PRESETS))
def test_presets_are_valid_settings(preset):
    args = rebar_toy.parser().parse_args(['--preset=' + preset, '--out_dir=x'])
    values, notes = rebar_toy.settings(args)
    spec = rebar_toy.PRESETS[preset]
    assert values['target'] == spec['target'] and values['bits'] == spec['bits']
    assert values['estimators'] == [n for n in spec['estimators'] if n in rebar.ESTIMATORS]
    assert values['estimators'], preset
    assert bool(notes) == (len(values['estimators']) < len(spec['estimators']))


@pytest.mark.parametrize('argv,message', [
    (['--estimators=NoSuch'], 'Unknown estimator'),
    (['--estimators=ReinforceLOO', '--n_samples=1'], 'n_samples=2'),
    (['--preset=nope'], 'Unknown --preset'),
    (['--target=1.5'], '--target must lie'),
    (['--probs=0,0.5'], '--probs must lie'),
])
def test_bad_flags_are_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / 'toy'
    assert rebar_toy.main(argv + ['--out_dir=' + str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
