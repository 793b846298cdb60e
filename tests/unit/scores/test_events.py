"""Critical events from the catalog rules: onset, offset, peak, severity, merging, KDIGO."""

from __future__ import annotations

import polars as pl
import pytest
from score_frames import one_row_per_stay, one_stay

from organsim.catalog import Catalog
from organsim.scores import EVENT_SCHEMA, critical_events


def _episodes(frame: pl.DataFrame, event: str) -> list[dict]:
    return frame.filter(pl.col("event") == event).drop("event").to_dicts()


def test_hypotension_episode_onset_offset_peak_and_merging() -> None:
    # MAP 60 at hour 2 (carried to 3-4), 70 at 5 (off), 64 at 6, 58 at 8 (hour 7 carried): one episode
    # 2-8 because the single off hour (5) is within the catalog's merge gap of 1 hour.
    hourly = one_stay(map=[70, 60, None, None, 70, 64, None, 58, 80])
    (episode,) = _episodes(critical_events(hourly, events=["hypotension"]), "hypotension")
    assert episode == {
        "stay_id": 1, "variable": "map", "onset_hour": 2, "offset_hour": 8, "peak_hour": 8,
        "trigger_value": 60.0, "peak_value": 58.0, "severity": None, "duration_hours": 7, "n_measured_hours": 3,
    }
    # two off hours split the episode; merge_gap_hours=0 splits at one
    hourly = one_stay(map=[60, 70, 70, 60])
    assert len(_episodes(critical_events(hourly, events=["hypotension"]), "hypotension")) == 2
    hourly = one_stay(map=[60, 70, 60])
    assert len(_episodes(critical_events(hourly, events=["hypotension"]), "hypotension")) == 1
    assert len(_episodes(critical_events(hourly, events=["hypotension"], merge_gap_hours=0), "hypotension")) == 2


@pytest.mark.parametrize(
    ("event", "variable", "values", "on", "severity"),
    [
        ("hypotension", "map", [65, 64.9], [False, True], [None]),
        ("hyperlactataemia", "lactate", [2.0, 2.1, 4.0, 4.1], [False, True, True, True], ["moderate", "moderate", "severe"]),
        ("thrombocytopenia", "platelets", [100, 99, 50, 49], [False, True, True, True], ["moderate", "moderate", "severe"]),
        ("hyperbilirubinaemia", "bilirubin_total", [2.0, 2.1, 6.0, 6.1], [False, True, True, True],
         ["moderate", "moderate", "severe"]),
        ("acidaemia", "ph", [7.30, 7.29, 7.20, 7.19], [False, True, True, True], ["moderate", "moderate", "severe"]),
        ("hypoxaemia", "spo2", [90, 89], [False, True], [None]),
    ],
)
def test_thresholds_and_severe_grades(event, variable, values, on, severity) -> None:
    found = critical_events(one_row_per_stay(**{variable: values}), events=[event])
    assert sorted(found["stay_id"].to_list()) == [i + 1 for i, fired in enumerate(on) if fired]
    assert found.sort("stay_id")["severity"].to_list() == severity


def test_hypoxaemia_by_pf_ratio() -> None:
    # PaO2/FiO2 < 300: 90/0.3 = 300 no, 89/0.3 = 296.7 yes; FiO2 missing -> room air: 60/0.21 = 285.7 yes
    found = critical_events(one_row_per_stay(pao2=[90, 89, 60], fio2=[0.3, 0.3, None], spo2=[95, 95, 95]),
                            events=["hypoxaemia"])
    assert found["stay_id"].to_list() == [2, 3]
    assert found["variable"].to_list() == ["pao2/fio2", "pao2/fio2"]
    assert found["trigger_value"].round(1).to_list() == [296.7, 285.7]


def test_acute_kidney_injury_kdigo_absolute_and_relative_rules() -> None:
    # absolute: +0.3 mg/dL over the lowest value of the last 48 h (inclusive)
    creatinine: list[float | None] = [0.9] + [None] * 47 + [1.2]  # hour 49, exactly 48 h later
    (episode,) = _episodes(critical_events(one_stay(creatinine=creatinine), events=["acute_kidney_injury"]),
                           "acute_kidney_injury")
    assert (episode["onset_hour"], episode["trigger_value"]) == (49, 1.2)
    creatinine = [0.9] + [None] * 48 + [1.2]  # 49 h later: outside the 48 h window, and 1.33 x < 1.5 x
    assert critical_events(one_stay(creatinine=creatinine), events=["acute_kidney_injury"]).height == 0
    # relative: 1.5 x the lowest of the last 7 days (168 h), here 100 h apart
    creatinine = [1.0] + [None] * 99 + [1.5] + [None] * 3 + [2.0]
    (episode,) = _episodes(critical_events(one_stay(creatinine=creatinine), events=["acute_kidney_injury"]),
                           "acute_kidney_injury")
    assert (episode["onset_hour"], episode["offset_hour"], episode["peak_value"]) == (101, 105, 2.0)
    assert episode["n_measured_hours"] == 2


def test_events_follow_the_catalog(catalog: Catalog) -> None:
    stricter = catalog.model_copy(update={"events": tuple(
        e.model_copy(update={"threshold": 70.0}) if e.code == "hypotension" else e for e in catalog.events
    )})
    hourly = one_row_per_stay(map=[68])
    assert critical_events(hourly, events=["hypotension"]).height == 0
    assert critical_events(hourly, events=["hypotension"], catalog=stricter).height == 1


def test_no_events_gives_the_schema() -> None:
    found = critical_events(one_stay(map=[80, 85]))
    assert found.height == 0
    assert found.schema == pl.Schema(EVENT_SCHEMA)
    with pytest.raises(KeyError, match="unknown event"):
        critical_events(one_stay(map=[80]), events=["fever"])
