"""The paper's claims, each decided from the experiments' metrics.

A claim is one sentence read off the paper's figures (and the reference notebooks that
drew them), the metrics that test it, and a criterion on their values. ``evaluate``
turns ``{experiment: {metric: value}}`` (what ``rsd reproduce`` writes to
``metrics.json``) into one :class:`Verdict` per claim: holds, does not hold, or not run
(an experiment it needs is missing). The verdicts become the table at the top of
``report.md`` and ``metrics.json["claims"]["claims/<n>"]`` (1 holds, 0 does not; a claim
not run has no entry). Nothing here trains or fits: the table is a pure function of the
metrics, so a test can feed it metrics that fail each criterion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .alternatives import FIELDS
from .mnist_trajectory import REFERENCE_ACCURACY

__all__ = ["Claim", "Verdict", "CLAIMS", "evaluate", "claims_metrics", "claims_table"]


@dataclass(frozen=True)
class Verdict:
    """One claim decided: ``holds`` is True, False, or None (not run); ``evidence`` gives
    the values the decision rests on, in a sentence."""

    claim: "Claim"
    holds: bool | None
    evidence: str

    @property
    def label(self) -> str:
        return {True: "holds", False: "does not hold", None: "not run"}[self.holds]


@dataclass(frozen=True)
class Claim:
    """``number``; ``statement`` (the paper's claim); ``experiments`` whose metrics it
    reads; ``metric`` and ``criterion`` in words; ``decide(metrics) -> (holds, evidence)``
    given every needed experiment's metrics."""

    number: int
    statement: str
    experiments: tuple[str, ...]
    metric: str
    criterion: str
    decide: Callable[[dict], tuple[bool, str]]


def _f(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "nan"
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.{digits}g}"


def _ge(value, bound) -> bool:
    return value is not None and math.isfinite(value) and value >= bound


def _le(value, bound) -> bool:
    return value is not None and math.isfinite(value) and value <= bound


def _groups(metrics: dict, name: str) -> list[str]:
    """The prefixes g of the keys "g/name", in order."""
    return [k.rsplit("/", 1)[0] for k in metrics if k.endswith("/" + name) and k.count("/") == 1]


R2_MIN = 0.95
H_FALL = 0.9
"""A row whose h ends below this fraction of h0 while y rises is one the theory cannot
follow: on its solutions h rises with y."""


def _per_row(rows, check, worst_name):
    """(all rows pass, evidence) from ``check(row) -> (passes, details, score)``: the
    failing rows with their details, else the lowest score."""
    failing, worst = [], None
    for row in rows:
        passes, details, score = check(row)
        if not passes:
            failing.append(f"`{row}` ({details})")
        if worst is None or not (score >= worst[1]):
            worst = (row, score)
    text = f"{len(rows) - len(failing)} of {len(rows)} rows pass"
    if failing:
        text += "; failing: " + ", ".join(failing)
    elif worst is not None:
        text += f"; lowest {worst_name} {_f(worst[1])} (`{worst[0]}`)"
    return bool(rows) and not failing, text


def _two_points(m):
    m = m["two-points"]

    def check(row):
        r2h, r2y, kept, seeds = m[f"{row}/r2_h"], m[f"{row}/r2_y"], m[f"{row}/kept"], m[f"{row}/seeds"]
        details = f"R² h {_f(r2h)}, y {_f(r2y)}, kept {kept}/{seeds}"
        if m.get(f"{row}/final_loss_above", 0) > 0:
            details += f"; {m[f'{row}/final_loss_above']} seeds end above the 1e-2 loss"
        if m.get(f"{row}/h_end_over_h0", 1.0) < H_FALL and m.get(f"{row}/y_rises", 0) > 0:
            details += (f"; h ends at {_f(m[f'{row}/h_end_over_h0'])}·h0 while y rises, and on the "
                        "theory's solutions h rises with y (h² − C·h = k·y)")
        low = min((v for v in (r2h, r2y) if math.isfinite(v)), default=float("nan"))
        return _ge(r2h, R2_MIN) and _ge(r2y, R2_MIN) and 2 * kept >= seeds, details, low

    return _per_row(_groups(m, "r2_h"), check, "median R²")


def _final_distance(m):
    m = m["final-distance"]

    def check(row):
        r, kept, points = m[f"{row}/pearson_r"], m[f"{row}/kept"], m[f"{row}/points"]
        return _ge(r, 0.9) and 9 * kept >= 7 * points, f"r {_f(r)}, kept {kept}/{points}", r

    return _per_row(_groups(m, "pearson_r"), check, "r")


def depth_band(layers: int) -> tuple[int, int]:
    """The intermediate layers: 9–13 of 20 (0-based), the same fractions at other depths."""
    return math.floor(0.45 * layers), math.ceil(0.65 * layers)


def _depth(m):
    m = m["depth"]
    layers = sum(1 for k in m if k.startswith("loss/"))
    lo, hi = depth_band(layers)
    best, first, last = m["best_layer"], m["first_over_best"], m["last_over_best"]
    ok = lo <= best <= hi and _ge(first, 5) and _ge(last, 5)
    return ok, (f"best layer {best} of {layers} (band {lo}–{hi}); fit loss at the first layer / best "
                f"{_f(first)}, at the last / best {_f(last)}")


ALTERNATIVES = tuple(name for name, _ in FIELDS[1:])


def _alternatives(m):
    m = m["alternatives"]
    ratios = [m.get(f"{a}_over_true", float("nan")) for a in ALTERNATIVES]
    ok = all(r is not None and math.isfinite(r) and r > 1 for r in ratios)
    return ok, "best-fit loss over the true field's: " + ", ".join(
        f"({k + 1}) {_f(r)}" for k, r in enumerate(ratios))


XOR_MERGED = 0.1


def _xor(m):
    m = m["xor"]
    g = lambda regime, name: m.get(f"{regime}/{name}", float("nan"))
    rich_r, lazy_r = g("rich", "pearson_r"), g("lazy", "pearson_r")
    rich_ratio, lazy_ratio = g("rich", "same_over_different_measured"), g("lazy", "same_over_different_measured")
    ok = (_ge(rich_r, 0.9) and _ge(lazy_r, 0.9) and _le(rich_ratio, XOR_MERGED) and _ge(lazy_ratio, 1.0))
    return ok, (f"same-/different-output distance, measured: rich {_f(rich_ratio)}, lazy {_f(lazy_ratio)}; "
                f"Pearson r predicted vs measured: rich {_f(rich_r)}, lazy {_f(lazy_r)}, intermediate "
                f"{_f(g('intermediate', 'pearson_r'))} (reported, no criterion)")


def _xor_shallow(m):
    m = m["xor"]
    r, ratio = m.get("shallow/pearson_r", float("nan")), m.get("shallow/same_over_different_measured", float("nan"))
    predicted = m.get("shallow/same_over_different_predicted", float("nan"))
    return _ge(r, 0.9) and _le(ratio, XOR_MERGED), (
        f"shallow: same-/different-output distance measured {_f(ratio)} (predicted {_f(predicted)}), "
        f"Pearson r {_f(r)}")


def _context(m):
    m = m["context"]
    high = m.get("high/context_variance_fraction", float("nan"))
    vlow = m.get("very_low/context_variance_fraction", float("nan"))
    low = m.get("low/context_variance_fraction", float("nan"))
    return _ge(high, 0.5) and _le(vlow, 0.1), (
        f"variance fraction explained by the context: high {_f(high)}, low {_f(low)}, very low {_f(vlow)}")


MNIST_R2_MIN = 0.9
MNIST_TRANSITION = 0.9


def _mnist(m):
    m = m["mnist-trajectory"]
    r2 = [m.get(f"r2_{k}", float("nan")) for k in "hyw"]
    done = m.get("final_y_over_dy2", float("nan"))
    ok = all(_ge(v, MNIST_R2_MIN) for v in r2) and _ge(done, MNIST_TRANSITION)
    text = (f"median R² h {_f(r2[0])}, y {_f(r2[1])}, w {_f(r2[2])}; y at the end / dy2 {_f(done)} "
            f"(the transition is complete at ≥ {MNIST_TRANSITION})")
    accuracy = m.get("train_accuracy", float("nan"))
    if m.get("reference_protocol", 0) == 1:
        ok = ok and _ge(accuracy, REFERENCE_ACCURACY - 0.02)
        text += f"; accuracy on the first 10,000 training images {_f(accuracy)} (reference {REFERENCE_ACCURACY})"
    else:
        text += (f"; accuracy not compared: the reference's {REFERENCE_ACCURACY} is on 10,000 of its 60,000 "
                 f"training images, this run's data or length differ (training accuracy {_f(accuracy)}, "
                 f"test {_f(m.get('test_accuracy', float('nan')))})")
    return ok, text


def _mnist_structure(m):
    m = m["mnist-structure"]
    r, off = m.get("pearson_r", float("nan")), m.get("pearson_r_off_blocks", float("nan"))
    return _ge(r, 0.5) and _ge(off, 0.0) and off > 0, (
        f"Pearson r {_f(r)} over the whole matrix, {_f(off)} without the same-label blocks")


PREDICTED_RATIO = (0.8, 1.25)
PREDICTED_R2_MIN = 0.97


def _predicted_rates(m):
    m = m["predicted-rates"]
    eh, ey = m["default/eta_h_ratio_weighted"], m["default/eta_y_ratio_weighted"]
    r2 = m["default/r2_h_weighted"]
    lo, hi = PREDICTED_RATIO
    ok = _ge(eh, lo) and _le(eh, hi) and _ge(ey, lo) and _le(ey, hi) and _ge(r2, PREDICTED_R2_MIN)
    g = lambda k: _f(m.get(f"default/{k}", float("nan")))  # noqa: E731
    return ok, (f"default, fit-weighted secant rates / fitted: η_h {_f(eh)}, η_y {_f(ey)}, R² of h {_f(r2)} "
                f"(fitted rates {g('r2_h_fitted')}); secant along training {g('eta_h_ratio_secant')}, "
                f"{g('eta_y_ratio_secant')}, R² of h {g('r2_h_secant')}; one-step first order "
                f"{g('eta_h_ratio')}, {g('eta_y_ratio')}; weighted from the first interior checkpoint "
                f"R² of h {g('r2_h_weighted_late')} (fitted from there {g('r2_h_fitted_late')})")


CLAIMS = (
    Claim(1, "The theory, at each seed's fitted rates, follows the networks of every row of the "
             "two-point table (architectures, activations, gains, Adam).",
          ("two-points",), "median R² of h and of y over kept seeds; kept/seeds",
          f"every row: R² h and y ≥ {R2_MIN}, at least half the seeds kept (final loss ≤ 1e-2)",
          _two_points),
    Claim(2, "The closed-form end state h∞, from a network's own h0, y0 and its row's mean rates, "
             "predicts the trained network's final representational distance over a (dx, dy) grid.",
          ("final-distance",), "Pearson r (predicted vs measured h); points kept",
          "every row: r ≥ 0.9 and at least 7/9 of the grid points kept (final loss ≤ 1e-3)",
          _final_distance),
    Claim(3, "In a deep network the theory describes an intermediate hidden layer best, and layers "
             "near the input or the output worse.",
          ("depth",), "fit loss per layer: best layer, first/best, last/best",
          "best layer in the middle band (9–13 of 20); first/best ≥ 5 and last/best ≥ 5", _depth),
    Claim(4, "Each of the four perturbed vector fields fits the same trajectories worse than the "
             "theory's field.",
          ("alternatives",), "best-fit loss of field (k) / the true field's (sum over kept seeds)",
          "every ratio > 1", _alternatives),
    Claim(5, "XOR: rich networks merge the pairs with the same output, lazy networks keep the input's "
             "structure, and the two-point end state applied pairwise predicts both.",
          ("xor",), "same-/different-output distance (measured); Pearson r predicted vs measured",
          f"rich ratio ≤ {XOR_MERGED} and lazy ratio ≥ 1 (inputs: 2); r ≥ 0.9 rich and lazy", _xor),
    Claim(6, "Context blobs: at high initial scale the context separates the hidden representations; "
             "at very low scale it does not.",
          ("context",), "fraction of the representations' variance explained by the context",
          "high ≥ 0.5, very low ≤ 0.1", _context),
    Claim(7, "MNIST: the theory, at rates fitted to one \"0\" and one \"1\", follows the pair through "
             "the whole rich transition, and the network reaches the reference's accuracy.",
          ("mnist-trajectory",), "median R² of h, y, w; y at the end / dy2; accuracy",
          f"R² h, y, w ≥ {MNIST_R2_MIN}; y at the end ≥ {MNIST_TRANSITION}·dy2; with the reference's "
          f"data and protocol, accuracy ≥ {REFERENCE_ACCURACY} − 0.02", _mnist),
    Claim(8, "MNIST: the structure heuristic exp(−A)·A·exp(−A), A = D_x ⊙ D_y, correlates with the "
             "trained network's hidden distances.",
          ("mnist-structure",), "Pearson r, whole 100 × 100 matrix and without the same-label blocks",
          "r ≥ 0.5 whole, r > 0 without the blocks", _mnist_structure),
    Claim(9, "XOR: the shallow network (one hidden layer, small initial weights) merges the "
             "same-output pairs as the two-point theory predicts.",
          ("xor",), "shallow: same-/different-output distance (measured); Pearson r",
          f"ratio ≤ {XOR_MERGED} and r ≥ 0.9", _xor_shallow),
    Claim(10, "rsd's own (no paper claim): the default row's effective rates are predicted from the "
              "network's own steps at checkpoints of one run, without a fit, and the theory at the "
              "predicted rates follows the network as at the fitted ones.",
          ("predicted-rates",), "default row: fit-weighted secant rates / fitted rates; R² of h at them",
          f"both ratios in [{PREDICTED_RATIO[0]}, {PREDICTED_RATIO[1]}] and R² of h ≥ {PREDICTED_R2_MIN}",
          _predicted_rates),
)
"""The claims, in the order of the report's table."""


def evaluate(all_metrics: dict) -> list[Verdict]:
    """One :class:`Verdict` per claim of :data:`CLAIMS` from ``{experiment: {metric: value}}``."""
    verdicts = []
    for claim in CLAIMS:
        missing = [e for e in claim.experiments if e not in all_metrics]
        if missing:
            verdicts.append(Verdict(claim, None, f"{', '.join(missing)} not in this run"))
            continue
        try:
            holds, evidence = claim.decide(all_metrics)
        except KeyError as error:
            holds, evidence = False, f"metric {error} missing from the results"
        verdicts.append(Verdict(claim, bool(holds), evidence))
    return verdicts


def claims_metrics(verdicts) -> dict[str, int]:
    """``{"claims/<n>": 1 or 0}`` for the claims that ran."""
    return {f"claims/{v.claim.number}": int(v.holds) for v in verdicts if v.holds is not None}


def claims_table(verdicts) -> list[str]:
    """The report's claims table (Markdown lines)."""
    lines = ["| # | claim | metric | criterion | value | verdict |", "|---|---|---|---|---|---|"]
    for v in verdicts:
        c = v.claim
        mark = {True: "**holds**", False: "**does not hold**", None: "not run"}[v.holds]
        lines.append(f"| {c.number} | {c.statement} | {c.metric} | {c.criterion} | {v.evidence} | {mark} |")
    return lines
