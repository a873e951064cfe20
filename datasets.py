"""The REBAR benchmarks as float32 arrays of shape [N, 784] (train, valid, test).

MNIST (tasks sbn and sp) is Larochelle's fixed binarization, 50,000/10,000/10,000; with
`dynamic_b` the training split is instead the first 50,000 grey MNIST training images in [0, 1]
(valid and test stay binary).  Omniglot (task omni) is `chardata.mat`: each MATLAB column-major
image becomes a row-major one, the images are binarized with seed 5 (train, then test; skipped
with `dynamic_b`, as in the reference), the training set is permuted with seed 123 and its last
1,345 images held out for validation.

Files are looked for in `data_dir` and its `raw/` and `train/` subdirectories (the torchvision
and MindSpore layouts), in this order of preference:

    binarized MNIST   mnist_salakhutdinov_07-19-2017.pkl, else binarized_mnist_{train,valid,test}.amat
    grey MNIST        mnist_train_xs_07-19-2017.npy, else train-images-idx3-ubyte[.gz]
    Omniglot          omniglot_07-19-2017.mat, else chardata.mat

When no MNIST file is there at all, MNIST falls back to the bundled sample of 10,000 real digits
(`data/mnist_sample.npy`) and says so on stderr.  A file that is there but unusable raises
`DataError`, naming the file and the command that fixes it.
"""
from __future__ import absolute_import, division, print_function

import gzip
import os
import pickle
import shlex
import struct
import sys
import zlib

import numpy as np
import scipy.io

import config

MNIST_BINARIZED = 'mnist_salakhutdinov_07-19-2017.pkl'
MNIST_FLOAT = 'mnist_train_xs_07-19-2017.npy'
OMNIGLOT = 'omniglot_07-19-2017.mat'
OMNIGLOT_RAW = 'chardata.mat'
AMAT = ('binarized_mnist_train.amat', 'binarized_mnist_valid.amat', 'binarized_mnist_test.amat')
AMAT_PATTERN = 'binarized_mnist_{train,valid,test}.amat'
MNIST_IDX = ('train-images-idx3-ubyte.gz', 'train-images-idx3-ubyte', 'train-images.idx3-ubyte')
SUBDIRS = ('', 'raw', 'train')

N_PIXELS = 784
N_MNIST_TRAIN = 50000
OMNIGLOT_VALIDATION = 1345
OMNIGLOT_BINARIZE_SEED = 5
OMNIGLOT_SHUFFLE_SEED = 123

SAMPLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'mnist_sample.npy')
SAMPLE_SPLITS = (8000, 1000, 1000)
SAMPLE_FIX = 'git checkout -- data/mnist_sample.npy (or python scripts/build_sample.py)'

SPLITS = ('train', 'valid', 'test')
TASKS = ('sbn', 'sp', 'omni')


class DataError(ValueError):
    """A data file that is missing or unusable; the message names the file and the fix."""


def load_data(task, dynamic_b=False, data_dir=None, use_sample=False):
    """Returns (train, valid, test), float32 arrays of shape [N, 784], for `task`.

    `data_dir` None means `config.DATA_DIR`.  `use_sample` loads the bundled MNIST sample even
    when the full data is present.  Every use of the sample prints one line to stderr.
    """
    if task not in TASKS:
        raise ValueError('Unknown task %r; valid tasks: %s.' % (task, ', '.join(TASKS)))
    data_dir = config.DATA_DIR if data_dir is None else data_dir
    if task == 'omni':
        fix = fix_command('omniglot', data_dir)
        if use_sample:
            raise DataError('The bundled sample is MNIST only; there is no Omniglot sample. '
                            'Fix: %s' % fix)
        path = find_file(data_dir, (OMNIGLOT, OMNIGLOT_RAW))
        if path is None:
            raise DataError('Omniglot not found: looked for %s or %s in %s. Fix: %s'
                            % (OMNIGLOT, OMNIGLOT_RAW, _where(data_dir), fix))
        train, test = read_omniglot_mat(path, fix)
        return split_omniglot(train, test, binarize=not dynamic_b)
    sample = 'the bundled sample of %s real digits (%s%s)' % (
        _count(sum(SAMPLE_SPLITS)), '/'.join(_count(n) for n in SAMPLE_SPLITS),
        '; binary only, so dynamic_b re-binarizes fixed images' if dynamic_b else '')
    if use_sample:
        _say('using %s, as asked: NOT the benchmark.' % sample)
        return read_sample()
    data = read_mnist(data_dir, dynamic_b)
    if data is None:
        _say('no MNIST in %s: looked for %s or %s. Using %s, NOT the benchmark. Full data: %s'
             % (_where(data_dir), MNIST_BINARIZED, AMAT_PATTERN, sample,
                fix_command('MNIST', data_dir)))
        return read_sample()
    return data


def read_mnist(data_dir, dynamic_b):
    """The full MNIST from `data_dir`, or None when no MNIST file is there at all."""
    fix = fix_command('MNIST', data_dir)
    pickled = find_file(data_dir, (MNIST_BINARIZED,))
    amats = [find_file(data_dir, (name,)) for name in AMAT]
    grey = find_file(data_dir, (MNIST_FLOAT,) + MNIST_IDX)
    if pickled:
        splits = read_binarized_pickle(pickled, fix)
    elif any(amats):
        missing = [name for name, path in zip(AMAT, amats) if path is None]
        if missing:
            raise DataError('Binarized MNIST split missing: found %s but not %s in %s. Fix: %s'
                            % (', '.join(p for p in amats if p), ', '.join(missing),
                               _where(data_dir), fix))
        splits = [read_amat(path, fix) for path in amats]
    elif grey:
        raise DataError('Found the grey MNIST %s but not the binarized MNIST (%s, or %s) that '
                        'every task needs. Fix: %s' % (grey, MNIST_BINARIZED, AMAT_PATTERN, fix))
    else:
        return None
    if dynamic_b:
        if grey is None:
            raise DataError('dynamic_b needs the grey MNIST training images: put %s or %s in %s. '
                            'Fix: %s' % (MNIST_FLOAT, MNIST_IDX[0], _where(data_dir), fix))
        splits[0] = read_grey(grey, fix)[:N_MNIST_TRAIN]
    return tuple(splits)


def split_omniglot(train, test, binarize):
    """The reference's Omniglot preprocessing of [N, 784] column-major images in [0, 1]."""
    train, test = _row_major(train), _row_major(test)
    if binarize:
        # One stream for both sets, train first, compared in float32: the reference's numbers.
        rng = np.random.RandomState(OMNIGLOT_BINARIZE_SEED)
        train = (rng.random_sample(train.shape) < train).astype(np.float32)
        test = (rng.random_sample(test.shape) < test).astype(np.float32)
    train = train[np.random.RandomState(OMNIGLOT_SHUFFLE_SEED).permutation(len(train))]
    return train[:-OMNIGLOT_VALIDATION], train[-OMNIGLOT_VALIDATION:], test


def _row_major(images):
    return images.reshape((-1, 28, 28)).reshape((-1, N_PIXELS), order='F')


def read_omniglot_mat(path, fix=None):
    """(train, test) float32 [N, 784] from chardata.mat's `data` and `testdata` (784 x N)."""
    fix = fix or fix_command('omniglot', None)
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises many kinds for a damaged file
        raise DataError('%s is not a readable MATLAB file (%s). Fix: %s' % (path, e, fix))
    out = []
    for key in ('data', 'testdata'):
        if key not in mat:
            raise DataError('%s has no %r field (found %s). Fix: %s'
                            % (path, key, ', '.join(k for k in mat if not k.startswith('__')), fix))
        out.append(_check_images(np.asarray(mat[key]).T, path, key, False, fix))
    if len(out[0]) <= OMNIGLOT_VALIDATION:
        raise DataError('%s: data holds %d images, too few to hold out %d for validation. Fix: %s'
                        % (path, len(out[0]), OMNIGLOT_VALIDATION, fix))
    return tuple(out)


def read_binarized_pickle(path, fix):
    """The reference's pickle: three (images, labels-or-None) pairs, binary images."""
    try:
        with open(path, 'rb') as f:
            obj = _ArrayUnpickler(f, encoding='latin1').load()
    except Exception as e:  # a damaged pickle can raise almost anything
        raise DataError('%s is not a readable pickle (%s: %s). Fix: %s'
                        % (path, type(e).__name__, e, fix))
    if not isinstance(obj, (tuple, list)) or not all(
            isinstance(pair, (tuple, list)) and len(pair) == 2 for pair in obj):
        raise DataError('%s should hold three (images, labels-or-None) pairs, train/valid/test. '
                        'Fix: %s' % (path, fix))
    if len(obj) != 3:
        raise DataError('%s holds %d splits; expected 3 (train, valid, test)%s. Fix: %s'
                        % (path, len(obj), ', missing ' + ', '.join(SPLITS[len(obj):])
                           if len(obj) < 3 else '', fix))
    return [_check_images(pair[0], path, name, True, fix) for pair, name in zip(obj, SPLITS)]


def read_amat(path, fix=None):
    """Larochelle's text format: one image a line, 784 values 0 or 1; returns float32 [N, 784]."""
    fix = fix or fix_command('MNIST', None)
    with open(path, 'rb') as f:
        raw = np.frombuffer(f.read(), np.uint8)
    kind = _AMAT_KIND[raw]  # 0: anything else, 1: white space, 2: a digit 0 or 1
    digit = kind == 2
    bad = kind == 0
    bad[1:] |= digit[1:] & digit[:-1]  # "10", "01", "11": not a single binary digit
    if bad.any():
        raise DataError('%s line %d holds a value other than 0 or 1; binarized MNIST must be binary. '
                        'Fix: %s' % (path, _line_of(raw, int(np.argmax(bad))), fix))
    starts = np.concatenate([[0], np.flatnonzero(raw == ord('\n')) + 1])
    starts = starts[starts < len(raw)]  # each line with its newline, so starts only increase
    per_line = (np.add.reduceat(digit.view(np.uint8), starts, dtype=np.int64) if len(raw)
                else np.zeros(1, int))
    wrong = np.flatnonzero((per_line != 0) & (per_line != N_PIXELS))
    if len(wrong) or not per_line.any():
        line = wrong[0] if len(wrong) else 0
        raise DataError('%s line %d has %d values; every image needs %d. Fix: %s'
                        % (path, line + 1, per_line[line], N_PIXELS, fix))
    return (raw[digit] - ord('0')).reshape(-1, N_PIXELS).astype(np.float32)


_AMAT_KIND = np.zeros(256, np.uint8)
_AMAT_KIND[list(b' \t\r\n')] = 1
_AMAT_KIND[list(b'01')] = 2


def read_grey(path, fix):
    """Grey training images in [0, 1], float32 [N, 784], from the reference's .npy or an IDX file."""
    if path.endswith('.npy'):
        try:
            images = np.load(path)
        except Exception as e:  # truncated header, pickled object array, ...
            raise DataError('%s is not a readable .npy file (%s). Fix: %s' % (path, e, fix))
        return _check_images(images, path, 'grey training images', False, fix)
    return read_idx(path, fix).astype(np.float32) / 255


def read_idx(path, fix=None):
    """MNIST's IDX image format (gzipped or not): uint8 [N, 784], pixels only."""
    fix = fix or fix_command('MNIST', None)
    opener = gzip.open if path.endswith('.gz') else open
    try:
        with opener(path, 'rb') as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError('%s cannot be read (%s). Fix: %s' % (path, e, fix))
    magic = struct.unpack('>I', raw[:4])[0] if len(raw) >= 4 else None
    if magic != 2051 or len(raw) < 16:
        raise DataError('%s is not an IDX image file (magic number %s, images have 2051%s). Fix: %s'
                        % (path, magic, ', 2049 is a label file' if magic == 2049 else '', fix))
    count, rows, cols = struct.unpack('>III', raw[4:16])
    if rows * cols != N_PIXELS:
        raise DataError('%s holds %dx%d images; expected 28x28. Fix: %s' % (path, rows, cols, fix))
    if len(raw) != 16 + count * N_PIXELS:
        raise DataError('%s should hold %d bytes of pixels for %d images but holds %d. Fix: %s'
                        % (path, count * N_PIXELS, count, len(raw) - 16, fix))
    return np.frombuffer(raw, np.uint8, offset=16).reshape(count, N_PIXELS)


def read_sample():
    """The bundled sample: bit-packed rows of 784 binary pixels, split 8,000/1,000/1,000."""
    try:
        packed = np.load(SAMPLE_PATH)
    except Exception as e:  # missing or damaged checkout
        raise DataError('%s cannot be read (%s). Fix: %s' % (SAMPLE_PATH, e, SAMPLE_FIX))
    if packed.dtype != np.uint8 or packed.shape != (sum(SAMPLE_SPLITS), N_PIXELS // 8):
        raise DataError('%s has shape %s of %s; expected (%d, %d) uint8. Fix: %s'
                        % (SAMPLE_PATH, packed.shape, packed.dtype, sum(SAMPLE_SPLITS),
                           N_PIXELS // 8, SAMPLE_FIX))
    images = np.unpackbits(packed, axis=1).astype(np.float32)
    return tuple(np.split(images, np.cumsum(SAMPLE_SPLITS)[:-1]))


def _check_images(images, path, what, binary, fix):
    """float32 [N, 784] (from [N, 784] or [N, 28, 28]), binary or in [0, 1], else DataError."""
    images = np.asarray(images)
    if images.ndim == 3 and images.shape[1:] == (28, 28):
        images = images.reshape(-1, N_PIXELS)
    if images.ndim != 2 or images.shape[1] != N_PIXELS or not len(images):
        raise DataError('%s: %s have shape %s; expected [N, %d] with N > 0. Fix: %s'
                        % (path, what, images.shape, N_PIXELS, fix))
    if images.dtype.kind not in 'biuf':
        raise DataError('%s: %s are of type %s, not numbers. Fix: %s'
                        % (path, what, images.dtype, fix))
    images = images.astype(np.float32)
    if binary and not ((images == 0) | (images == 1)).all():
        odd = images[(images != 0) & (images != 1)][0]
        raise DataError('%s: %s hold %r; binarized MNIST must hold only 0 and 1. Fix: %s'
                        % (path, what, float(odd), fix))
    if not binary and not (np.isfinite(images).all() and images.min() >= 0
                           and images.max() <= 1):
        raise DataError('%s: %s should lie in [0, 1] but span [%g, %g]. Fix: %s'
                        % (path, what, images.min(), images.max(), fix))
    return images


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays only, whichever NumPy generation (numpy.core / numpy._core) wrote them."""

    _CORE = 'numpy._core' if hasattr(np, '_core') else 'numpy.core'
    _ALLOWED = {('_codecs', 'encode'), ('numpy', 'ndarray'), ('numpy', 'dtype'),
                ('numpy.core.multiarray', '_reconstruct'), ('numpy.core.multiarray', 'scalar'),
                ('numpy.core.numeric', '_frombuffer')}

    def find_class(self, module, name):
        for core in ('numpy._core', 'numpy.core'):
            if module == core or module.startswith(core + '.'):
                module = 'numpy.core' + module[len(core):]
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError('refusing to load %s.%s: only numpy arrays belong here'
                                         % (module, name))
        if module.startswith('numpy.core'):
            module = self._CORE + module[len('numpy.core'):]
        return pickle.Unpickler.find_class(self, module, name)


def find_file(data_dir, names):
    """The first of `names` found in `data_dir` or its SUBDIRS, else None."""
    for name in names:
        for sub in SUBDIRS:
            path = os.path.join(data_dir, sub, name)
            if os.path.isfile(path):
                return path
    return None


def fix_command(dataset, data_dir):
    """The download command for `dataset`, with --data_dir when it is not the default."""
    command = 'python download.py --dataset %s' % dataset
    if data_dir is not None and data_dir != config.DATA_DIR:
        command += ' --data_dir %s' % shlex.quote(data_dir)
    return command


def _line_of(raw, index):
    return int(np.count_nonzero(raw[:index] == ord('\n'))) + 1


def _where(data_dir):
    return '%s (or its %s)' % (os.path.abspath(data_dir), ' or '.join(s + '/' for s in SUBDIRS if s))


def _count(n):
    return '{:,}'.format(n)


def _say(message):
    print('datasets: ' + message, file=sys.stderr)
