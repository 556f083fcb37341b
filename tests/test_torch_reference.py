"""rsd networks against PyTorch: the same weights, data and optimizer give the same trajectories.

tests/data/torch_reference.npz holds small PyTorch (CPU, float32) runs made by
tests/data/make_torch_reference.py: initial weights in PyTorch's layout and, before
every update, the outputs, h of every hidden record, y, w and the loss (dropout runs
also hold PyTorch's keep masks). Here rsd builds each network from those weights and
replays the training with a minimal pure-JAX loop (jax.grad of ½·MSE + optax).

Float32 round-off differs between the frameworks (summation order in matmuls and
convs), so the comparison is exact to float32 precision at step 0 and the allowed
deviation grows with the step range. Measured worst cases on the generating machine:

    steps      SGD runs (which)        Adam
    0          2e-7                    2e-7
    1–9        7e-7                    4e-6
    10–99      5e-6  (cnn)             4e-5
    100–299    6e-4  (cnn; resnet 5e-5, the MLPs 1e-6)   2e-6 (converged)

The bounds below are about 10× those (5× at step 0). Deviations are absolute for the
outputs, y, w and the loss (all O(1): dy2 = 0.5) and relative for every h.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rsd import quantities
from rsd.networks import make_network
from tests.helpers import assert_close

PATH = os.path.join(os.path.dirname(__file__), "data", "torch_reference.npz")
RUNS = ("mlp", "mlp_relu", "resnet", "cnn", "dropout", "mlp_adam")
# (first step, end step) → largest allowed deviation
BOUNDS = {
    "sgd": {(0, 1): 1e-6, (1, 10): 1e-5, (10, 100): 1e-4, (100, 300): 5e-3},
    "adam": {(0, 1): 1e-6, (1, 10): 5e-5, (10, 100): 5e-4, (100, 300): 5e-3},
}


@pytest.fixture(scope="module")
def reference():
    with np.load(PATH) as f:
        return {k: f[k] for k in f.files}


def _run(reference, name):
    meta = json.loads(str(reference[f"{name}/meta"]))
    net = make_network(
        meta["architecture"],
        activation=meta["activation"],
        width=meta["width"],
        depth=meta["depth"],
        gain=meta["gain"],
        in_dim=meta["in_dim"],
        out_dim=meta["out_dim"],
        dropout_rate=meta["dropout_rate"] if meta["architecture"] == "dropout" else 0.1,
    )
    layers = [(reference[f"{name}/W{n}"], reference[f"{name}/b{n}"]) for n in range(meta["num_layers"])]
    data = {k.split("/", 1)[1]: v for k, v in reference.items() if k.startswith(name + "/")}
    return meta, net, net.from_torch(layers), data


def test_reference_file_is_small_and_complete(reference):
    assert os.path.getsize(PATH) < 1_000_000
    for name in RUNS:
        meta = json.loads(str(reference[f"{name}/meta"]))
        assert reference[f"{name}/h"].shape == (meta["steps"], meta["num_hidden"])


@pytest.mark.parametrize("name", RUNS)
def test_forward_pass_at_step_0_matches_pytorch(reference, name):
    meta, net, params, data = _run(reference, name)
    out, hiddens = jax.jit(net.apply)(params, jnp.asarray(data["x"]))
    assert len(hiddens) == net.num_hidden == meta["num_hidden"]
    assert_close(out, data["out"][0], rtol=1e-6, atol=1e-7)
    for i, h in enumerate(hiddens):
        assert_close(h, data[f"hidden0_{i}"], rtol=1e-6, atol=1e-7, err_msg=f"hidden record {i}")


def _replay(meta, net, params, data):
    """Record (out, h per hidden record, y, w, loss) before each update, as the reference did."""
    x, target = jnp.asarray(data["x"]), jnp.asarray(data["target"])
    opt = optax.sgd(meta["lr"]) if meta["optimizer"] == "sgd" else optax.adam(meta["lr"])
    masks = None
    if meta["architecture"] == "dropout":
        masks = tuple(jnp.asarray(data[f"mask{n}"]) for n in range(meta["num_layers"]))

    def loss(p, m):
        return quantities.half_mse(net.apply(p, x, train=m is not None, masks=m)[0], target)

    def step(carry, m):
        p, state = carry
        out, hiddens = net.apply(p, x)  # eval mode
        h = jnp.stack([quantities.representation_distance(a[0], a[1]) for a in hiddens])
        record = (
            out,
            h,
            quantities.output_distance(out[0], out[1]),
            quantities.alignment(out[0], out[1], target[0], target[1]),
            quantities.half_mse(out, target),
        )
        updates, state = opt.update(jax.grad(loss)(p, m), state, p)
        return (optax.apply_updates(p, updates), state), record

    run = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), masks, length=meta["steps"])[1])
    return [np.asarray(a, np.float64) for a in run(params)]


@pytest.mark.parametrize("name", RUNS)
def test_training_replay_matches_pytorch_step_by_step(reference, name):
    meta, net, params, data = _run(reference, name)
    out, h, y, w, loss = _replay(meta, net, params, data)
    deviations = {
        "out": np.abs(out - data["out"]).max(axis=(1, 2)),
        "h": (np.abs(h - data["h"]) / data["h"]).max(axis=1),
        "y": np.abs(y - data["y"]),
        "w": np.abs(w - data["w"]),
        "loss": np.abs(loss - data["loss"]),
    }
    for (start, end), bound in BOUNDS[meta["optimizer"]].items():
        for quantity, dev in deviations.items():
            worst = dev[start:end].max()
            assert worst <= bound, f"{name}: {quantity} deviates {worst:.2e} > {bound:.0e} in steps {start}-{end - 1}"
    # the runs really learn, so the replay is not trivially flat
    assert data["loss"][-1] < 0.02 * data["loss"][0]


def test_jax_leaky_relu_convention_at_zero_would_break_the_match(reference, monkeypatch):
    """Negative control: with jax.nn.leaky_relu (slope 1 at exactly 0) the replay leaves PyTorch's at step 1."""
    from rsd.networks import _activations

    monkeypatch.setitem(_activations._FUNCTIONS, "leaky_relu", jax.nn.leaky_relu)
    meta, net, params, data = _run(reference, "mlp")
    out, h, _, _, _ = _replay(meta, net, params, data)
    assert np.abs(out[0] - data["out"][0]).max() <= 1e-6  # the forward pass does not see the convention
    early = np.abs(out[1:10] - data["out"][1:10]).max()
    assert early > 100 * BOUNDS["sgd"][(1, 10)], early
