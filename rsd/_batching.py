"""Batches in power-of-two buckets, and sequential chunks of a vmapped function.

Two rules serve both speed and determinism:

* a batch of n elements is padded to ``bucket(n)``, the next power of two (at
  least 2), so batch sizes in one bucket share one compiled program;
* every element is computed in a vmapped lane of a program of width ``k``, a power
  of two of at least 2. On XLA:CPU a width-1 program, or the remainder lanes of a
  width that is not a multiple of the vector width, run scalar code whose round-off
  differs from the vector lanes (measured: ~4 ulp in a solve, and a chaotic fit
  then ends elsewhere). With the width fixed this way, an element's result does not
  depend on its position in the batch, on the batch size or on the chunk size (it
  is bitwise the same on the CPUs tested; the promise is round-off level).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["bucket", "pad_rows", "chunk_width", "chunked_vmap"]

MIN_WIDTH = 2


def bucket(n: int, minimum: int = MIN_WIDTH) -> int:
    """The smallest power of two ≥ max(n, minimum)."""
    n = max(int(n), minimum)
    return 1 << (n - 1).bit_length()


def pad_rows(tree, n_target: int):
    """Pad every leaf's leading axis to ``n_target`` with copies of its last row."""
    def pad(a):
        extra = n_target - a.shape[0]
        if extra <= 0:
            return a
        return jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])

    return jax.tree.map(pad, tree)


def chunk_width(chunk_size: int, n: int) -> int:
    """The vmap width used for ``chunk_size`` over n elements: the largest power of
    two ≤ chunk_size, at least 2, at most ``bucket(n)``."""
    k = 1 << (max(int(chunk_size), 1).bit_length() - 1)
    return min(max(k, MIN_WIDTH), bucket(n))


def chunked_vmap(f, args: tuple, chunk_size: int):
    """``vmap(f)(*args)`` over the arrays' leading axis, ``chunk_width(chunk_size, n)``
    elements at a time.

    The batch is padded to a multiple of the width with copies of its last
    element (dropped from the result), so a single vmapped program serves every
    chunk — ``lax.map(..., batch_size=k)`` would compile a second one for the
    remainder. Each chunk runs as long as its own slowest element. The batch must
    not be empty.
    """
    n = jax.tree.leaves(args)[0].shape[0]
    if n == 0:
        raise ValueError("chunked_vmap needs at least one element.")
    k = chunk_width(chunk_size, n)
    total = -(-n // k) * k
    padded = pad_rows(tuple(args), total)
    out = lax.map(lambda a: jax.vmap(f)(*a),
                  jax.tree.map(lambda a: a.reshape((-1, k) + a.shape[1:]), padded))
    return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:])[:n], out)
