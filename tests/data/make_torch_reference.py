"""Generate tests/data/torch_reference.npz: small PyTorch (CPU, float32) training runs on two points.

Each run builds one architecture with the conventions of DESIGN.md §2 (Xavier-normal
weights with gain, zero biases, activation after every hidden module, PyTorch's
leaky_relu with slope 0.01), trains it full-batch on the two points with loss
½·MSE (SGD, or Adam for one run) and records BEFORE every update, in eval mode:
the outputs, h of every hidden record, y, w and the loss. Dropout runs also record
the keep masks PyTorch drew each step, so rsd can replay them exactly.

PyTorch is a tool for this script only, never an rsd dependency. Run from the repo root:

    python tests/data/make_torch_reference.py            # writes tests/data/torch_reference.npz

Layout of the file (every key prefixed by "<run>/"): "meta" (JSON string with the
settings), "W<n>", "b<n>" initial weights of parametrized module n in PyTorch's layout
(dense [out, in], conv [out_ch, in_ch, k]), "x" [2, in_dim], "target" [2, out_dim],
"out" [steps, 2, out_dim] float32, "hidden0_<i>" [2, features] the step-0 hidden
records (flattened channel-major), "h" [steps, num_hidden], "y", "w" [steps]
(float64, computed from the float32 activations), "loss" [steps] (float32, ½·MSE) and
for dropout runs "mask<n>" [steps, 2, fan_in] boolean keep masks of linear layer n.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STEPS = 300
DX2, DY2 = 1.0, 0.5
KERNEL, CHANNELS = 11, 20

# Small runs whose learning spans the 300 steps; a seed per run (torch.manual_seed before building).
RUNS = {
    "mlp": dict(architecture="mlp", activation="leaky_relu", width=32, depth=4, gain=1.0, optimizer="sgd", lr=0.02, seed=1),
    "mlp_relu": dict(architecture="mlp", activation="relu", width=32, depth=4, gain=1.0, optimizer="sgd", lr=0.02, seed=2),
    "resnet": dict(architecture="resnet", activation="leaky_relu", width=32, depth=4, gain=0.5, optimizer="sgd", lr=0.05, seed=3),
    "cnn": dict(architecture="cnn", activation="leaky_relu", width=64, depth=2, gain=1.0, optimizer="sgd", lr=0.02, seed=1),
    "dropout": dict(architecture="dropout", activation="leaky_relu", width=32, depth=4, gain=1.0, optimizer="sgd", lr=0.02, seed=5),
    "mlp_adam": dict(architecture="mlp", activation="leaky_relu", width=32, depth=4, gain=1.0, optimizer="adam", lr=1e-3, seed=6),
}
DROPOUT_RATE = 0.1

_ACT = {"leaky_relu": F.leaky_relu, "relu": F.relu, "tanh": torch.tanh, "none": lambda a: a}


class Net(nn.Module):
    """The four architectures of DESIGN.md §2; forward returns (output, hidden records)."""

    def __init__(self, architecture, activation, width, depth, gain, in_dim, out_dim):
        super().__init__()
        self.architecture, self.act, self.depth = architecture, _ACT[activation], depth
        P, L = width, depth
        if architecture == "cnn":
            mods = [nn.Linear(in_dim, P), nn.Conv1d(1, CHANNELS, KERNEL)]
            mods += [nn.Conv1d(CHANNELS, CHANNELS, KERNEL) for _ in range(L - 1)]
            mods += [nn.Conv1d(CHANNELS, 1, KERNEL), nn.Linear(P - (KERNEL - 1) * (L + 1), out_dim)]
        else:
            dims = [in_dim] + [P] * L + [out_dim]
            mods = [nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]
        self.layers = nn.ModuleList(mods)
        self.drops = nn.ModuleList(
            [nn.Dropout(DROPOUT_RATE) for _ in mods] if architecture == "dropout" else []
        )
        for m in self.layers:
            nn.init.xavier_normal_(m.weight, gain=gain)
            nn.init.zeros_(m.bias)

    def forward(self, x):
        if self.architecture == "cnn":
            a = self.act(self.layers[0](x))
            hiddens = [a]
            a = a.unsqueeze(1)  # one channel of length P
            for conv in self.layers[1:-1]:
                a = self.act(conv(a))
                hiddens.append(a.reshape(x.shape[0], -1))
            return self.layers[-1](a.reshape(x.shape[0], -1)), hiddens
        a, hiddens = x, []
        for n, layer in enumerate(self.layers):
            if self.drops:
                a = self.drops[n](a)
            z = layer(a)
            if n == len(self.layers) - 1:
                return z, hiddens
            a = self.act(z)
            if self.architecture == "resnet" and n >= 2:
                a = a + hiddens[n - 2]
            hiddens.append(a)


class MaskRecorder:
    """Recover each training-mode dropout's keep mask by replaying its Bernoulli draw.

    A mask cannot be read off the output (the second input is exactly 0), so the RNG
    state is saved before the module runs, the same ``bernoulli_(1 − p)`` draw is
    repeated from it afterwards and checked to reproduce the module's output exactly.
    """

    def __init__(self, model):
        self.masks = []
        for m in model.drops:
            m.register_forward_pre_hook(self._before)
            m.register_forward_hook(self._after)

    def _before(self, module, inputs):
        if module.training:
            self._state = torch.get_rng_state()

    def _after(self, module, inputs, output):
        if not module.training:
            return
        after = torch.get_rng_state()
        torch.set_rng_state(self._state)
        noise = torch.empty_like(inputs[0]).bernoulli_(1 - module.p)
        torch.set_rng_state(after)
        if not torch.equal(output, inputs[0] * noise.div(1 - module.p)):
            raise RuntimeError("replayed dropout mask does not reproduce PyTorch's dropout output")
        self.masks.append(noise.bool().numpy())


def two_points(in_dim=1, out_dim=1):
    x = np.array([[-1.0] * in_dim, [-1.0 + np.sqrt(DX2)] * in_dim]) / np.sqrt(in_dim)
    t = np.array([[0.6] * out_dim, [0.6 + np.sqrt(DY2)] * out_dim]) / np.sqrt(out_dim)
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(t.astype(np.float32))


def half_mse(out, target):
    return 0.5 * F.mse_loss(out, target)


def run(name, settings):
    seed = settings["seed"]
    torch.manual_seed(seed)
    x, target = two_points()
    model = Net(settings["architecture"], settings["activation"], settings["width"], settings["depth"],
                settings["gain"], x.shape[1], target.shape[1])
    record = {f"W{n}": m.weight.detach().numpy().copy() for n, m in enumerate(model.layers)}
    record.update({f"b{n}": m.bias.detach().numpy().copy() for n, m in enumerate(model.layers)})
    if settings["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=settings["lr"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    recorder = MaskRecorder(model)
    tgt64 = target.double().numpy()
    outs, hs, ys, ws, losses = [], [], [], [], []
    for step in range(STEPS):
        model.eval()
        with torch.no_grad():
            out, hiddens = model(x)
            losses.append(half_mse(out, target).item())
        o = out.double().numpy()
        if step == 0:
            record.update({f"hidden0_{i}": h.numpy().copy() for i, h in enumerate(hiddens)})
        outs.append(out.numpy().copy())
        hs.append([np.sum((h.double().numpy()[1] - h.double().numpy()[0]) ** 2) for h in hiddens])
        d_out, d_tgt = o[1] - o[0], tgt64[1] - tgt64[0]
        ys.append(np.sum(d_out**2))
        ws.append(np.sum(d_out * (d_out - d_tgt)))
        model.train()
        opt.zero_grad()
        out, _ = model(x)
        half_mse(out, target).backward()
        opt.step()
    meta = dict(settings, name=name, steps=STEPS, dx2=DX2, dy2=DY2, in_dim=x.shape[1],
                out_dim=target.shape[1], dropout_rate=DROPOUT_RATE if settings["architecture"] == "dropout" else 0.0,
                num_layers=len(model.layers), num_hidden=len(hs[0]), torch_version=torch.__version__)
    record.update(meta=np.array(json.dumps(meta)), x=x.numpy(), target=target.numpy(),
                  out=np.stack(outs), h=np.array(hs), y=np.array(ys), w=np.array(ws),
                  loss=np.array(losses, dtype=np.float32))
    if recorder.masks:
        n_drop = len(model.drops)
        masks = recorder.masks
        assert len(masks) == STEPS * n_drop
        for n in range(n_drop):
            record[f"mask{n}"] = np.stack(masks[n::n_drop])
    return record


def main(path=None):
    torch.set_num_threads(1)  # one fixed reduction order, whatever the machine
    path = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference.npz")
    arrays = {}
    for name, settings in RUNS.items():
        rec = run(name, settings)
        print(f"{name:9s} loss {rec['loss'][0]:.4f} -> {rec['loss'][-1]:.2e}   h[mid] {rec['h'][0, 1]:.3f} -> {rec['h'][-1, 1]:.3f}")
        arrays.update({f"{name}/{k}": v for k, v in rec.items()})
    arrays["torch_version"] = np.array(torch.__version__)
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main(*sys.argv[1:])
