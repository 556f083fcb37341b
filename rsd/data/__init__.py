"""Data sets of the paper: two points, XOR, context blobs and MNIST (IDX files or a bundled subset)."""

from ._mnist import (
    MNIST_DIR_ENV,
    MNIST_MEAN,
    MNIST_STD,
    MNISTSplit,
    balanced_indices,
    mnist,
    mnist_directory,
    mnist_split,
    read_idx,
    write_idx,
)
from ._synthetic import context_blobs, two_points, xor

__all__ = [
    "two_points",
    "xor",
    "context_blobs",
    "mnist",
    "mnist_split",
    "mnist_directory",
    "MNISTSplit",
    "balanced_indices",
    "read_idx",
    "write_idx",
    "MNIST_MEAN",
    "MNIST_STD",
    "MNIST_DIR_ENV",
]
