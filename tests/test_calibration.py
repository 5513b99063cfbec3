"""Thresholds chosen on validation and applied elsewhere; temperature scaling; reliability bins and ECE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit, logit

from cxr14.judging.calibration import expected_calibration_error, fit_temperature, reliability_bins
from cxr14.judging.thresholds import choose_on_validation, operating_point, youden_thresholds
from cxr14.labels import NIH_LABELS
from cxr14.model.decision import ValidationChoice, apply_temperature, decide


def brute_force_youden(y: np.ndarray, p: np.ndarray) -> float:
    """Try every distinct score as `p >= t`; the best J, ties to the highest t."""
    best_j, best_t = -np.inf, np.nan
    for t in np.unique(p)[::-1]:
        called = p >= t
        j = called[y == 1].mean() - called[y == 0].mean()
        if j > best_j:
            best_j, best_t = j, t
    return best_t


def test_youden_equals_brute_force_with_ties() -> None:
    rng = np.random.default_rng(0)
    targets = (rng.random((120, 14)) < 0.3).astype(np.uint8)
    probs = np.round(expit(rng.normal(size=(120, 14)) + 1.2 * targets), 1)  # few distinct values: many ties
    targets[:, 13] = 0
    chosen = youden_thresholds(targets, probs)
    for j in range(13):
        assert chosen[j] == brute_force_youden(targets[:, j], probs[:, j]), j
    assert np.isnan(chosen[13])
    # J = 0.5 at both 0.9 and 0.7: the higher threshold (fewer positive calls) wins
    assert youden_thresholds([[1], [0], [1], [0]], [[0.9], [0.8], [0.7], [0.1]])[0] == 0.9


def test_operating_point_counts_by_hand() -> None:
    targets = np.array([[1, 1], [1, 0], [0, 0], [0, 0], [1, 0]])
    probs = np.array([[0.9, 0.2], [0.4, 0.1], [0.5, 0.3], [0.1, 0.0], [0.5, 0.9]])
    result = operating_point(targets, probs, np.array([0.5, 0.95]), names=("A", "B"))
    a = result.per_class["A"]  # called: rows 0, 2, 4 (0.5 >= 0.5 is positive)
    assert (a.tp, a.fp, a.tn, a.fn) == (2, 1, 1, 1)
    assert (a.sensitivity, a.specificity, a.ppv, a.npv, a.f1) == pytest.approx((2 / 3, 1 / 2, 2 / 3, 1 / 2, 4 / 6))
    b = result.per_class["B"]  # nothing called positive: PPV divides by zero
    assert (b.tp, b.fp, b.tn, b.fn) == (0, 0, 4, 1)
    assert b.ppv is None and b.sensitivity == 0.0 and b.specificity == 1.0 and b.f1 == 0.0
    none = operating_point(targets, probs, np.array([0.5, np.nan]), names=("A", "B")).per_class["B"]
    assert none.threshold is None and none.sensitivity is None and none.tp is None
    assert result.to_json()["per_class"]["A"]["threshold"] == 0.5


def test_thresholds_from_validation_are_applied_to_test_unchanged() -> None:
    rng = np.random.default_rng(1)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = (rng.random((n, 14)) < 0.25).astype(np.uint8)
        return y, rng.normal(size=(n, 14)) + 1.5 * y

    val_y, val_z = split(400)
    test_y, test_z = split(300)
    choice = choose_on_validation(val_y, val_z, calibrate=True)
    val_p = apply_temperature(val_z, choice.temperature)
    np.testing.assert_array_equal(choice.thresholds, youden_thresholds(val_y, val_p))
    test_p = apply_temperature(test_z, choice.temperature)
    result = operating_point(test_y, test_p, choice.thresholds, NIH_LABELS)
    used = np.array([result.per_class[n].threshold for n in NIH_LABELS])
    np.testing.assert_array_equal(used, choice.thresholds)  # the validation thresholds, as they were
    assert not np.array_equal(used, youden_thresholds(test_y, test_p))  # not what test would have chosen
    called = decide(test_p, choice.thresholds)
    assert [result.per_class[n].tp for n in NIH_LABELS] == (called & (test_y == 1)).sum(axis=0).tolist()
    stored = choice.to_json()
    assert stored["decision"] == "probability >= threshold" and len(stored["thresholds"]) == 14
    back = ValidationChoice.from_json(stored)
    np.testing.assert_array_equal(back.thresholds, choice.thresholds)
    np.testing.assert_array_equal(back.temperature, choice.temperature)
    plain = choose_on_validation(val_y, val_z, calibrate=False)
    assert plain.temperature is None and plain.to_json()["temperature"] is None
    np.testing.assert_array_equal(plain.thresholds, youden_thresholds(val_y, expit(val_z)))
    undefined = choose_on_validation(np.zeros((4, 1)), np.zeros((4, 1)), calibrate=True).to_json()
    assert undefined["thresholds"] == [None] and undefined["temperature"] == [1.0]
    assert np.isnan(ValidationChoice.from_json(undefined).thresholds[0])


def test_temperature_fit_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(2)
    true_t = np.linspace(0.5, 3.0, 14)
    z = rng.normal(scale=2.0, size=(20000, 14))
    targets = (rng.random(z.shape) < expit(z)).astype(np.uint8)  # z is the calibrated logit
    targets[:, 13] = 0
    fitted = fit_temperature(targets, true_t * z)  # the network's logits are T * z
    np.testing.assert_allclose(fitted[:13], true_t[:13], rtol=0.06)
    assert fitted[13] == 1.0  # one class only: left alone


def test_apply_temperature_numpy_and_torch_agree() -> None:
    z = np.random.default_rng(3).normal(size=(5, 14))
    temps = np.linspace(0.5, 2.0, 14)
    ours = apply_temperature(z, temps)
    np.testing.assert_allclose(ours, expit(z / temps))
    np.testing.assert_allclose(apply_temperature(torch.tensor(z), temps).numpy(), ours, rtol=1e-6)
    np.testing.assert_allclose(apply_temperature(z), expit(z))
    assert torch.equal(apply_temperature(torch.tensor(z, dtype=torch.float32)), torch.sigmoid(torch.tensor(z).float()))


def test_reliability_bins_and_ece_by_hand() -> None:
    targets = np.array([[1], [0], [1], [1], [0]])
    probs = np.array([[0.05], [0.1], [0.95], [1.0], [0.55]])
    rel = reliability_bins(targets, probs, ("A",), n_bins=10)
    assert rel.count[0].tolist() == [1, 1, 0, 0, 0, 1, 0, 0, 0, 2]  # 0.1 opens bin 1; 1.0 joins the last bin
    assert rel.observed[0, 9] == 1.0 and rel.mean_predicted[0, 9] == pytest.approx(0.975)
    assert np.isnan(rel.mean_predicted[0, 2])
    by_hand = (1 * abs(0.05 - 1) + 1 * abs(0.1 - 0) + 1 * abs(0.55 - 0) + 2 * abs(0.975 - 1)) / 5
    assert rel.ece[0] == pytest.approx(by_hand)
    assert expected_calibration_error(targets, probs)[0] == pytest.approx(by_hand)
    bins = rel.bins_json()["per_class"]["A"]
    assert bins["count"][9] == 2 and bins["observed"][2] is None
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_bins(targets, probs * 3, ("A",))


def test_ece_small_when_calibrated_large_when_over_confident_and_temperature_fixes_it() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(scale=1.5, size=(40000, 14))
    targets = (rng.random(z.shape) < expit(z)).astype(np.uint8)
    calibrated = expected_calibration_error(targets, expit(z))
    over = expected_calibration_error(targets, expit(3.0 * z))
    assert calibrated.max() < 0.02 and over.min() > 0.08
    val, test = slice(0, 20000), slice(20000, None)
    temps = fit_temperature(targets[val], 3.0 * z[val])
    fixed = expected_calibration_error(targets[test], apply_temperature(3.0 * z[test], temps))
    assert fixed.max() < 0.02
    np.testing.assert_allclose(logit(apply_temperature(3.0 * z[:3], temps)), 3.0 * z[:3] / temps, rtol=1e-9)
