"""NEWS2 (RCP 2017 chart 1), qSOFA (Singer 2016) and SIRS (Bone 1992), worked by hand at every threshold."""

from __future__ import annotations

import polars as pl
import pytest
from score_frames import one_row_per_stay, treatment_rows

from organsim.scores import news2, qsofa, sirs


def _column(frame: pl.DataFrame, column: str) -> list:
    return frame.sort("stay_id", "hour")[column].to_list()


@pytest.mark.parametrize(
    ("variable", "component", "values", "expected"),
    [
        ("resp_rate", "news2_respiratory_rate", [8, 9, 11, 12, 20, 21, 24, 25], [3, 1, 1, 0, 0, 2, 2, 3]),
        ("spo2", "news2_spo2", [91, 92, 93, 94, 95, 96], [3, 2, 2, 1, 1, 0]),
        ("sbp", "news2_systolic_bp", [90, 91, 100, 101, 110, 111, 219, 220], [3, 2, 2, 1, 1, 0, 0, 3]),
        ("hr", "news2_pulse", [40, 41, 50, 51, 90, 91, 110, 111, 130, 131], [3, 1, 1, 0, 0, 1, 1, 2, 2, 3]),
        ("temperature", "news2_temperature", [35.0, 35.1, 36.0, 36.1, 38.0, 38.1, 39.0, 39.1],
         [3, 1, 1, 0, 0, 1, 1, 2]),
        ("gcs", "news2_consciousness", [15, 14, 3], [0, 3, 3]),
    ],
)
def test_news2_parameters_at_every_threshold(variable, component, values, expected) -> None:
    scores = news2(one_row_per_stay(**{variable: values}))
    assert _column(scores, component) == expected
    assert _column(scores, "news2") == expected
    assert _column(scores, "news2_n_missing") == [6] * len(values)


def test_news2_supplemental_oxygen() -> None:
    # FiO2 0.21 is air (0); 0.3 is oxygen (2); no FiO2 but ventilated is oxygen (2); nothing: missing (0)
    hourly = one_row_per_stay(fio2=[0.21, 0.3, None, None])
    given = treatment_rows([(3, 1, {"mechanical_ventilation": 1.0})])
    scores = news2(hourly, given)
    assert _column(scores, "news2_supplemental_oxygen") == [0, 2, 2, 0]
    assert _column(scores, "news2_n_missing") == [6, 6, 6, 7]


def test_news2_spo2_scale_2() -> None:
    on_air = [83, 84, 85, 86, 87, 88, 92, 93, 97]
    scores = news2(one_row_per_stay(spo2=on_air, fio2=[0.21] * len(on_air)), spo2_scale=2)
    assert _column(scores, "news2_spo2") == [3, 2, 2, 1, 1, 0, 0, 0, 0]
    on_oxygen = [87, 92, 93, 94, 95, 96, 97]
    scores = news2(one_row_per_stay(spo2=on_oxygen, fio2=[0.4] * len(on_oxygen)), spo2_scale=2)
    assert _column(scores, "news2_spo2") == [1, 0, 1, 1, 2, 2, 3]
    with pytest.raises(ValueError, match="spo2_scale"):
        news2(one_row_per_stay(spo2=[90]), spo2_scale=3)


def test_news2_float32_values_meet_one_decimal_thresholds() -> None:
    # 39.1 stored as float32 is 39.0999985; read at six significant digits it is 39.1 -> 2 points
    hourly = one_row_per_stay(temperature=[39.1])
    assert hourly.schema["temperature"] == pl.Float32
    assert _column(news2(hourly), "news2_temperature") == [2]


def test_news2_risk_bands() -> None:
    # stay 1: RR 25 (3) + SpO2 91 (3) + HR 111 (2) = 8 high; stay 2: RR 21 (2) + SpO2 93 (2) + HR 91 (1) = 5
    # medium; stay 3: RR 25 alone = 3, a red single parameter: low-medium; stay 4: RR 21 + HR 111 = 4 low
    hourly = one_row_per_stay(resp_rate=[25, 21, 25, 21], spo2=[91, 93, None, None], hr=[111, 91, None, 111])
    scores = news2(hourly)
    assert _column(scores, "news2") == [8, 5, 3, 4]
    assert _column(scores, "news2_risk") == ["high", "medium", "low-medium", "low"]


def test_qsofa_criteria() -> None:
    # RR >= 22, SBP <= 100, GCS < 15
    hourly = one_row_per_stay(resp_rate=[22, 21, 30, None], sbp=[100, 101, 90, None], gcs=[14, 15, None, None])
    scores = qsofa(hourly)
    assert _column(scores, "qsofa_respiratory_rate") == [1, 0, 1, 0]
    assert _column(scores, "qsofa_systolic_bp") == [1, 0, 1, 0]
    assert _column(scores, "qsofa_mentation") == [1, 0, 0, 0]
    assert _column(scores, "qsofa") == [3, 0, 2, 0]
    assert _column(scores, "qsofa_positive") == [True, False, True, False]
    assert _column(scores, "qsofa_n_missing") == [0, 0, 1, 3]


def test_sirs_criteria() -> None:
    # temperature > 38 or < 36; HR > 90; RR > 20 or PaCO2 < 32; WBC > 12 or < 4
    hourly = one_row_per_stay(
        temperature=[38, 38.1, 36, 35.9],
        hr=[90, 91, 90, 91],
        resp_rate=[20, 21, 20, None],
        paco2=[32, None, 31.9, None],
        wbc=[12, 12.1, 4, 3.9],
    )
    scores = sirs(hourly)
    assert _column(scores, "sirs_temperature") == [0, 1, 0, 1]
    assert _column(scores, "sirs_heart_rate") == [0, 1, 0, 1]
    assert _column(scores, "sirs_respiratory") == [0, 1, 1, 0]
    assert _column(scores, "sirs_wbc") == [0, 1, 0, 1]
    assert _column(scores, "sirs") == [0, 4, 1, 3]
    assert _column(scores, "sirs_positive") == [False, True, False, True]
    assert _column(scores, "sirs_n_missing") == [0, 0, 0, 1]
