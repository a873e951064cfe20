"""The report of a sweep: a table of final bounds over seeds and the training curves.

    python rebar_report.py SWEEP_DIR          # a rebar_sweep.py directory
    python rebar_report.py RUNS_DIR           # or any directory of run directories

writes SWEEP_DIR/report/:

    table.md, table.csv   one row per configuration, one column group per estimator: the final
                          training ELBO (the last full epoch's), the validation and test
                          importance-weighted bounds (the last evaluation), as mean ± standard
                          error over seeds (sample std / sqrt(n); no ± for one seed) with the
                          number of seeds, and a preset's published numbers beside ours;
                          table.md also gives each estimator's evaluations of f per image
    elbo.{png,svg,json}           training ELBO against steps, one panel per configuration
    grad_variance.{png,svg,json}  log gradient variance against steps
    temperature.{png,svg,json}    the learned temperature (runs of SBNDynamicRebar only)
    index.md              the table and the figures

Each figure has one line per estimator (the mean over seeds at the steps every seed has) with a
band from the lowest to the highest seed; its .json holds exactly what is plotted. A sweep
directory's layout (configurations, estimators, seeds) comes from its sweep.json; in a plain
directory every subdirectory with hparams.json is a run, its estimator the hparam `model`, its
configuration the other hparams that differ between runs, its seed hparams.json's `seed` (or the
directory name's `.seed_N`).
"""
from __future__ import absolute_import, division, print_function

import argparse
import collections
import csv
import json
import math
import os
import re
import sys

import presets
import records
import rundir

SWEEP_FILE = 'sweep.json'
REPORT = 'report'
NOT_CONFIGURATION = ('model', 'seed', 'trial')
VALID, TEST = 'valid', 'test'
METRICS = (('train_elbo', 'final training ELBO'),
           ('valid_bound', 'validation bound (IWAE, 100 samples)'),
           ('test_bound', 'test bound (IWAE, 100 samples)'))
FIGURES = (('elbo', 'training ELBO', 'elbo'),
           ('grad_variance', 'log gradient variance', None),
           ('temperature', 'temperature', 'temperature'))

Run = collections.namedtuple('Run', 'name path row column seed records')


class ReportError(ValueError):
    """Nothing to report; the message says why."""


# -- the runs -------------------------------------------------------------------------------------
def with_fields(record):
    """The record with named fields; records from drivers that wrote only the raw vectors get
    the ones every model has (the report vector's first entry is the ELBO, an evaluation's the
    bound)."""
    if record['kind'] == records.TRAIN and 'fields' not in record:
        record = dict(record, fields={records.ELBO: record['report'][0]})
        if 'temperature' in record:
            record['fields']['temperature'] = record['temperature']
    if record['kind'] == records.EVAL and 'valid_fields' not in record:
        record = dict(record, valid_fields={records.BOUND: record['valid'][0]},
                      test_fields={records.BOUND: record['test'][0]})
    return record


def read_run(path):
    return [with_fields(r) for r in records.read(path)]


def sweep_runs(directory):
    """The runs of a rebar_sweep.py directory, and its preset's published numbers (or None)."""
    with open(os.path.join(directory, SWEEP_FILE)) as f:
        sweep = json.load(f)
    preset = sweep['definition'].get('preset')
    published = presets.PRESETS[preset]['published'] if preset in presets.PRESETS else None
    runs = []
    for r in sweep['runs']:
        path = os.path.join(directory, r['name'])
        if os.path.exists(os.path.join(path, rundir.HPARAMS)):
            runs.append(Run(r['name'], path, r['row'], r['column'], r['seed'], read_run(path)))
    return runs, published


def seed_of(name, hparams, index):
    if 'seed' in hparams and hparams['seed'] is not None:
        return int(hparams['seed'])
    match = re.search(r'\.seed_(-?\d+)$', name)
    return int(match.group(1)) if match else index


def plain_runs(directory):
    """Every subdirectory holding hparams.json, grouped by the hparams that differ."""
    found = []
    for name in sorted(os.listdir(directory)):
        hparams = rundir.RunDir(os.path.join(directory, name)).read_hparams()
        if hparams is not None:
            found.append((name, hparams))
    keys = sorted(set(k for _, hp in found for k in hp) - set(NOT_CONFIGURATION))
    varying = [k for k in keys if len(set(json.dumps(hp.get(k)) for _, hp in found)) > 1]
    runs = []
    for index, (name, hp) in enumerate(found):
        row = ', '.join('%s=%s' % (k, hp.get(k)) for k in varying) or 'all'
        path = os.path.join(directory, name)
        runs.append(Run(name, path, row, hp.get('model', '?'), seed_of(name, hp, index),
                        read_run(path)))
    return runs, None


def load(directory):
    if not os.path.isdir(directory):
        raise ReportError('%s is not a directory; give a sweep directory or a directory of run '
                          'directories.' % directory)
    if os.path.exists(os.path.join(directory, SWEEP_FILE)):
        runs, published = sweep_runs(directory)
    else:
        runs, published = plain_runs(directory)
    if not runs:
        raise ReportError('%s holds no run directory (a directory with %s); nothing to report.'
                          % (directory, rundir.HPARAMS))
    return runs, published


# -- the numbers ----------------------------------------------------------------------------------
def final_train_elbo(recs):
    """(ELBO of the last full epoch, False), or of the last partial one (True) if the run has
    no full epoch; None without training records."""
    train = [r for r in records.of_kind(recs, records.TRAIN) if records.ELBO in r['fields']]
    full = [r for r in train if not r.get('partial')]
    if full:
        return full[-1]['fields'][records.ELBO], False
    return (train[-1]['fields'][records.ELBO], True) if train else None


def final_bound(recs, split):
    last = records.last(recs, records.EVAL)
    return last['%s_fields' % split].get(records.BOUND) if last else None


def run_metrics(run):
    elbo = final_train_elbo(run.records)
    return {'train_elbo': elbo[0] if elbo else None,
            'partial': bool(elbo and elbo[1]),
            'valid_bound': final_bound(run.records, VALID),
            'test_bound': final_bound(run.records, TEST)}


def mean_se(values):
    """(mean, standard error with ddof=1, n); se None for n = 1; None for no values."""
    values = [v for v in values if v is not None]
    n = len(values)
    if not n:
        return None
    mean = sum(values) / n
    if n == 1:
        return mean, None, 1
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance) / math.sqrt(n), n


def ordered(items):
    return list(collections.OrderedDict((i, None) for i in items))


def summarise(runs):
    """{(row, column): {metric: (mean, se, n) or None, 'partial': runs without a full epoch}}."""
    cells = collections.OrderedDict()
    for run in runs:
        cells.setdefault((run.row, run.column), []).append(run_metrics(run))
    table = collections.OrderedDict()
    for key, metrics in cells.items():
        table[key] = dict((m, mean_se([x[m] for x in metrics])) for m, _ in METRICS)
        table[key]['partial'] = sum(1 for x in metrics if x['partial'])
    return table


def evaluations_per_image(path):
    """Forward passes through the generative network per image and step, as the run's last
    session recorded it in provenance.json (None for runs of drivers that did not)."""
    sessions = (rundir.RunDir(path).read_provenance() or {}).get('sessions') or [{}]
    return sessions[-1].get('evaluations_per_image')


def published_value(published, row, column, metric):
    if not published or published.get('metric') != metric:
        return None
    return published['values'].get(row, {}).get(column)


def cell_text(stat, digits=2):
    if stat is None:
        return 'n/a'
    mean, se, n = stat
    text = '%.*f' % (digits, mean)
    if se is not None:
        text += ' ± %.*f' % (digits, se)
    return text + ' (n=%d)' % n


def write_tables(out_dir, runs, table, published):
    rows, columns = ordered(r.row for r in runs), ordered(r.column for r in runs)
    lines = []
    for metric, title in METRICS:
        lines += ['### %s' % title, '',
                  '| configuration | %s |' % ' | '.join(columns),
                  '| --- |%s' % (' --- |' * len(columns))]
        for row in rows:
            cells = []
            for column in columns:
                stat = table.get((row, column), {}).get(metric)
                text = cell_text(stat)
                if metric == 'train_elbo' and table.get((row, column), {}).get('partial'):
                    text += ' †'
                paper = published_value(published, row, column, metric)
                if paper is not None:
                    text += ' [paper %s]' % paper
                cells.append(text)
            lines.append('| %s | %s |' % (row, ' | '.join(cells)))
        lines.append('')
    costs = dict(((r.row, r.column), evaluations_per_image(r.path)) for r in runs)
    lines += ['### evaluations of f per image and training step', '',
              '| configuration | %s |' % ' | '.join(columns),
              '| --- |%s' % (' --- |' * len(columns))]
    for row in rows:
        lines.append('| %s | %s |' % (row, ' | '.join(
            'n/a' if costs.get((row, c)) is None else '%d' % costs[(row, c)] for c in columns)))
    lines.append('')
    notes = ['Mean ± standard error over seeds (sample standard deviation / sqrt(n)); n is the '
             'number of seeds.']
    if any(v.get('partial') for v in table.values()):
        notes.append('† some seeds have no full epoch: their last, partial epoch is used.')
    if published:
        notes.append('[paper x]: %s.' % published['source'])
    text = '\n'.join(lines + notes) + '\n'
    rundir.atomic_write(os.path.join(out_dir, 'table.md'), text)

    header = ['configuration']
    for column in columns:
        for metric, _ in METRICS:
            header += ['%s %s' % (column, metric), '%s %s_se' % (column, metric)]
        header += ['%s n_seeds' % column, '%s published_train_elbo' % column]
    with open(os.path.join(out_dir, 'table.csv'), 'w') as f:
        writer = csv.writer(f, lineterminator='\n')
        writer.writerow(header)
        for row in rows:
            out = [row]
            for column in columns:
                cell = table.get((row, column), {})
                for metric, _ in METRICS:
                    stat = cell.get(metric)
                    out += ['' if stat is None else repr(stat[0]),
                            '' if stat is None or stat[1] is None else repr(stat[1])]
                counts = [cell[m][2] for m, _ in METRICS if cell.get(m)]
                paper = published_value(published, row, column, 'train_elbo')
                out += [max(counts) if counts else 0, '' if paper is None else repr(paper)]
            writer.writerow(out)
    return text


# -- the figures ----------------------------------------------------------------------------------
def series(run, figure):
    """{line name: (steps, values)} of one run for a figure."""
    name, _, field = [f for f in FIGURES if f[0] == figure][0]
    if figure == 'grad_variance':
        train = records.of_kind(run.records, records.TRAIN)
        if train and isinstance(train[0]['log_grad_variance'], dict):
            return dict(('%s/%s' % (run.column, k), records.variance_series(run.records, k))
                        for k in train[0]['log_grad_variance'])
        steps, values = records.variance_series(run.records)
    else:
        if figure == 'temperature' and 'DynamicRebar' not in run.column:
            return {}
        steps, values = records.train_series(run.records, field)
    return {run.column: (steps, values)} if steps else {}


def figure_data(runs, figure):
    """The panels of a figure: per configuration, per line, the seeds' values at the steps
    every seed has, their mean, min and max."""
    panels = []
    for row in ordered(r.row for r in runs):
        by_line = collections.OrderedDict()
        for run in [r for r in runs if r.row == row]:
            for line, (steps, values) in series(run, figure).items():
                by_line.setdefault(line, collections.OrderedDict())[str(run.seed)] = dict(
                    zip(steps, values))
        lines = []
        for line, seeds in by_line.items():
            common = sorted(set.intersection(*[set(s) for s in seeds.values()]))
            per_seed = dict((seed, [values[s] for s in common]) for seed, values in seeds.items())
            columns = list(zip(*per_seed.values()))
            lines.append({'estimator': line, 'steps': common, 'seeds': per_seed,
                          'mean': [sum(c) / len(c) for c in columns],
                          'min': [min(c) for c in columns], 'max': [max(c) for c in columns]})
        if lines:
            panels.append({'configuration': row, 'lines': lines})
    return panels


def plot(out_dir, figure, title, panels):
    """Writes FIGURE.png, .svg and .json; returns the basenames written."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    n = len(panels)
    ncols = min(3, n)
    nrows = int(math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.6 * nrows), squeeze=False)
    for ax, panel in zip([a for row in axes for a in row], panels):
        for line in panel['lines']:
            few = len(line['steps']) < 30   # short runs: show the points themselves
            drawn = ax.plot(line['steps'], line['mean'], label=line['estimator'],
                            marker='o' if few else None, markersize=3)[0]
            if len(line['seeds']) > 1:
                ax.fill_between(line['steps'], line['min'], line['max'],
                                color=drawn.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(panel['configuration'], fontsize=10)
        ax.set_xlabel('steps')
        ax.set_ylabel(title)
        ax.legend(fontsize=8)
    for ax in [a for row in axes for a in row][n:]:
        ax.set_visible(False)
    fig.tight_layout()
    for ext in ('png', 'svg'):
        fig.savefig(os.path.join(out_dir, '%s.%s' % (figure, ext)), dpi=100)
    plt.close(fig)
    rundir.atomic_write(os.path.join(out_dir, figure + '.json'),
                        json.dumps({'figure': figure, 'ylabel': title, 'band': 'min-max over seeds',
                                    'panels': panels}, indent=1) + '\n')
    return figure


def write_index(out_dir, directory, runs, table_text, figures):
    lines = ['# Report: %s' % os.path.basename(os.path.abspath(directory)), '',
             '%d runs, %d configurations, estimators: %s.'
             % (len(runs), len(ordered(r.row for r in runs)),
                ', '.join(ordered(r.column for r in runs))), '', '## Final numbers', '',
             table_text, '## Curves', '']
    for figure in figures:
        title = [t for f, t, _ in FIGURES if f == figure][0]
        lines += ['### %s' % title, '', '![%s](%s.png)' % (title, figure), '',
                  '(vector: [%s.svg](%s.svg); plotted series: [%s.json](%s.json))'
                  % (figure, figure, figure, figure), '']
    rundir.atomic_write(os.path.join(out_dir, 'index.md'), '\n'.join(lines))


def report(directory):
    """Writes DIRECTORY/report/; returns its path."""
    runs, published = load(directory)
    out_dir = os.path.join(directory, REPORT)
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    table_text = write_tables(out_dir, runs, summarise(runs), published)
    figures = []
    for figure, title, _ in FIGURES:
        panels = figure_data(runs, figure)
        if panels:
            figures.append(plot(out_dir, figure, title, panels))
    write_index(out_dir, directory, runs, table_text, figures)
    return out_dir


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('directory', help='a sweep directory or a directory of run directories')
    args = p.parse_args(argv)
    try:
        out_dir = report(args.directory)
    except (ReportError, rundir.RunDirError) as e:
        sys.stderr.write('rebar_report: error: %s\n' % e)
        return 2
    sys.stderr.write('rebar_report: wrote %s (index.md)\n' % out_dir)
    return 0


if __name__ == '__main__':
    sys.exit(main())
