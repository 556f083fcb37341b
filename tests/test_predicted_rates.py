"""rsd.fitting.predicted_rates: rates read off one gradient step (docs/predicted-rates.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rsd.fitting import (PredictedRates, fit_loss_rate, fit_rates, predicted_rates, secant_rates,
                         varying_rate_trajectory, weighted_rates)
from rsd.networks import make_network
from rsd.training import Setting, train

D_IN, WIDTH = 3, 8


def _centred_pair(dx2, dy2, *, rng, mean_target=0.0):
    """x1 = −x2 with |Δx|² = dx2; targets ȳ* ∓ ½·sqrt(dy2) (one output)."""
    v = rng.normal(size=D_IN)
    v *= np.sqrt(dx2) / np.linalg.norm(v)
    x = np.stack([-v / 2, v / 2])
    y = np.array([[mean_target - np.sqrt(dy2) / 2], [mean_target + np.sqrt(dy2) / 2]])
    return x, y


def _f64(params):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)


def _linear_net(out_dim=1):
    return make_network("mlp", activation="none", width=WIDTH, depth=1, gain=1.0, in_dim=D_IN, out_dim=out_dim)


def _aligned_layers(x, scale, rng):
    """Small two-layer linear weights whose decoder row lies along Δφ = W1ᵀΔx, balanced
    (|W2| = |Δφ|/|Δx|), zero biases: the 3-D reduction is then exact (DESIGN.md §1)."""
    dx = x[1] - x[0]
    w1 = scale * rng.normal(size=(D_IN, WIDTH)) / np.sqrt(D_IN)
    dphi = dx @ w1
    w2 = (dphi / np.linalg.norm(dx))[:, None]
    return [(w1, np.zeros(WIDTH)), (w2, np.zeros(1))]


@pytest.mark.usefixtures("x64")
def test_linear_network_predicted_equals_fitted():
    """Two-layer linear network, centred data, aligned small init: the network is the
    Euler discretisation (step 1) of the theory's flow with η_h = η_y = lr/2, so the fitted
    continuous-time rates differ from the predicted ones only at first order in the
    per-step rate. Tolerance: |fitted/predicted − 1| < 0.15·η (measured ≈ 0.09·η for both
    rates at η = 0.02 and 0.01), and halving lr halves the error (first order)."""
    rng = np.random.default_rng(0)
    dx2, dy2, steps = 1.0, 0.5, 3000
    x, y = _centred_pair(dx2, dy2, rng=rng)
    layers = _aligned_layers(x, 0.03, rng)
    net = _linear_net()
    params = _f64(net.from_layers([(jnp.asarray(a), jnp.asarray(b)) for a, b in layers]))
    zs, predicted, final = [], [], []
    for lr in (0.04, 0.02):
        rates = predicted_rates(net, params, x, y, layer=0, lr=lr)
        assert isinstance(rates, PredictedRates)
        predicted.append((float(rates.eta_h), float(rates.eta_y)))
        setting = Setting(architecture="mlp", activation="none", width=WIDTH, depth=1, gain=1.0, lr=lr,
                          steps=steps, in_dim=D_IN, out_dim=1, dx2=dx2, dy2=dy2)
        run = train(setting, x, y, seeds=[0], init_params=layers, layers=(0,), return_params=True)
        assert bool(run.ok[0])
        zs.append((run.h[0, :, 0], run.y[0], run.w[0]))
        last = jax.tree_util.tree_map(lambda a: a[0], run.params)
        after = predicted_rates(net, last, x, y, layer=0, lr=lr)
        final.append((float(after.eta_h), float(after.eta_y)))
    # The closed form of the derivation: η_h = η_y = lr/(2·out_dim), at init and after training.
    np.testing.assert_allclose(predicted, [[0.02, 0.02], [0.01, 0.01]], rtol=1e-12)
    np.testing.assert_allclose(final, predicted, rtol=1e-9)
    h, yy, w = (jnp.stack(a) for a in zip(*zs))
    # Both runs reach the rich end state, so both rates are determined by the data.
    np.testing.assert_allclose(h[:, -1], np.sqrt(dx2 * dy2), rtol=2e-2)
    fit = fit_rates(h, yy, w, dx2, dy2)
    assert np.all(np.asarray(fit.status) == 0)
    fitted = np.stack([fit.eta_h, fit.eta_y], -1)
    rel = fitted / np.asarray(predicted) - 1
    eta = np.asarray(predicted)
    assert np.all(np.abs(rel) < 0.15 * eta), rel
    ratio = rel[0] / rel[1]
    assert np.all((ratio > 1.5) & (ratio < 2.6)), ratio


@pytest.mark.usefixtures("x64")
def test_linear_network_mean_rate_matches_loss_fit():
    """Off-centre targets: the mean output decays as ȳ − ȳ* ← (1 − η_ȳ)(ȳ − ȳ*) per step,
    i.e. at continuous rate −log(1 − η_ȳ); the loss-rate fit over 300 steps (e falls by
    e⁻¹²) must give that to 1% (measured 0.3%: η_ȳ = lr·(1 + |W2|² + |b1|²) drifts as the
    small weights grow; without the discrete correction the gap would be 1.3%)."""
    rng = np.random.default_rng(0)
    dx2, dy2, lr, steps = 1.0, 0.5, 0.02, 300
    x, y = _centred_pair(dx2, dy2, rng=rng, mean_target=0.6 + np.sqrt(dy2) / 2)
    net = make_network("mlp", activation="none", width=WIDTH, depth=1, gain=0.1, in_dim=D_IN, out_dim=1)
    params = _f64(net.init(jax.random.key(3)))
    rates = predicted_rates(net, params, x, y, layer=0, lr=lr)
    w2 = np.asarray(params[1]["kernel"])[:, 0]
    np.testing.assert_allclose(float(rates.eta_mean), lr * (1 + w2 @ w2), rtol=1e-12)
    setting = Setting(architecture="mlp", activation="none", width=WIDTH, depth=1, gain=0.1, lr=lr,
                      steps=steps, in_dim=D_IN, out_dim=1, dx2=dx2, dy2=dy2)
    run = train(setting, x, y, seeds=[0], init_params=net.to_layers(params), layers=(0,))
    zs = jnp.stack([run.h[0, :, 0], run.y[0], run.w[0]], -1)
    fit = fit_loss_rate(run.loss[0], zs, dy2, run.e0[0])
    assert int(fit.status) == 0
    np.testing.assert_allclose(float(fit.eta_mean), -np.log1p(-float(rates.eta_mean)), rtol=1e-2)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("scale", [0.1, 1.0, 3.0])
def test_linear_closed_form_and_data_scaling(scale):
    """Two-layer linear network, centred inputs, zero first-layer bias, m outputs, any
    other weights: η_h = η_y = lr/(2m) and η_ȳ = lr/m·eᵀ(I + W2ᵀW2)e/|e|² (e = ȳ − ȳ*).
    The law under x → c·x: no rate changes (the encoder/decoder kernels scale as c², which
    dx2 and h carry in the theory's equations)."""
    rng = np.random.default_rng(1)
    m, lr = 2, 0.3
    net = _linear_net(out_dim=m)
    v = rng.normal(size=D_IN)
    x = scale * np.stack([-v, v])
    y = rng.normal(size=(2, m))
    params = _f64(net.init(jax.random.key(5)))
    params = (dict(params[0], bias=jnp.zeros(WIDTH)), dict(params[1], bias=jnp.asarray(rng.normal(size=m))))
    rates = predicted_rates(net, params, x, y, layer=0, lr=lr)
    w2 = np.asarray(params[1]["kernel"])
    e = np.asarray(params[1]["bias"]) - y.mean(0)  # ȳ = b2 when x̄ = 0 and b1 = 0
    expected_mean = lr / m * (e @ (np.eye(m) + w2.T @ w2) @ e) / (e @ e)
    np.testing.assert_allclose([float(rates.eta_h), float(rates.eta_y), float(rates.eta_mean)],
                               [lr / (2 * m), lr / (2 * m), expected_mean], rtol=1e-10)


def _nonlinear_case(architecture="mlp", activation="tanh", width=WIDTH, depth=2):
    net = make_network(architecture, activation=activation, width=width, depth=depth, gain=1.0,
                       in_dim=D_IN, out_dim=2)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, D_IN))
    y = rng.normal(size=(4, 2))
    return net, x, y


@pytest.mark.usefixtures("x64")
def test_rates_scale_with_learning_rate():
    net, x, y = _nonlinear_case()
    params = _f64(net.init(jax.random.key(0)))
    base = predicted_rates(net, params, x, y, layer=1, lr=0.01, pair=(1, 3))
    scaled = predicted_rates(net, params, x, y, layer=1, lr=0.07, pair=(1, 3))
    for a, b in zip(base, scaled):
        assert np.isfinite(float(a))
        np.testing.assert_allclose(float(b), 7.0 * float(a), rtol=1e-12)


def test_vmap_over_seeds_equals_loop():
    net, x, y = _nonlinear_case()
    stacked = jax.vmap(net.init)(jax.random.split(jax.random.key(0), 3))
    batched = jax.vmap(lambda p: predicted_rates(net, p, x, y, layer=0, lr=0.05))(stacked)
    for s in range(3):
        one = predicted_rates(net, jax.tree_util.tree_map(lambda a: a[s], stacked), x, y, layer=0, lr=0.05)
        for a, b in zip(one, batched):
            np.testing.assert_allclose(np.asarray(b)[s], np.asarray(a), rtol=1e-5)
    jitted = jax.jit(lambda p: predicted_rates(net, p, x, y, layer=0, lr=0.05))(
        jax.tree_util.tree_map(lambda a: a[0], stacked))
    for a, b in zip(jitted, batched):
        np.testing.assert_allclose(np.asarray(b)[0], np.asarray(a), rtol=1e-5)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("architecture,layer,width", [("mlp", 1, WIDTH), ("resnet", 2, WIDTH), ("cnn", 1, 31)])
def test_jvp_route_matches_a_real_restricted_step(architecture, layer, width):
    """The first-order change of Δφ (encoder part of the step only), of Δŷ (decoder part
    only) and of ȳ (whole step), from actually applying ε·step in float64 (central
    difference, error O(ε²) ≈ 1e-12), inserted in the derivation's formulas."""
    net, x, y = _nonlinear_case(architecture, depth={"mlp": 2, "resnet": 3, "cnn": 1}[architecture], width=width)
    params = _f64(net.init(jax.random.key(4)))
    i, j = 0, 2
    grads = jax.grad(lambda p: 0.5 * jnp.mean((net.apply(p, x)[0] - y) ** 2))(params)
    step = jax.tree_util.tree_map(lambda g: -g, grads)  # lr = 1
    zero = lambda t: jax.tree_util.tree_map(jnp.zeros_like, t)  # noqa: E731
    enc = tuple(s if k <= layer else zero(s) for k, s in enumerate(step))
    dec = tuple(zero(s) if k <= layer else s for k, s in enumerate(step))

    def observe(p):
        out, hid = net.apply(p, x)
        return (np.asarray(hid[layer][j] - hid[layer][i]), np.asarray(out[j] - out[i]),
                np.asarray(out[i] + out[j]) / 2)

    def derivative(direction, which, eps=1e-5):
        plus = jax.tree_util.tree_map(lambda p, d: p + eps * d, params, direction)
        minus = jax.tree_util.tree_map(lambda p, d: p - eps * d, params, direction)
        return (observe(plus)[which] - observe(minus)[which]) / (2 * eps)

    dphi, dyhat, mean = observe(params)
    x, y = np.asarray(x), np.asarray(y)
    dx2 = np.sum((x[j] - x[i]) ** 2)
    r = dyhat - (y[j] - y[i])
    e = mean - (y[i] + y[j]) / 2
    h, w = dphi @ dphi, dyhat @ r
    expected = [-2 * derivative(enc, 0) @ dphi / (dx2 * w),
                -2 * derivative(dec, 1) @ r / (h * (r @ r)),
                -derivative(step, 2) @ e / (e @ e)]
    rates = predicted_rates(net, params, x, y, layer=layer, lr=1.0, pair=(i, j))
    np.testing.assert_allclose([float(a) for a in rates], expected, rtol=1e-7)
    # The same step passed explicitly as `update`.
    via_update = predicted_rates(net, params, x, y, layer=layer, update=step, pair=(i, j))
    np.testing.assert_allclose([float(a) for a in via_update], expected, rtol=1e-7)


def test_undefined_rates_are_nan_not_errors():
    """Centred targets with zero biases: ȳ = ȳ* exactly, so η_ȳ is undefined (NaN), inside jit too."""
    net = _linear_net()
    x = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    y = np.array([[-0.5], [0.5]])
    params = net.init(jax.random.key(0))
    rates = jax.jit(lambda p: predicted_rates(net, p, x, y, layer=0, lr=0.1))(params)
    assert np.isnan(float(rates.eta_mean))
    assert np.isfinite(float(rates.eta_h)) and np.isfinite(float(rates.eta_y))
    # Identical inputs: h = 0 and dx2 = 0, so η_h and η_y are undefined.
    same = predicted_rates(net, params, np.zeros((2, 3)), y, layer=0, lr=0.1)
    assert np.isnan(float(same.eta_h)) and np.isnan(float(same.eta_y))


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(network="mlp"), "network"),
        (dict(x=np.zeros((2, 4))), "x must"),
        (dict(x=np.zeros((1, 3)), y=np.zeros((1, 1))), "n >= 2"),
        (dict(y=np.zeros((2, 2))), "y must"),
        (dict(x=np.array([[np.nan, 0, 0], [1, 0, 0]])), "x"),
        (dict(layer=1), "layer"),
        (dict(layer=-1), "layer"),
        (dict(pair=(0, 0)), "pair"),
        (dict(pair=(0, 2)), "pair"),
        (dict(lr=0.0), "lr"),
        (dict(lr=float("inf")), "lr"),
        (dict(lr=np.ones(2)), "lr"),
        (dict(lr=None), "exactly one"),
        (dict(update="params"), "exactly one"),
        (dict(loss="l1"), "loss"),
        (dict(params="bad"), "params"),
    ],
)
def test_argument_validation(change, match):
    net = _linear_net()
    args = dict(network=net, params=net.init(jax.random.key(0)), x=np.array([[1.0, 0, 0], [-1.0, 0, 0]]),
                y=np.array([[0.0], [1.0]]), layer=0, lr=0.1)
    args.update(change)
    if isinstance(args.get("update"), str):
        args["update"] = args["params"]
    if args["params"] == "bad":
        args["params"] = ({"kernel": np.zeros((3, 5)), "bias": np.zeros(5)},) * 2
    network, params, x, y = (args.pop(k) for k in ("network", "params", "x", "y"))
    with pytest.raises(ValueError, match=match):
        predicted_rates(network, params, x, y, **args)


def test_update_must_match_params():
    net = _linear_net()
    params = net.init(jax.random.key(0))
    x, y = np.array([[1.0, 0, 0], [-1.0, 0, 0]]), np.array([[0.0], [1.0]])
    with pytest.raises(ValueError, match="update"):
        predicted_rates(net, params, x, y, layer=0, update=params[:1])


# ---------------------------------------------------------------------------
# Secant rates (rsd.fitting.secant_rates) and the fit-weighted average
# (rsd.fitting.weighted_rates), docs/predicted-rates.md.


@pytest.mark.usefixtures("x64")
def test_secant_rates_against_a_hand_written_sgd_loop():
    """k SGD steps written out here (jax.grad of the loss, numpy for the rest); the rates are
    the theory's integrated field (trapezoid) matched to the changes of h, y and |e|²."""
    net, x, y = _nonlinear_case()
    params = _f64(net.init(jax.random.key(7)))
    lr, k, layer, (i, j) = 0.05, 5, 1, (1, 3)
    grad = jax.jit(jax.grad(lambda p: 0.5 * jnp.mean((net.apply(p, x)[0] - y) ** 2)))
    z = []
    p = params
    for step in range(k + 1):
        out, hiddens = net.apply(p, x)
        out, hid = np.asarray(out), np.asarray(hiddens[layer])
        dphi, dyhat = hid[j] - hid[i], out[j] - out[i]
        e = (out[i] + out[j]) / 2 - (y[i] + y[j]) / 2
        z.append([dphi @ dphi, dyhat @ dyhat, dyhat @ (dyhat - (y[j] - y[i])), e @ e])
        if step < k:
            p = jax.tree_util.tree_map(lambda a, g: a - lr * g, p, grad(p))
    h, yy, w, e2 = np.array(z).T
    dx2 = np.sum((x[j] - x[i]) ** 2)
    trap = lambda f: np.sum((f[1:] + f[:-1]) / 2)  # noqa: E731
    eta_h = (h[-1] - h[0]) / trap(-dx2 * w)
    eta_y = (yy[-1] - yy[0] - eta_h * trap(-dx2 * w * yy / h)) / trap(-w * h)
    eta_mean = -(e2[-1] - e2[0]) / (2 * trap(e2))
    rates = secant_rates(net, params, x, y, layer=layer, lr=lr, steps=k, pair=(i, j))
    np.testing.assert_allclose([float(a) for a in rates], [eta_h, eta_y, eta_mean], rtol=1e-9)


@pytest.mark.usefixtures("x64")
def test_secant_rates_tend_to_the_first_order_ones():
    """As lr → 0 the secant over a few steps is the first-order rate: on the two-layer linear
    network (centred data) lr/2 exactly, with an error linear in lr (the step's O(lr²) part)."""
    rng = np.random.default_rng(0)
    x, y = _centred_pair(1.0, 0.5, rng=rng)
    net = _linear_net()
    params = _f64(net.from_layers([(jnp.asarray(a), jnp.asarray(b)) for a, b in _aligned_layers(x, 0.3, rng)]))
    errors = []
    for lr in (0.02, 0.01):
        rates = secant_rates(net, params, x, y, layer=0, lr=lr, steps=4)
        errors.append(np.array([float(rates.eta_h), float(rates.eta_y)]) / (lr / 2) - 1)
    errors = np.abs(errors)
    assert np.all(errors[0] < 0.1) and np.all(errors[0] > 0), errors
    np.testing.assert_allclose(errors[0] / errors[1], 2.0, rtol=0.1)


def test_secant_rates_checks_its_arguments():
    net = _linear_net()
    x, y = np.array([[1.0, 0, 0], [-1.0, 0, 0]]), np.array([[0.0], [1.0]])
    params = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match="steps"):
        secant_rates(net, params, x, y, layer=0, lr=0.1, steps=0)
    with pytest.raises(ValueError, match="lr"):
        secant_rates(net, params, x, y, layer=0, lr=None)
    with pytest.raises(ValueError, match="layer"):
        secant_rates(net, params, x, y, layer=3, lr=0.1)


def _theory_rhs(t, z, knots, rates, dx2, dy2):
    """DESIGN.md §1's field with rates linear in t between knots, written out with numpy."""
    eta_h, eta_y = (np.interp(t, knots, rates[:, k]) for k in range(2))
    h, y, w = z
    return [-eta_h * dx2 * w, -w * (eta_y * h + eta_h * dx2 * y / h),
            -0.5 * eta_y * (3 * w - y + dy2) * h - 0.5 * eta_h * dx2 * (y + w) * w / h]


@pytest.mark.usefixtures("x64")
def test_weighted_rates_reproduce_the_constant_rate_fit():
    """Theory trajectories with known time-varying rates (scipy), fitted with constant rates by
    scipy's least squares over every step: the weighted average is that fit to second order in
    the rates' spread (the error falls ~4× when the spread halves); constant knots give
    themselves back; the varying-rate trajectory matches scipy's."""
    from scipy.integrate import solve_ivp
    from scipy.optimize import least_squares

    dx2, dy2, z0 = 1.0, 0.5, np.array([0.02, 1e-4, -7e-3])
    ts = np.arange(400.0)
    knots = np.array([50.0, 150.0, 250.0, 350.0])
    base = np.array([0.006, 0.04])
    shape = np.array([[1.0, -1.0], [-0.5, 0.6], [0.8, -0.2], [-1.0, 1.0]])
    solve = lambda knots_, rates_: solve_ivp(  # noqa: E731
        _theory_rhs, (0, ts[-1]), z0, t_eval=ts, method="DOP853", rtol=1e-11, atol=1e-14,
        args=(knots_, rates_, dx2, dy2)).y.T
    errors = []
    for spread in (0.2, 0.1):
        rates = base * (1 + spread * shape)
        data = solve(knots, rates)
        np.testing.assert_allclose(varying_rate_trajectory(z0, ts, knots, rates, dx2, dy2, rtol=1e-9,
                                                           atol=1e-12)[0], data, rtol=1e-6)
        fit = least_squares(lambda e: (solve(knots[:2], np.tile(e, (2, 1))) - data).ravel(), base,
                            x_scale=base, xtol=1e-12, ftol=1e-12)
        weighted = weighted_rates(z0, ts, knots, rates, dx2, dy2)
        assert bool(weighted.converged)
        np.testing.assert_allclose(np.sum(np.asarray(weighted.weights), 0), np.eye(2), atol=1e-9)
        errors.append(np.array([float(weighted.eta_h), float(weighted.eta_y)]) / fit.x - 1)
    errors = np.abs(errors)
    assert np.all(errors[0] < 0.02), errors
    assert np.all(errors[0] / errors[1] > 2.5), errors
    # A fit over the first 300 steps only: time_weights leave the rest out of the sum.
    short = lambda e: (solve(knots[:2], np.tile(e, (2, 1))) - data)[:300].ravel()  # noqa: E731
    fit = least_squares(short, base, x_scale=base, xtol=1e-12, ftol=1e-12)
    partial = weighted_rates(z0, ts, knots, rates, dx2, dy2, time_weights=(ts < 300).astype(float))
    np.testing.assert_allclose([float(partial.eta_h), float(partial.eta_y)], fit.x, rtol=0.02)
    assert abs(float(partial.eta_h) / fit.x[0] - 1) < abs(float(weighted.eta_h) / fit.x[0] - 1)
    same = weighted_rates(z0, ts, knots, np.tile(base, (4, 1)), dx2, dy2)
    np.testing.assert_allclose([float(same.eta_h), float(same.eta_y)], base, rtol=1e-10)


@pytest.mark.parametrize("change, match", [
    (dict(z0=np.zeros(2)), "z0"), (dict(knots=np.array([1.0, 0.0])), "knots"),
    (dict(rates=np.ones((3, 2))), "rates"), (dict(ts=np.array([0.0])), "ts"), (dict(iterations=0), "iterations"),
    (dict(time_weights=np.ones(9)), "time_weights"), (dict(time_weights=-np.ones(10)), "time_weights"),
])
def test_weighted_rates_checks_its_arguments(change, match):
    args = dict(z0=np.array([0.1, 0.01, -0.01]), ts=np.arange(10.0), knots=np.array([0.0, 9.0]),
                rates=np.full((2, 2), 0.01), dx2=1.0, dy2=0.5)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        weighted_rates(**args)
