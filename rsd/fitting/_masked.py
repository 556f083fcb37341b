"""Rate fits of a batch in which some elements must not be fitted (their training diverged).

Masked elements are taken out *before* fitting, so they can never disturb the
others' fits; every slot still goes into :func:`rsd.fitting.fit_rates`, so the
compiled program depends on the batch size only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._rates import FitStatus, fit_rates

__all__ = ["NOT_FITTED", "MaskedRateFit", "fit_rates_masked"]

NOT_FITTED = FitStatus.NOT_FITTED
"""Status of an element that :func:`fit_rates_masked` left out (masked, non-finite
record or h0 ≤ 0): ``FitStatus.NOT_FITTED`` (−1), kept as a name of its own."""


class MaskedRateFit(NamedTuple):
    """Result of :func:`fit_rates_masked`: numpy arrays with the batch's leading size S.

    A NamedTuple (unpacks as ``eta_h, eta_y, loss, r2, status``). ``eta_h``,
    ``eta_y`` [S]: fitted rates per training step (NaN where not fitted); ``loss``
    [S]: the fit objective (inf where not fitted); ``r2`` [S, 3]; ``status`` [S]
    int32: a :class:`FitStatus` (``NOT_FITTED`` where left out).
    """

    eta_h: np.ndarray
    eta_y: np.ndarray
    loss: np.ndarray
    r2: np.ndarray
    status: np.ndarray


def fit_rates_masked(h, y, w, dx2, dy2, mask, *, ts=None, vector_field=None) -> MaskedRateFit:
    """:func:`fit_rates` of (η_h, η_y) per element of (h, y, w) [S, T], fitting only the
    elements where ``mask`` [S] is True (e.g. seeds whose training did not diverge).

    ``dx2`` and ``dy2`` are scalars or [S]; ``ts`` the recorded steps (default
    0 … T − 1); ``vector_field`` as in :func:`fit_rates` (default the theory's).
    Elements that are masked, hold a non-finite value or have h0 ≤ 0 get status
    :data:`NOT_FITTED` and NaN rates; each of their slots holds a copy of a fitted
    element's data and its results are discarded (a fit does not depend on its batch
    neighbours), so the compiled program depends on S only. Runs on the host (numpy
    in and out), not under jit.
    """
    h, y, w = (np.asarray(a) for a in (h, y, w))
    if h.ndim != 2:
        raise ValueError(f"h must have shape [S, T] (one trajectory per element); got {h.shape}.")
    s = h.shape[0]
    dx2 = np.broadcast_to(np.asarray(dx2, h.dtype), (s,))
    dy2 = np.broadcast_to(np.asarray(dy2, h.dtype), (s,))
    eta_h, eta_y = np.full(s, np.nan), np.full(s, np.nan)
    loss, r2 = np.full(s, np.inf), np.full((s, 3), np.nan)
    status = np.full(s, NOT_FITTED, np.int32)
    idx, fill = _fitted_slots(mask, h, y, w)
    if idx.size == 0:
        return MaskedRateFit(eta_h, eta_y, loss, r2, status)
    kwargs = {} if vector_field is None else {"vector_field": vector_field}
    if ts is not None:
        kwargs["ts"] = np.asarray(ts, h.dtype)
    fit = fit_rates(h[fill], y[fill], w[fill], dx2[fill], dy2[fill], **kwargs)
    eta_h[idx], eta_y[idx] = np.asarray(fit.eta_h)[idx], np.asarray(fit.eta_y)[idx]
    loss[idx], r2[idx] = np.asarray(fit.loss)[idx], np.asarray(fit.r2)[idx]
    status[idx] = np.asarray(fit.status)[idx]
    return MaskedRateFit(eta_h, eta_y, loss, r2, status)


def _fitted_slots(mask, *series):
    """(indices of the elements to fit, a gather index over all elements): an element is
    fitted when its mask is True, its series [S, T] are finite and its h0 (the first
    series) is positive; a left-out slot gathers the first fitted element."""
    good = np.asarray(mask, bool) & (series[0][:, 0] > 0)
    for a in series:
        good &= np.all(np.isfinite(a), axis=-1)
    idx = np.flatnonzero(good)
    fill = np.where(good, np.arange(good.size), idx[0] if idx.size else 0)
    return idx, fill
