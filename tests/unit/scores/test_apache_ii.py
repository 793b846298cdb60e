"""APACHE II against Knaus 1985 figure 1, worked by hand, with every threshold and its neighbour."""

from __future__ import annotations

import polars as pl
import pytest
from score_frames import one_row_per_stay, one_stay

from organsim.scores import apache_ii, first_window
from organsim.utils import DataError


def _column(frame: pl.DataFrame, column: str) -> list[int]:
    return frame.sort("stay_id", "hour")[column].to_list()


@pytest.mark.parametrize(
    ("variable", "component", "values", "expected"),
    [
        ("temperature", "apache_ii_temperature",
         [41, 40.9, 39, 38.9, 38.5, 38.4, 36, 35.9, 34, 33.9, 32, 31.9, 30, 29.9],
         [4, 3, 3, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 4]),
        ("map", "apache_ii_map", [160, 159, 130, 129, 110, 109, 70, 69, 50, 49], [4, 3, 3, 2, 2, 0, 0, 2, 2, 4]),
        ("hr", "apache_ii_heart_rate", [180, 179, 140, 139, 110, 109, 70, 69, 55, 54, 40, 39],
         [4, 3, 3, 2, 2, 0, 0, 2, 2, 3, 3, 4]),
        ("resp_rate", "apache_ii_respiratory_rate", [50, 49, 35, 34, 25, 24, 12, 11, 10, 9, 6, 5],
         [4, 3, 3, 1, 1, 0, 0, 1, 1, 2, 2, 4]),
        ("ph", "apache_ii_acid_base", [7.7, 7.69, 7.6, 7.59, 7.5, 7.49, 7.33, 7.32, 7.25, 7.24, 7.15, 7.14],
         [4, 3, 3, 1, 1, 0, 0, 2, 2, 3, 3, 4]),
        ("hco3", "apache_ii_acid_base", [52, 51.9, 41, 40.9, 32, 31.9, 22, 21.9, 18, 17.9, 15, 14.9],
         [4, 3, 3, 1, 1, 0, 0, 2, 2, 3, 3, 4]),
        ("sodium", "apache_ii_sodium", [180, 179, 160, 159, 155, 154, 150, 149, 130, 129, 120, 119, 111, 110],
         [4, 3, 3, 2, 2, 1, 1, 0, 0, 2, 2, 3, 3, 4]),
        ("potassium", "apache_ii_potassium", [7, 6.9, 6, 5.9, 5.5, 5.4, 3.5, 3.4, 3, 2.9, 2.5, 2.4],
         [4, 3, 3, 1, 1, 0, 0, 1, 1, 2, 2, 4]),
        ("creatinine", "apache_ii_creatinine", [3.5, 3.4, 2, 1.9, 1.5, 1.4, 0.6, 0.5], [4, 3, 3, 2, 2, 0, 0, 2]),
        ("hematocrit", "apache_ii_hematocrit", [60, 59.9, 50, 49.9, 46, 45.9, 30, 29.9, 20, 19.9],
         [4, 2, 2, 1, 1, 0, 0, 2, 2, 4]),
        ("wbc", "apache_ii_wbc", [40, 39.9, 20, 19.9, 15, 14.9, 3, 2.9, 1, 0.9], [4, 2, 2, 1, 1, 0, 0, 2, 2, 4]),
        ("gcs", "apache_ii_gcs", [15, 14, 9, 3], [0, 1, 6, 12]),
    ],
)
def test_physiology_components_at_every_threshold(variable, component, values, expected) -> None:
    scores = apache_ii(one_row_per_stay(**{variable: values}))
    assert _column(scores, component) == expected
    assert _column(scores, "apache_ii_aps") == expected
    # the other eleven components and age are missing
    assert _column(scores, "apache_ii_n_missing") == [12] * len(values)


def test_oxygenation_pao2_below_fio2_half() -> None:
    # FiO2 0.3: PaO2 > 70 0, 61-70 1, 55-60 3, < 55 4
    pao2 = [71, 70, 61, 60, 55, 54]
    scores = apache_ii(one_row_per_stay(pao2=pao2, fio2=[0.3] * len(pao2)))
    assert _column(scores, "apache_ii_oxygenation") == [0, 1, 1, 3, 3, 4]
    # FiO2 missing: room air, PaO2 table
    assert _column(apache_ii(one_row_per_stay(pao2=[58], fio2=[None])), "apache_ii_oxygenation") == [3]


def test_oxygenation_aa_gradient_from_fio2_half() -> None:
    # FiO2 1.0, PaCO2 40: PAO2 = 713 - 50 = 663. A-a >= 500 4, 350-499 3, 200-349 2, < 200 0.
    pao2 = [163, 164, 313, 314, 463, 464]
    scores = apache_ii(one_row_per_stay(pao2=pao2, fio2=[1.0] * 6, paco2=[40] * 6))
    assert _column(scores, "apache_ii_oxygenation") == [4, 3, 3, 2, 2, 0]
    # FiO2 exactly 0.5 uses the gradient: 356.5 - 30/0.8 - 100 = 219 -> 2;
    # PaCO2 missing is taken as 40: 356.5 - 50 - 100 = 206.5 -> 2; PaO2 100 on FiO2 0.49 -> 0
    scores = apache_ii(one_row_per_stay(pao2=[100, 100, 100], fio2=[0.5, 0.5, 0.49], paco2=[30, None, None]))
    assert _column(scores, "apache_ii_oxygenation") == [2, 2, 0]


def test_ph_wins_over_hco3() -> None:
    scores = apache_ii(one_row_per_stay(ph=[7.40, None], hco3=[14, 14]))
    assert _column(scores, "apache_ii_acid_base") == [0, 4]


@pytest.mark.parametrize(("age", "points"), [(44, 0), (45, 2), (54, 2), (55, 3), (64, 3), (65, 5), (74, 5), (75, 6)])
def test_age_points(age: float, points: int) -> None:
    stays = pl.DataFrame({"stay_id": [1], "age": [age]})
    scores = apache_ii(one_stay(hr=[80]), stays)
    assert scores["apache_ii_age_points"].to_list() == [points]
    assert scores["apache_ii"].to_list() == [points]


def test_chronic_health_and_acute_renal_failure_from_context() -> None:
    hourly = one_row_per_stay(creatinine=[2.0, 2.0, 2.0, 2.0, 2.0])
    context = pl.DataFrame({
        "stay_id": [1, 2, 3, 4],
        "chronic_organ_insufficiency": [True, True, True, False],
        "admission_type": ["nonoperative", "emergency_postoperative", "elective_postoperative", None],
        "acute_renal_failure": [False, None, True, True],
    })
    scores = apache_ii(hourly, context=context)
    assert _column(scores, "apache_ii_chronic_points") == [5, 5, 2, 0, 0]  # stay 5: unknown -> 0
    assert _column(scores, "apache_ii_creatinine") == [3, 3, 6, 6, 3]  # doubled in acute renal failure
    assert _column(scores, "apache_ii") == [8, 8, 8, 6, 3]


def test_context_errors_name_the_row_and_column() -> None:
    context = pl.DataFrame({"stay_id": [1, 2], "chronic_organ_insufficiency": [False, True],
                            "admission_type": ["nonoperative", "surgical"]})
    with pytest.raises(DataError, match="row 2") as caught:
        apache_ii(one_stay(hr=[80]), context=context)
    assert caught.value.column == "admission_type"
    with pytest.raises(DataError, match="chronic_organ_insufficiency"):
        apache_ii(one_stay(hr=[80]), context=pl.DataFrame({"stay_id": [1], "diabetes": [True]}))


def test_worked_patient() -> None:
    # temperature 39.2 (3), MAP 65 (2), HR 125 (2), RR 30 (1), PaO2 65 on FiO2 0.3 (1), pH 7.28 (2),
    # Na 132 (0), K 3.2 (1), creatinine 2.3 in ARF (3 x 2 = 6), Hct 28 (2), WBC 18 (1), GCS 13 (2):
    # APS 23; age 67 -> 5; chronic organ insufficiency, nonoperative -> 5; APACHE II 33.
    hourly = one_stay(temperature=[39.2], map=[65], hr=[125], resp_rate=[30], pao2=[65], fio2=[0.3], ph=[7.28],
                      sodium=[132], potassium=[3.2], creatinine=[2.3], hematocrit=[28], wbc=[18], gcs=[13])
    stays = pl.DataFrame({"stay_id": [1], "age": [67.0]})
    context = pl.DataFrame({"stay_id": [1], "chronic_organ_insufficiency": [True],
                            "admission_type": ["nonoperative"], "acute_renal_failure": [True]})
    row = apache_ii(hourly, stays, context=context).row(0, named=True)
    assert (row["apache_ii_aps"], row["apache_ii_age_points"], row["apache_ii_chronic_points"]) == (23, 5, 5)
    assert row["apache_ii"] == 33 and row["apache_ii_24h"] == 33
    assert (row["apache_ii_n_carried"], row["apache_ii_n_missing"]) == (0, 0)


def test_24h_worst_takes_each_component_at_its_worst_hour() -> None:
    # HR 150 (3) at hour 1 and 80 after; temperature 37 at hour 1 and 40 (3) at hour 2.
    # Hour 2: this-hour APS = 0 + 3 = 3, worst-in-window = 3 + 3 = 6.
    scores = apache_ii(one_stay(hr=[150, 80, 80], temperature=[37, 40, 40]))
    assert _column(scores, "apache_ii_aps") == [3, 3, 3]
    assert _column(scores, "apache_ii_24h") == [3, 6, 6]


def test_first_window_is_the_first_day_score() -> None:
    # stay 1 (hours 3-32): HR 150 (3) at hours 3 and 20, temperature 40 (3) from hour 27, after the
    # first day (hours 3-26): first-day score 3, later windows 6. Stay 2 has 5 hours only: its last
    # hour stands for the (short) first day.
    hr = [150] + [80] * 16 + [150] + [80] * 12
    stay_1 = one_stay(hr=hr, temperature=[37] * 24 + [40] * 6).with_columns(pl.col("hour") + 2)
    stay_2 = one_stay(hr=[80, 80, 80, 80, 115]).with_columns(pl.lit(2, dtype=pl.Int64).alias("stay_id"))
    scores = apache_ii(pl.concat([stay_1, stay_2], how="diagonal"))
    first_day = first_window(scores, "apache_ii_24h")
    assert first_day.to_dicts() == [{"stay_id": 1, "apache_ii_24h": 3}, {"stay_id": 2, "apache_ii_24h": 2}]
    assert scores.filter(pl.col("stay_id") == 1)["apache_ii_24h"].max() == 6
    with pytest.raises(ValueError, match="hours"):
        first_window(scores, "apache_ii_24h", hours=0)
