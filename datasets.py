"""The data sets as float32 arrays of shape [N, 784] (train, valid, test), with their sources.

`load_data(dataset, dynamic_b, data_dir, use_sample)` returns a `Data`: a (train, valid, test)
tuple that also carries `sources` (each file read: path, size, sha256) and `description` (one
line saying what was read and how it was split, printed to stderr on every load).

- mnist, the reference's form (the REBAR paper's): Larochelle's fixed binarization,
  50,000/10,000/10,000; with `dynamic_b` the training split is instead the first 50,000 grey MNIST
  training images in [0, 1] (valid and test stay Larochelle's).
- mnist from the IDX files alone (DisARM's form; only with `dynamic_b`, and only when no
  binarized MNIST is there): the 60,000 grey training images split 50,000 train / 10,000 valid,
  the 10,000 test images as test.
- fashion_mnist: the IDX files, split as MNIST's IDX form.
- omniglot: `chardata.mat`; each MATLAB column-major image becomes a row-major one, the images
  are binarized with seed 5 (train, then test), the training set is permuted with seed 123 and
  its last 1,345 images held out for validation.

With `dynamic_b` only the training split stays grey (the driver binarizes each batch as it is
drawn), in every data set and form: valid and test are always binary, fixed once with a fixed
seed, the same images with or without `dynamic_b`, so that the bound printed for them is a
Bernoulli likelihood bound.  In the IDX forms split i (train 0, valid 1, test 2) is binarized
with `np.random.RandomState(i)`; Omniglot's with the reference's seed 5; MNIST's reference form
uses Larochelle's binary valid and test.

Files are looked for in `data_dir` and its subdirectories (SUBDIRS; Fashion-MNIST first in its
own FASHION_SUBDIRS), in this order of preference:

    binarized MNIST   mnist_salakhutdinov_07-19-2017.pkl, else binarized_mnist_{train,valid,test}.amat
    grey MNIST        mnist_train_xs_07-19-2017.npy, else train-images-idx3-ubyte[.gz]
    MNIST test (IDX)  t10k-images-idx3-ubyte[.gz]
    Fashion-MNIST     train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz]
    Omniglot          omniglot_07-19-2017.mat, else chardata.mat

The files that make one data set (Larochelle's three .amat files; the two IDX files) are taken
from one place: the first directory, in that order, that holds any of them must hold all (the
IDX pair may also be MindSpore's train/ and test/ of one directory); a missing one stops the run
naming the file and the directory, instead of being borrowed from another directory, where a
file of the same name may belong to another data set.  Two splits holding identical images (one
file given three times) are refused too.

`load_grey(dataset, data_dir)` is the form likelihood=gaussian trains on (the double-CV and RODEO
papers' non-binarized data): no split binarized, each grey level x in [0, 1] mapped to x * 2 - 1
in [-1, 1] (`signed_grey`). MNIST and Fashion-MNIST from their IDX files in DisARM's split
(the binarized MNIST files and the bundled sample hold binary pixels only: refused), Omniglot
from its .mat in the reference's split.

Only the default data directory (`data_dir` None and no $REBAR_DATA_DIR) falls back to the
bundled sample of 10,000 real digits (`data/mnist_sample.npy`) when it holds no MNIST, and says so
on stderr; a directory the user named must hold the data set.  A missing or unusable file raises
`DataError`, naming the file or directory and the command that fixes it.
"""
from __future__ import absolute_import, division, print_function

import collections
import gzip
import hashlib
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
IDX_TRAIN = ('train-images-idx3-ubyte.gz', 'train-images-idx3-ubyte', 'train-images.idx3-ubyte')
IDX_TEST = ('t10k-images-idx3-ubyte.gz', 't10k-images-idx3-ubyte', 't10k-images.idx3-ubyte')
MNIST_IDX = IDX_TRAIN
IDX_PATTERN = 'train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz]'
# Where the files may sit below data_dir: as they are, torchvision's raw/, MindSpore's train/
# and test/.  Fashion-MNIST's own subdirectories come first, since its IDX files bear MNIST's names.
SUBDIRS = ('', 'raw', 'train', 'test')
FASHION_SUBDIRS = ('fashion_mnist', 'fashion-mnist', os.path.join('FashionMNIST', 'raw')) + SUBDIRS

N_PIXELS = 784
N_MNIST_TRAIN = 50000
N_IDX_VALID = 10000
IDX_BINARIZE_SEEDS = (0, 1, 2)  # train, valid, test
OMNIGLOT_VALIDATION = 1345
OMNIGLOT_BINARIZE_SEED = 5
OMNIGLOT_SHUFFLE_SEED = 123

SAMPLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'mnist_sample.npy')
SAMPLE_SPLITS = (8000, 1000, 1000)
SAMPLE_FIX = 'git checkout -- data/mnist_sample.npy (or python scripts/build_sample.py)'

SPLITS = ('train', 'valid', 'test')
DATASETS = config.DATASETS
LABELS = {'mnist': 'MNIST', 'omniglot': 'Omniglot', 'fashion_mnist': 'Fashion-MNIST'}
# download.py's name for each data set (its --dataset values)
DOWNLOAD_NAMES = {'mnist': 'MNIST', 'omniglot': 'omniglot', 'fashion_mnist': 'fashion_mnist'}
LOOKED_FOR = {
    'mnist': '%s or %s (with dynamic_b=true, %s also do)' % (MNIST_BINARIZED, AMAT_PATTERN,
                                                             IDX_PATTERN),
    'omniglot': '%s or %s' % (OMNIGLOT, OMNIGLOT_RAW),
    'fashion_mnist': IDX_PATTERN,
}
# sha256 of published image files (TensorFlow Datasets' url_checksums) and of Debian's
# dataset-fashion-mnist copies (recompressed), to refuse one data set's file read as the other's.
KNOWN_FILES = {
    '440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609': 'mnist',
    '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6': 'mnist',
    '3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84': 'fashion_mnist',
    '346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073': 'fashion_mnist',
    'b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7': 'fashion_mnist',
    'cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa': 'fashion_mnist',
}
CHUNK_ROWS = 10000  # binarize in chunks: 10,000 x 784 float64 uniforms are 63 MB

# One file read: its path, size in bytes and sha256, for the run's provenance.
Source = collections.namedtuple('Source', 'path size sha256')


class DataError(ValueError):
    """A data file that is missing or unusable; the message names the file and the fix."""


class Data(collections.namedtuple('Data', 'train valid test')):
    """(train, valid, test) float32 [N, 784] arrays, plus `sources` (a tuple of Source, in the
    order read) and `description` (one line: the data set, its form, the files and the split)."""

    def __new__(cls, train, valid, test, sources=(), description=''):
        self = super(Data, cls).__new__(cls, train, valid, test)
        self.sources = tuple(sources)
        self.description = description
        return self


def load_data(dataset, dynamic_b=False, data_dir=None, use_sample=False):
    """The `Data` of `dataset` (one of config.DATASETS; see config.dataset_of).

    `data_dir` None means `config.DATA_DIR`; only then may MNIST fall back to the bundled sample.
    `use_sample` loads the bundled MNIST sample even when the full data is present.  Every load
    prints one line to stderr saying what was read.
    """
    if dataset not in DATASETS:
        hint = (' %r is an objective (task); pass config.dataset_of(hparams).' % dataset
                if dataset in config.TASKS else '')
        raise ValueError('Unknown data set %r; valid data sets: %s.%s'
                         % (dataset, ', '.join(DATASETS), hint))
    # The user named the directory (flag or environment): it must hold the data.
    named = data_dir is not None or bool(os.environ.get('REBAR_DATA_DIR'))
    data_dir = config.DATA_DIR if data_dir is None else data_dir
    fix = fix_command(dataset, data_dir)
    if use_sample:
        if dataset != 'mnist':
            raise DataError('The bundled sample is MNIST only; there is no %s sample. Fix: %s'
                            % (LABELS[dataset], fix))
        data = read_sample('using %s, as asked: NOT the benchmark.' % _sample_text(dynamic_b))
    elif named and not os.path.isdir(data_dir):
        raise DataError('The data directory %s does not exist (looked there for %s, %s). '
                        'Fix: %s, or give the directory that holds them.'
                        % (os.path.abspath(data_dir), LABELS[dataset], LOOKED_FOR[dataset], fix))
    else:
        reader = {'mnist': read_mnist, 'omniglot': read_omniglot,
                  'fashion_mnist': read_fashion_mnist}[dataset]
        data = reader(data_dir, dynamic_b)
        if data is None and (named or dataset != 'mnist'):
            raise DataError('No %s in %s: looked for %s. Fix: %s' % (
                LABELS[dataset], _where(data_dir, dataset), LOOKED_FOR[dataset], fix))
        if data is None:
            data = read_sample('no MNIST in %s: looked for %s or %s. Using %s, NOT the '
                               'benchmark. Full data: %s'
                               % (_where(data_dir, dataset), MNIST_BINARIZED, AMAT_PATTERN,
                                  _sample_text(dynamic_b), fix))
    _refuse_identical_splits(data, dataset, fix)
    _say(data.description)
    return data


def _refuse_identical_splits(data, dataset, fix):
    """Two splits holding the same images (one file given as train, valid and test, say) would
    report a training figure as a test one: refused, naming them."""
    for (i, a), (j, b) in [((0, data[0]), (1, data[1])), ((0, data[0]), (2, data[2])),
                           ((1, data[1]), (2, data[2]))]:
        if a.shape == b.shape and np.array_equal(a, b):
            raise DataError('%s: the %s and %s splits hold identical images (%s), so one file '
                            'serves as two splits. Fix: %s'
                            % (LABELS[dataset], SPLITS[i], SPLITS[j],
                               ', '.join(s.path for s in data.sources) or 'the arrays', fix))


def load_grey(dataset, data_dir=None):
    """The `Data` of `dataset` for likelihood=gaussian: every split grey, in [-1, 1].

    MNIST and Fashion-MNIST: the IDX pair from one place, in DisARM's split (`read_idx_splits`,
    as the RODEO authors' code takes them); Omniglot: its .mat, permuted with seed 123 and the
    last 1,345 held out (the reference's split; those authors' code holds out the last 1,345
    unpermuted). Raises DataError, naming the files and the fix, when the grey images are not
    there; there is no fallback to the (binary) bundled sample.
    """
    if dataset not in DATASETS:
        raise ValueError('Unknown data set %r; valid data sets: %s.'
                         % (dataset, ', '.join(DATASETS)))
    data_dir = config.DATA_DIR if data_dir is None else data_dir
    fix = fix_command(dataset, data_dir)
    if dataset == 'omniglot':
        path = find_file(data_dir, (OMNIGLOT, OMNIGLOT_RAW))
        data = None
        if path:
            splits = split_omniglot(*read_omniglot_mat(path, fix), binarize=False)
            sources = _sources(dataset, [path], fix)
            data = Data(*splits, sources=sources, description=_describe(
                'omniglot, the reference\'s split: permuted with seed %d, the last %s training '
                'images held out for validation; none binarized'
                % (OMNIGLOT_SHUFFLE_SEED, _count(OMNIGLOT_VALIDATION)), splits, sources))
        wanted = LOOKED_FOR['omniglot']
    else:
        subdirs = FASHION_SUBDIRS if dataset == 'fashion_mnist' else SUBDIRS
        data = read_idx_splits(dataset, data_dir, subdirs, False, fix, required=False,
                               binarize=False)
        wanted = IDX_PATTERN
    if data is None:
        binary = (' (binarized MNIST and the bundled sample hold binary pixels only)'
                  if dataset == 'mnist' else '')
        raise DataError('likelihood=gaussian needs grey %s images%s: looked for %s in %s. '
                        'Fix: %s, or use likelihood=bernoulli.'
                        % (LABELS[dataset], binary, wanted, _where(data_dir, dataset), fix))
    data = Data(*[signed_grey(x) for x in data], sources=data.sources,
                description='For likelihood=gaussian, grey x * 2 - 1 in [-1, 1]: '
                + data.description)
    _say(data.description)
    return data


def signed_grey(images):
    """Grey images in [0, 1] as x * 2 - 1, float32 in [-1, 1] (the Gaussian likelihood's form)."""
    return np.asarray(images, np.float32) * 2 - 1


def _sample_text(dynamic_b):
    return 'the bundled sample of %s real digits (%s%s)' % (
        _count(sum(SAMPLE_SPLITS)), '/'.join(_count(n) for n in SAMPLE_SPLITS),
        '; binary only, so dynamic_b re-binarizes fixed images' if dynamic_b else '')


def read_mnist(data_dir, dynamic_b):
    """MNIST's `Data` from `data_dir`, or None when no MNIST file is there at all.

    The binarized files, when present, decide: the reference's form.  Otherwise, with dynamic_b,
    the IDX training and test images: DisARM's form.
    """
    fix = fix_command('mnist', data_dir)
    pickled = find_file(data_dir, (MNIST_BINARIZED,))
    amats = (None if pickled else
             find_together(data_dir, [(name,) for name in AMAT], SUBDIRS, fix,
                           'Binarized MNIST split missing', pairs=False))
    grey = find_file(data_dir, (MNIST_FLOAT,) + IDX_TRAIN)
    if pickled:
        binarized = [pickled]
        splits = read_binarized_pickle(pickled, fix)
    elif amats:
        binarized = amats
        splits = [read_amat(path, fix) for path in amats]
    elif grey or find_file(data_dir, IDX_TEST):
        if not dynamic_b:
            _sources('mnist', [p for p in (grey, find_file(data_dir, IDX_TEST)) if p], fix)
            raise DataError(
                'Found grey MNIST (%s) but not the binarized MNIST (%s, or %s) of the benchmark. '
                'Fix: %s; or set dynamic_b=true to train on the grey IDX files (%s; DisARM\'s '
                'form, see docs/data.md).'
                % (grey or find_file(data_dir, IDX_TEST), MNIST_BINARIZED, AMAT_PATTERN, fix,
                   IDX_PATTERN))
        return read_idx_splits('mnist', data_dir, SUBDIRS, True, fix)
    else:
        return None
    description = ("mnist, the reference's form: Larochelle's fixed binarization")
    if dynamic_b:
        if grey is None:
            raise DataError('dynamic_b needs the grey MNIST training images: put %s or %s in %s. '
                            'Fix: %s' % (MNIST_FLOAT, IDX_TRAIN[0], _where(data_dir), fix))
        splits[0] = read_grey(grey, fix)[:N_MNIST_TRAIN]
        description += (' for valid and test; train: the first %s grey training images '
                        '(dynamic_b)' % _count(len(splits[0])))
    sources = _sources('mnist', binarized + ([grey] if dynamic_b else []), fix)
    return Data(*splits, sources=sources, description=_describe(description, splits, sources))


def read_fashion_mnist(data_dir, dynamic_b):
    """Fashion-MNIST's `Data` from its IDX files in `data_dir`, or None when neither is there."""
    return read_idx_splits('fashion_mnist', data_dir, FASHION_SUBDIRS, dynamic_b,
                           fix_command('fashion_mnist', data_dir), required=False)


def read_idx_splits(dataset, data_dir, subdirs, dynamic_b, fix, required=True, binarize=True):
    """DisARM's split of the IDX files: training images [:50,000] train, [50,000:60,000] valid;
    test images test.  Grey train with dynamic_b, else every split binarized once (module doc);
    every split grey in [0, 1] without `binarize`."""
    paths = find_together(data_dir, [IDX_TRAIN, IDX_TEST], subdirs, fix,
                          '%s needs both IDX image files, %s, in one directory'
                          % (dataset, IDX_PATTERN))
    if paths is None and not required:
        return None
    if paths is None:
        raise DataError('%s needs both IDX image files, %s, in %s; found neither. Fix: %s'
                        % (dataset, IDX_PATTERN, _where(data_dir, dataset), fix))
    sources = _sources(dataset, paths, fix)
    train_all, test = [read_idx(path, fix) for path in paths]
    if len(train_all) <= N_MNIST_TRAIN:
        raise DataError('%s holds %s images; the split needs more than %s (%s train, then up to '
                        '%s valid). Fix: %s' % (paths[0], _count(len(train_all)),
                                                _count(N_MNIST_TRAIN), _count(N_MNIST_TRAIN),
                                                _count(N_IDX_VALID), fix))
    splits = [train_all[:N_MNIST_TRAIN], train_all[N_MNIST_TRAIN:N_MNIST_TRAIN + N_IDX_VALID],
              test]
    grey = [x.astype(np.float32) / 255 for x in splits]
    if not binarize:
        description = ('%s from the IDX files in DisARM\'s split: train the first %s training '
                       'images, valid the next %s, test the test images; none binarized'
                       % (dataset, _count(len(grey[0])), _count(len(grey[1]))))
        return Data(*grey, sources=sources, description=_describe(description, grey, sources))
    splits = [x if i == 0 and dynamic_b else fixed_binarization(x, IDX_BINARIZE_SEEDS[i])
              for i, x in enumerate(grey)]
    description = ('%s from the IDX files in DisARM\'s split: train the first %s training '
                   'images%s, valid the next %s, test the test images; %s with seeds %s'
                   % (dataset, _count(len(splits[0])),
                      ' (grey: dynamic_b)' if dynamic_b else '', _count(len(splits[1])),
                      'valid and test binarized once' if dynamic_b else 'binarized once',
                      '/'.join(str(s) for s in IDX_BINARIZE_SEEDS[1 if dynamic_b else 0:])))
    return Data(*splits, sources=sources, description=_describe(description, splits, sources))


def fixed_binarization(images, seed):
    """Fixed binarization: pixel on where a uniform of np.random.RandomState(seed), drawn row
    after row, is below its grey level in [0, 1]; float32 [N, 784] of 0 and 1."""
    rng = np.random.RandomState(seed)
    out = np.empty(images.shape, np.float32)
    for start in range(0, len(images), CHUNK_ROWS):
        rows = images[start:start + CHUNK_ROWS]
        out[start:start + CHUNK_ROWS] = rng.random_sample(rows.shape) < rows
    return out


def read_omniglot(data_dir, dynamic_b):
    """Omniglot's `Data` from `data_dir`, or None when neither file name is there."""
    fix = fix_command('omniglot', data_dir)
    path = find_file(data_dir, (OMNIGLOT, OMNIGLOT_RAW))
    if path is None:
        return None
    sources = _sources('omniglot', [path], fix)
    splits = split_omniglot(*read_omniglot_mat(path, fix), dynamic_b=dynamic_b)
    description = ('omniglot, the reference\'s split: permuted with seed %d, the last %s training '
                   'images held out for validation; %s with seed %d'
                   % (OMNIGLOT_SHUFFLE_SEED, _count(OMNIGLOT_VALIDATION),
                      'train grey (dynamic_b), valid and test binarized once' if dynamic_b
                      else 'binarized once', OMNIGLOT_BINARIZE_SEED))
    return Data(*splits, sources=sources, description=_describe(description, splits, sources))


def _sources(dataset, paths, fix):
    """A Source per path; refuses a file known to be another data set's."""
    sources = []
    for path in paths:
        digest = sha256_of(path)
        other = KNOWN_FILES.get(digest, dataset)
        if other != dataset:
            raise DataError('%s is a file of %s (sha256 %s), not of %s. Fix: %s, or set '
                            'dataset=%s to train on it.' % (path, LABELS[other], digest,
                                                            LABELS[dataset], fix, other))
        sources.append(Source(os.path.abspath(path), os.path.getsize(path), digest))
    return sources


def sha256_of(path):
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _describe(what, splits, sources):
    return '%s. %s train / %s valid / %s test images, read from %s' % (
        what, _count(len(splits[0])), _count(len(splits[1])), _count(len(splits[2])),
        ', '.join(source.path for source in sources))


def split_omniglot(train, test, dynamic_b=False, binarize=True):
    """The reference's Omniglot preprocessing of [N, 784] column-major images in [0, 1]: binarized
    once with seed 5 (train, then test), the training set permuted with seed 123 and its last
    1,345 images held out for validation.  With `dynamic_b` the training split holds the same
    images grey (the driver binarizes each batch as it is drawn) while valid and test are the
    binarized ones, the same images as without `dynamic_b` (the reference kept them grey too,
    which scores grey images under a Bernoulli likelihood: README, where we differ).  Without
    `binarize` every split stays grey (likelihood=gaussian), in the same split."""
    train, test = _row_major(train), _row_major(test)
    if not binarize:
        train = train[np.random.RandomState(OMNIGLOT_SHUFFLE_SEED).permutation(len(train))]
        return train[:-OMNIGLOT_VALIDATION], train[-OMNIGLOT_VALIDATION:], test
    # One stream for both sets, train first, compared in float32: the reference's numbers.
    rng = np.random.RandomState(OMNIGLOT_BINARIZE_SEED)
    binary_train = (rng.random_sample(train.shape) < train).astype(np.float32)
    binary_test = (rng.random_sample(test.shape) < test).astype(np.float32)
    order = np.random.RandomState(OMNIGLOT_SHUFFLE_SEED).permutation(len(train))
    binary_train = binary_train[order]
    fitted = train[order] if dynamic_b else binary_train
    return (fitted[:-OMNIGLOT_VALIDATION], binary_train[-OMNIGLOT_VALIDATION:], binary_test)


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
        return _check_images(load_npy(path, fix), path, 'grey training images', False, fix)
    return read_idx(path, fix).astype(np.float32) / 255


def load_npy(path, fix):
    """A numeric array from a .npy file; never unpickles (a file of Python objects is refused)."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if 'pickle' in str(e):  # numpy's message suggests unpickling, which could run code
            raise DataError('%s holds Python objects, not a numeric array, so it is not a data '
                            'file this loader reads. Fix: %s' % (path, fix))
        raise DataError('%s is not a readable .npy file (%s). Fix: %s' % (path, e, fix))
    except (OSError, EOFError) as e:  # missing, truncated header, ...
        raise DataError('%s is not a readable .npy file (%s). Fix: %s' % (path, e, fix))


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


def read_sample(description='the bundled sample'):
    """The bundled sample's `Data`: bit-packed rows of 784 binary pixels, split 8,000/1,000/1,000."""
    packed = load_npy(SAMPLE_PATH, SAMPLE_FIX)
    if packed.dtype != np.uint8 or packed.shape != (sum(SAMPLE_SPLITS), N_PIXELS // 8):
        raise DataError('%s has shape %s of %s; expected (%d, %d) uint8. Fix: %s'
                        % (SAMPLE_PATH, packed.shape, packed.dtype, sum(SAMPLE_SPLITS),
                           N_PIXELS // 8, SAMPLE_FIX))
    images = np.unpackbits(packed, axis=1).astype(np.float32)
    sources = [Source(SAMPLE_PATH, os.path.getsize(SAMPLE_PATH), sha256_of(SAMPLE_PATH))]
    return Data(*np.split(images, np.cumsum(SAMPLE_SPLITS)[:-1]), sources=sources,
                description=description)


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


def find_file(data_dir, names, subdirs=SUBDIRS):
    """The first of `names` found in `data_dir` or its `subdirs`, else None."""
    for name in names:
        for sub in subdirs:
            path = os.path.join(data_dir, sub, name)
            if os.path.isfile(path):
                return path
    return None


def places(subdirs, pairs=True):
    """Where the files of one data set may sit together: any one of `subdirs`, or (`pairs`)
    MindSpore's pair of train/ and test/ (its training file in train/, its test file in test/)."""
    pair = pairs and 'train' in subdirs and 'test' in subdirs
    return ([(sub,) for sub in subdirs if not (pair and sub in ('train', 'test'))]
            + ([('train', 'test')] if pair else []))


def find_together(data_dir, files, subdirs, fix, what, pairs=True):
    """The paths of `files` (one tuple of alternative names per file) from ONE place below
    `data_dir` (see `places`; a place of two folders serves the first file from the first), or
    None when no place holds any of them.  The first place, in order of preference, that holds
    one of them must hold all: files of one data set from several places could mix data sets (a
    test split of MNIST under Fashion-MNIST's training images), so a place that lacks one stops
    the run, naming the file and the place, rather than borrow it from elsewhere."""
    for place in places(subdirs, pairs):
        folders = [os.path.normpath(os.path.join(data_dir, place[min(i, len(place) - 1)]))
                   for i in range(len(files))]
        found = [next((os.path.join(folder, name) for name in names
                       if os.path.isfile(os.path.join(folder, name))), None)
                 for folder, names in zip(folders, files)]
        if not any(found):
            continue
        if not all(found):
            missing = ['%s in %s' % (names[0], folder)
                       for folder, names, path in zip(folders, files, found) if path is None]
            raise DataError('%s: found %s but not %s; the files of one data set must sit in one '
                            'directory (a file of the same name elsewhere is not used: it could be '
                            'another data set\'s). Fix: %s, or put the files together.'
                            % (what, ', '.join(p for p in found if p), ', '.join(missing), fix))
        return found
    return None


def fix_command(dataset, data_dir):
    """The download command for `dataset`, with --data_dir when it is not the default."""
    command = 'python download.py --dataset %s' % DOWNLOAD_NAMES.get(dataset, dataset)
    if data_dir is not None and data_dir != config.DATA_DIR:
        command += ' --data_dir %s' % shlex.quote(data_dir)
    return command


def _line_of(raw, index):
    return int(np.count_nonzero(raw[:index] == ord('\n'))) + 1


def _where(data_dir, dataset=None):
    subdirs = FASHION_SUBDIRS if dataset == 'fashion_mnist' else SUBDIRS
    return '%s (or its %s)' % (os.path.abspath(data_dir),
                               ', '.join(s + '/' for s in subdirs if s))


def _count(n):
    return '{:,}'.format(n)


def _say(message):
    print('datasets: ' + message, file=sys.stderr)
