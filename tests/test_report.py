"""rebar_report.py on synthetic run directories: the table's numbers against mean and standard
error computed here from the metrics files, the figures as valid images, their JSON series
against the metrics, and a preset's published numbers beside ours."""
from __future__ import absolute_import, division, print_function

import csv
import json
import os
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

import rebar_report
import records
import rundir

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# (configuration's n_layer, model) -> seeds; one cell with a single seed (no ± term)
CELLS = {(1, 'SBN'): (1, 2, 3), (1, 'SBNDynamicRebar'): (1, 2, 3), (2, 'SBN'): (4, 5),
         (2, 'SBNDynamicRebar'): (7,)}
EPOCH_STEPS = (10, 20, 30)
LAST_STEP = 35


def write_run(path, identity, rng, with_fields=True):
    """A run directory with hparams.json and metrics.jsonl in records.py's format: three full
    epochs and a partial one, evaluations at steps 20 and 35."""
    os.makedirs(path)
    rundir.atomic_write(os.path.join(path, rundir.HPARAMS), json.dumps(identity))
    dynamic = identity['model'] == 'SBNDynamicRebar'
    names = ['elbo', 'temperature', 'eta/0'] if dynamic else ['elbo', 'rms_signal']
    eval_names = ['iwae_bound'] + names
    recs = []
    for step in EPOCH_STEPS + (LAST_STEP,):
        report = [-200 + step + rng.randn(), rng.rand() + 0.1, 1.0][:len(names)]
        temperature = report[1] if dynamic else 0.5
        recs.append(records.train_record(step, step // 10, step == LAST_STEP, 10,
                                         report, names, float(rng.randn() - 3), temperature,
                                         'Step %d' % step))
        if step in (20, LAST_STEP):
            recs.append(records.eval_record(step, step // 10, -190 + rng.randn(len(
                eval_names)), -191 + rng.randn(len(eval_names)), eval_names, 'eval'))
    if not with_fields:   # what drivers before named fields wrote
        for r in recs:
            for key in ('fields', 'valid_fields', 'test_fields'):
                r.pop(key, None)
    rundir.RunDir(path).write_records(recs)


@pytest.fixture(scope='module')
def runs_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp('runs'))
    rng = np.random.RandomState(0)
    for (n_layer, model), seeds in sorted(CELLS.items()):
        for seed in seeds:
            write_run(os.path.join(directory, 'm_%s.n_%d.seed_%d' % (model, n_layer, seed)),
                      {'model': model, 'n_layer': n_layer, 'n_hidden': 200, 'seed': seed}, rng)
    assert rebar_report.main([directory]) == 0
    return directory


def cell_runs(directory, n_layer, model):
    return [os.path.join(directory, 'm_%s.n_%d.seed_%d' % (model, n_layer, s))
            for s in CELLS[(n_layer, model)]]


def expected(values):
    values = np.array(values, dtype=np.float64)
    se = np.std(values, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else None
    return np.mean(values), se, len(values)


def test_table_holds_mean_and_standard_error_over_seeds(runs_dir):
    with open(os.path.join(runs_dir, 'report', 'table.csv')) as f:
        rows = dict((r['configuration'], r) for r in csv.DictReader(f))
    assert sorted(rows) == ['n_layer=1', 'n_layer=2']
    for (n_layer, model), seeds in CELLS.items():
        row = rows['n_layer=%d' % n_layer]
        recs = [records.read(p) for p in cell_runs(runs_dir, n_layer, model)]
        full = [[r for r in rs if r['kind'] == 'train' and not r['partial']][-1] for rs in recs]
        evals = [[r for r in rs if r['kind'] == 'eval'][-1] for rs in recs]
        assert all(r['step'] == 30 for r in full) and all(r['step'] == LAST_STEP for r in evals)
        for metric, values in (('train_elbo', [r['fields']['elbo'] for r in full]),
                               ('valid_bound', [r['valid_fields']['iwae_bound'] for r in evals]),
                               ('test_bound', [r['test_fields']['iwae_bound'] for r in evals])):
            mean, se, n = expected(values)
            assert float(row['%s %s' % (model, metric)]) == pytest.approx(mean, abs=1e-9)
            if se is None:
                assert row['%s %s_se' % (model, metric)] == ''
            else:
                assert float(row['%s %s_se' % (model, metric)]) == pytest.approx(se, abs=1e-9)
        assert int(row['%s n_seeds' % model]) == len(seeds)
    with open(os.path.join(runs_dir, 'report', 'table.md')) as f:
        table = f.read()
    mean = expected([[r for r in records.read(p) if r['kind'] == 'train' and not r['partial']][
        -1]['fields']['elbo'] for p in cell_runs(runs_dir, 2, 'SBNDynamicRebar')])[0]
    assert '| %.2f (n=1) @ step 30 |' % mean in table   # one seed: no ± term


def test_an_iwae_runs_training_figure_is_its_k_sample_bound(tmp_path):
    """Under objective=iwae the report's first entry (`k_sample_bound`) stands in for the
    training ELBO, in the table and in the training figure's series."""
    rng = np.random.RandomState(1)
    path = str(tmp_path / 'run')
    write_run(path, {'model': 'SBNVIMCO', 'objective': 'iwae', 'seed': 1}, rng)
    recs = records.read(path)
    for r in recs:   # rename the first entry as the driver names it under iwae
        if r['kind'] == 'train':
            r['fields'] = {'k_sample_bound': r['fields'].pop('elbo')}
    rundir.RunDir(path).write_records(recs)
    run = rebar_report.load(str(tmp_path))[0][0]
    full = [r for r in recs if r['kind'] == 'train' and not r['partial']]
    assert rebar_report.metric_series(run, 'train_elbo') == [
        (r['step'], r['fields']['k_sample_bound'], False) for r in full]
    steps, values = rebar_report.series(run, 'elbo')[run.column]
    assert values == [r['fields']['k_sample_bound'] for r in recs if r['kind'] == 'train']


def test_figures_are_valid_images(runs_dir):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.image
    out = os.path.join(runs_dir, 'report')
    for figure in ('elbo', 'grad_variance', 'temperature'):
        png = os.path.join(out, figure + '.png')
        with open(png, 'rb') as f:
            assert f.read(8) == PNG_SIGNATURE
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        root = ElementTree.parse(os.path.join(out, figure + '.svg')).getroot()
        assert root.tag.endswith('svg')
    with open(os.path.join(out, 'index.md')) as f:
        index = f.read()
    for figure in ('elbo', 'grad_variance', 'temperature'):
        assert '](%s.png)' % figure in index
    assert '| configuration | SBN | SBNDynamicRebar |' in index
    assert 'Data: mnist with the bernoulli likelihood.' in index   # hparams.json without either


def test_the_index_names_each_data_set_and_likelihood(tmp_path):
    rng = np.random.RandomState(1)
    for i, extra in enumerate([{}, {'likelihood': 'gaussian', 'dataset': 'fashion_mnist'},
                               {'likelihood': 'gaussian', 'task': 'omni'}]):
        write_run(str(tmp_path / ('run%d' % i)), dict({'model': 'SBN', 'seed': 1}, **extra), rng)
    assert rebar_report.main([str(tmp_path)]) == 0
    with open(str(tmp_path / 'report' / 'index.md')) as f:
        index = f.read()
    assert ('Data: mnist with the bernoulli likelihood; fashion_mnist with the gaussian '
            'likelihood; omniglot with the gaussian likelihood.') in index
    assert 'likelihood=gaussian' in index   # and the rows of the table tell them apart


@pytest.mark.parametrize('figure,field', [('elbo', 'elbo'), ('grad_variance', None),
                                          ('temperature', 'temperature')])
def test_plotted_series_are_the_metrics(runs_dir, figure, field):
    with open(os.path.join(runs_dir, 'report', figure + '.json')) as f:
        panels = json.load(f)['panels']
    assert [p['configuration'] for p in panels] == ['n_layer=1', 'n_layer=2']
    for panel in panels:
        n_layer = int(panel['configuration'].split('=')[1])
        lines = dict((line['estimator'], line) for line in panel['lines'])
        models = ['SBNDynamicRebar'] if figure == 'temperature' else ['SBN', 'SBNDynamicRebar']
        assert sorted(lines) == models
        for model in models:
            line = lines[model]
            per_seed = []
            for seed, path in zip(CELLS[(n_layer, model)], cell_runs(runs_dir, n_layer, model)):
                train = [r for r in records.read(path) if r['kind'] == 'train']
                assert line['steps'] == [r['step'] for r in train]
                values = [r['log_grad_variance'] if field is None else r['fields'][field]
                          for r in train]
                assert line['seeds'][str(seed)] == values
                per_seed.append(values)
            np.testing.assert_allclose(line['mean'], np.mean(per_seed, axis=0), rtol=1e-12)


def test_a_preset_sweep_puts_the_published_numbers_beside_ours(tmp_path):
    directory = str(tmp_path)
    rng = np.random.RandomState(1)
    runs = []
    for model in ('SBNNVIL', 'SBNDynamicRebar'):
        for seed in (1, 2):
            name = 'task_MNIST.arch_linear_2_layers.model_%s.seed_%d' % (model, seed)
            write_run(os.path.join(directory, name),
                      {'model': model, 'n_layer': 2, 'seed': seed}, rng)
            runs.append({'name': name, 'row': 'MNIST, linear 2 layers', 'column': model,
                         'seed': seed, 'hparams': 'model=%s,n_layer=2' % model})
    with open(os.path.join(directory, 'sweep.json'), 'w') as f:
        json.dump({'definition': {'preset': 'rebar2017-table1'}, 'runs': runs}, f)
    assert rebar_report.main([directory]) == 0
    with open(os.path.join(directory, 'report', 'table.csv')) as f:
        row = list(csv.DictReader(f))[0]
    assert row['configuration'] == 'MNIST, linear 2 layers'
    assert float(row['SBNNVIL published_train_elbo']) == -99.6
    assert float(row['SBNDynamicRebar published_train_elbo']) == -98.8
    with open(os.path.join(directory, 'report', 'table.md')) as f:
        assert '[paper -98.8]' in f.read()


def test_records_without_named_fields_still_report(tmp_path):
    directory = str(tmp_path)
    write_run(os.path.join(directory, 'old'), {'model': 'SBNDynamicRebar'},
              np.random.RandomState(2), with_fields=False)
    assert rebar_report.main([directory]) == 0
    recs = records.read(os.path.join(directory, 'old'))
    with open(os.path.join(directory, 'report', 'table.csv')) as f:
        row = list(csv.DictReader(f))[0]
    assert float(row['SBNDynamicRebar train_elbo']) == [
        r for r in recs if r['kind'] == 'train'][2]['report'][0]
    assert float(row['SBNDynamicRebar test_bound']) == recs[-1]['test'][0]


def test_an_empty_directory_is_a_clear_error(tmp_path, capsys):
    assert rebar_report.main([str(tmp_path)]) == 2
    assert 'holds no run directory' in capsys.readouterr().err


# -- seeds at different steps ----------------------------------------------------------------------
def write_stopped_run(path, seed, steps, evals, partial_at=None):
    """A run of SBN with full epochs ending at `steps`, a partial one at `partial_at`, and
    evaluations at `evals`; every number is a function of (seed, step), so that a cell's
    numbers can be recomputed for any step."""
    os.makedirs(path)
    rundir.atomic_write(os.path.join(path, rundir.HPARAMS),
                        json.dumps({'model': 'SBN', 'n_hidden': 200, 'seed': seed}))
    recs = []
    for step in sorted(set(steps) | set(evals) | ({partial_at} if partial_at else set())):
        if step in steps or step == partial_at:
            recs.append(records.train_record(step, step // 10, step == partial_at, 10,
                                             [elbo(seed, step)], ['elbo'], -3.0, 0.5, 'Step'))
        if step in evals:
            recs.append(records.eval_record(step, step // 10, [elbo(seed, step) + 1],
                                            [elbo(seed, step) + 2], ['iwae_bound'], 'eval'))
    rundir.RunDir(path).write_records(recs)


def elbo(seed, step):
    return -300.0 + step + 7.0 * seed


def test_seeds_stopped_at_different_steps_are_compared_at_a_step_all_reached(tmp_path):
    """One configuration's seed 1 has reached step 40 (epochs every 10 steps, evaluations at
    20 and 40), its seed 2 step 20 (the sweep still runs): every cell takes both at step 20,
    says so and names seed 2 as behind; the CSV carries the step of every number; the curve
    stops at 20. Another configuration has only partial epochs, at steps 200 and 20 (no step
    in common): its cell says that it mixes steps and which run is behind."""
    directory = str(tmp_path)
    write_stopped_run(os.path.join(directory, 'a.seed_1'), 1, (10, 20, 30, 40), (20, 40))
    write_stopped_run(os.path.join(directory, 'a.seed_2'), 2, (10, 20), (20,))
    runs = [r._replace(row='running') for r in rebar_report.load(directory)[0]]
    mixed_dir = str(tmp_path / 'mixed')
    os.makedirs(mixed_dir)
    write_stopped_run(os.path.join(mixed_dir, 'b.seed_1'), 1, (), (), partial_at=200)
    write_stopped_run(os.path.join(mixed_dir, 'b.seed_2'), 2, (), (), partial_at=20)
    runs += [r._replace(row='mixed') for r in rebar_report.load(mixed_dir)[0]]
    out = str(tmp_path / 'out')
    os.makedirs(out)
    table = rebar_report.summarise(runs)
    text = rebar_report.write_tables(out, runs, table, None)

    offsets = {'train_elbo': 0, 'valid_bound': 1, 'test_bound': 2}
    for metric, offset in offsets.items():
        stat = table[('running', 'SBN')][metric]
        mean, se, n = expected([elbo(1, 20) + offset, elbo(2, 20) + offset])
        assert (stat.step, stat.n) == (20, 2)
        assert stat.mean == pytest.approx(mean) and stat.se == pytest.approx(se)
    last = table[('running', 'SBN')]['valid_bound'].last_steps
    assert sorted(last) == [('a.seed_1', 40), ('a.seed_2', 20)]
    mixed = table[('mixed', 'SBN')]['train_elbo']
    assert mixed.step is None and mixed.partial == 2
    assert mixed.mean == pytest.approx(np.mean([elbo(1, 200), elbo(2, 20)]))
    assert table[('mixed', 'SBN')]['valid_bound'] is None

    train_table = text.split('###')[1]
    assert '| running | %s @ step 20 ‡ |' % rebar_report.cell_text(
        table[('running', 'SBN')]['train_elbo']).split(' @ ')[0] in train_table
    assert '(n=2) @ steps 20-200 † ‡ |' in train_table
    assert 'running, SBN: a.seed_2 at step 20 (the furthest at step 40)' in train_table
    assert 'mixed, SBN (mixed steps): b.seed_2 at step 20 (the furthest at step 200)' \
        in train_table

    with open(os.path.join(out, 'table.csv')) as f:
        rows = dict((r['configuration'], r) for r in csv.DictReader(f))
    for metric in offsets:
        assert rows['running']['SBN %s_step' % metric] == '20'
        assert rows['running']['SBN %s_last_steps' % metric] == 'a.seed_1@40 a.seed_2@20'
    assert rows['mixed']['SBN train_elbo_step'] == ''
    assert rows['mixed']['SBN train_elbo_last_steps'] == 'b.seed_1@200 b.seed_2@20'

    curve = rebar_report.figure_data(runs, 'elbo')[0]['lines'][0]
    assert curve['steps'] == [10, 20]   # where seed 2 stops


# -- the spread of the curves ----------------------------------------------------------------------
def test_curves_of_several_seeds_show_their_spread_and_say_which(runs_dir):
    """Every line of several seeds is drawn with a band of mean ± one standard error (ddof=1)
    at each step, computed here from the seeds' values; a line of one seed has none; the
    figure's title names the band and each legend entry its number of seeds."""
    runs = rebar_report.load(runs_dir)[0]
    panels = rebar_report.figure_data(runs, 'elbo')
    fig = rebar_report.draw('training ELBO', panels)
    try:
        assert 'line: mean over seeds; band: ± 1 standard error of the mean' in \
            fig._suptitle.get_text()
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert len(axes) == len(panels)
        for ax, panel in zip(axes, panels):
            bands = list(ax.collections)
            several = [line for line in panel['lines'] if len(line['seeds']) > 1]
            assert len(bands) == len(several)
            for band, line in zip(bands, several):
                values = np.array(list(line['seeds'].values()))
                mean = values.mean(0)
                se = values.std(0, ddof=1) / np.sqrt(len(values))
                np.testing.assert_allclose(line['band'], [mean - se, mean + se], rtol=1e-12)
                # the drawn polygon: the upper edge and the lower edge at every step
                vertices = band.get_paths()[0].vertices
                for step, low, high in zip(line['steps'], mean - se, mean + se):
                    at = vertices[np.isclose(vertices[:, 0], step), 1]
                    assert np.isclose(at.min(), low) and np.isclose(at.max(), high)
            labels = [t.get_text() for t in ax.get_legend().get_texts()]
            assert labels == ['%s (%d seed%s)' % (line['estimator'], len(line['seeds']),
                                                  's' if len(line['seeds']) > 1 else '')
                              for line in panel['lines']]
            assert all(line['band'] is None for line in panel['lines']
                       if len(line['seeds']) == 1)
        assert any(len(line['seeds']) == 1 for p in panels for line in p['lines'])
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)
    with open(os.path.join(runs_dir, 'report', 'elbo.json')) as f:
        assert json.load(f)['band'] == '± 1 standard error of the mean'
