"""download.py against an HTTP server on 127.0.0.1 started here; no test reaches beyond this machine.

The server serves small files in the real formats under a path prefix that picks its behaviour:
/good/ (honours Range), /norange/ (ignores it), /forbidden/ (403), /truncate/ (promises the whole
file, sends half), /interrupt/ (honours Range, sends at most CUT bytes), /corrupt/ (one bit
flipped).  Tests swap download.DATASETS for specs of these files, whose "public sources" are a
closed port on 127.0.0.1 unless a test says otherwise.
"""
from __future__ import absolute_import, division, print_function

import collections
import functools
import gzip
import hashlib
import http.server
import io
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import scipy.io

import datasets
import download

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUT = 1000
OMNIGLOT_COUNTS = (datasets.OMNIGLOT_VALIDATION + 1, 3)
MNIST_FILES = datasets.AMAT + ('train-images-idx3-ubyte.gz', 't10k-images-idx3-ubyte.gz')
FASHION = ('fashion_mnist/train-images-idx3-ubyte.gz', 'fashion_mnist/t10k-images-idx3-ubyte.gz')
N_FILES = len(MNIST_FILES) + 1 + len(FASHION)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fails any test here that tries to connect beyond 127.0.0.1."""
    connect = socket.create_connection

    def guarded(address, *args, **kwargs):
        if address[0] not in ('127.0.0.1', 'localhost', '::1'):
            raise AssertionError('a test tried to reach %s' % (address,))
        return connect(address, *args, **kwargs)
    monkeypatch.setattr(socket, 'create_connection', guarded)


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    probe = socket.socket()
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
    probe.close()
    return 'http://127.0.0.1:%d/offline' % port


class Handler(http.server.BaseHTTPRequestHandler):

    def do_GET(self):
        _, mode, name = self.path.split('/', 2)
        wanted = self.headers.get('Range')
        self.server.requests.append((mode, name, wanted))
        body = self.server.files.get(name)
        if body is None or mode == 'forbidden':
            self.send_error(404 if body is None else 403)
            return
        if mode == 'corrupt':
            body = body[:-1] + bytes([body[-1] ^ 1])
        start = 0
        if wanted and mode not in ('norange', 'truncate'):
            start = int(wanted[len('bytes='):-1])
        if start >= len(body) > 0:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header('Content-Range', 'bytes %d-%d/%d' % (start, len(body) - 1, len(body)))
        self.send_header('Content-Length', str(len(body) - start))
        self.end_headers()
        span = body[start:]
        if mode == 'truncate':
            span = span[:len(span) // 2]
        elif mode == 'interrupt':
            span = span[:CUT]
        self.wfile.write(span)

    def log_message(self, *args):
        pass


def amat_bytes(bits):
    return ''.join(' '.join(str(int(v)) for v in row) + '\n' for row in bits).encode('ascii')


def mat_bytes(train, test):
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {'data': train.T, 'testdata': test.T})
    return buffer.getvalue()


@pytest.fixture(scope='module')
def arrays():
    rng = np.random.RandomState(7)
    bits = [(rng.random_sample((n, 784)) < 0.3).astype(np.float32) for n in (10, 4, 3)]
    grey = rng.randint(0, 256, size=(5, 784)).astype(np.uint8)
    omniglot = [rng.random_sample((n, 784)) for n in OMNIGLOT_COUNTS]
    return bits, grey, omniglot


@pytest.fixture(scope='module')
def files(arrays):
    bits, grey, omniglot = arrays
    blobs = {name: amat_bytes(b) for name, b in zip(datasets.AMAT, bits)}
    blobs['train-images-idx3-ubyte.gz'] = idx_bytes(grey)
    blobs['t10k-images-idx3-ubyte.gz'] = idx_bytes(grey[:2])
    blobs['chardata.mat'] = mat_bytes(*omniglot)
    for name, images in zip(FASHION, fashion_images()):
        blobs[name] = idx_bytes(images)
    return blobs


def idx_bytes(images):
    return gzip.compress(struct.pack('>IIII', 2051, len(images), 28, 28) + images.tobytes())


def fashion_images():
    """A training file of 12 images and a test file of 3, each image's index in pixel 0."""
    images = np.random.RandomState(3).randint(0, 256, size=(15, 784)).astype(np.uint8)
    images[:, 0] = np.arange(15)
    return images[:12], images[12:]


@pytest.fixture
def server(files):
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    httpd.daemon_threads = True
    httpd.files, httpd.requests = files, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05})
    thread.start()
    httpd.base = 'http://127.0.0.1:%d' % httpd.server_address[1]
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def public(monkeypatch, files):
    """Replaces download.DATASETS by specs of the test files; returns a setter for their URLs."""
    def use(*prefixes):
        def spec(name, check=None, published=True, md5_only=False):
            digest = hashlib.sha256(files[name]).hexdigest()
            md5 = hashlib.md5(files[name]).hexdigest() if md5_only else None
            return download.FileSpec(name, len(files[name]) if published else None,
                                     digest if published and not md5_only else None,
                                     [p + '/' + name for p in prefixes], check, md5)
        monkeypatch.setattr(download, 'DATASETS', collections.OrderedDict([
            ('MNIST', [spec(name) for name in MNIST_FILES]),
            ('omniglot', [spec('chardata.mat', published=False, check=functools.partial(
                download.check_chardata, counts=OMNIGLOT_COUNTS))]),
            ('fashion_mnist', [spec(name, md5_only=True) for name in FASHION]),
        ]))
    use(closed_port_url())
    return use


def run(capsys, data_dir, *args):
    code = download.main(['--data_dir', str(data_dir)] + list(args))
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(data_dir):
    return sorted(n for n in os.listdir(str(data_dir)) if '.part' in n or '.tmp' in n)


def assert_files_equal(data_dir, files, names):
    for name in names:
        with open(os.path.join(str(data_dir), name), 'rb') as f:
            assert f.read() == files[name], name


def test_success_verifies_and_converts(tmp_path, server, public, files, arrays, capsys):
    code, out, err = run(capsys, tmp_path, '--dataset', 'mnist', '--mirror', server.base + '/good')
    assert code == 0, err
    assert_files_equal(tmp_path, files, [spec.name for spec in download.DATASETS['MNIST']])
    assert 'sha256' in out and leftovers(tmp_path) == []
    assert not (tmp_path / 'chardata.mat').exists()  # only the dataset asked for
    bits, grey, _ = arrays
    for got, want in zip(datasets.load_data('mnist', data_dir=str(tmp_path)), bits):
        np.testing.assert_array_equal(got, want)
    # The converted files are the reference's layout, read first: remove the raw ones to be sure.
    for name in MNIST_FILES:
        os.remove(str(tmp_path / name))
    train, valid, _ = datasets.load_data('mnist', dynamic_b=True, data_dir=str(tmp_path))
    np.testing.assert_array_equal(np.rint(train * 255), grey)
    np.testing.assert_array_equal(valid, bits[1])
    assert 'sample' not in capsys.readouterr().err


def test_omniglot_has_no_published_checksum_so_its_content_is_checked(
        tmp_path, server, public, arrays, capsys):
    code, out, err = run(capsys, tmp_path, '--dataset', 'omniglot', '--mirror',
                         server.base + '/good')
    assert code == 0, err
    assert 'no published checksum' in out
    x_train, x_valid, x_test = datasets.load_data('omniglot', dynamic_b=True,
                                                  data_dir=str(tmp_path))
    assert (len(x_train), len(x_valid), len(x_test)) == (1, 1345, 3)
    train, test = arrays[2]
    server.files = dict(server.files, **{'chardata.mat': mat_bytes(np.concatenate([train, train[:1]]), test)})
    os.remove(str(tmp_path / 'chardata.mat'))
    code, out, err = run(capsys, tmp_path, '--dataset', 'omniglot', '--mirror',
                         server.base + '/good')
    assert code == 1 and 'content check failed' in err
    assert 'holds 1347 + 3 images; chardata.mat has 1346 + 3' in err
    assert os.listdir(str(tmp_path)) == []


def test_403_then_a_good_mirror(tmp_path, server, public, files, capsys):
    code, out, err = run(capsys, tmp_path, '--dataset', 'MNIST', '--mirror',
                         server.base + '/forbidden', '--mirror', server.base + '/good/')
    assert code == 0
    assert err.count('HTTP 403') == len(MNIST_FILES)
    modes = [(mode, name) for mode, name, _ in server.requests]
    for name in datasets.AMAT:
        assert modes.index(('forbidden', name)) + 1 == modes.index(('good', name))
    assert_files_equal(tmp_path, files, datasets.AMAT)


def test_public_sources_come_after_the_mirrors(tmp_path, server, public, files, capsys):
    public(closed_port_url(), server.base + '/good')
    code, out, err = run(capsys, tmp_path, '--dataset', 'MNIST', '--mirror',
                         server.base + '/forbidden')
    assert code == 0
    assert 'cannot connect' in err and 'HTTP 403' in err
    assert [mode for mode, name, _ in server.requests if name == datasets.AMAT[0]] == \
        ['forbidden', 'good']
    assert_files_equal(tmp_path, files, datasets.AMAT)


def test_truncated_body_is_resumed_from_the_next_source(tmp_path, server, public, files, capsys):
    code, out, err = run(capsys, tmp_path, '--dataset', 'MNIST', '--mirror',
                         server.base + '/truncate', '--mirror', server.base + '/good')
    assert code == 0
    assert 'truncated' in err
    size = len(files[datasets.AMAT[0]])
    assert ('good', datasets.AMAT[0], 'bytes=%d-' % (size // 2)) in server.requests
    assert_files_equal(tmp_path, files, datasets.AMAT)
    assert leftovers(tmp_path) == []


def test_truncated_body_from_the_only_source_fails_cleanly(tmp_path, server, public, capsys):
    code, out, err = run(capsys, tmp_path, '--dataset', 'MNIST', '--mirror',
                         server.base + '/truncate')
    assert code == 1
    assert 'truncated' in err and 'kept for the next run' in err
    assert not (tmp_path / datasets.AMAT[0]).exists()
    assert not (tmp_path / datasets.MNIST_BINARIZED).exists()


def test_checksum_mismatch_discards_the_file_and_says_which(tmp_path, server, public, files,
                                                           capsys):
    existing = tmp_path / datasets.AMAT[1]
    existing.write_bytes(b'an older, unverifiable copy')
    code, out, err = run(capsys, tmp_path, '--dataset', 'MNIST', '--mirror',
                         server.base + '/corrupt')
    assert code == 1
    for name in datasets.AMAT:
        assert '%s: checksum mismatch' % name in err
    assert 'expected %s' % hashlib.sha256(files[datasets.AMAT[0]]).hexdigest() in err
    assert 'discarded' in err
    assert not (tmp_path / datasets.AMAT[0]).exists() and leftovers(tmp_path) == []
    assert existing.read_bytes() == b'an older, unverifiable copy'  # kept until replaced
    assert run(capsys, tmp_path, '--dataset', 'MNIST', '--mirror', server.base + '/good')[0] == 0
    assert_files_equal(tmp_path, files, datasets.AMAT)


@pytest.mark.parametrize('rerun', ['good', 'norange'])
def test_interrupted_download_then_a_rerun(tmp_path, server, public, files, capsys, rerun):
    name = datasets.AMAT[0]
    size = len(files[name])
    code, out, err = run(capsys, tmp_path, '--dataset', 'MNIST', '--mirror',
                         server.base + '/interrupt')
    assert code == 1 and 'kept for the next run' in err
    part = tmp_path / (name + '.part')
    kept = part.stat().st_size
    assert kept == download.TRIES_PER_SOURCE * CUT < size  # each try resumed the one before
    assert part.read_bytes() == files[name][:kept]
    del server.requests[:]
    code, out, err = run(capsys, tmp_path, '--dataset', 'MNIST', '--mirror',
                         server.base + '/' + rerun)
    assert code == 0, err
    assert server.requests[0] == (rerun, name, 'bytes=%d-' % kept)
    # Resumed (206) or restarted (the server ignored the Range: 200): either way in one request.
    assert [r[1] for r in server.requests].count(name) == 1
    assert_files_equal(tmp_path, files, datasets.AMAT)
    assert leftovers(tmp_path) == []


def test_a_bad_partial_file_is_dropped_and_the_download_restarted(tmp_path, server, public,
                                                                 files, capsys):
    name = datasets.AMAT[0]
    (tmp_path / (name + '.part')).write_bytes(b'9' * CUT)  # left by some other, wrong source
    code, out, err = run(capsys, tmp_path, '--dataset', 'MNIST', '--mirror', server.base + '/good')
    assert code == 0, err
    assert [r for r in server.requests if r[1] == name] == [
        ('good', name, 'bytes=%d-' % CUT), ('good', name, None)]
    assert_files_equal(tmp_path, files, [name])


def test_present_and_verified_files_are_skipped(tmp_path, server, public, capsys):
    assert run(capsys, tmp_path, '--dataset', 'all', '--mirror', server.base + '/good')[0] == 0
    converted = os.stat(str(tmp_path / datasets.MNIST_BINARIZED)).st_mtime_ns
    del server.requests[:]
    code, out, err = run(capsys, tmp_path, '--dataset', 'all', '--mirror', server.base + '/good')
    assert code == 0
    assert server.requests == []
    assert out.count('already present and verified, skipped') == N_FILES
    assert os.stat(str(tmp_path / datasets.MNIST_BINARIZED)).st_mtime_ns == converted


def test_a_damaged_converted_file_is_rewritten(tmp_path, server, public, arrays, capsys):
    """The fix that datasets.DataError names for a corrupt pickle really fixes it."""
    assert run(capsys, tmp_path, '--dataset', 'MNIST', '--mirror', server.base + '/good')[0] == 0
    pickled = tmp_path / datasets.MNIST_BINARIZED
    pickled.write_bytes(pickled.read_bytes()[:100])
    with pytest.raises(datasets.DataError, match='python download.py --dataset MNIST'):
        datasets.load_data('mnist', data_dir=str(tmp_path))
    code, out, err = run(capsys, tmp_path, '--dataset', 'MNIST')
    assert code == 0 and 'rewriting it' in out
    np.testing.assert_array_equal(datasets.load_data('mnist', data_dir=str(tmp_path))[0],
                                  arrays[0][0])


def test_no_network_at_all_fails_fast_and_says_what_to_do(tmp_path, public, capsys):
    start = time.time()
    mirror = closed_port_url()
    code, out, err = run(capsys, tmp_path, '--dataset', 'all', '--mirror', mirror)
    assert time.time() - start < 5
    assert code == 1
    assert 'Could not get %d file(s)' % N_FILES in err
    for spec in sum(download.DATASETS.values(), []):
        assert 'put it at %s' % os.path.join(str(tmp_path), spec.name) in err
    for spec in sum(download.DATASETS.values(), []):  # the mirror, then the public source
        assert '%s/%s: cannot connect' % (mirror, spec.name) in err
        assert '%s: cannot connect' % spec.urls[0] in err
    assert os.listdir(str(tmp_path)) == []


def test_no_network_from_the_command_line(tmp_path):
    """The real command, real file list, only a dead mirror: a clear failure within seconds."""
    start = time.time()
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'download.py'), '--dataset', 'all', '--data_dir',
         str(tmp_path), '--no-public', '--mirror', closed_port_url()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, cwd=ROOT)
    assert time.time() - start < 20
    assert result.returncode == 1
    for spec in sum(download.DATASETS.values(), []):
        assert spec.name in result.stderr and spec.urls[0] in result.stderr
    assert 'put it at %s' % os.path.join(str(tmp_path), 'chardata.mat') in result.stderr


def test_unknown_dataset_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        download.main(['--dataset', 'cifar', '--data_dir', str(tmp_path)])
    assert exit_.value.code == 2
    assert 'MNIST, omniglot, fashion_mnist' in capsys.readouterr().err


def test_fashion_mnist_goes_to_its_subdirectory_and_loads(tmp_path, server, public, files,
                                                          monkeypatch, capsys):
    code, out, err = run(capsys, tmp_path, '--dataset', 'FASHION_MNIST', '--mirror',
                         server.base + '/good')
    assert code == 0, err
    assert [name for _, name, _ in server.requests] == list(FASHION)  # <mirror>/fashion_mnist/...
    assert_files_equal(tmp_path, files, FASHION)
    assert 'md5 %s' % hashlib.md5(files[FASHION[0]]).hexdigest() in out
    assert sorted(os.listdir(str(tmp_path))) == ['fashion_mnist']  # nothing under MNIST's names
    monkeypatch.setattr(datasets, 'N_MNIST_TRAIN', 6)  # the 50,000 / 10,000 split, scaled down
    monkeypatch.setattr(datasets, 'N_IDX_VALID', 4)
    data = datasets.load_data('fashion_mnist', dynamic_b=True, data_dir=str(tmp_path))
    train, test = fashion_images()
    np.testing.assert_array_equal(np.rint(data.train * 255), train[:6])
    assert [len(x) for x in data] == [6, 4, 3]
    assert [s.path for s in data.sources] == [str(tmp_path / name) for name in FASHION]


def test_an_md5_mismatch_is_reported_and_the_file_discarded(tmp_path, server, public, files,
                                                           capsys):
    code, out, err = run(capsys, tmp_path, '--dataset', 'fashion_mnist', '--mirror',
                         server.base + '/corrupt')
    assert code == 1
    assert '%s: checksum mismatch: md5' % FASHION[0] in err
    assert 'expected %s' % hashlib.md5(files[FASHION[1]]).hexdigest() in err
    assert 'put it at %s' % (tmp_path / FASHION[0]) in err
    assert not (tmp_path / FASHION[0]).exists()


def test_converted_files_are_written_through_rundirs_atomic_write(tmp_path, server, public,
                                                                  monkeypatch, capsys):
    import rundir
    written = []

    def recording(path, data):
        written.append(os.path.basename(path))
        return atomic_write(path, data)
    atomic_write = rundir.atomic_write
    monkeypatch.setattr(rundir, 'atomic_write', recording)
    assert run(capsys, tmp_path, '--dataset', 'MNIST', '--mirror', server.base + '/good')[0] == 0
    assert sorted(written) == sorted([datasets.MNIST_BINARIZED, datasets.MNIST_FLOAT])
    assert not hasattr(download, 'atomic_write')  # one implementation, rundir's
    datasets.load_data('mnist', dynamic_b=True, data_dir=str(tmp_path))


def test_what_download_writes_is_where_datasets_looks():
    """The real table: every IDX file lands under a name and directory the loader searches."""
    for spec in download.DATASETS['fashion_mnist']:
        directory, name = os.path.split(spec.name)
        assert directory in datasets.FASHION_SUBDIRS and directory not in datasets.SUBDIRS
        assert name in datasets.IDX_TRAIN + datasets.IDX_TEST
        assert len(spec.md5) == 32 and len(spec.sha256) == 64 and spec.size > 4000000
        assert datasets.KNOWN_FILES[spec.sha256] == 'fashion_mnist'
    mnist = {spec.name: spec for spec in download.DATASETS['MNIST']}
    for names in (datasets.IDX_TRAIN, datasets.IDX_TEST):
        assert datasets.KNOWN_FILES[mnist[names[0]].sha256] == 'mnist'
