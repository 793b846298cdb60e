"""SOFA on true values, Sepsis-3 onset and the rolling urine window, against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from organsim.physiology.labels import rolling_24h_urine, sepsis_onset, sofa_score

NORMAL = {
    "pao2": 95.0, "fio2": 0.21, "ventilated": 0.0, "platelets": 250.0, "bilirubin": 0.6,
    "mean_arterial_pressure": 85.0, "norepinephrine": 0.0, "gcs_unsedated": 15.0, "creatinine": 0.8,
    "urine_24h_ml": 1800.0,
}


def _sofa(**changes: float) -> int:
    values = {k: np.array([v]) for k, v in {**NORMAL, **changes}.items()}
    return int(sofa_score(**values)[0])


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, 0),
        ({"pao2": 80.0, "fio2": 0.3}, 2),  # P/F 267
        ({"pao2": 80.0, "fio2": 0.5}, 2),  # P/F 160 without ventilation: capped at 2
        ({"pao2": 80.0, "fio2": 0.5, "ventilated": 1.0}, 3),
        ({"pao2": 60.0, "fio2": 1.0, "ventilated": 1.0}, 4),
        ({"platelets": 140.0}, 1),
        ({"platelets": 45.0}, 3),
        ({"bilirubin": 2.0}, 2),
        ({"bilirubin": 12.5}, 4),
        ({"mean_arterial_pressure": 68.0}, 1),
        ({"norepinephrine": 0.08}, 3),
        ({"norepinephrine": 0.2}, 4),
        ({"gcs_unsedated": 13.0}, 1),
        ({"gcs_unsedated": 9.0}, 3),
        ({"gcs_unsedated": 5.0}, 4),
        ({"creatinine": 2.5}, 2),
        ({"urine_24h_ml": 400.0}, 3),
        ({"creatinine": 1.5, "urine_24h_ml": 150.0}, 4),
        ({"platelets": 90.0, "bilirubin": 1.5, "norepinephrine": 0.05, "creatinine": 3.6}, 2 + 1 + 3 + 3),
    ],
)
def test_sofa_components(changes: dict[str, float], expected: int) -> None:
    assert _sofa(**changes) == expected


def test_rolling_urine_sums_the_last_24_hours_and_scales_early_windows() -> None:
    urine = np.full((1, 30), 10.0)
    urine[0, 25:] = 50.0
    total = rolling_24h_urine(urine)[0]
    assert total[0] == pytest.approx(240.0)  # 10 mL in 1 h, scaled to 24 h
    assert total[23] == pytest.approx(240.0)
    assert total[27] == pytest.approx(21 * 10.0 + 3 * 50.0)


def test_sepsis_onset_rules() -> None:
    first_hour = -9  # column 0 is engine hour -9 (ICU hours are 1, 2, ...)
    hours = first_hour + np.arange(40)
    sofa = np.zeros((6, 40), dtype=np.int16)
    infection = np.array([-5.5, 3.2, 4.0, np.nan, 2.0, 1.0])
    n_hours = np.array([30, 30, 30, 30, 6, 30])
    sofa[0, hours >= -2] = 2  # rises before admission: present on admission -> hour 1
    sofa[1, hours >= 10] = 3  # rises in the ICU after an infection at 3.2 h -> hour 10
    sofa[2, :] = 4  # high before and after the infection: no acute rise
    sofa[3, hours >= 5] = 6  # never infected: not septic whatever the SOFA
    sofa[4, hours >= 8] = 2  # the rise comes after the stay ended (death at hour 6)
    sofa[5, hours >= 20] = 2
    sofa[5, hours == 1] = 5  # a high SOFA in the hour the infection starts is the baseline ...
    onset = sepsis_onset(sofa, infection, first_hour, n_hours)
    assert onset[0] == 1
    assert onset[1] == 10
    assert np.isnan(onset[2]) and np.isnan(onset[3]) and np.isnan(onset[4])
    assert np.isnan(onset[5])  # ... which the later rise of 2 does not exceed by 2


def test_sepsis_onset_window_is_72_hours() -> None:
    sofa = np.zeros((1, 120), dtype=np.int16)
    sofa[0, 80:] = 3  # engine hour 80 = 79 h after an infection starting at hour 0.5
    assert np.isnan(sepsis_onset(sofa, np.array([0.5]), 0, np.array([119]))[0])
    sofa[0, 60:] = 3
    assert sepsis_onset(sofa, np.array([0.5]), 0, np.array([119]))[0] == 60
