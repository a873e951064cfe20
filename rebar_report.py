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

A cell compares its seeds at one step, the last step all of them have a number for ("@ step
N"; a seed further on is taken back to it), marks (‡) and names the runs behind another seed,
and when the seeds share no step takes each one's last number and says it mixes steps ("@ steps
A-B"); table.csv gives each number's step and every seed's last step. Each figure has one line
per estimator (the mean over seeds at the steps every seed has: it stops where the first seed
stops) with a band of one standard error either side when it has several seeds, as its title
says; its .json holds exactly what is plotted. A sweep directory's layout (configurations,
estimators, seeds) comes from its sweep.json; in a plain directory every subdirectory with
hparams.json is a run, its estimator the hparam `model`, its configuration the other hparams
that differ between runs, its seed hparams.json's `seed` (or the directory name's `.seed_N`).
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

import config
import presets
import records
import rundir

SWEEP_FILE = 'sweep.json'
REPORT = 'report'
NOT_CONFIGURATION = ('model', 'seed', 'trial')
VALID, TEST = 'valid', 'test'
METRICS = (('train_elbo', 'final training ELBO (the K-sample bound under objective=iwae)'),
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
# A cell of the table for one metric: mean, standard error (None for one seed), number of seeds,
# `step`, the one step every seed's number is from (None: the seeds share no step, and each
# gives its last number), `last_steps`, [(run name, step of its last number)] per seed, and
# `partial`, how many of the numbers are of a partial epoch.
Stat = collections.namedtuple('Stat', 'mean se n step last_steps partial')


def metric_series(run, metric):
    """[(step, value, partial)] of a run for a table metric, in step order: the training ELBO of
    each full epoch (of each partial one while the run has no full epoch; an objective=iwae
    run's K-sample bound), or each evaluation's bound."""
    if metric == 'train_elbo':
        train = [r for r in records.of_kind(run.records, records.TRAIN)
                 if r['fields'].get(records.trained(r['fields'])) is not None]
        full = [r for r in train if not r.get('partial')]
        return [(r['step'], r['fields'][records.trained(r['fields'])], bool(r.get('partial')))
                for r in full or train]
    split = VALID if metric == 'valid_bound' else TEST
    return [(r['step'], r['%s_fields' % split][records.BOUND], False)
            for r in records.of_kind(run.records, records.EVAL)
            if r['%s_fields' % split].get(records.BOUND) is not None]


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


def cell_stat(runs, metric):
    """The seeds of a cell compared at one step: each seed's number at the last step all of
    them have one for (a seed further on is taken back to it); if they share none, each seed's
    last number, and the cell says it mixes steps. None without numbers."""
    series = [(run.name, metric_series(run, metric)) for run in runs]
    series = [(name, points) for name, points in series if points]
    if not series:
        return None
    shared = set.intersection(*[set(step for step, _, _ in points) for _, points in series])
    step = max(shared) if shared else None
    chosen = [[p for p in points if p[0] == step][-1] if shared else points[-1]
              for _, points in series]
    mean, se, n = mean_se([value for _, value, _ in chosen])
    return Stat(mean, se, n, step, [(name, points[-1][0]) for name, points in series],
                sum(1 for _, _, partial in chosen if partial))


def behind(stat):
    """The runs of a cell whose last number is before another seed's: [(name, step)]."""
    furthest = max(step for _, step in stat.last_steps)
    return [(name, step) for name, step in stat.last_steps if step < furthest]


def ordered(items):
    return list(collections.OrderedDict((i, None) for i in items))


def summarise(runs):
    """{(row, column): {metric: Stat or None}}."""
    cells = collections.OrderedDict()
    for run in runs:
        cells.setdefault((run.row, run.column), []).append(run)
    return collections.OrderedDict(
        (key, dict((m, cell_stat(members, m)) for m, _ in METRICS))
        for key, members in cells.items())


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
    """`mean ± se (n=N) @ step S`, † when a number is of a partial epoch, ‡ when a seed is
    behind another (`@ steps A-B`: the seeds share no step)."""
    if stat is None:
        return 'n/a'
    text = '%.*f' % (digits, stat.mean)
    if stat.se is not None:
        text += ' ± %.*f' % (digits, stat.se)
    text += ' (n=%d)' % stat.n
    if stat.step is not None:
        text += ' @ step %d' % stat.step
    else:
        steps = [step for _, step in stat.last_steps]
        text += ' @ steps %d-%d' % (min(steps), max(steps))
    return text + (' †' if stat.partial else '') + (' ‡' if behind(stat) else '')


def write_tables(out_dir, runs, table, published):
    rows, columns = ordered(r.row for r in runs), ordered(r.column for r in runs)
    lines = []
    for metric, title in METRICS:
        lines += ['### %s' % title, '',
                  '| configuration | %s |' % ' | '.join(columns),
                  '| --- |%s' % (' --- |' * len(columns))]
        late = []
        for row in rows:
            cells = []
            for column in columns:
                stat = table.get((row, column), {}).get(metric)
                text = cell_text(stat)
                paper = published_value(published, row, column, metric)
                if paper is not None:
                    text += ' [paper %s]' % paper
                cells.append(text)
                if stat is not None and behind(stat):
                    late.append('%s, %s%s: %s (the furthest at step %d)' % (
                        row, column, '' if stat.step is not None else ' (mixed steps)',
                        ', '.join('%s at step %d' % b for b in behind(stat)),
                        max(step for _, step in stat.last_steps)))
            lines.append('| %s | %s |' % (row, ' | '.join(cells)))
        lines.append('')
        if late:
            lines += ['‡ runs behind another seed of their cell:', '']
            lines += ['- %s' % text for text in late] + ['']
    costs = dict(((r.row, r.column), evaluations_per_image(r.path)) for r in runs)
    lines += ['### evaluations of f per image and training step', '',
              '| configuration | %s |' % ' | '.join(columns),
              '| --- |%s' % (' --- |' * len(columns))]
    for row in rows:
        lines.append('| %s | %s |' % (row, ' | '.join(
            'n/a' if costs.get((row, c)) is None else '%d' % costs[(row, c)] for c in columns)))
    lines.append('')
    notes = ['Mean ± standard error over seeds (sample standard deviation / sqrt(n)); n is the '
             'number of seeds. A cell compares its seeds at one step, the last step all of '
             'them reached (@ step N): a seed further on is taken back to it. When they share '
             'no step, each seed gives its last number (@ steps A-B) and the cell mixes steps.']
    if any(s.partial for v in table.values() for s in v.values() if s):
        notes.append('† some seeds have no full epoch: their last, partial epoch is used.')
    if published:
        notes.append('[paper x]: %s.' % published['source'])
    text = '\n'.join(lines + notes) + '\n'
    rundir.atomic_write(os.path.join(out_dir, 'table.md'), text)

    header = ['configuration']
    for column in columns:
        for metric, _ in METRICS:
            header += ['%s %s%s' % (column, metric, suffix)
                       for suffix in ('', '_se', '_step', '_last_steps')]
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
                    if stat is None:
                        out += ['', '', '', '']
                        continue
                    out += [repr(stat.mean), '' if stat.se is None else repr(stat.se),
                            '' if stat.step is None else stat.step,
                            ' '.join('%s@%d' % last for last in stat.last_steps)]
                counts = [cell[m].n for m, _ in METRICS if cell.get(m)]
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
        train = records.of_kind(run.records, records.TRAIN)
        if field == records.ELBO and train:   # or the bound an objective=iwae run trains
            field = records.trained(train[0]['fields'])
        steps, values = records.train_series(run.records, field)
    return {run.column: (steps, values)} if steps else {}


BAND = '± 1 standard error of the mean'


def figure_data(runs, figure):
    """The panels of a figure: per configuration, per line, the seeds' values at the steps
    every seed has (a line stops where its first seed stops), their mean, its standard error
    (None for one seed) and the band mean ± standard error that is drawn around it."""
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
            stats = [mean_se(column) for column in zip(*per_seed.values())]
            means = [m for m, _, _ in stats]
            ses = [se for _, se, _ in stats] if len(seeds) > 1 else None
            lines.append({'estimator': line, 'steps': common, 'seeds': per_seed,
                          'mean': means, 'se': ses,
                          'band': [[m - se for m, se in zip(means, ses)],
                                   [m + se for m, se in zip(means, ses)]] if ses else None})
        if lines:
            panels.append({'configuration': row, 'lines': lines})
    return panels


def draw(title, panels):
    """The matplotlib figure of `figure_data`'s panels: each line the mean over its seeds,
    labelled with their number; a line of several seeds has a band of one standard error
    either side, and the figure's title says so."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    n = len(panels)
    ncols = min(3, n)
    nrows = int(math.ceil(n / ncols))
    top = 0.6   # inches for the title
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.6 * nrows + top),
                             squeeze=False)
    for ax, panel in zip([a for row in axes for a in row], panels):
        for line in panel['lines']:
            few = len(line['steps']) < 30   # short runs: show the points themselves
            label = '%s (%d seed%s)' % (line['estimator'], len(line['seeds']),
                                        's' if len(line['seeds']) > 1 else '')
            drawn = ax.plot(line['steps'], line['mean'], label=label,
                            marker='o' if few else None, markersize=3)[0]
            if line['band']:
                ax.fill_between(line['steps'], line['band'][0], line['band'][1],
                                color=drawn.get_color(), alpha=0.25, linewidth=0)
        ax.set_title(panel['configuration'], fontsize=10)
        ax.set_xlabel('steps')
        ax.set_ylabel(title)
        ax.legend(fontsize=8)
    for ax in [a for row in axes for a in row][n:]:
        ax.set_visible(False)
    banded = any(line['band'] for panel in panels for line in panel['lines'])
    fig.suptitle('%s\nline: mean over seeds%s' % (title, '; band: ' + BAND if banded else ''),
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - top / (3.6 * nrows + top)))
    return fig


def plot(out_dir, figure, title, panels):
    """Writes FIGURE.png, .svg and .json; returns the basenames written."""
    import matplotlib.pyplot as plt
    fig = draw(title, panels)
    for ext in ('png', 'svg'):
        fig.savefig(os.path.join(out_dir, '%s.%s' % (figure, ext)), dpi=100)
    plt.close(fig)
    rundir.atomic_write(os.path.join(out_dir, figure + '.json'),
                        records.dumps({'figure': figure, 'ylabel': title,
                                       'line': 'mean over seeds', 'band': BAND, 'panels': panels},
                                      indent=1) + '\n')
    return figure


def data_text(runs):
    """The data sets and likelihoods the runs trained on, from their hparams.json (a run from
    before an hparam existed has its default), e.g. 'mnist with the bernoulli likelihood'."""
    seen = []
    for run in runs:
        hp = dict(config.DEFAULTS, **(rundir.RunDir(run.path).read_hparams() or {}))
        dataset = 'omniglot' if hp['task'] == 'omni' else hp['dataset']
        seen.append('%s with the %s likelihood' % (dataset, hp['likelihood']))
    return '; '.join(ordered(seen))


def write_index(out_dir, directory, runs, table_text, figures):
    lines = ['# Report: %s' % os.path.basename(os.path.abspath(directory)), '',
             '%d runs, %d configurations, estimators: %s. Data: %s.'
             % (len(runs), len(ordered(r.row for r in runs)),
                ', '.join(ordered(r.column for r in runs)), data_text(runs)), '',
             '## Final numbers', '',
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
