"""Downloads, verifies and converts the REBAR data.

    python download.py --dataset MNIST|omniglot|fashion_mnist|all [--data_dir DIR]
                       [--mirror URL ...] [--no-public] [--timeout SECONDS]

Each file is fetched from the `--mirror` prefixes first (`<mirror>/<path in the data directory>`,
in the order given), then from its public sources (none with `--no-public`).  Fashion-MNIST goes
to the `fashion_mnist/` subdirectory, since its files bear MNIST's names.  Downloads go to
`<file>.part`, resume with an HTTP Range request when a partial file is there (or restart when
the server ignores it), and become `<file>` only once their size and checksums (or, for
chardata.mat, which has no published checksum, their content) check out.  Files already present and verified are
not fetched again.  MNIST is then converted to the reference's layout that datasets.py reads
first: the pickle of the binarized splits and the .npy of the first 50,000 grey training images.
When a file cannot be had, the command says where to get it by hand and where to put it, and
exits 1.  See docs/data.md.
"""
from __future__ import absolute_import, division, print_function

import argparse
import collections
import functools
import hashlib
import http.client
import os
import pickle
import sys
import urllib.error
import urllib.request

import numpy as np

import config
import datasets
import rundir

# One file to fetch: its path in the data directory, its size in bytes and sha256 (None where
# none is published), its public URLs in order, an optional content check raising DataError, and
# optionally the md5 its publisher gives.
FileSpec = collections.namedtuple('FileSpec', 'name size sha256 urls check md5')
FileSpec.__new__.__defaults__ = (None,)

LAROCHELLE = 'http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/'
MNIST_HOSTS = ('http://yann.lecun.com/exdb/mnist/',
               'https://ossci-datasets.s3.amazonaws.com/mnist/',
               'https://storage.googleapis.com/cvdf-datasets/mnist/')
FASHION_HOSTS = ('http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
                 'https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/')
FASHION_DIR = 'fashion_mnist'
IWAE_OMNIGLOT = ('https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/',
                 'https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/')
OMNIGLOT_COUNTS = (24345, 8070)


def check_chardata(path, counts=OMNIGLOT_COUNTS):
    """Raises DataError unless `path` is chardata.mat with `counts` train and test images."""
    train, test = datasets.read_omniglot_mat(path)
    if (len(train), len(test)) != tuple(counts):
        raise datasets.DataError('%s holds %d + %d images; chardata.mat has %d + %d'
                                 % (path, len(train), len(test), counts[0], counts[1]))


# Sizes and sha256 as recorded by TensorFlow Datasets (url_checksums/binarized_mnist.txt, mnist.txt
# and fashion_mnist.txt); torchvision records md5 f68b3c2dcbeaaa9fbdd348bbdeb94873 for MNIST's
# training images; the md5 of Fashion-MNIST's files are those its repository's README publishes.
DATASETS = collections.OrderedDict([
    ('MNIST', [
        FileSpec('binarized_mnist_train.amat', 78400000,
                 'ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d',
                 [LAROCHELLE + 'binarized_mnist_train.amat'], None),
        FileSpec('binarized_mnist_valid.amat', 15680000,
                 '1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2',
                 [LAROCHELLE + 'binarized_mnist_valid.amat'], None),
        FileSpec('binarized_mnist_test.amat', 15680000,
                 'e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c',
                 [LAROCHELLE + 'binarized_mnist_test.amat'], None),
        FileSpec('train-images-idx3-ubyte.gz', 9912422,
                 '440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609',
                 [host + 'train-images-idx3-ubyte.gz' for host in MNIST_HOSTS], None),
        FileSpec('t10k-images-idx3-ubyte.gz', 1648877,
                 '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',
                 [host + 't10k-images-idx3-ubyte.gz' for host in MNIST_HOSTS], None),
    ]),
    ('omniglot', [
        FileSpec('chardata.mat', None, None, [host + 'chardata.mat' for host in IWAE_OMNIGLOT],
                 check_chardata),
    ]),
    ('fashion_mnist', [
        FileSpec(FASHION_DIR + '/train-images-idx3-ubyte.gz', 26421880,
                 '3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84',
                 [host + 'train-images-idx3-ubyte.gz' for host in FASHION_HOSTS], None,
                 '8d4fb7e6c68d591d4c3dfef9ec88bf0d'),
        FileSpec(FASHION_DIR + '/t10k-images-idx3-ubyte.gz', 4422102,
                 '346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073',
                 [host + 't10k-images-idx3-ubyte.gz' for host in FASHION_HOSTS], None,
                 'bef4ecab320f06d8554ea6380940ec79'),
    ]),
])

TRIES_PER_SOURCE = 3
CHUNK = 1 << 20
USER_AGENT = 'Mozilla/5.0 (compatible; rebar-download/1.0)'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     allow_abbrev=False)   # names match exactly, not by prefix
    parser.add_argument('--dataset', default='all',
                        help='MNIST, omniglot, fashion_mnist or all (default all); case does '
                             'not matter')
    parser.add_argument('--data_dir', default=config.DATA_DIR,
                        help='where the data goes (default %(default)s, or $REBAR_DATA_DIR)')
    parser.add_argument('--mirror', action='append', default=[], metavar='URL',
                        help='a URL prefix holding the files by their usual names; tried '
                             'before the public sources; repeatable')
    parser.add_argument('--no-public', action='store_true',
                        help='try only the --mirror URLs (air-gapped clusters)')
    parser.add_argument('--timeout', type=float, default=10.0,
                        help='seconds to wait on a connection or a read (default 10)')
    args = parser.parse_args(argv)
    names = {name.lower(): name for name in DATASETS}
    wanted = args.dataset.lower()
    if wanted != 'all' and wanted not in names:
        parser.error('--dataset must be one of %s or all, not %r'
                     % (', '.join(DATASETS), args.dataset))
    chosen = list(DATASETS) if wanted == 'all' else [names[wanted]]
    os.makedirs(args.data_dir, exist_ok=True)

    failures = []
    for dataset in chosen:
        missing = []
        for spec in DATASETS[dataset]:
            urls = [m.rstrip('/') + '/' + spec.name for m in args.mirror]
            urls += [] if args.no_public else list(spec.urls)
            reasons = fetch(spec, args.data_dir, urls, args.timeout)
            if reasons is not None:
                missing.append((spec, reasons))
        if missing:
            failures.extend(missing)
        elif dataset == 'MNIST':
            try:
                convert_mnist(args.data_dir)
            except datasets.DataError as e:
                print('MNIST conversion failed: %s' % e, file=sys.stderr)
                return 1
    if failures:
        report_failures(failures, args.data_dir)
        return 1
    print('All done: the data is in %s.' % os.path.abspath(args.data_dir))
    return 0


def fetch(spec, data_dir, urls, timeout):
    """Makes `data_dir/spec.name` a verified file; returns None, or the reasons it could not."""
    final = os.path.join(data_dir, spec.name)
    if os.path.isfile(final):
        problem = verify(spec, final)
        if problem is None:
            print('%s: already present and verified, skipped.' % spec.name)
            return None
        print('%s: the file present is unusable (%s); fetching a new copy, which replaces it only '
              'once verified.' % (spec.name, problem))
    if not urls:
        return ['no source to try (--no-public without --mirror)']
    reasons = []
    for url in urls:
        print('%s: fetching %s' % (spec.name, url))
        reason = fetch_from(url, spec, final + '.part', timeout)
        if reason is None:
            os.replace(final + '.part', final)
            print('%s: verified (%s), saved.' % (spec.name, _describe(spec, final)))
            return None
        print('%s: %s' % (spec.name, reason), file=sys.stderr)
        reasons.append('%s: %s' % (url, reason))
    return reasons


def fetch_from(url, spec, part, timeout):
    """Completes and verifies `part` from `url`; returns None, or why it could not."""
    reason = 'no attempt'
    for _ in range(TRIES_PER_SOURCE):
        have = os.path.getsize(part) if os.path.exists(part) else 0
        resumed = have > 0  # until a server's answer says otherwise
        if spec.size is None or have < spec.size:
            request = urllib.request.Request(url, headers={'User-Agent': USER_AGENT})
            if have:
                request.add_header('Range', 'bytes=%d-' % have)
            try:
                response = urllib.request.urlopen(request, timeout=timeout)
            except urllib.error.HTTPError as e:
                if e.code == 416 and have:  # our partial file does not fit this server's copy
                    os.remove(part)
                    reason = 'HTTP 416 for the partial file; restarting'
                    continue
                return 'HTTP %d %s' % (e.code, e.reason)
            except (OSError, http.client.HTTPException) as e:  # URLError is an OSError
                return 'cannot connect (%s)' % getattr(e, 'reason', e)
            with response:
                resumed = resumed and response.status == 206 and response.headers.get(
                    'Content-Range', '').startswith('bytes %d-' % have)
                reason = _receive(response, part, have if resumed else 0)
            if reason is not None:
                continue  # keep the partial file and resume it
        problem = verify(spec, part)
        if problem is None:
            return None
        os.remove(part)
        if not resumed:
            return '%s; the file was discarded' % problem
        # The bytes kept from an earlier try may be the bad ones: start over.
        reason = '%s after resuming; the file was discarded' % problem
    kept = os.path.exists(part)
    return 'gave up after %d tries (last: %s)%s' % (
        TRIES_PER_SOURCE, reason, '; %s is kept for the next run to resume' % part if kept else '')


def _receive(response, part, start):
    """Writes the body to `part` from byte `start`; returns None when complete, else why not."""
    length = response.headers.get('Content-Length')
    expected = start + int(length) if length is not None else None
    os.makedirs(os.path.dirname(part), exist_ok=True)  # fashion_mnist/ on the first write
    with open(part, 'r+b' if start else 'wb') as f:
        f.seek(start)
        f.truncate()
        try:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
        except (OSError, http.client.HTTPException) as e:
            return 'interrupted after %d bytes (%s)' % (f.tell(), str(e) or type(e).__name__)
        if expected is not None and f.tell() < expected:
            return 'truncated: the connection closed after %d of %d bytes' % (f.tell(), expected)
    return None


def verify(spec, path):
    """None when `path` has the recorded size and checksum and passes the check, else why not."""
    size = os.path.getsize(path)
    if spec.size is not None and size != spec.size:
        return 'size %d bytes, expected %d' % (size, spec.size)
    for kind, expected in (('sha256', spec.sha256), ('md5', spec.md5)):
        if expected is not None:
            digest = digest_of(path, kind)
            if digest != expected:
                return 'checksum mismatch: %s %s, expected %s' % (kind, digest, expected)
    if spec.check is not None:
        try:
            spec.check(path)
        except datasets.DataError as e:
            return 'content check failed: %s' % e
    return None


def sha256_of(path):
    return digest_of(path, 'sha256')


def digest_of(path, kind):
    """The hex digest of a file's bytes by hashlib's algorithm `kind` (sha256, md5)."""
    digest = hashlib.new(kind)
    with open(path, 'rb') as f:
        for block in iter(functools.partial(f.read, CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


def _describe(spec, path):
    published = ', '.join('%s %s' % (kind, value) for kind, value in
                          (('sha256', spec.sha256), ('md5', spec.md5)) if value)
    if published:
        return '%d bytes, %s' % (os.path.getsize(path), published)
    return ('%d bytes, content checked; no published checksum, sha256 of this copy %s'
            % (os.path.getsize(path), sha256_of(path)))


def convert_mnist(data_dir):
    """Writes the reference's MNIST pickle and grey .npy from the verified raw files.

    An existing converted file is kept when datasets.py reads it without error.
    """
    fix = datasets.fix_command('MNIST', data_dir)
    pickled = os.path.join(data_dir, datasets.MNIST_BINARIZED)
    if not _readable(datasets.read_binarized_pickle, pickled, fix):
        splits = [datasets.read_amat(os.path.join(data_dir, name), fix) for name in datasets.AMAT]
        rundir.atomic_write(pickled, lambda f: pickle.dump(tuple((x, None) for x in splits), f,
                                                           protocol=4))
        print('%s: written from the .amat files.' % datasets.MNIST_BINARIZED)
    grey = os.path.join(data_dir, datasets.MNIST_FLOAT)
    if not _readable(datasets.read_grey, grey, fix):
        images = datasets.read_grey(os.path.join(data_dir, datasets.MNIST_IDX[0]), fix)
        rundir.atomic_write(grey, lambda f: np.save(f, images[:datasets.N_MNIST_TRAIN]))
        print('%s: written from %s.' % (datasets.MNIST_FLOAT, datasets.MNIST_IDX[0]))


def _readable(reader, path, fix):
    if not os.path.isfile(path):
        return False
    try:
        reader(path, fix)
    except datasets.DataError as e:
        print('%s is unusable, rewriting it (%s)' % (path, e))
        return False
    return True


def report_failures(failures, data_dir):
    lines = ['', 'Could not get %d file(s):' % len(failures)]
    for spec, reasons in failures:
        lines.append('  %s, tried:' % spec.name)
        lines.extend('    - %s' % reason for reason in reasons)
        lines.append('    Get it by hand from %s and put it at %s'
                     % (' or '.join(spec.urls), os.path.abspath(os.path.join(data_dir, spec.name))))
    lines.append('Then run this command again: it verifies the files and converts them. '
                 'An internal mirror works too: --mirror URL (see docs/data.md).')
    print('\n'.join(lines), file=sys.stderr)


if __name__ == '__main__':
    sys.exit(main())
