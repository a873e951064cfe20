"""README_CN.md, the ModelZoo-format page in Chinese, held against the code.

Every line of the page's ```bash blocks is a command the test knows how to check, and it is
checked the way the program itself would take it: the launchers in scripts/ run for real in a
copy of scripts/ with a stand-in interpreter that records the command line they hand to
rebar_train.py, which rebar_train's own flag definitions then parse and resolve (hparams typed
and validated, aliases reconciled); the Python entry points' own argument parsers take their
flags. The tables (flags, hparams, estimators and presets) must name what exists and all of it;
the sections come in the ModelZoo template's order; the English README links the page.

No TensorFlow is imported: rebar_train defines its flags and checks hparams before it loads
TensorFlow, so the file takes a few seconds (mostly the launchers' shells).
"""
from __future__ import absolute_import, division, print_function

import argparse
import copy
import functools
import importlib.util
import os
import re
import shlex
import shutil
import stat
import subprocess

from unittest import mock

import pytest

import config
import download
import modelarts_entry
import presets
import rebar_report
import rebar_sweep
import rebar_train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, 'README_CN.md')
SECTIONS = ('基本信息', '概述', '默认配置', '支持特性', '训练环境准备', '快速上手', '高级参考',
            '训练结果')
MODELZOO_SCRIPTS = ('train_full_1p.sh', 'train_performance_1p.sh')
LAUNCHERS = ('run_ascend.sh', 'run_workstation.sh') + MODELZOO_SCRIPTS
FENCE = re.compile(r'^(\s*)```(\w*)\s*$')


def _read(*path):
    with open(os.path.join(ROOT, *path), encoding='utf-8') as f:
        return f.read()


# -- the page's parts ------------------------------------------------------------------------------
def fenced_blocks(text):
    """[(language, body)] of the ``` blocks, indented ones (inside list items) included."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        i += 1
        if not opening:
            continue
        indent, body = len(opening.group(1)), []
        while not re.match(r'^\s*```\s*$', lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].strip() == '' else lines[i])
            i += 1
        i += 1
        blocks.append((opening.group(2), '\n'.join(body)))
    return blocks


def prose(text):
    """The page without its fenced blocks."""
    out, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line) or (inside and re.match(r'^\s*```\s*$', line)):
            inside = not inside
            continue
        if not inside:
            out.append(line)
    return '\n'.join(out)


def commands(body):
    """Each command of a shell block as its words (continuation lines joined, comments off)."""
    for line in body.replace('\\\n', ' ').splitlines():
        words = shlex.split(line, comments=True)
        if words:
            yield words


def tables(text):
    """[(header cells, [row cells])] of the page's Markdown tables."""
    found, rows = [], []
    for line in prose(text).splitlines() + ['']:
        if line.startswith('|'):
            rows.append([c.strip() for c in line.strip().strip('|').split('|')])
            continue
        if len(rows) > 2:
            found.append((rows[0], rows[2:]))
        rows = []
    return found


def table(text, first_header):
    """The one table whose first header cell is `first_header`."""
    matches = [t for t in tables(text) if t[0][0] == first_header]
    assert len(matches) == 1, 'expected one table headed %r, found %d' % (first_header,
                                                                        len(matches))
    return matches[0]


def codes(cell):
    """The `...` spans of a piece of Markdown."""
    return re.findall(r'`([^`]+)`', cell)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


# -- what the code accepts -------------------------------------------------------------------------
def driver_flag_names():
    return [spec[0] for spec in rebar_train.FLAG_SPECS]


def modelzoo_params():
    """The parameters modelzoo_common.sh handles itself (its `--name=*)` cases)."""
    return re.findall(r'^\s*--(\w+)=\*\)', _read('scripts', 'modelzoo_common.sh'), re.M)


def setup_worlds():
    return re.findall(r'^\s*(\w+)\) req=', _read('scripts', 'setup_env.sh'), re.M)


def is_interpreter(program):
    """python, python3, or an environment setup_env.sh makes."""
    return bool(re.match(r'^(python3?|\.venv/(%s)/bin/python)$' % '|'.join(setup_worlds()),
                         program))


def cann_scripts():
    """The environment scripts run_ascend.sh sources, under its default ASCEND_HOME."""
    text = _read('scripts', 'run_ascend.sh')
    home = re.search(r'ASCEND_HOME:-([^}]+)\}', text).group(1)
    return [home + '/' + rest for rest in re.findall(r'"\$ascend_home/([^"]+)"', text)]


@functools.lru_cache(maxsize=None)
def environment_names():
    """Variables the scripts or the Python code read: what a page may set before a command."""
    text = ''.join(_read('scripts', name) for name in os.listdir(os.path.join(ROOT, 'scripts')))
    text += ''.join(_read(name) for name in os.listdir(ROOT) if name.endswith('.py'))
    return set(re.findall(r'\$\{?([A-Z][A-Z0-9_]*)', text)) | set(
        re.findall(r"environ(?:\.get\(|\[)'([A-Z][A-Z0-9_]*)'", text))


class _Captured(Exception):
    pass


def parser_of(main, *args):
    """The ArgumentParser a `main` builds, caught at its parse_args call (nothing runs)."""
    caught = []

    def catch(parser, *unused, **also_unused):
        caught.append(parser)
        raise _Captured()
    with mock.patch.object(argparse.ArgumentParser, 'parse_args', catch), \
            mock.patch.object(argparse.ArgumentParser, 'parse_known_args', catch):
        with pytest.raises(_Captured):
            main(*args)
    return caught[0]


def benchmark_module():
    spec = importlib.util.spec_from_file_location(
        'benchmark_for_docs', os.path.join(ROOT, 'scripts', 'benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_with(parser, argv):
    try:
        return parser.parse_args(argv)
    except SystemExit:
        pytest.fail('%s refuses %s' % (parser.prog, argv))


def own_parsers():
    """Each entry point's argument parser, by script path."""
    return {'download.py': parser_of(download.main, []),
            'rebar_report.py': parser_of(rebar_report.main, []),
            'rebar_sweep.py': rebar_sweep.parser(),
            'modelarts_entry.py': parser_of(modelarts_entry.parse_args, []),
            'scripts/benchmark.py': parser_of(benchmark_module().main)}


def flag_names(parser):
    return set(o.lstrip('-') for a in parser._actions for o in a.option_strings)


@functools.lru_cache(maxsize=None)
def _driver_flags():
    """A copy of rebar_train's flag definitions, parsed afresh for each command."""
    return copy.deepcopy(rebar_train.FLAGS)


def driver_options(argv):
    """rebar_train's Options for a command line, as its main would resolve them."""
    values = _driver_flags()
    values.unparse_flags()
    left = values(['rebar_train.py'] + list(argv))
    assert left == ['rebar_train.py'], 'rebar_train takes no positional arguments: %s' % left[1:]
    return rebar_train.options_from_flags(values), values


# -- running the launchers with a stand-in interpreter ---------------------------------------------
STAND_IN = """#!/bin/sh
# Stands in for the interpreter: answers find_python.sh's probe, records the driver's argv.
[ "$1" = -c ] && exit 0
printf '%s\\n' "$@" > "$DOC_TEST_RECORD"
"""


@pytest.fixture(scope='module')
def sandbox(tmp_path_factory):
    """A copy of scripts/, a stand-in python and an empty ASCEND_HOME."""
    base = tmp_path_factory.mktemp('page')
    shutil.copytree(os.path.join(ROOT, 'scripts'), str(base / 'root' / 'scripts'))
    python = base / 'python'
    python.write_text(STAND_IN)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    (base / 'ascend').mkdir()
    return base


def run_launcher(sandbox, script, args, env_assignments):
    """(the argv the launcher gives rebar_train.py, its stdout). A ModelZoo script's
    --output_path is moved into the sandbox."""
    record = sandbox / 'argv.txt'
    if record.exists():
        record.unlink()
    if script in MODELZOO_SCRIPTS:
        args = [a for a in args if not a.startswith('--output_path=')]
        args.append('--output_path=%s' % (sandbox / 'output'))
    env = dict(os.environ, **env_assignments)
    env.update(PYTHON=str(sandbox / 'python'), ASCEND_HOME=str(sandbox / 'ascend'),
               DOC_TEST_RECORD=str(record))
    result = subprocess.run(['bash', str(sandbox / 'root' / 'scripts' / script)] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, env=env, timeout=60)
    assert result.returncode == 0, (script, args, result.stderr[-2000:])
    with open(str(record)) as f:
        argv = f.read().splitlines()
    assert argv[:2] == ['-u', 'rebar_train.py'], argv
    return argv[2:], result.stdout


# -- one command -----------------------------------------------------------------------------------
def check_command(words, sandbox, parsers):
    """Checks one command line of the page; returns what it was, for the tests' bookkeeping."""
    env = {}
    while words and re.match(r'^[A-Z][A-Z0-9_]*=', words[0]):
        name, value = words.pop(0).split('=', 1)
        env[name] = value
    assert set(env) <= environment_names(), 'no script reads %s' % sorted(env)
    assert is_interpreter(env.get('PYTHON', 'python')), env['PYTHON']
    if words[:2] == ['nice', '-n']:
        words = words[3:]
    program, args = words[0], words[1:]
    if program == 'source':
        assert args[0] in cann_scripts(), '%s is not a script run_ascend.sh sources' % args[0]
        return 'source'
    if program == 'bash':
        script = args[0]
        assert os.path.isfile(os.path.join(ROOT, script)), script
        name, args = os.path.basename(script), args[1:]
        if name in ('setup_env.sh', 'test.sh'):
            assert set(args[:1]) <= set(setup_worlds()), args
        elif name in LAUNCHERS:
            argv, _ = run_launcher(sandbox, name, args, env)
            driver_options(argv)
        else:
            pytest.fail('the test does not know how to check %s' % script)
        return name
    assert is_interpreter(program), 'unknown program %s' % program
    script, args = args[0], args[1:]
    assert os.path.isfile(os.path.join(ROOT, script)), script
    if script == 'rebar_train.py':
        driver_options(args)
    elif script == 'modelarts_entry.py':
        own, rest = modelarts_entry.parse_args(args)
        _, values = driver_options(rest)
        given = [n for n in modelarts_entry.OWN_FLAGS if values[n].present]
        assert not given, 'the boot file sets %s itself' % given
    elif script == 'rebar_sweep.py':
        own, passed = rebar_sweep.parse_args(args)
        defn = rebar_sweep.definition(own)
        extra = presets.PRESETS[own.preset]['driver_flags'] if own.preset else []
        for run in rebar_sweep.expand(defn):
            command = rebar_sweep.train_command('python', run, 'RUN', defn['max_steps'],
                                                own.cpus_per_run, extra + passed)
            driver_options(command[3:])
    elif script == 'download.py':
        own = parse_with(parsers[script], args)
        assert own.dataset.lower() in [d.lower() for d in download.DATASETS] + ['all']
    elif script in ('rebar_report.py', 'scripts/benchmark.py'):
        own = parse_with(parsers[script], args)
        for model in getattr(own, 'models', []):
            assert model in config.MODELS, model
        config.parse_hparams(getattr(own, 'hparams', ''))
    else:
        pytest.fail('the test does not know how to check %s' % script)
    return script


# -- the tests -------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def page():
    with open(PAGE, encoding='utf-8') as f:
        return f.read()


def test_every_command_of_the_page_is_accepted(page, sandbox):
    parsers = own_parsers()
    checked = []
    for language, body in fenced_blocks(page):
        assert language in ('bash', 'text'), 'a block without bash or text: %r' % body[:60]
        if language == 'bash':
            checked += [check_command(words, sandbox, parsers) for words in commands(body)]
    # the three ways to run it are all on the page
    for what in ('modelarts_entry.py', 'rebar_train.py', 'download.py') + LAUNCHERS:
        assert what in checked, what


def test_the_page_shows_the_summary_the_modelzoo_script_prints(page, sandbox):
    """The sample summary's lines (labels and field names, in order) are the script's."""
    _, printed = run_launcher(sandbox, 'train_full_1p.sh', ['--data_path=/nonexistent'], {})
    shown = [body for language, body in fenced_blocks(page) if 'CaseName = ' in body]
    assert len(shown) == 1

    def labels(text):
        return [re.split(r' [:=] ', line)[0] for line in text.splitlines()
                if re.search(r' [:=] ', line)]
    assert labels(shown[0]) == labels(printed)
    fields = set(codes(' '.join(r[0] for r in table(page, '字段')[1])))
    assert fields == set(re.findall(r'^(\w+) = ', printed, re.M))


def test_sections_follow_the_modelzoo_template(page):
    headings = re.findall(r'^## (.+)$', prose(page), re.M)
    assert tuple(h.strip() for h in headings) == SECTIONS


def test_links_and_anchors_lead_somewhere(page):
    anchors = set(slug(h) for h in re.findall(r'^#+ (.+)$', prose(page), re.M))
    for target in re.findall(r'\]\(([^)]+)\)', prose(page)):
        if target.startswith('#'):
            assert target[1:] in anchors, target
        elif not re.match(r'^https?://', target):
            assert os.path.exists(os.path.join(ROOT, target.split('#')[0])), target


def test_names_in_the_prose_exist(page):
    """Inline flags, hparam names, model names and project files."""
    known_flags = set(driver_flag_names()) | set(modelzoo_params())
    for parser in own_parsers().values():
        known_flags |= flag_names(parser)
    import modelarts_entry   # the arguments ModelArts adds, which the boot file accepts
    known_flags |= set(modelarts_entry.MODELARTS_ARGS)
    for span in codes(prose(page)):
        first = span.split()[0]
        if first.startswith('--'):
            assert first[2:].split('=')[0] in known_flags, span
        elif re.match(r'^[a-z][a-z0-9_]*=', span):
            assert span.split('=')[0] in set(config.DEFAULTS) | known_flags, span
        elif re.match(r'^SBN\w*$', span):
            assert span in config.MODELS, span
        elif re.match(r'^[\w./-]+\.(py|sh|md|txt|npy)$', span) and '/' in span:
            assert os.path.exists(os.path.join(ROOT, span)), span


def test_the_flag_tables_list_every_flag(page):
    listed = set()
    for header, rows in tables(page):
        if header[0] == '参数':
            listed |= set(c[2:] for row in rows for c in codes(row[0]))
    driver, zoo = set(driver_flag_names()), set(modelzoo_params())
    boot = flag_names(own_parsers()['modelarts_entry.py']) - {'h', 'help'}
    assert listed <= driver | zoo | boot, listed - (driver | zoo | boot)
    for name in sorted(driver | zoo | boot):
        assert name in listed, 'add --%s to the parameter tables of README_CN.md' % name


def test_the_hparam_table_gives_every_hparam_and_its_default(page):
    _, rows = table(page, '超参')
    names = [codes(row[0])[0] for row in rows]
    assert names == list(config.DEFAULTS), 'README_CN.md lists %s' % names
    for row in rows:
        name, default = codes(row[0])[0], codes(row[1])[0]
        assert getattr(config.parse_hparams('%s=%s' % (name, default)), name) \
            == config.DEFAULTS[name], (name, default)


def preset_models():
    """{preset: the models its runs train}."""
    models = {}
    for name in presets.PRESETS:
        defn = rebar_sweep.definition(argparse.Namespace(
            preset=name, grid=None, seeds=None, max_steps=None, hparams=''))
        models[name] = set(config.parse_hparams(run['hparams']).model
                           for run in rebar_sweep.expand(defn))
    return models


def test_the_estimator_table_gives_every_model_and_the_presets_that_use_it(page):
    _, rows = table(page, '`model=`')
    listed = [codes(row[0])[0] for row in rows]
    assert sorted(listed) == sorted(config.MODELS), \
        'README_CN.md lists %s; config.MODELS is %s' % (listed, config.MODELS)
    uses = preset_models()
    for row in rows:
        model = codes(row[0])[0]
        assert set(codes(row[-1])) == set(p for p, m in uses.items() if model in m), model
    for name in presets.PRESETS:
        assert '`%s`' % name in prose(page), 'README_CN.md does not describe preset %s' % name


def test_the_english_readme_links_the_page_at_its_top():
    readme = _read('README.md')
    top = readme.split('\n## ')[0]
    before_commands = top.split('\n    ')[0]
    assert '](README_CN.md)' in before_commands
