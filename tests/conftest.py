"""Shared test helpers: the project root on sys.path and a fresh graph per TensorFlow test."""
from __future__ import absolute_import, division, print_function

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def session_config():
    """CPU session config for tests: grappler off, since it costs seconds per graph and these
    graphs run only a few steps."""
    import tensorflow.compat.v1 as tf
    config = tf.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return config


@pytest.fixture
def graph():
    """A fresh default graph (TensorFlow in graph mode in both worlds)."""
    import utils  # noqa: F401  (switches TF 2 to graph mode)
    import tensorflow.compat.v1 as tf
    g = tf.Graph()
    with g.as_default():
        yield g
