"""Sequential chunks of a vmapped function, one compiled program for every chunk."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["chunked_vmap"]


def chunked_vmap(f, args: tuple, chunk_size: int):
    """``vmap(f)(*args)`` over the arrays' leading axis, ``chunk_size`` elements at a time.

    The batch is padded to a multiple of the chunk size with copies of its last
    element (dropped from the result), so a single vmapped program serves every
    chunk — ``lax.map(..., batch_size=k)`` would compile a second one for the
    remainder. Each chunk runs as long as its own slowest element.
    """
    n = jax.tree.leaves(args)[0].shape[0]
    k = min(chunk_size, n)
    pad = -n % k

    def prepare(a):
        if pad:
            a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)])
        return a.reshape((-1, k) + a.shape[1:])

    out = lax.map(lambda a: jax.vmap(f)(*a), jax.tree.map(prepare, tuple(args)))
    return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:])[:n], out)
