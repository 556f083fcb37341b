"""Data sets of the paper: two points, XOR, context-dependent blobs and MNIST (IDX files or a bundled subset)."""

from ._mnist import MNIST_MEAN, MNIST_STD, mnist, read_idx, write_idx
from ._synthetic import context_blobs, two_points, xor

__all__ = [
    "two_points",
    "xor",
    "context_blobs",
    "mnist",
    "read_idx",
    "write_idx",
    "MNIST_MEAN",
    "MNIST_STD",
]
