"""Sepsis-3 onset (antibiotics + SOFA rise, or the label) and real-vs-simulated event chains."""

from __future__ import annotations

import polars as pl
import pytest
from score_frames import treatment_rows

from organsim.scores import EVENT_SCHEMA, compare_event_chains, sepsis3_onset
from organsim.utils import DataError


def _sofa_frame(series: dict[int, list[int]]) -> pl.DataFrame:
    rows = [{"stay_id": s, "hour": h + 1, "sofa": v} for s, values in series.items() for h, v in enumerate(values)]
    return pl.DataFrame(rows, schema={"stay_id": pl.Int64, "hour": pl.Int32, "sofa": pl.Int16})


def _spike_at(hour: int, length: int = 90) -> list[int]:
    """SOFA 1 everywhere but 3 at ``hour``: a rise of 2 at that hour only."""
    return [3 if h == hour else 1 for h in range(1, length + 1)]


def test_onset_is_the_earlier_of_antibiotic_and_sofa_rise_within_the_windows() -> None:
    scores = _sofa_frame({
        1: _spike_at(10),  # antibiotic at 30: rise 20 h before -> onset 10
        2: _spike_at(29),  # antibiotic at 5: rise 24 h after (the limit) -> onset 5
        3: _spike_at(30),  # antibiotic at 5: rise 25 h after -> no sepsis
        4: _spike_at(12),  # antibiotic at 60: rise 48 h before (the limit) -> onset 12
        5: _spike_at(11),  # antibiotic at 60: rise 49 h before -> no sepsis
        6: _spike_at(20),  # no antibiotic -> no sepsis
        7: [1] * 90,  # antibiotic, no rise -> no sepsis
    })
    given = treatment_rows([(1, 30, {"antibiotic": 1.0}), (2, 5, {"antibiotic": 1.0}), (3, 5, {"antibiotic": 1.0}),
                            (4, 60, {"antibiotic": 1.0}), (5, 60, {"antibiotic": 1.0}), (6, 20, {"antibiotic": 0.0}),
                            (7, 3, {"antibiotic": 1.0})])
    onsets = sepsis3_onset(scores, treatments=given)
    assert onsets["onset_hour"].to_list() == [10, 5, None, 12, None, None, None]
    assert onsets["suspicion_hour"].to_list() == [30, 5, None, 60, None, None, None]
    assert onsets["sofa_rise_hour"].to_list() == [10, 29, None, 12, None, None, None]
    assert set(onsets["method"].to_list()) == {"antibiotics+sofa"}
    # a rise stays acute while the lower value is within the last 24 h: SOFA 1 -> 3 at hour 11 and
    # staying 3 is still a rise of 2 at hour 12, which is within 48 h of an antibiotic at hour 60
    sustained = _sofa_frame({5: [1 if h < 11 else 3 for h in range(1, 91)]})
    assert sepsis3_onset(sustained, treatments=given)["onset_hour"].to_list() == [12]


def test_rise_is_measured_against_the_lowest_sofa_of_the_last_24_hours() -> None:
    # 3 for 10 h, down to 1 at hour 11, back to 3 at hour 15: a rise of 2 at hour 15;
    # a slow climb 1 -> 2 (hour 5) -> 3 (hour 40) is not acute: by hour 40 the lowest of 24 h is 2
    scores = _sofa_frame({1: [3] * 10 + [1] * 4 + [3] * 30, 2: [1] * 4 + [2] * 35 + [3] * 10})
    given = treatment_rows([(1, 16, {"antibiotic": 1.0}), (2, 40, {"antibiotic": 1.0})])
    assert sepsis3_onset(scores, treatments=given)["onset_hour"].to_list() == [15, None]


def test_label_method_and_auto() -> None:
    scores = _sofa_frame({1: [1] * 5, 2: [1] * 5})
    stays = pl.DataFrame({"stay_id": [1, 2], "sepsis_onset_hour": [4, None]})
    onsets = sepsis3_onset(scores, stays=stays)  # auto, no treatments -> label
    assert onsets.to_dicts() == [
        {"stay_id": 1, "suspicion_hour": None, "sofa_rise_hour": None, "onset_hour": 4, "method": "label"},
        {"stay_id": 2, "suspicion_hour": None, "sofa_rise_hour": None, "onset_hour": None, "method": "label"},
    ]
    with pytest.raises(DataError, match="sepsis_onset_hour"):
        sepsis3_onset(scores)
    with pytest.raises(DataError, match="antibiotic"):
        sepsis3_onset(scores, treatments=treatment_rows([(1, 1, {"norepinephrine": 0.1})]))
    with pytest.raises(ValueError, match="method"):
        sepsis3_onset(scores, stays=stays, method="guess")


def _events(rows: list[tuple[int, str, int, float]]) -> pl.DataFrame:
    frame = pl.DataFrame(
        [{"stay_id": s, "event": e, "onset_hour": h, "trigger_value": v, "peak_value": v} for s, e, h, v in rows],
        schema={"stay_id": pl.Int64, "event": pl.Utf8, "onset_hour": pl.Int32, "trigger_value": pl.Float64,
                "peak_value": pl.Float64},
    )
    return frame.with_columns([pl.lit(None, dtype=d).alias(c) for c, d in EVENT_SCHEMA.items() if c not in frame.columns])


def test_event_chain_comparison_worked_example() -> None:
    real = _events([
        (1, "hypotension", 5, 60.0), (1, "hyperlactataemia", 8, 3.0), (1, "acute_kidney_injury", 20, 1.5),
        (1, "hypotension", 30, 55.0),  # a second episode: only the first is compared
        (2, "hypoxaemia", 3, 88.0),
    ])
    simulated = _events([
        (1, "hypotension", 7, 62.0), (1, "hyperlactataemia", 6, 2.5), (1, "acute_kidney_injury", 26, 1.4),
        (2, "hypoxaemia", 3, 85.0), (2, "acidaemia", 10, 7.25),
        (3, "hypotension", 2, 64.0),
    ])
    result = compare_event_chains(real, simulated, stay_ids=[1, 2, 3, 4])
    matches = {(r["stay_id"], r["event"]): r for r in result.matches.to_dicts()}
    assert matches[(1, "hypotension")]["onset_difference_hours"] == 2
    assert matches[(1, "hypotension")]["trigger_value_difference"] == pytest.approx(2.0)
    assert matches[(1, "hyperlactataemia")]["onset_difference_hours"] == -2
    assert matches[(2, "acidaemia")]["in_real"] is False and matches[(2, "acidaemia")]["onset_difference_hours"] is None
    stays = {r["stay_id"]: r for r in result.stays.to_dicts()}
    # stay 1: real order hypotension(5) > lactate(8) > AKI(20); simulated lactate(6) > hypotension(7) > AKI(26):
    # of the three pairs, (hypotension, lactate) is swapped -> concordance 2/3, order not preserved
    assert stays[1]["chain_real"] == "hypotension > hyperlactataemia > acute_kidney_injury"
    assert stays[1]["chain_simulated"] == "hyperlactataemia > hypotension > acute_kidney_injury"
    assert stays[1]["order_concordance"] == pytest.approx(2 / 3) and stays[1]["order_preserved"] is False
    assert (stays[2]["n_both"], stays[2]["order_concordance"]) == (1, None)
    assert (stays[3]["n_real"], stays[3]["n_simulated"]) == (0, 1)
    assert (stays[4]["n_real"], stays[4]["n_simulated"], stays[4]["chain_real"]) == (0, 0, "")
    summary = result.summary
    # 4 shared (stay, event) pairs, 2 simulated-only (acidaemia in 2, hypotension in 3), 0 real-only
    assert summary["n_stays"] == 4
    assert summary["occurrence"]["precision"] == pytest.approx(4 / 6)
    assert summary["occurrence"]["recall"] == 1.0
    assert summary["occurrence"]["f1"] == pytest.approx(8 / 10)
    # onset differences +2, -2, +6, 0
    assert summary["onset_difference_hours"]["mean"] == pytest.approx(1.5)
    assert summary["onset_difference_hours"]["mean_absolute"] == pytest.approx(2.5)
    assert summary["onset_difference_hours"]["within_2h"] == pytest.approx(0.75)
    assert summary["order"] == {"n_stays_with_two_shared_events": 1, "fraction_order_preserved": 0.0,
                                "mean_concordance": pytest.approx(2 / 3)}
    assert summary["per_event"]["hypotension"]["occurrence"]["false_positive"] == 1
    with pytest.raises(DataError, match="stay 3 has events"):
        compare_event_chains(real, simulated, stay_ids=[1, 2])
