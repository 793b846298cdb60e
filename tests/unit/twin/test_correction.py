"""The error-correction agent: each projection on hand-made hours, records, NaN, idempotence, and zero
hard violations after correcting random garbage."""

from __future__ import annotations

import numpy as np
import pytest

from organsim.catalog import Catalog
from organsim.twin.constraints import (
    ACID_BASE_TOLERANCE_PH,
    BAND_RULES,
    HARD_RULES,
    MAP_FORMULA_TOLERANCE_MMHG,
    RULES,
    SPO2_BAND_PERCENT,
    henderson_hasselbalch_ph,
    severinghaus_saturation,
)
from organsim.twin.correction import ErrorCorrector, isotonic_chain

VARIABLES = ("sbp", "dbp", "map", "spo2", "pao2", "temperature", "ph", "hco3", "paco2", "hr")
NORMAL = dict(sbp=120.0, dbp=70.0, map=87.0, spo2=97.0, pao2=95.0, temperature=37.0, ph=7.40, hco3=24.0,
              paco2=40.0, hr=80.0)


def hour(**values: float) -> np.ndarray:
    """One (1, V) float32 hour over VARIABLES; unnamed variables are NaN."""
    row = np.full((1, len(VARIABLES)), np.nan, dtype=np.float32)
    for code, value in values.items():
        row[0, VARIABLES.index(code)] = value
    return row


def value(row: np.ndarray, code: str) -> float:
    return float(row[0, VARIABLES.index(code)])


@pytest.fixture(scope="module")
def corrector(catalog: Catalog) -> ErrorCorrector:
    return ErrorCorrector.from_catalog(catalog, max_resamples=3)


def test_isotonic_chain_pools_out_of_order_neighbours() -> None:
    chain = np.array([[60.0, 120.0, 100.0], [90.0, 80.0, 130.0], [60.0, 80.0, 100.0], [130.0, np.nan, 90.0]])
    np.testing.assert_allclose(
        isotonic_chain(chain),
        [[60, 110, 110], [85, 85, 130], [60, 80, 100], [110, np.nan, 110]],
    )


def test_a_consistent_hour_is_left_alone(corrector: ErrorCorrector) -> None:
    corrected, records, before, after = corrector.correct(hour(**NORMAL), hour(**NORMAL), VARIABLES)
    np.testing.assert_array_equal(corrected, hour(**NORMAL))
    assert records == []
    assert before == after == dict.fromkeys(RULES, 0)
    assert not corrector.violating(hour(**NORMAL), hour(**NORMAL), VARIABLES).any()


def test_range_clips_to_the_plausible_bound_and_records_it(corrector: ErrorCorrector) -> None:
    corrected, records, before, after = corrector.correct(hour(), hour(hr=400.0, spo2=-5.0), VARIABLES)
    assert value(corrected, "hr") == 280.0 and value(corrected, "spo2") == 20.0
    assert sorted((r["variable"], r["rule"], r["before"], r["after"]) for r in records) == [
        ("hr", "range", 400.0, 280.0), ("spo2", "range", -5.0, 20.0)]
    assert all(r["row"] == 0 for r in records)
    assert before["range"] == 2 and after["range"] == 0


def test_a_reading_beyond_a_saturating_end_is_clipped_not_redrawn(corrector: ErrorCorrector) -> None:
    # SpO2 saturates at 100 % (catalog: saturates [high]); its low end (20 %) does not saturate
    high, low = hour(spo2=103.0, hr=400.0), hour(spo2=5.0)
    assert corrector.violating(hour(), high, VARIABLES).tolist() == [[code == "hr" for code in VARIABLES]]
    assert corrector.violating(hour(), low, VARIABLES)[0, VARIABLES.index("spo2")]
    corrected, records, _, _ = corrector.correct(hour(), high, VARIABLES)
    assert value(corrected, "spo2") == 100.0 and ("spo2", "range", 103.0, 100.0) in [
        (r["variable"], r["rule"], r["before"], r["after"]) for r in records]
    assert value(corrector.saturated(high, VARIABLES), "spo2") == 100.0 and value(corrector.saturated(high, VARIABLES), "hr") == 400.0


def test_rate_limit_clips_to_the_limit_from_the_previous_hour(corrector: ErrorCorrector) -> None:
    corrected, records, before, after = corrector.correct(hour(hr=80.0), hour(hr=200.0), VARIABLES)
    assert value(corrected, "hr") == 160.0  # limit 80 beats/min per hour
    assert [(r["rule"], r["before"], r["after"]) for r in records] == [("rate_limit", 200.0, 160.0)]
    assert (before["rate_limit"], after["rate_limit"]) == (1, 0)


def test_pressures_out_of_order_are_pooled(corrector: ErrorCorrector) -> None:
    # MAP above SBP: the two move to their mean; DBP stays
    corrected, records, before, after = corrector.correct(hour(), hour(sbp=100.0, dbp=80.0, map=104.0), VARIABLES)
    assert (value(corrected, "dbp"), value(corrected, "map"), value(corrected, "sbp")) == (80.0, 102.0, 102.0)
    assert {r["variable"] for r in records if r["rule"] == "map_order"} == {"map", "sbp"}
    assert before["map_order"] == 1 and after["map_order"] == 0
    # SBP below DBP with MAP missing: both move to their mean, MAP stays NaN
    corrected, _, _, after = corrector.correct(hour(), hour(sbp=70.0, dbp=90.0), VARIABLES)
    assert value(corrected, "sbp") == value(corrected, "dbp") == 80.0
    assert np.isnan(value(corrected, "map")) and after["map_order"] == 0


def test_pooled_pressures_stay_inside_their_rate_windows(corrector: ErrorCorrector) -> None:
    prev = hour(sbp=120.0, dbp=70.0, map=87.0)
    # MAP 200 is first clipped to 87 + 80 = 167, then pooled with SBP 40: the triple ends ordered and
    # inside every window
    corrected, _, _, after = corrector.correct(prev, hour(sbp=40.0, dbp=60.0, map=200.0), VARIABLES)
    assert after["map_order"] == after["rate_limit"] == after["range"] == 0
    assert value(corrected, "dbp") <= value(corrected, "map") <= value(corrected, "sbp")


def test_map_moves_to_the_edge_of_the_formula_band(corrector: ErrorCorrector) -> None:
    corrected, records, before, after = corrector.correct(hour(), hour(sbp=120.0, dbp=70.0, map=115.0), VARIABLES)
    assert value(corrected, "map") == pytest.approx((120 + 140) / 3 + MAP_FORMULA_TOLERANCE_MMHG, abs=1e-4)
    assert [(r["variable"], r["rule"]) for r in records] == [("map", "map_formula")]
    assert (before["map_formula"], after["map_formula"]) == (1, 0)


def test_acid_base_moves_the_variable_that_jumped_furthest(corrector: ErrorCorrector) -> None:
    prev = hour(ph=7.40, hco3=24.0, paco2=40.0)
    # HCO3 halved (0.30 in log10 units) while pH moved 0.05: HCO3 is the one adjusted
    corrected, records, _, after = corrector.correct(prev, hour(ph=7.35, hco3=12.0, paco2=40.0), VARIABLES)
    assert [(r["variable"], r["rule"]) for r in records] == [("hco3", "acid_base")]
    residual = value(corrected, "ph") - henderson_hasselbalch_ph(value(corrected, "hco3"), 40.0)
    assert residual == pytest.approx(ACID_BASE_TOLERANCE_PH, abs=1e-5)
    assert after["acid_base"] == 0
    # pH jumped 0.3 while HCO3 and PaCO2 held: pH is moved back to the band edge
    corrected, records, _, _ = corrector.correct(prev, hour(ph=7.10, hco3=24.0, paco2=40.0), VARIABLES)
    assert [(r["variable"], r["rule"]) for r in records] == [("ph", "acid_base")]
    assert value(corrected, "ph") == pytest.approx(henderson_hasselbalch_ph(24.0, 40.0) - ACID_BASE_TOLERANCE_PH, abs=1e-5)


def test_acid_base_without_a_previous_hour_moves_the_most_abnormal(corrector: ErrorCorrector) -> None:
    # PaCO2 90 is 0.35 log10 units from 40; pH 7.30 is 0.10 from 7.40; HCO3 24 is normal
    corrected, records, _, after = corrector.correct(hour(), hour(ph=7.30, hco3=24.0, paco2=90.0), VARIABLES)
    assert [(r["variable"], r["rule"]) for r in records] == [("paco2", "acid_base")]
    assert after["acid_base"] == 0


def test_acid_base_hands_the_rest_to_the_next_variable_when_a_window_stops_it(corrector: ErrorCorrector) -> None:
    # HH(9.5, 70) = 6.756: pH (jumped 0.45) would have to fall to 6.856, but may not go below
    # 7.40 - 0.5 = 6.90; HCO3 (0.40 log10 units from 24) takes up the rest
    prev = hour(ph=7.40, hco3=24.0, paco2=40.0)
    corrected, records, _, after = corrector.correct(prev, hour(ph=7.85, hco3=9.5, paco2=70.0), VARIABLES)
    assert [r["variable"] for r in records] == ["ph", "hco3"]
    assert value(corrected, "ph") == pytest.approx(6.90, abs=1e-5)
    assert value(corrected, "paco2") == 70.0
    assert after["acid_base"] == 0 and after["rate_limit"] == 0


def test_spo2_moves_to_the_edge_of_the_saturation_band(corrector: ErrorCorrector) -> None:
    # PaO2 30 mmHg saturates ~57 %: SpO2 99 is far above the band
    corrected, records, _, after = corrector.correct(hour(), hour(spo2=99.0, pao2=30.0), VARIABLES)
    expected = float(severinghaus_saturation(30.0)) + SPO2_BAND_PERCENT
    assert value(corrected, "spo2") == pytest.approx(expected, abs=1e-4)
    assert value(corrected, "pao2") == 30.0
    assert [(r["variable"], r["rule"]) for r in records] == [("spo2", "spo2_pao2")]
    assert after["spo2_pao2"] == 0


def test_nan_is_never_filled_never_moved_never_flagged(corrector: ErrorCorrector) -> None:
    new = hour(map=300.0, ph=7.9, spo2=30.0)  # MAP out of range; pH and SpO2 alone check nothing else
    corrected, records, _, _ = corrector.correct(hour(), new, VARIABLES)
    np.testing.assert_array_equal(np.isnan(corrected), np.isnan(new))
    assert [(r["variable"], r["rule"]) for r in records] == [("map", "range")]
    mask = corrector.violating(hour(), new, VARIABLES)
    assert mask.tolist() == [[code == "map" for code in VARIABLES]]


def _garbage(catalog: Catalog, variables: tuple[str, ...], n: int, seed: int) -> np.ndarray:
    """Values spread over three times each plausible range, a fifth of them NaN."""
    rng = np.random.default_rng(seed)
    low = np.array([catalog.variable(c).plausible[0] for c in variables])
    high = np.array([catalog.variable(c).plausible[1] for c in variables])
    values = rng.uniform(low - (high - low), high + (high - low), size=(n, len(variables)))
    values[rng.random(values.shape) < 0.2] = np.nan
    return values.astype(np.float32)


def _moved(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return ~((before == after) | (np.isnan(before) & np.isnan(after)))


def test_random_garbage_has_no_hard_violation_after_correction(corrector: ErrorCorrector, catalog: Catalog) -> None:
    variables = catalog.variable_codes
    first = _garbage(catalog, variables, 500, seed=1)
    corrected_first, _, before, after = corrector.correct(np.full_like(first, np.nan), first, variables)
    assert before["rate_limit"] == 0  # no previous hour
    assert all(before[rule] > 0 for rule in RULES if rule != "rate_limit")
    assert after == dict.fromkeys(RULES, 0)
    second = _garbage(catalog, variables, 500, seed=2)
    corrected, records, before, after = corrector.correct(corrected_first, second, variables)
    assert before["rate_limit"] > 0
    assert all(after[rule] == 0 for rule in HARD_RULES), after
    # band rules are projected; the few left are hours whose window cannot reach the band
    assert all(after[rule] < before[rule] / 5 for rule in BAND_RULES), (before, after)
    np.testing.assert_array_equal(np.isnan(corrected), np.isnan(second))
    # every changed value has records, chained from the sampled value to the corrected one
    moved = _moved(second, corrected)
    changed = np.argwhere(moved)
    chains: dict[tuple[int, str], list[dict]] = {}
    for record in records:
        chains.setdefault((record["row"], record["variable"]), []).append(record)
    assert {(int(r), variables[c]) for r, c in changed} == set(chains)
    for (row, code), chain in chains.items():
        column = variables.index(code)
        assert chain[0]["before"] == float(second[row, column])
        assert chain[-1]["after"] == float(corrected[row, column])
        assert all(a["after"] == b["before"] for a, b in zip(chain, chain[1:], strict=False))
    # violating() flags exactly the values correct() moves, but for readings beyond a saturating end (clipped, not redrawn)
    np.testing.assert_array_equal(corrector.violating(corrected_first, second, variables),
                                  _moved(corrector.saturated(second, variables), corrected))
    assert (moved & ~corrector.violating(corrected_first, second, variables))[:, variables.index("spo2")].any()


def test_correcting_a_corrected_state_changes_nothing(corrector: ErrorCorrector, catalog: Catalog) -> None:
    variables = catalog.variable_codes
    prev, _, _, _ = corrector.correct(np.full((300, len(variables)), np.nan), _garbage(catalog, variables, 300, 3), variables)
    corrected, _, _, _ = corrector.correct(prev, _garbage(catalog, variables, 300, 4), variables)
    again, records, _, _ = corrector.correct(prev, corrected, variables)
    np.testing.assert_array_equal(again, corrected)
    assert records == []
    assert not corrector.violating(prev, corrected, variables).any()


def test_same_input_same_output(corrector: ErrorCorrector, catalog: Catalog) -> None:
    variables = catalog.variable_codes
    garbage = _garbage(catalog, variables, 50, 5)
    prev = np.full_like(garbage, np.nan)
    first, second = corrector.correct(prev, garbage, variables), corrector.correct(prev, garbage, variables)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1:] == second[1:]


def test_bad_arguments_are_errors(catalog: Catalog, corrector: ErrorCorrector) -> None:
    with pytest.raises(ValueError, match="max_resamples must be >= 0"):
        ErrorCorrector.from_catalog(catalog, max_resamples=-1)
    with pytest.raises(ValueError, match="unknown variable codes"):
        corrector.correct(np.zeros((1, 1)), np.zeros((1, 1)), ("mean_pressure",))
    with pytest.raises(ValueError, match="differ in shape"):
        corrector.violating(np.zeros((1, 2)), np.zeros((2, 2)), ("hr", "map"))
