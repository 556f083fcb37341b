"""A "0" and a "1" of MNIST followed through training, against the two-point theory.

The mnist table's "trajectories" row as the reference trains it (its notebook mnist): an MLP
(P = 200, L = 4, leaky_relu, gain 0.5) trained with SGD at lr 0.003 on minibatches of 64
reshuffled every epoch for 200 epochs, ½·MSE on one-hot targets of standardised images.
The squared distances h (hidden layer 2), y and the alignment w of one seeded random "0"
and one random "1" of the training set are recorded once per epoch, before that epoch's
first update; (η_h, η_y) are fitted to that per-epoch series with time in training steps,
and the trained networks' accuracy is measured on the test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_int_range, check_real
from .. import data, fitting, training
from ..sweeps import run_unit
from . import _common as c

__all__ = ["Config", "Result", "run", "plot", "metrics", "arrays", "summary", "describe",
           "reference_metrics", "choose_pair", "steps_per_epoch", "REFERENCE_ACCURACY"]

REPORT_METRICS = ("r2_h", "r2_y", "r2_w", "eta_h", "eta_y", "eta_h_per_epoch", "eta_y_per_epoch",
                  "final_y_over_dy2", "train_accuracy", "test_accuracy", "final_loss", "fitted", "seeds",
                  "n_train", "steps_per_epoch")
"""The metrics the report's table shows (all are in ``metrics.json``)."""

TABLE, ROW = "mnist", "trajectories"
BATCH_SIZE = 64
"""The reference's minibatch size: one epoch is ceil(n_train / 64) steps."""
REFERENCE_ACCURACY = 0.874
"""The reference's single run: the fraction of its first 10,000 training images (the
notebook's "validation accuracy" loop runs over them, not over the test set) that the
trained network classifies correctly."""
REFERENCE_STEPS = 200 * 938
"""The reference's run: 200 epochs of ceil(60,000 / 64) = 938 minibatch steps."""
ACCURACY_IMAGES = 10_000
"""How many training images the reference's accuracy check uses (the first ones)."""


@dataclass(frozen=True)
class Config:
    """What to run; the defaults are the reference's protocol (with 4 seeds).

    ``mnist_dir``: folder of the MNIST IDX files; None uses the offline 5,000-image subset
    split 4,000 / 1,000 (seeded, class-stratified; the subset has no test split). ``Config.for_size``
    fills it from the ``RSD_MNIST_DIR`` environment variable, so the recorded
    configuration says which data were used. ``seeds``: networks trained at once
    (vmapped; the reference trained one). ``epochs``: None = the reference's length,
    187,600 SGD steps (200 epochs of 60,000 images) rounded up to whole epochs of the
    training set used (2,978 epochs of the 4,000 offline images). ``width``: a cap on
    the table's width 200 (None = 200). ``lr``: None = the table's 0.003 (the tiny size
    raises it so that a few hundred steps reach the rich transition). ``train_limit``:
    train on the first N training images only (None = all; for smoke tests).
    ``split_seed``: the offline split's seed. ``pair_seed``: which "0" and which "1" of
    the training set are followed (``choose_pair``). ``plot_seeds``: seeds in the figures.
    """

    mnist_dir: str | None = None
    seeds: int = 4
    epochs: int | None = None
    width: int | None = None
    lr: float | None = None
    train_limit: int | None = None
    split_seed: int = 0
    pair_seed: int = 0
    plot_seeds: int = 4

    def __post_init__(self):
        if self.mnist_dir is not None and not isinstance(self.mnist_dir, str):
            raise ValueError(f"mnist_dir must be None or a folder path (a string); got {self.mnist_dir!r}.")
        check_int_range("seeds", self.seeds, 1)
        if self.epochs is not None:
            check_int_range("epochs", self.epochs, 2)
        if self.width is not None:
            check_int_range("width", self.width, 1)
        if self.lr is not None:
            check_real("lr", self.lr, lo=0.0, lo_open=True)
        if self.train_limit is not None:
            check_int_range("train_limit", self.train_limit, 2)
        check_int_range("split_seed", self.split_seed, 0)
        check_int_range("pair_seed", self.pair_seed, 0)
        check_int_range("plot_seeds", self.plot_seeds, 1)

    @classmethod
    def for_size(cls, size: str) -> "Config":
        c.check_size(size)
        directory = data.mnist_directory()
        directory = None if directory is None else str(directory)
        if size == "paper":
            # The reference's protocol; 4 networks instead of its one (vmapped, they cost
            # little more on an accelerator and show the spread over seeds).
            return cls(mnist_dir=directory, seeds=4, epochs=None)
        if size == "cpu":
            return cls(mnist_dir=directory, seeds=2, epochs=None)
        if size == "tiny":
            # Seconds: 512 images, width 32 and lr 0.1 so that 800 steps reach the rich
            # transition (at the table's lr 0.003 that takes ~15,000 steps).
            return cls(mnist_dir=directory, seeds=2, epochs=100, width=32, lr=0.1, train_limit=512)
        # quick: the table's width 200 and 63,000 SGD steps (the reference runs 187,600):
        # the pair's whole rich transition and the start of its plateau. With the offline
        # 4,000 images (1,000 epochs) h and y rise between steps ~12,000 and ~45,000 and w
        # dips to -0.45 and returns, as in the reference's figure (steps ~19,000 to
        # ~56,000 there); 68 epochs of the 60,000 real images are the same steps. Two
        # seeds, about 3 minutes on a 2-core CPU.
        return cls(mnist_dir=directory, seeds=2, epochs=1000 if directory is None else 68)

    def setting(self, n_train: int) -> training.Setting:
        """The mnist table's "trajectories" row with its minibatches of 64 (``n_train``
        images: ``steps = epochs · ceil(n_train / 64)``), resized by this config."""
        s = training.Setting.from_paper(TABLE, ROW, quirks=True, n_train=n_train)
        changes = {"steps": self.num_epochs(n_train) * steps_per_epoch(n_train)}
        if self.width is not None and self.width < s.width:
            changes["width"] = self.width
        if self.lr is not None:
            changes["lr"] = self.lr
        return s.replace(**changes)

    def num_epochs(self, n_train: int) -> int:
        """``epochs``, or for None the reference's number of SGD steps (200 epochs of
        60,000 images: 187,600 steps) rounded up to whole epochs of ``n_train`` images."""
        if self.epochs is not None:
            return self.epochs
        return -(-REFERENCE_STEPS // steps_per_epoch(n_train))


def steps_per_epoch(n_train: int) -> int:
    """Minibatches of 64 per epoch (the last one smaller when 64 does not divide n_train)."""
    return -(-int(n_train) // BATCH_SIZE)


def choose_pair(labels, seed: int) -> tuple[int, int]:
    """Indices (i, j) of one random "0" and one random "1" among ``labels``, drawn with
    ``numpy.random.default_rng(seed)``; ValueError if either digit is absent."""
    labels = np.asarray(labels)
    check_int_range("seed", seed, 0)
    zeros, ones = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    if zeros.size == 0 or ones.size == 0:
        raise ValueError(f"the training images must include a '0' and a '1'; got {zeros.size} zeros and "
                         f"{ones.size} ones (raise train_limit).")
    rng = np.random.default_rng(seed)
    return int(rng.choice(zeros)), int(rng.choice(ones))


@dataclass(frozen=True)
class Result:
    config: Config
    setting: training.Setting
    source: str  # the data used, in words
    uses_idx_files: bool
    n_train: int
    n_test: int
    pair: tuple[int, int]  # training-set indices of the "0" and the "1"
    pair_pixels: np.ndarray  # [2, 784] uint8
    steps_per_epoch: int
    record_steps: np.ndarray  # [T] the step of each record (one per epoch)
    measured: np.ndarray  # [S, T, 3] (h, y, w)
    loss: np.ndarray  # [S, T] full-data half-MSE at the records
    trained: np.ndarray  # [S] trained without diverging
    dx2: float
    dy2: float
    eta_h: np.ndarray  # [S] per step; NaN where not fitted
    eta_y: np.ndarray
    fit_loss: np.ndarray  # [S]
    r2: np.ndarray  # [S, 3]
    fit_status: np.ndarray  # [S] FitStatus, or _common.TRAINING_DIVERGED
    theory: np.ndarray  # [S, T, 3] the theory at each seed's fitted rates, at record_steps
    test_accuracy: np.ndarray  # [S]
    train_accuracy: np.ndarray  # [S] on the first min(10,000, n_train) training images
    labels_test: np.ndarray  # [n_test]
    test_predictions: np.ndarray  # [S, n_test] argmax of the trained networks' outputs
    params: tuple  # final parameters, one {"kernel", "bias"} dict per layer, seed axis first

    @property
    def fitted(self) -> np.ndarray:
        """Seeds whose fit converged."""
        return self.fit_status == fitting.FitStatus.OK


_SOURCES: dict = {}  # (directory, split_seed) -> the data's source sentence, filled by run


def _load(config: Config):
    directory = data.mnist_directory(config.mnist_dir)
    split = data.mnist_split(directory, seed=config.split_seed)
    _SOURCES[(config.mnist_dir, config.split_seed)] = split.source
    return split, directory is not None


def run(config: Config = Config(), *, upstream=None, progress: bool = False,
        store=None) -> Result:
    del upstream
    import jax

    split, uses_idx = _load(config)
    x_train = np.asarray(split.x_train, np.float32)
    y_train = np.asarray(split.y_train, np.float32)
    labels_train = np.asarray(split.labels_train)
    if config.train_limit is not None:
        x_train, y_train, labels_train = (a[: config.train_limit] for a in (x_train, y_train, labels_train))
    n_train = len(x_train)
    pair = choose_pair(labels_train, config.pair_seed)
    setting = config.setting(n_train)
    per_epoch = steps_per_epoch(n_train)
    rec = run_unit(store, "train", lambda: training.train(
        setting, x_train, y_train, seeds=range(config.seeds), pair=pair, record_every=per_epoch,
        return_params=True, progress=progress))
    record_steps = np.asarray(rec.record_steps, np.int64)
    h, yy, w = (np.asarray(a, np.float64) for a in (rec.h[..., 0], rec.y, rec.w))
    loss = np.asarray(rec.loss, np.float64)
    trained = np.asarray(rec.status) == training.Status.OK
    dx2, dy2 = float(rec.dx2), float(rec.dy2)

    eta_h, eta_y, fit_loss, r2, status = c.fit_rates_masked(h, yy, w, dx2, dy2, trained,
                                                              ts=record_steps)
    measured = np.stack([h, yy, w], -1)
    curves = c.theory_curves(measured[:, 0], record_steps.astype(float), eta_h, eta_y, dx2, dy2)

    network = setting.network(784, 10)
    params = jax.tree.map(np.asarray, rec.params)
    x_test = np.asarray(split.x_test, np.float32)
    labels_test = np.asarray(split.labels_test)
    predictions = c.predicted_labels(network, params, x_test)
    n_check = min(ACCURACY_IMAGES, n_train)
    train_predictions = c.predicted_labels(network, params, x_train[:n_check])
    test_accuracy = np.where(trained, np.mean(predictions == labels_test, axis=-1), np.nan)
    train_accuracy = np.where(trained, np.mean(train_predictions == labels_train[:n_check], axis=-1), np.nan)
    pixels = np.asarray(split.pixels_train).reshape(len(split.pixels_train), -1)
    return Result(config=config, setting=setting, source=split.source, uses_idx_files=uses_idx,
                  n_train=n_train, n_test=len(x_test), pair=pair, pair_pixels=pixels[list(pair)],
                  steps_per_epoch=per_epoch, record_steps=record_steps, measured=measured, loss=loss,
                  trained=trained, dx2=dx2, dy2=dy2, eta_h=eta_h, eta_y=eta_y, fit_loss=fit_loss, r2=r2,
                  fit_status=status, theory=curves, test_accuracy=test_accuracy,
                  train_accuracy=train_accuracy, labels_test=labels_test,
                  test_predictions=predictions, params=tuple(params))


# --------------------------------------------------------------------------- outputs


def metrics(result: Result) -> dict[str, float]:
    r = result
    ok = r.fitted
    out = {}
    for k, name in enumerate("hyw"):
        out[f"r2_{name}"] = c.median_or_nan(r.r2[ok, k])
    out["eta_h"] = c.median_or_nan(r.eta_h[ok])
    out["eta_y"] = c.median_or_nan(r.eta_y[ok])
    out["test_accuracy"] = c.median_or_nan(r.test_accuracy)
    out["train_accuracy"] = c.median_or_nan(r.train_accuracy)
    # The reference fits with time in epochs: the same rates in its units.
    out["eta_h_per_epoch"] = out["eta_h"] * r.steps_per_epoch
    out["eta_y_per_epoch"] = out["eta_y"] * r.steps_per_epoch
    out["final_loss"] = c.median_or_nan(np.where(r.trained, r.loss[:, -1], np.nan))
    # How far the pair's outputs got apart: 1 when the rich transition has finished.
    out["final_y_over_dy2"] = c.median_or_nan(np.where(r.trained, r.measured[:, -1, 1], np.nan)) / r.dy2
    out["reference_protocol"] = int(bool(reference_metrics(r.config)))
    out["fitted"] = int(ok.sum())
    out["seeds"] = int(ok.size)
    out["diverged"] = int((~r.trained).sum())
    out["uses_idx_files"] = int(r.uses_idx_files)
    out["n_train"] = int(r.n_train)
    out["n_test"] = int(r.n_test)
    out["steps_per_epoch"] = int(r.steps_per_epoch)
    for s in range(r.trained.size):
        out[f"seed{s}/test_accuracy"] = float(r.test_accuracy[s])
        out[f"seed{s}/eta_h"] = float(r.eta_h[s])
        out[f"seed{s}/eta_y"] = float(r.eta_y[s])
        for k, name in enumerate("hyw"):
            out[f"seed{s}/r2_{name}"] = float(r.r2[s, k])
    return out


def reference_metrics(config: Config | None = None) -> dict[str, float]:
    """The reference's accuracy (0.874, one run, on its first 10,000 training images) for
    its own protocol on the real MNIST files; {} otherwise (the offline subset, fewer
    steps, a narrower network, another lr or fewer images are not comparable)."""
    reference = {"train_accuracy": REFERENCE_ACCURACY}
    if config is None:
        return reference
    comparable = (data.mnist_directory(config.mnist_dir) is not None and config.epochs in (None, 200)
                  and config.width in (None, 200) and config.lr in (None, 0.003)
                  and config.train_limit is None)
    return reference if comparable else {}


def arrays(result: Result) -> dict[str, np.ndarray]:
    r = result
    out = {"record_steps": r.record_steps, "measured": r.measured.astype(np.float32),
           "loss": r.loss.astype(np.float32), "trained": r.trained, "eta_h": r.eta_h, "eta_y": r.eta_y,
           "fit_loss": r.fit_loss, "r2": r.r2, "fit_status": r.fit_status,
           "theory": r.theory.astype(np.float32), "pair": np.asarray(r.pair), "pair_pixels": r.pair_pixels,
           "dx2": np.asarray(r.dx2), "dy2": np.asarray(r.dy2), "test_accuracy": r.test_accuracy,
           "train_accuracy": r.train_accuracy, "labels_test": r.labels_test,
           "test_predictions": r.test_predictions.astype(np.int8)}
    for k, layer in enumerate(r.params):
        out[f"params/kernel_{k}"] = np.asarray(layer["kernel"])
        out[f"params/bias_{k}"] = np.asarray(layer["bias"])
    return out


def summary(result: Result) -> str:
    r, m = result, metrics(result)
    per_seed = lambda values: ", ".join(f"{v:.3f}" for v in values)
    return "\n".join([
        f"data: {r.source}",
        f"pair: training images {r.pair[0]} (a 0) and {r.pair[1]} (a 1), dx2 = {r.dx2:.4g}, "
        f"dy2 = {r.dy2:.4g}; recorded every {r.steps_per_epoch} steps (one epoch), {len(r.record_steps)} records",
        f"test accuracy {m['test_accuracy']:.4f} (median of {r.trained.sum()} seeds; per seed "
        f"{per_seed(r.test_accuracy)}); on the first {min(ACCURACY_IMAGES, r.n_train)} training images "
        f"{m['train_accuracy']:.4f}",
        f"fit (time in steps, {m['fitted']}/{m['seeds']} seeds converged): eta_h {m['eta_h']:.4g}, "
        f"eta_y {m['eta_y']:.4g} (per epoch {m['eta_h_per_epoch']:.4g}, {m['eta_y_per_epoch']:.4g}); "
        f"median R² h {m['r2_h']:.4f}, y {m['r2_y']:.4f}, w {m['r2_w']:.4f}",
    ])


def _source_text(config: Config) -> str:
    key = (config.mnist_dir, config.split_seed)
    if key not in _SOURCES:
        try:
            _load(config)
        except (OSError, ValueError, ImportError) as error:
            return f"MNIST data that cannot be loaded now ({error})"
    return _SOURCES[key]


def describe(config: Config) -> str:
    s = training.Setting.from_paper(TABLE, ROW, quirks=True, n_train=BATCH_SIZE)
    width = s.width if config.width is None else min(config.width, s.width)
    lr = s.lr if config.lr is None else config.lr
    if config.epochs is None:
        length = ("the reference's 187,600 SGD steps in whole epochs (its 200 epochs of 60,000 images; "
                  "2,978 epochs of 4,000 offline images)")
    else:
        length = f"{config.epochs} epochs"
    changed = []
    if data.mnist_directory(config.mnist_dir) is None:
        changed.append("the offline 4,000-image subset instead of the 60,000 MNIST training images")
    if width != s.width:
        changed.append(f"width {width} instead of {s.width}")
    if lr != s.lr:
        changed.append(f"lr {lr:g} instead of {s.lr:g}")
    if config.train_limit is not None:
        changed.append(f"only the first {config.train_limit} training images")
    if config.epochs is not None:
        changed.append(f"{config.epochs} epochs instead of the reference's 187,600 steps")
    return (f"the mnist table's \"trajectories\" row: MLP of width {width}, depth {s.depth}, "
            f"{s.activation}, gain {s.gain:g}, SGD at lr {lr:g}, minibatches of {BATCH_SIZE} reshuffled "
            f"every epoch (the reference's minibatch quirk, on), {length}; h at hidden layer "
            f"{s.layers[0]} of a random 0 and a random 1 of the training set (pair seed "
            f"{config.pair_seed}), recorded once per epoch, rates fitted with time in steps; "
            f"{config.seeds} seed(s) vmapped, medians reported. Data: {_source_text(config)}. "
            + (f"Changed from the reference: {'; '.join(changed)}. " if changed else "")
            + f"The reference trained one network and reports accuracy {REFERENCE_ACCURACY}; its notebook "
            "measures it on its first 10,000 training images, so rsd sets that number beside "
            "`train_accuracy` (the same images) and reports the test split's accuracy as "
            "`test_accuracy`; the comparison holds only for the real MNIST files at the full protocol.")


def plot(result: Result) -> dict:
    import matplotlib.pyplot as plt

    r = result
    shown = np.flatnonzero(r.trained)[: r.config.plot_seeds]
    epochs = r.record_steps / r.steps_per_epoch
    figs = {}
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4), constrained_layout=True,
                             gridspec_kw={"width_ratios": [0.7, 1, 1, 1]})
    pair = np.concatenate([r.pair_pixels[0].reshape(28, 28), r.pair_pixels[1].reshape(28, 28)], axis=1)
    axes[0].imshow(pair, cmap="gray_r")
    axes[0].set_title(f"the pair: training images {r.pair[0]}, {r.pair[1]}", fontsize=8)
    axes[0].axis("off")
    labels = {"h": f"h = ||Δφ||² (layer {r.setting.layers[0]})", "y": "y = ||Δŷ||²",
              "w": "w = Δŷ·(Δŷ − Δy*)"}
    for k, name in enumerate("hyw"):
        ax = axes[k + 1]
        for j, i in enumerate(shown):
            ax.plot(epochs, r.measured[i, :, k], "o-", ms=2, color=f"C{j}", lw=1.8, alpha=0.4,
                    label=f"seed {i} network" if k == 0 else None)
            ax.plot(epochs, r.theory[i, :, k], color=f"C{j}", lw=0.9, ls="--",
                    label=f"seed {i} theory" if k == 0 else None)
        r2 = c.median_or_nan(r.r2[r.fitted, k])
        ax.set_title(f"{labels[name]}   median R² {r2:.3f}", fontsize=8)
        ax.set_xlabel("epoch")
        ax.tick_params(labelsize=7)
    if shown.size:
        axes[1].legend(fontsize=6)
    fig.suptitle("MNIST pair (a 0 and a 1): network, once per epoch (solid), against the theory at each "
                 "seed's fitted rates (dashed)", fontsize=9)
    figs["trajectories"] = fig

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), constrained_layout=True)
    ax = axes[0]
    for j, i in enumerate(shown):
        ax.plot(epochs, r.loss[i], color=f"C{j}", label=f"seed {i}")
    if np.any(r.loss[shown] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("½·MSE over the training set")
    ax.set_title("training loss, recorded once per epoch", fontsize=9)
    if shown.size:
        ax.legend(fontsize=7)
    ax = axes[1]
    seeds = np.arange(r.trained.size)
    ax.plot(seeds, r.test_accuracy, "o", label="test split")
    ax.plot(seeds, r.train_accuracy, "s", mfc="none",
            label=f"first {min(ACCURACY_IMAGES, r.n_train)} training images")
    if reference_metrics(r.config):
        ax.axhline(REFERENCE_ACCURACY, color="k", ls="--", lw=0.8,
                   label="reference (one run, first 10,000 training images)")
    ax.set_xticks(seeds)
    ax.set_xlabel("seed")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy of the trained networks", fontsize=9)
    ax.legend(fontsize=7)
    figs["loss"] = fig
    return figs



def workloads(config: Config) -> list:
    """The training program of ``run(config)``, for ``rsd reproduce --dry-run``."""
    return [c.mnist_workload(ROW, config, fits=config.seeds)]
