"""Temperature scaling and ECE on cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from stylemap.model.calibration import cross_fitted_ece, expected_calibration_error, fit_temperature


def test_expected_calibration_error():
    y = np.array([0, 0, 0, 1])
    probs = np.array([[0.75, 0.25]] * 4)  # 75 % confident, 75 % right: calibrated
    assert expected_calibration_error(probs, y, 10) == pytest.approx(0.0)
    overconfident = np.array([[0.95, 0.05]] * 4)
    assert expected_calibration_error(overconfident, y, 10) == pytest.approx(0.2)


def sharpened(true_temperature: float, n: int = 4000, k: int = 5, seed: int = 0):
    """Labels drawn from softmax(z), logits reported as z * true_temperature: the ideal T is true_temperature."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(n, k))
    y = np.array([rng.choice(k, p=p) for p in softmax(z, axis=1)])
    return z * true_temperature, y


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 3.0])
def test_fit_temperature_recovers_the_sharpening(true_temperature):
    logits, y = sharpened(true_temperature)
    assert fit_temperature(logits, y) == pytest.approx(true_temperature, rel=0.1)


def test_scaling_lowers_ece_on_held_out_halves_and_keeps_the_argmax():
    logits, y = sharpened(4.0)
    before = expected_calibration_error(softmax(logits, axis=1), y, 10)
    after = cross_fitted_ece(logits, y, 10, seed=0)
    assert before > 0.15 and after < 0.05
    t = fit_temperature(logits, y)
    np.testing.assert_array_equal(softmax(logits / t, axis=1).argmax(1), logits.argmax(1))
    assert cross_fitted_ece(logits, y, 10, seed=0) == after  # seeded halves: the same number every run
