"""The documented missing-value rule: carry forward within a window, otherwise normal, count both."""

from __future__ import annotations

import polars as pl
import pytest
from score_frames import one_stay, treatment_rows

from organsim.scores import (
    DEFAULT_CARRY_FORWARD_HOURS,
    apache_ii,
    carry_forward,
    news2,
    qsofa,
    score_trajectories,
    sirs,
    sofa,
)
from organsim.utils import DataError


def test_vital_carried_four_hours_then_normal() -> None:
    # MAP 60 at hour 1 only: hours 1-5 score 1 (hour 1 measured, 2-5 carried), hour 6 is normal (0)
    scores = sofa(one_stay(map=[60, None, None, None, None, None]))
    assert scores["sofa_cardiovascular"].to_list() == [1, 1, 1, 1, 1, 0]
    assert scores["sofa_n_carried"].to_list() == [0, 1, 1, 1, 1, 0]
    assert scores["sofa_n_missing"].to_list() == [5, 5, 5, 5, 5, 6]
    assert DEFAULT_CARRY_FORWARD_HOURS == {"vital": 4, "bedside": 8, "lab": 24}


def test_windows_count_hours_not_rows() -> None:
    # hours 1 and 6 (a gap of five hours): the hour-1 MAP is 5 h old at hour 6 -> not carried
    hourly = pl.DataFrame({"stay_id": [1, 1], "hour": [1, 6], "map": [60.0, None]},
                          schema={"stay_id": pl.Int64, "hour": pl.Int32, "map": pl.Float32})
    assert sofa(hourly)["sofa_cardiovascular"].to_list() == [1, 0]


def test_lab_carried_24_hours_and_never_across_stays() -> None:
    platelets: list[float | None] = [40] + [None] * 25
    scores = sofa(one_stay(platelets=platelets))
    assert scores["sofa_coagulation"].to_list() == [3] * 25 + [0]
    two_stays = pl.DataFrame({"stay_id": [1, 2], "hour": [1, 2], "platelets": [40.0, None]})
    assert sofa(two_stays)["sofa_coagulation"].to_list() == [3, 0]


def test_windows_can_be_set_by_number_kind_or_variable() -> None:
    hourly = one_stay(map=[60, None, None], platelets=[40, None, None])
    assert sofa(hourly, carry_forward_hours=0)["sofa"].to_list() == [4, 0, 0]
    assert sofa(hourly, carry_forward_hours={"vital": 1})["sofa"].to_list() == [4, 4, 3]
    assert sofa(hourly, carry_forward_hours={"platelets": 1, "map": 2})["sofa"].to_list() == [4, 4, 1]
    with pytest.raises(ValueError, match="neither a variable kind"):
        sofa(hourly, carry_forward_hours={"vitals": 1})
    with pytest.raises(ValueError, match=">= 0"):
        sofa(hourly, carry_forward_hours={"map": -1})


def test_variables_absent_from_the_frame_are_missing_everywhere() -> None:
    # a PhysioNet-like or simulated frame with only heart rate
    hourly = pl.DataFrame({"stay_id": [7, 7], "hour": [3, 4], "hr": [125.0, 80.0]})
    assert sofa(hourly)["sofa"].to_list() == [0, 0]
    assert sofa(hourly)["sofa_n_missing"].to_list() == [6, 6]
    apache = apache_ii(hourly)
    assert apache["apache_ii_heart_rate"].to_list() == [2, 0]
    assert apache["apache_ii_n_missing"].to_list() == [12, 12]  # 11 components and age
    assert news2(hourly)["news2_n_missing"].to_list() == [6, 6]
    assert qsofa(hourly)["qsofa_n_missing"].to_list() == [3, 3]
    assert sirs(hourly)["sirs_n_missing"].to_list() == [3, 3]


def test_carry_forward_reports_age() -> None:
    carried = carry_forward(one_stay(lactate=[3.0, None, None]), ["lactate", "gcs"])
    assert carried["lactate"].to_list() == [3.0, 3.0, 3.0]
    assert carried["lactate__age_h"].to_list() == [0, 1, 2]
    assert carried["gcs"].to_list() == [None, None, None]


def test_no_treatments_means_none_given() -> None:
    hourly = one_stay(map=[60], pao2=[80], fio2=[0.8])
    zero = treatment_rows([(1, 1, {"norepinephrine": 0.0, "mechanical_ventilation": 0.0})])
    assert sofa(hourly, None).equals(sofa(hourly, zero))
    # an hour without a treatment row is "not given" too
    other_hour = treatment_rows([(1, 5, {"norepinephrine": 0.3, "mechanical_ventilation": 1.0})])
    assert sofa(hourly, other_hour).equals(sofa(hourly, zero))


def test_bad_keys_are_data_errors_with_row_and_column() -> None:
    duplicated = pl.DataFrame({"stay_id": [1, 1, 1], "hour": [1, 2, 2], "map": [60.0, 61.0, 62.0]})
    with pytest.raises(DataError, match=r"row 3.*duplicate \(stay_id, hour\) = \(1, 2\)") as caught:
        sofa(duplicated)
    assert caught.value.column == "hour"
    with pytest.raises(DataError, match="needs a 'hour' column"):
        sofa(pl.DataFrame({"stay_id": [1], "map": [60.0]}))
    with pytest.raises(DataError, match="row 2") as caught:
        news2(pl.DataFrame({"stay_id": [1, None], "hour": [1, 2], "hr": [60.0, 61.0]}))
    assert caught.value.column == "stay_id"
    with pytest.raises(DataError, match="integer"):
        qsofa(pl.DataFrame({"stay_id": [1], "hour": [1.5], "sbp": [90.0]}))


def test_score_trajectories_on_a_partial_simulated_frame() -> None:
    # a simulated rollout: float64 values, a few variables, vasopressor but no antibiotic column and
    # no label: scores and events come out, Sepsis-3 is not attempted
    hourly = pl.DataFrame({"stay_id": [5, 5, 5], "hour": [10, 11, 12], "map": [62.0, 58.5, 71.0],
                           "lactate": [4.5, None, None]})
    given = pl.DataFrame({"stay_id": [5], "hour": [11], "norepinephrine": [0.15]})
    hourly_scores, events = score_trajectories(hourly, given)
    assert hourly_scores["sofa_cardiovascular"].to_list() == [1, 4, 0]
    assert sorted(events["event"].to_list()) == ["hyperlactataemia", "hypotension"]
    assert events.filter(pl.col("event") == "hypotension")["offset_hour"].to_list() == [11]
