"""The claims table is a function of the metrics: fed metrics that pass or fail each
criterion, every row must say so. The passing metrics are written by hand here (values
on the right side of each criterion), never taken from a run."""

import copy
import math

import pytest

from rsd.experiments import _claims


def passing_metrics() -> dict:
    two_points = {}
    for row in ("default", "gain_1.4"):
        two_points.update({f"{row}/r2_h": 0.99, f"{row}/r2_y": 0.98, f"{row}/r2_w": 0.5,
                           f"{row}/kept": 3, f"{row}/seeds": 4, f"{row}/h_end_over_h0": 1.5,
                           f"{row}/y_rises": 4})
    final_distance = {}
    for row in ("default", "narrow"):
        final_distance.update({f"{row}/pearson_r": 0.95, f"{row}/kept": 7, f"{row}/points": 9})
    losses = [10.0] * 20
    losses[11] = 1.0
    depth = {f"loss/{k}": v for k, v in enumerate(losses)}
    depth.update(best_layer=11, first_over_best=10.0, last_over_best=10.0)
    alternatives = {f"alt{k}_over_true": 1.5 for k in range(1, 5)}
    xor = {"rich/pearson_r": 0.99, "lazy/pearson_r": 0.95, "intermediate/pearson_r": 0.5,
           "rich/same_over_different_measured": 0.01, "lazy/same_over_different_measured": 1.5,
           "shallow/pearson_r": 0.95, "shallow/same_over_different_measured": 0.05,
           "shallow/same_over_different_predicted": 0.0}
    context = {"high/context_variance_fraction": 0.9, "low/context_variance_fraction": 0.3,
               "very_low/context_variance_fraction": 0.01}
    mnist = {"r2_h": 0.99, "r2_y": 0.95, "r2_w": 0.93, "final_y_over_dy2": 0.98,
             "train_accuracy": 0.9, "test_accuracy": 0.88, "reference_protocol": 0}
    structure = {"pearson_r": 0.7, "pearson_r_off_blocks": 0.3}
    predicted = {"default/eta_h_ratio_weighted": 1.1, "default/eta_y_ratio_weighted": 0.9,
                 "default/r2_h_weighted": 0.98}
    return {"two-points": two_points, "final-distance": final_distance, "depth": depth,
            "alternatives": alternatives, "xor": xor, "context": context,
            "mnist-trajectory": mnist, "mnist-structure": structure, "predicted-rates": predicted}


# (claim number, experiment, metric, a value that fails the criterion)
FAILURES = [
    (1, "two-points", "gain_1.4/r2_h", 0.94),
    (1, "two-points", "default/r2_y", 0.5),
    (1, "two-points", "default/kept", 1),
    (1, "two-points", "default/r2_h", math.nan),
    (2, "final-distance", "narrow/pearson_r", 0.89),
    (2, "final-distance", "default/kept", 6),
    (3, "depth", "best_layer", 8),
    (3, "depth", "best_layer", 14),
    (3, "depth", "first_over_best", 4.9),
    (3, "depth", "last_over_best", 2.0),
    (4, "alternatives", "alt3_over_true", 0.99),
    (4, "alternatives", "alt1_over_true", 1.0),
    (5, "xor", "rich/pearson_r", 0.8),
    (5, "xor", "lazy/pearson_r", 0.8),
    (5, "xor", "rich/same_over_different_measured", 0.2),
    (5, "xor", "lazy/same_over_different_measured", 0.9),
    (6, "context", "high/context_variance_fraction", 0.4),
    (6, "context", "very_low/context_variance_fraction", 0.2),
    (7, "mnist-trajectory", "r2_w", 0.6),
    (7, "mnist-trajectory", "final_y_over_dy2", 0.6),
    (8, "mnist-structure", "pearson_r", 0.4),
    (8, "mnist-structure", "pearson_r_off_blocks", -0.1),
    (9, "xor", "shallow/same_over_different_measured", 1.0),
    (9, "xor", "shallow/pearson_r", 0.0),
    (10, "predicted-rates", "default/eta_h_ratio_weighted", 1.26),
    (10, "predicted-rates", "default/eta_y_ratio_weighted", 0.79),
    (10, "predicted-rates", "default/r2_h_weighted", 0.96),
    (10, "predicted-rates", "default/eta_h_ratio_weighted", math.nan),
]


def _by_number(verdicts):
    return {v.claim.number: v for v in verdicts}


def test_every_claim_holds_on_passing_metrics():
    verdicts = _claims.evaluate(passing_metrics())
    assert [v.claim.number for v in verdicts] == list(range(1, len(_claims.CLAIMS) + 1))
    assert all(v.holds is True for v in verdicts), [(v.claim.number, v.evidence) for v in verdicts]
    assert _claims.claims_metrics(verdicts) == {f"claims/{n}": 1 for n in range(1, len(_claims.CLAIMS) + 1)}


@pytest.mark.parametrize("number, experiment, key, value", FAILURES)
def test_a_failing_metric_fails_its_claim_only(number, experiment, key, value):
    metrics = copy.deepcopy(passing_metrics())
    metrics[experiment][key] = value
    verdicts = _by_number(_claims.evaluate(metrics))
    assert verdicts[number].holds is False
    assert all(v.holds for n, v in verdicts.items() if n != number)
    row = [line for line in _claims.claims_table(verdicts.values()) if line.startswith(f"| {number} |")]
    assert len(row) == 1 and row[0].endswith("| **does not hold** |")
    assert _claims.claims_metrics(verdicts.values())[f"claims/{number}"] == 0


def test_missing_experiment_is_not_run():
    metrics = passing_metrics()
    del metrics["xor"]
    verdicts = _by_number(_claims.evaluate(metrics))
    assert verdicts[5].holds is None and verdicts[9].holds is None and verdicts[5].label == "not run"
    assert "claims/5" not in _claims.claims_metrics(verdicts.values())
    assert verdicts[1].holds is True


def test_depth_band_scales_with_depth():
    assert _claims.depth_band(20) == (9, 13)
    lo, hi = _claims.depth_band(6)
    assert 0 < lo <= hi < 5


def test_the_lazy_explanation_names_the_invariant():
    """A row whose h falls while y rises cannot be followed by the theory (h rises with y
    on its solutions): the evidence says so."""
    metrics = passing_metrics()
    metrics["two-points"].update({"gain_1.4/r2_h": -5.0, "gain_1.4/h_end_over_h0": 0.6})
    verdict = _by_number(_claims.evaluate(metrics))[1]
    assert verdict.holds is False and "h² − C·h = k·y" in verdict.evidence and "`gain_1.4`" in verdict.evidence
    # A row that barely moved (h at 0.99·h0) and did not train is not blamed on the theory.
    metrics["two-points"].update({"gain_1.4/h_end_over_h0": 0.99, "gain_1.4/kept": 0,
                                  "gain_1.4/final_loss_above": 4})
    verdict = _by_number(_claims.evaluate(metrics))[1]
    assert "h² − C·h" not in verdict.evidence and "4 seeds end above the 1e-2 loss" in verdict.evidence


def test_h_rises_with_y_on_the_theory_s_solutions():
    """The fact the lazy explanation rests on, checked on a solved trajectory: along a
    solution h² − C·h = k·y with C the invariant, so h and y move together."""
    import numpy as np

    from rsd import theory

    eta_h, eta_y, dx2, dy2 = 2e-3, 1e-3, 1.0, 0.5
    z0 = np.array([1.2, 1e-4, 1e-4 - np.sqrt(1e-4 * dy2)])
    sol = theory.solve(z0, np.linspace(0, 20000, 400), eta_h, eta_y, dx2, dy2)
    h, y = np.asarray(sol.zs)[:, 0], np.asarray(sol.zs)[:, 1]
    k = eta_h * dx2 / eta_y
    c = float(theory.invariant(z0, eta_h, eta_y, dx2))
    np.testing.assert_allclose(h ** 2 - c * h, k * y, rtol=1e-3, atol=1e-6)
    assert h[-1] >= h[0] and np.all(np.diff(h)[np.diff(y) > 0] >= -1e-6)
