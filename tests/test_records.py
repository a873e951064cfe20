"""records.py: metrics records name every entry of the printed vectors, and the series the
sweep's report reads from them."""
from __future__ import absolute_import, division, print_function

import json

import pytest

import records


def test_records_name_every_entry_and_refuse_a_mismatch():
    r = records.train_record(10, 1, False, 10, [-100.5, 0.4], ['elbo', 'temperature'], -3.0,
                             0.4, 'Step 10: ...')
    assert r['fields'] == {'elbo': -100.5, 'temperature': 0.4}
    assert list(r['fields']) == ['elbo', 'temperature']
    assert json.loads(json.dumps(r)) == r   # JSON as it is written
    e = records.eval_record(10, 1, [-90.0, -100.0], [-91.0, -101.0], ['iwae_bound', 'elbo'], '')
    assert e['valid_fields'] == {'iwae_bound': -90.0, 'elbo': -100.0}
    assert e['test_fields']['iwae_bound'] == -91.0
    with pytest.raises(ValueError) as err:
        records.named(['elbo'], [1.0, 2.0])
    assert '1 names for a vector of 2 entries' in str(err.value)


def test_series_read_back_from_a_file(tmp_path):
    rows = [records.train_record(s, s // 10, False, 10, [-s, 0.5], ['elbo', 'temperature'],
                                 {'NVIL': -s / 10.0, 'REBAR': -s / 5.0}, 0.5, '')
            for s in (10, 20, 30)]
    rows.insert(2, records.eval_record(20, 2, [-1.0], [-2.0], ['iwae_bound'], ''))
    path = tmp_path / 'metrics.jsonl'
    path.write_text(u''.join(json.dumps(r) + '\n' for r in rows))
    read = records.read(str(tmp_path))
    assert records.train_series(read) == ([10, 20, 30], [-10.0, -20.0, -30.0])
    assert records.train_series(read, 'temperature') == ([10, 20, 30], [0.5] * 3)
    assert records.variance_series(read, 'REBAR') == ([10, 20, 30], [-2.0, -4.0, -6.0])
    assert records.last(read, records.EVAL)['test_fields'] == {'iwae_bound': -2.0}
    assert records.last(read[:2], records.EVAL) is None
    assert records.read(str(tmp_path / 'nothing')) == []


def strict_json(line):
    """json.loads as jq or a browser reads: NaN, Infinity and -Infinity are errors."""
    def refuse(constant):
        raise ValueError('not JSON: %s' % constant)
    return json.loads(line, parse_constant=refuse)


def test_non_finite_numbers_are_written_as_null_in_strict_json(tmp_path):
    """Every field that holds a number, at any depth, writes a non-finite one as null, and
    reading gives NaN back there (infinities too: JSON cannot tell them apart)."""
    import rundir
    nan, inf = float('nan'), float('inf')
    rows = [
        records.train_record(1, 0, True, 1, [nan, inf], ['elbo', 'temperature'], -inf, nan,
                             'Step 1: [nan inf]'),
        records.train_record(2, 0, True, 2, [-1.0, 0.5], ['elbo', 'temperature'],
                             {'NVIL': nan, 'REBAR': -2.0}, 0.5, 'Step 2: ...'),
        records.eval_record(2, 0, [nan, -1.0], [-inf, -2.0], ['iwae_bound', 'elbo'], 'Valid 2'),
    ]
    run = rundir.RunDir(str(tmp_path))
    run.write_records(rows)
    with open(str(tmp_path / 'metrics.jsonl')) as f:
        lines = f.read().splitlines()
    parsed = [strict_json(line) for line in lines]
    assert parsed[0]['report'] == [None, None] and parsed[0]['fields'] == {
        'elbo': None, 'temperature': None}
    assert parsed[0]['log_grad_variance'] is None and parsed[0]['temperature'] is None
    assert parsed[1]['log_grad_variance'] == {'NVIL': None, 'REBAR': -2.0}
    assert parsed[2]['valid'] == [None, -1.0] and parsed[2]['test_fields']['iwae_bound'] is None
    assert parsed[0]['text'] == 'Step 1: [nan inf]'   # the printed line is kept as printed
    for read in (records.read(str(tmp_path)), run.read_records()):
        assert all(v != v for v in read[0]['report'] + [read[0]['temperature'],
                                                         read[0]['log_grad_variance']])
        assert read[1]['log_grad_variance']['REBAR'] == -2.0
        assert read[1]['log_grad_variance']['NVIL'] != read[1]['log_grad_variance']['NVIL']
        assert records.train_series(read)[1][1] == -1.0
    with pytest.raises(ValueError):   # the strict parser does refuse what json.dumps would write
        strict_json(json.dumps(rows[0]))
