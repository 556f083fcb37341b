"""The ``vector_field=`` option of solve and the fits, and the paper's four alternatives."""

import re

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from rsd import theory
from rsd.fitting import fit_layers, fit_objective, fit_rates, initial_rates

from .helpers import Compiles

TS = np.linspace(0.0, 1000.0, 41)
Z0 = np.array([[1e-3, 1e-4, 1e-4 - np.sqrt(0.5e-4)], [2.0, 0.3, 0.3 - np.sqrt(0.15)],
               [0.1, 0.01, 0.0], [0.5, 0.05, 0.05 - np.sqrt(0.025)]])
ETA_H = np.array([8e-3, 3e-3, 1e-2, 5e-3])
ETA_Y = np.array([12e-3, 2e-3, 2e-2, 4e-3])
DX2 = np.array([1.0, 0.7, 1.3, 1.0])
DY2 = np.array([0.5, 0.5, 0.8, 0.5])
TIGHT = dict(rtol=1e-11, atol=1e-14)


def _numpy_field(kind):
    """DESIGN.md §1 and §6 written out again in numpy, independently of rsd."""
    def f(t, z, eta_h, eta_y, dx2, dy2):
        h, y, w = z
        dh = -eta_h * dx2 * w
        dy_y, dy_h = -w * eta_y * h, -w * eta_h * dx2 * y / h
        dw_y, dw_h = -0.5 * eta_y * (3 * w - y + dy2) * h, -0.5 * eta_h * dx2 * (y + w) * w / h
        return {
            "true": [dh, dy_y + dy_h, dw_y + dw_h],
            "dy_doubled": [dh, 2 * (dy_y + dy_h), dw_y + dw_h],
            "dh_doubled": [2 * dh, dy_y + dy_h, dw_y + dw_h],
            "dw_eta_h_flipped": [dh, dy_y + dy_h, dw_y - dw_h],
            "dy_eta_h_dropped": [dh, dy_y, dw_y + dw_h],
        }[kind]
    return f


def _scipy(kind, z0, p, ts):
    f = _numpy_field(kind)
    sol = solve_ivp(lambda t, z: f(t, z, *p), (ts[0], ts[-1]), z0, method="DOP853", t_eval=ts,
                    rtol=1e-13, atol=1e-15)
    assert sol.success
    return sol.y.T


def test_the_four_alternatives_are_public_and_documented():
    fields = theory.perturbed_vector_fields
    assert list(fields) == ["dy_doubled", "dh_doubled", "dw_eta_h_flipped", "dy_eta_h_dropped"]
    assert fields["dy_doubled"] is theory.vector_field_dy_doubled
    # Each alternative is documented by its own attribute docstring (what the API
    # reference renders), naming its number and all three equations.
    import griffe

    module = griffe.load("rsd.theory")
    for k, (name, f) in enumerate(fields.items(), start=1):
        assert isinstance(f, theory.WeightedField)
        doc = module[f"vector_field_{name}"].docstring
        assert doc is not None and doc.value.startswith(f"Alternative ({k})"), name
        assert all(term in doc.value for term in ("dh/dt", "dy/dt", "dw/dt")), name


def test_weighted_field_is_the_weighted_sum_of_the_five_terms(x64):
    rng = np.random.default_rng(1)
    z = np.abs(rng.normal(size=(3,))) + 0.1
    p = (0.3, 0.7, 1.2, 0.4)
    dh, _, _ = _numpy_field("true")(0.0, z, *p)
    h, y, w = z
    dy_y, dy_h = -w * p[1] * h, -w * p[0] * p[2] * y / h
    dw_y, dw_h = -0.5 * p[1] * (3 * w - y + p[3]) * h, -0.5 * p[0] * p[2] * (y + w) * w / h
    c = (0.5, -1.5, 3.0, 0.25, 2.0)
    got = np.asarray(theory.WeightedField(*c)(0.0, z, p))
    np.testing.assert_allclose(got, [c[0] * dh, c[1] * dy_y + c[2] * dy_h, c[3] * dw_y + c[4] * dw_h],
                               rtol=1e-14)
    np.testing.assert_allclose(np.asarray(theory.WeightedField()(0.0, z, p)), _numpy_field("true")(0.0, z, *p),
                               rtol=1e-14)
    for bad in (float("nan"), "2", True):
        with pytest.raises(ValueError, match="WeightedField's weights must be finite real numbers"):
            theory.WeightedField(dh=bad)


def test_the_four_alternatives_share_one_compiled_solve_and_fit(x64):
    """The weights are traced, not constants of the program: after the first
    alternative, the others compile nothing, in solve and in fit_rates."""
    h, y, w = _true_data()
    first, *others = theory.perturbed_vector_fields.values()
    theory.solve(Z0, TS, ETA_H, ETA_Y, DX2, DY2, vector_field=first, **TIGHT).zs.block_until_ready()
    fit_rates(h, y, w, 1.0, 0.5, vector_field=first, **FIT).loss.block_until_ready()
    for field in others:
        with Compiles() as c:
            theory.solve(Z0, TS, ETA_H, ETA_Y, DX2, DY2, vector_field=field, **TIGHT).zs.block_until_ready()
            fit_rates(h, y, w, 1.0, 0.5, vector_field=field, **FIT).loss.block_until_ready()
        assert c.names == []


@pytest.mark.parametrize("kind", ["dy_doubled", "dh_doubled", "dw_eta_h_flipped", "dy_eta_h_dropped"])
def test_field_values_match_numpy(x64, kind):
    rng = np.random.default_rng(0)
    z = np.abs(rng.normal(size=(3,))) + 0.1
    p = (0.3, 0.7, 1.2, 0.4)
    got = np.asarray(theory.perturbed_vector_fields[kind](0.0, z, p))
    np.testing.assert_allclose(got, _numpy_field(kind)(0.0, z, *p), rtol=1e-14)


@pytest.mark.parametrize("kind", ["dy_doubled", "dh_doubled", "dw_eta_h_flipped", "dy_eta_h_dropped"])
def test_solve_with_a_perturbed_field_matches_scipy(x64, kind):
    sol = theory.solve(Z0, TS, ETA_H, ETA_Y, DX2, DY2, vector_field=theory.perturbed_vector_fields[kind],
                       **TIGHT)
    np.testing.assert_array_equal(sol.status, theory.Status.OK)
    for i in range(len(Z0)):
        ref = _scipy(kind, Z0[i], (ETA_H[i], ETA_Y[i], DX2[i], DY2[i]), TS)
        err = np.abs(np.asarray(sol.zs[i]) - ref).max(0) / np.abs(ref).max(0)
        assert err.max() < 1e-9, (i, err)
    # and differs from the true theory (the option is not ignored).
    true = theory.solve(Z0, TS, ETA_H, ETA_Y, DX2, DY2, **TIGHT)
    assert np.max(np.abs(np.asarray(true.zs) - np.asarray(sol.zs))) > 1e-3


def _wrapped_field(t, z, args):
    """A user's own field: a new function (so a new program) with the theory's arithmetic.
    Shared by the two tests below, which both need one such compiled solve."""
    return theory.vector_field(t, z, args)


def test_default_field_is_unchanged(x64):
    # The default and the theory's field passed explicitly run the same program;
    # a wrapper of it is a new program doing the same arithmetic: bitwise equal too.
    default = theory.solve(Z0, TS, ETA_H, ETA_Y, DX2, DY2)
    explicit = theory.solve(Z0, TS, ETA_H, ETA_Y, DX2, DY2, vector_field=theory.vector_field)
    wrapped = theory.solve(Z0, TS, ETA_H, ETA_Y, DX2, DY2, vector_field=_wrapped_field)
    for other in (explicit, wrapped):
        np.testing.assert_array_equal(np.asarray(default.zs), np.asarray(other.zs))
        np.testing.assert_array_equal(np.asarray(default.status), np.asarray(other.status))
    ref = _scipy("true", Z0[0], (ETA_H[0], ETA_Y[0], DX2[0], DY2[0]), TS)
    assert np.max(np.abs(np.asarray(default.zs[0]) - ref)) < 1e-5


def test_same_field_twice_does_not_recompile_a_new_one_does(x64):
    theory.solve(Z0, TS, ETA_H, ETA_Y, DX2, DY2, vector_field=_wrapped_field).zs.block_until_ready()
    with Compiles() as c:
        theory.solve(Z0, TS, 2 * ETA_H, ETA_Y, DX2, DY2, vector_field=_wrapped_field).zs.block_until_ready()
    assert c.names == []
    other = lambda t, z, args: theory.vector_field(t, z, args)
    with Compiles() as c:
        theory.solve(Z0, TS, ETA_H, ETA_Y, DX2, DY2, vector_field=other).zs.block_until_ready()
    assert c.names != []


# Trajectories of the TRUE theory from scipy: one rich, one intermediate.
FIT_TS = np.linspace(0.0, 1500.0, 80)
FIT_Z0 = np.array([[1e-3, 1e-4, 1e-4 - np.sqrt(0.5e-4)], [0.5, 0.05, 0.05 - np.sqrt(0.025)]])
FIT_RATES = np.array([[8e-3, 12e-3], [5e-3, 4e-3]])
FIT = dict(ts=FIT_TS, num_fit_times=24)


def _true_data():
    zs = np.stack([_scipy("true", FIT_Z0[i], (*FIT_RATES[i], 1.0, 0.5), FIT_TS) for i in range(2)])
    return zs[..., 0], zs[..., 1], zs[..., 2]


def test_true_field_fits_best_among_the_alternatives(x64):
    h, y, w = _true_data()
    true = fit_rates(h, y, w, 1.0, 0.5, **FIT)
    np.testing.assert_array_equal(true.status, 0)
    np.testing.assert_allclose(true.eta_h, FIT_RATES[:, 0], rtol=1e-4)
    np.testing.assert_allclose(true.eta_y, FIT_RATES[:, 1], rtol=1e-4)
    for name, field in theory.perturbed_vector_fields.items():
        alt = fit_rates(h, y, w, 1.0, 0.5, vector_field=field, **FIT)
        loss = np.where(np.isfinite(alt.loss), alt.loss, np.inf)
        assert np.all(loss > 1e3 * np.asarray(true.loss)), (name, loss, true.loss)
        if name == "dh_doubled":
            # The field is the true one with η_h doubled on dh only: not a reparametrisation.
            assert np.all(loss > 1e-6)


def test_fit_with_same_field_does_not_recompile(x64):
    h, y, w = _true_data()
    field = theory.vector_field_dy_eta_h_dropped
    fit_rates(h, y, w, 1.0, 0.5, vector_field=field, **FIT).loss.block_until_ready()
    with Compiles() as c:
        fit_rates(1.1 * h, y, w, 1.0, 0.5, vector_field=field, **FIT).loss.block_until_ready()
    assert c.names == []


def test_fit_objective_and_fit_layers_use_the_field(x64):
    h, y, w = _true_data()
    theta = np.log(FIT_RATES[0])
    true = float(fit_objective(theta, h[0], y[0], w[0], 1.0, 0.5, ts=FIT_TS))
    alt = float(fit_objective(theta, h[0], y[0], w[0], 1.0, 0.5, ts=FIT_TS,
                              vector_field=theory.vector_field_dy_doubled))
    # Independent loss of the alternative at the true rates, from scipy.
    ref = _scipy("dy_doubled", FIT_Z0[0], (*FIT_RATES[0], 1.0, 0.5), FIT_TS)
    expected = np.sum((ref - np.stack([h[0], y[0], w[0]], -1)) ** 2)
    assert true < 1e-10
    np.testing.assert_allclose(alt, expected, rtol=1e-5)
    layers = fit_layers(h.T[None], y[:1], w[:1], 1.0, 0.5, vector_field=theory.vector_field_dy_doubled,
                        **FIT)
    assert layers.loss.shape == (1, 2)
    assert np.all(np.asarray(layers.loss) > 1e3 * true)


def test_initial_estimate_for_custom_fields(x64):
    h, y, w = _true_data()
    # A wrapper of the theory's field is linear in the rates: the generic features
    # give the same least-squares estimate as the written-out ones.
    default = np.asarray(initial_rates(h, y, w, 1.0, 0.5, ts=FIT_TS))
    generic = np.asarray(initial_rates(h, y, w, 1.0, 0.5, ts=FIT_TS,
                                       vector_field=lambda t, z, a: theory.vector_field(t, z, a)))
    np.testing.assert_allclose(generic, default, rtol=1e-8)
    # A field not linear in the rates starts at 1/(time span).
    squared = lambda t, z, a: theory.vector_field(t, z, (a[0] ** 2, a[1], a[2], a[3]))
    got = np.asarray(initial_rates(h, y, w, 1.0, 0.5, ts=FIT_TS, vector_field=squared))
    np.testing.assert_allclose(got, 1.0 / FIT_TS[-1], rtol=1e-12)


@pytest.mark.parametrize("field, words", [
    ("tsit5", "vector_field must be a function"),
    (lambda t, z: z, "vector_field must accept (t, z [3]"),
    (lambda t, z, a: z[:2], "vector_field must return dz/dt of shape [3]"),
])
def test_bad_vector_field_raises(field, words):
    h, y, w = _true_data()
    with pytest.raises(ValueError, match=re.escape(words)):
        theory.solve(Z0, TS, ETA_H, ETA_Y, DX2, DY2, vector_field=field)
    with pytest.raises(ValueError, match=re.escape(words)):
        fit_rates(h, y, w, 1.0, 0.5, vector_field=field, **FIT)
