"""SOFA against Vincent 1996 table 1, worked by hand, with every threshold and its neighbour."""

from __future__ import annotations

import polars as pl
import pytest
from score_frames import one_row_per_stay, one_stay, treatment_rows

from organsim.scores import sofa, sofa_stratum


def _column(frame: pl.DataFrame, column: str) -> list[int]:
    return frame.sort("stay_id", "hour")[column].to_list()


@pytest.mark.parametrize(
    ("column", "values", "expected", "subscore"),
    [
        # platelets 10^3/uL: >=150 0, <150 1, <100 2, <50 3, <20 4
        ("platelets", [150, 149, 100, 99, 50, 49, 20, 19], [0, 1, 1, 2, 2, 3, 3, 4], "sofa_coagulation"),
        # bilirubin mg/dL: <1.2 0, 1.2-1.9 1, 2.0-5.9 2, 6.0-11.9 3, >=12 4
        ("bilirubin_total", [1.1, 1.2, 1.9, 2.0, 5.9, 6.0, 11.9, 12.0], [0, 1, 1, 2, 2, 3, 3, 4], "sofa_liver"),
        # GCS: 15 0, 13-14 1, 10-12 2, 6-9 3, <6 4
        ("gcs", [15, 14, 13, 12, 10, 9, 6, 5, 3], [0, 1, 1, 2, 2, 3, 3, 4, 4], "sofa_cns"),
        # creatinine mg/dL: <1.2 0, 1.2-1.9 1, 2.0-3.4 2, 3.5-4.9 3, >=5 4
        ("creatinine", [1.1, 1.2, 1.9, 2.0, 3.4, 3.5, 4.9, 5.0], [0, 1, 1, 2, 2, 3, 3, 4], "sofa_renal"),
        # MAP mmHg without vasopressor: >=70 0, <70 1
        ("map", [70, 69.9, 40], [0, 1, 1], "sofa_cardiovascular"),
    ],
)
def test_single_variable_subscores_at_every_threshold(column, values, expected, subscore) -> None:
    scores = sofa(one_row_per_stay(**{column: values}))
    assert _column(scores, subscore) == expected
    assert _column(scores, "sofa") == expected  # the other five subscores are missing -> 0
    assert _column(scores, "sofa_n_missing") == [5] * len(values)


def test_respiration_pf_ratio_with_and_without_ventilation() -> None:
    # FiO2 1.0 makes P/F = PaO2: >=400 0, <400 1, <300 2, <200 3 and <100 4 only with support
    pao2 = [400, 399, 300, 299, 200, 199, 100, 99]
    hourly = one_row_per_stay(pao2=pao2, fio2=[1.0] * len(pao2))
    ventilated = treatment_rows([(s, 1, {"mechanical_ventilation": 1.0}) for s in range(1, len(pao2) + 1)])
    assert _column(sofa(hourly, ventilated), "sofa_respiration") == [0, 1, 1, 2, 2, 3, 3, 4]
    assert _column(sofa(hourly), "sofa_respiration") == [0, 1, 1, 2, 2, 2, 2, 2]
    # 80 / 0.4 = 200 exactly: 2 points (not < 200); FiO2 missing -> room air: 60 / 0.21 = 285.7 -> 2
    hourly = one_row_per_stay(pao2=[80, 60], fio2=[0.4, None])
    assert _column(sofa(hourly), "sofa_respiration") == [2, 2]


def test_respiration_spo2_surrogate_rice_2007() -> None:
    # SpO2 92 % on FiO2 0.5: S/F 184 -> P/F (184 - 64) / 0.84 = 142.9 -> 3 (ventilated)
    # SpO2 98 %: above 97 % no surrogate -> missing
    hourly = one_row_per_stay(spo2=[92, 98], fio2=[0.5, 0.5])
    ventilated = treatment_rows([(1, 1, {"mechanical_ventilation": 1.0}), (2, 1, {"mechanical_ventilation": 1.0})])
    scores = sofa(hourly, ventilated)
    assert _column(scores, "sofa_respiration") == [3, 0]
    assert _column(scores, "sofa_n_missing") == [5, 6]
    without = sofa(hourly, ventilated, spo2_surrogate=False)
    assert _column(without, "sofa_respiration") == [0, 0]
    assert _column(without, "sofa_n_missing") == [6, 6]


def test_cardiovascular_norepinephrine_equivalents() -> None:
    # NE 0.1 ug/kg/min is "<= 0.1" -> 3; 0.11 -> 4; 0.05 -> 3; no vasopressor with MAP 65 -> 1
    hourly = one_row_per_stay(map=[80, 80, 80, 65, None])
    given = treatment_rows([(1, 1, {"norepinephrine": 0.1}), (2, 1, {"norepinephrine": 0.11}),
                            (3, 1, {"norepinephrine": 0.05}), (4, 1, {"norepinephrine": 0.0}),
                            (5, 1, {"norepinephrine": 0.2})])
    scores = sofa(hourly, given)
    assert _column(scores, "sofa_cardiovascular") == [3, 4, 3, 1, 4]
    # a vasopressor is a value: the subscore is not missing even without MAP
    assert _column(scores, "sofa_n_missing") == [5, 5, 5, 5, 5]


def test_renal_urine_output_per_day() -> None:
    # mean hourly urine x 24: 21 -> 504 (0), 20.8 -> 499.2 (3), 8.4 -> 201.6 (3), 8.3 -> 199.2 (4)
    scores = sofa(one_row_per_stay(urine_output=[21, 20.8, 8.4, 8.3]))
    assert _column(scores, "sofa_renal") == [0, 3, 3, 4]
    # the worse of creatinine and urine: creatinine 2.5 (2) with urine 8 mL/h (192 mL/day, 4) -> 4
    scores = sofa(one_row_per_stay(creatinine=[2.5, 2.5], urine_output=[8, 40]))
    assert _column(scores, "sofa_renal") == [4, 2]


def test_urine_output_is_averaged_over_the_trailing_day() -> None:
    # 10 mL/h at hour 1 alone: 240 mL/day -> 3; with 40 mL/h at hour 2 the mean is 25 -> 600 -> 0.
    # Hour 24 still sees both hours; hour 25 sees only hour 2 (960 -> 0); hour 26 sees none: missing.
    urine: list[float | None] = [10, 40] + [None] * 24
    scores = sofa(one_stay(urine_output=urine))
    renal = _column(scores, "sofa_renal")
    missing = _column(scores, "sofa_n_missing")
    assert renal[0] == 3 and renal[1] == 0 and renal[23] == 0 and renal[24] == 0
    assert missing[24] == 5 and missing[25] == 6


def test_worked_patient_and_24h_worst_and_stratum() -> None:
    # Ventilated, PaO2 90 on FiO2 0.6 (P/F 150 -> 3), platelets 45 (3), bilirubin 2.5 (2),
    # norepinephrine 0.08 (3), GCS 11 (2), creatinine 1.5 (1): SOFA 14.
    hourly = one_stay(pao2=[90], fio2=[0.6], platelets=[45], bilirubin_total=[2.5], map=[60], gcs=[11],
                      creatinine=[1.5])
    given = treatment_rows([(1, 1, {"norepinephrine": 0.08, "mechanical_ventilation": 1.0})])
    scores = sofa(hourly, given)
    assert scores.row(0, named=True) == {
        "stay_id": 1, "hour": 1, "sofa_respiration": 3, "sofa_coagulation": 3, "sofa_liver": 2,
        "sofa_cardiovascular": 3, "sofa_cns": 2, "sofa_renal": 1, "sofa": 14, "sofa_n_carried": 0,
        "sofa_n_missing": 0, "sofa_24h": 14, "sofa_stratum": "11+",
    }


def test_sofa_24h_is_the_sum_of_each_subscores_worst_in_the_trailing_window() -> None:
    # platelets 40 (3) at hour 1, 200 (0) at hour 2, then carried; MAP 60 (1) only at hour 10.
    platelets: list[float | None] = [40, 200] + [None] * 28
    map_: list[float | None] = [None] * 9 + [60] + [None] * 20
    scores = sofa(one_stay(platelets=platelets, map=map_))
    hourly, worst = _column(scores, "sofa"), _column(scores, "sofa_24h")
    assert hourly[:3] == [3, 0, 0] and hourly[9] == 1
    # window (t - 24, t]: hour 24 still holds hour 1 (3 + MAP 1 from hour 10); hour 25 no longer does
    assert worst[23] == 4 and worst[24] == 1
    # MAP 60 at hour 10 is carried 4 h (to hour 14) and stays the worst until hour 14 + 23
    assert worst[29] == 1
    assert _column(scores, "sofa_stratum")[23] == "0-5"


@pytest.mark.parametrize(("total", "stratum"), [(5, "0-5"), (6, "6-10"), (10, "6-10"), (11, "11+")])
def test_stratum_edges(total: int, stratum: str) -> None:
    assert pl.select(sofa_stratum(pl.lit(total))).item() == stratum
