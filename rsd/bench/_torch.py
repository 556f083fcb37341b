"""The PyTorch baseline of the training benchmark: many seeds batched the way a PyTorch
user would batch them, not one seed after another.

The network is the paper's two-point MLP (Xavier-normal weights with gain,
zero biases, an activation after every hidden layer, PyTorch's own derivative
convention at 0), trained full batch on the two points by plain SGD on the loss
½·mean((ŷ − y*)²) of each seed. The S seeds' weights are stacked into tensors
[S, fan_in, fan_out] (rsd's [in, out] layout) and one step is, per step:

* ``"bmm"``: forward by ``torch.baddbmm`` over the seed axis, ``loss.backward()``
  on the sum of the seeds' losses (their gradients do not mix), and the update
  ``W ← W − lr·∂L/∂W`` in place under ``torch.no_grad``;
* ``"vmap"``: ``torch.func.vmap(torch.func.grad_and_value(...))`` of one seed's
  loss through ``torch.func.functional_call`` of an ``nn.Module`` (the model
  ensembling recipe of the torch.func docs), then the same in-place update.

Both record, before each update and from the same forward pass (full batch, no
dropout, so train mode is eval mode), rsd's per-step records: h = ||φ(x2) − φ(x1)||²
at the recorded hidden layers, y = ||ŷ2 − ŷ1||², w = Δŷ·(Δŷ − Δy*) and the loss.

PyTorch is imported lazily; it is a benchmark tool, never an rsd dependency.
"""

from __future__ import annotations

import time

import numpy as np

from .._validation import check_choice, check_int_range, check_real

__all__ = ["torch_train_rate", "torch_train_records", "VARIANTS"]

VARIANTS = ("bmm", "vmap")
"""The two batched formulations measured; :func:`torch_train_rate` keeps the faster."""

_ACTIVATIONS = ("none", "linear", "relu", "leaky_relu", "tanh", "elu", "silu")


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError("the PyTorch baseline needs PyTorch: install torch==2.13.0 for the "
                          f"PyTorch baseline ({e}).") from None
    return torch


def _activation(torch, name):
    f = torch.nn.functional
    return {"none": lambda a: a, "linear": lambda a: a, "relu": f.relu, "leaky_relu": f.leaky_relu,
            "tanh": torch.tanh, "elu": f.elu, "silu": f.silu}[name]


def _two_points(dx2, dy2, in_dim, out_dim):
    """x [2, in_dim], y* [2, out_dim] as ``rsd.data.two_points`` places them, in float64 (rounded once to float32 later)."""
    x = np.array([[-1.0] * in_dim, [-1.0 + np.sqrt(dx2)] * in_dim]) / np.sqrt(in_dim)
    y = np.array([[0.6] * out_dim, [0.6 + np.sqrt(dy2)] * out_dim]) / np.sqrt(out_dim)
    return x, y


def _xavier_init(width, depth, num_seeds, gain, rng):
    """(W [S, in, out], b [S, out]) per layer: W ~ N(0, gain·sqrt(2/(fan_in+fan_out))), b = 0."""
    dims = [1] + [width] * depth + [1]
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        std = gain * np.sqrt(2.0 / (a + b))
        layers.append((rng.standard_normal((num_seeds, a, b)).astype(np.float32) * np.float32(std),
                       np.zeros((num_seeds, b), np.float32)))
    return layers


def _check_layers(init_layers):
    """Host checks of the stacked initial weights; returns (S, hidden dims)."""
    if not isinstance(init_layers, (list, tuple)) or len(init_layers) < 2:
        raise ValueError("init_layers must be a list of at least two (W [S, in, out], b [S, out]) "
                         f"pairs; got {type(init_layers).__name__} of length "
                         f"{len(init_layers) if hasattr(init_layers, '__len__') else 'n/a'}.")
    num_seeds, fan_in = None, None
    for n, pair in enumerate(init_layers):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"init_layers[{n}] must be a pair (W, b); got {type(pair).__name__}.")
        w, b = np.asarray(pair[0]), np.asarray(pair[1])
        if w.ndim != 3 or b.ndim != 2 or b.shape != (w.shape[0], w.shape[2]):
            raise ValueError(f"init_layers[{n}] must hold W [S, in, out] and b [S, out]; got "
                             f"{w.shape} and {b.shape}.")
        if num_seeds is not None and (w.shape[0] != num_seeds or w.shape[1] != fan_in):
            raise ValueError(f"init_layers[{n}] W has shape {w.shape}; expected "
                             f"({num_seeds}, {fan_in}, ·) to follow the previous layer.")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise ValueError(f"init_layers[{n}] must be finite.")
        num_seeds, fan_in = w.shape[0], w.shape[2]
    if num_seeds < 1:
        raise ValueError("init_layers must hold at least one seed (S >= 1).")
    return num_seeds, len(init_layers) - 1


class _Problem:
    """Tensors and one training step of the batched two-point MLP (float32, CPU)."""

    def __init__(self, torch, init_layers, *, lr, activation, record, dx2, dy2, variant):
        self.torch, self.lr, self.record, self.variant = torch, float(lr), tuple(record), variant
        self.act = _activation(torch, activation)
        in_dim = np.asarray(init_layers[0][0]).shape[1]
        out_dim = np.asarray(init_layers[-1][0]).shape[2]
        x, y = _two_points(dx2, dy2, in_dim, out_dim)
        self.x = torch.from_numpy(x.astype(np.float32))
        self.y = torch.from_numpy(y.astype(np.float32))
        self.dy = self.y[1] - self.y[0]
        self.params = []
        for w, b in init_layers:
            self.params += [torch.tensor(np.asarray(w, np.float32), requires_grad=True),
                            torch.tensor(np.asarray(b, np.float32), requires_grad=True)]
        self.num_seeds = self.params[0].shape[0]
        if variant == "vmap":
            self._build_vmap()

    # -- the bmm formulation ------------------------------------------------------
    def _forward(self, params, x):
        """x [S, 2, in] (or [2, in] for one seed under vmap) -> (out, hidden list)."""
        a, hiddens, n_layers = x, [], len(params) // 2
        for n in range(n_layers):
            w, b = params[2 * n], params[2 * n + 1]
            z = self.torch.baddbmm(b.unsqueeze(1), a, w) if a.ndim == 3 else self.torch.addmm(b, a, w)
            if n == n_layers - 1:
                return z, hiddens
            a = self.act(z)
            hiddens.append(a)

    def _records(self, out, hiddens, losses):
        """[S, K + 3]: h at the recorded layers, y, w, loss (no graph)."""
        d_out = out[..., 1, :] - out[..., 0, :]
        cols = [((hiddens[k][..., 1, :] - hiddens[k][..., 0, :]) ** 2).sum(-1) for k in self.record]
        cols += [(d_out ** 2).sum(-1), (d_out * (d_out - self.dy)).sum(-1), losses]
        return self.torch.stack(cols, -1)

    def _step_bmm(self):
        torch = self.torch
        xs = self.x.expand(self.num_seeds, *self.x.shape)
        out, hiddens = self._forward(self.params, xs)
        losses = 0.5 * ((out - self.y) ** 2).mean(dim=(1, 2))
        losses.sum().backward()
        with torch.no_grad():
            rec = self._records(out, hiddens, losses)
            for p in self.params:
                p.add_(p.grad, alpha=-self.lr)
                p.grad = None
        return rec

    # -- the torch.func formulation ----------------------------------------------
    def _build_vmap(self):
        torch = self.torch
        act = self.act
        dims = [self.params[0].shape[1]] + [w.shape[2] for w in self.params[0::2]]

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = torch.nn.ModuleList(
                    [torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])

            def forward(self, x):
                a, hiddens = x, []
                for n, layer in enumerate(self.layers):
                    z = layer(a)
                    if n == len(self.layers) - 1:
                        return z, hiddens
                    a = act(z)
                    hiddens.append(a)

        model = Net().to("meta")
        names = [f"layers.{n}.{k}" for n in range(len(dims) - 1) for k in ("weight", "bias")]
        x, y, dy, record = self.x, self.y, self.dy, self.record

        def loss_one(params):
            # nn.Linear holds weight [out, in]: the stacked [in, out] weights enter transposed.
            tree = {k: (p.T if k.endswith("weight") else p) for k, p in zip(names, params)}
            out, hiddens = torch.func.functional_call(model, tree, (x,))
            loss = 0.5 * ((out - y) ** 2).mean()
            d_out = out[1] - out[0]
            cols = [((hiddens[k][1] - hiddens[k][0]) ** 2).sum() for k in record]
            cols += [(d_out ** 2).sum(), (d_out * (d_out - dy)).sum()]
            return loss, torch.stack(cols)

        self._grad_fn = torch.func.vmap(torch.func.grad_and_value(loss_one, has_aux=True))
        # torch.func differentiates functionally: the stacked weights are plain tensors.
        self.params = [p.detach() for p in self.params]

    def _step_vmap(self):
        torch = self.torch
        grads, (losses, cols) = self._grad_fn(tuple(self.params))
        with torch.no_grad():
            for p, g in zip(self.params, grads):
                p.add_(g, alpha=-self.lr)
        return torch.cat([cols, losses[:, None]], -1)

    def step(self):
        return self._step_bmm() if self.variant == "bmm" else self._step_vmap()

    def run(self, steps):
        """[steps, S, K + 3] records of ``steps`` training steps."""
        recs = self.torch.empty(steps, self.num_seeds, len(self.record) + 3)
        for t in range(steps):
            recs[t] = self.step()
        return recs


def torch_train_records(init_layers, steps: int, *, lr: float, activation: str = "leaky_relu",
                        layers=None, dx2: float = 1.0, dy2: float = 0.5, variant: str = "bmm",
                        threads: int | None = None) -> dict:
    """Train S seeds of the two-point MLP in batched PyTorch from given initial weights.

    ``init_layers``: one (W [S, in, out], b [S, out]) pair of numpy arrays per linear
    layer, in rsd's layout (``x @ W + b``; PyTorch's ``weight`` is Wᵀ). ``layers``:
    hidden layers whose h is recorded (default all). Full-batch SGD at ``lr`` on
    ½·mean((ŷ − y*)²) per seed, the two points of ``rsd.data.two_points`` for ``dx2``, ``dy2``.
    ``variant``: "bmm" or "vmap" (module docstring). ``threads``: torch's intra-op
    threads while training (default: leave as is).

    Returns numpy float32 arrays recorded before each update: "h" [S, steps, K],
    "y", "w", "loss" [S, steps], and the final weights "params" as (W, b) pairs.
    """
    torch = _import_torch()
    check_int_range("steps", steps, 1)
    check_real("lr", lr, lo=0.0, lo_open=True)
    check_choice("activation", activation, _ACTIVATIONS)
    check_choice("variant", variant, VARIANTS)
    check_real("dx2", dx2, lo=0.0)
    check_real("dy2", dy2, lo=0.0)
    _, num_hidden = _check_layers(init_layers)
    record = tuple(range(num_hidden)) if layers is None else tuple(layers)
    for k in record:
        check_int_range("layers entries", k, 0, num_hidden - 1)
    if threads is not None:
        check_int_range("threads", threads, 1)
    previous = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        prob = _Problem(torch, init_layers, lr=lr, activation=activation, record=record, dx2=dx2,
                        dy2=dy2, variant=variant)
        recs = prob.run(steps).numpy().transpose(1, 0, 2)
    finally:
        torch.set_num_threads(previous)
    k = len(record)
    params = [(w.detach().numpy().copy(), b.detach().numpy().copy())
              for w, b in zip(prob.params[0::2], prob.params[1::2])]
    return dict(h=recs[..., :k], y=recs[..., k], w=recs[..., k + 1], loss=recs[..., k + 2],
                params=params)


def torch_train_rate(width: int, depth: int, num_seeds: int, steps: int, *, lr: float, gain: float,
                     activation: str = "leaky_relu", threads=(1, 2), repeats: int = 2,
                     layers=None, variants=VARIANTS, seed: int = 0) -> dict:
    """Seed-steps per second of batched PyTorch training of the two-point MLP.

    ``num_seeds`` seeds of a width-``width``, depth-``depth`` MLP (Xavier-normal init
    with ``gain``, drawn by numpy from ``seed``), trained ``steps`` full-batch SGD
    steps at ``lr`` with rsd's records every step (h at ``layers``, default the
    middle hidden layer ``depth // 2`` as in the paper's two-point runs; y, w, loss).
    Each combination of ``threads`` (torch intra-op threads) and ``variants`` is
    timed ``repeats`` times from the same initial weights, after one untimed warm-up
    step; only the training loop is inside the timer.

    Returns {"seed_steps_per_s": best rate over everything, "variant": the
    formulation that gave it, "per_thread": {threads: best rate over variants},
    "per_variant": {variant: best rate over threads}, "torch_version",
    "num_seeds", "steps", "repeats"} (rates in seed-steps per second).
    """
    torch = _import_torch()
    check_int_range("width", width, 1)
    check_int_range("depth", depth, 1)
    check_int_range("num_seeds", num_seeds, 1)
    check_int_range("steps", steps, 1)
    check_int_range("repeats", repeats, 1)
    check_int_range("seed", seed, 0)
    check_real("lr", lr, lo=0.0, lo_open=True)
    check_real("gain", gain, lo=0.0, lo_open=True)
    check_choice("activation", activation, _ACTIVATIONS)
    threads = (threads,) if isinstance(threads, (int, np.integer)) else tuple(threads)
    if not threads:
        raise ValueError("threads must be a positive integer or a non-empty sequence of them; got ().")
    for n in threads:
        check_int_range("threads entries", n, 1)
    variants = (variants,) if isinstance(variants, str) else tuple(variants)
    if not variants:
        raise ValueError(f"variants must be a non-empty subset of {list(VARIANTS)}; got ().")
    for v in variants:
        check_choice("variants entries", v, VARIANTS)
    record = (depth // 2,) if layers is None else tuple(layers)
    for k in record:
        check_int_range("layers entries", k, 0, depth - 1)

    init = _xavier_init(width, depth, num_seeds, gain, np.random.default_rng(seed))
    previous = torch.get_num_threads()
    rates = {}
    try:
        for n in threads:
            torch.set_num_threads(n)
            for v in variants:
                best = 0.0
                for _ in range(repeats):
                    prob = _Problem(torch, init, lr=lr, activation=activation, record=record,
                                    dx2=1.0, dy2=0.5, variant=v)
                    prob.run(1)  # warm-up: allocator, autograd graph, torch.func tracing
                    start = time.perf_counter()
                    prob.run(steps)
                    best = max(best, num_seeds * steps / (time.perf_counter() - start))
                rates[n, v] = best
    finally:
        torch.set_num_threads(previous)
    (best_threads, best_variant), best_rate = max(rates.items(), key=lambda kv: kv[1])
    return {
        "seed_steps_per_s": best_rate,
        "variant": best_variant,
        "threads": best_threads,
        "per_thread": {n: max(r for (m, _), r in rates.items() if m == n) for n in threads},
        "per_variant": {v: max(r for (_, u), r in rates.items() if u == v) for v in variants},
        "torch_version": torch.__version__,
        "num_seeds": num_seeds,
        "steps": steps,
        "repeats": repeats,
    }
