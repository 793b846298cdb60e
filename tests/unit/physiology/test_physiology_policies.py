"""The treatment-policy protocol: ObservedState views, the clinician's rules, simple strategies."""

from __future__ import annotations

import numpy as np
import pytest

from organsim.catalog import Catalog
from organsim.physiology import (
    POLICY_NAMES,
    ClinicianConfig,
    ClinicianPolicy,
    ComposedPolicy,
    ConstantPolicy,
    FixedSchedulePolicy,
    NoTreatmentPolicy,
    ObservedState,
    TreatmentPolicy,
    named_policy,
)
from organsim.physiology.noise import N_POLICY_HOURLY, N_POLICY_STAY


def _state(
    catalog: Catalog,
    observed: dict[str, list[float]],
    treatments: dict[str, list[float]] | None = None,
    *,
    hours_seen: int,
    weight: float = 80.0,
    coins: float = 0.0,
    stay_draws: float = 0.5,
) -> ObservedState:
    """One patient; ``observed`` maps codes to their values in hours 1..hours_seen (NaN = not measured)."""
    variables = tuple(catalog.variable_codes)
    codes = tuple(catalog.treatment_codes)
    history = np.full((1, hours_seen, len(variables)), np.nan)
    for code, values in observed.items():
        history[0, :, variables.index(code)] = values
    carried = np.full_like(history, np.nan)
    carried_hour = np.full_like(history, np.nan)
    for t in range(hours_seen):
        seen = ~np.isnan(history[0, t])
        previous = carried[0, t - 1] if t else np.full(len(variables), np.nan)
        previous_hour = carried_hour[0, t - 1] if t else np.full(len(variables), np.nan)
        carried[0, t] = np.where(seen, history[0, t], previous)
        carried_hour[0, t] = np.where(seen, t + 1, previous_hour)
    given = np.zeros((1, hours_seen, len(codes)))
    for code, values in (treatments or {}).items():
        given[0, :, codes.index(code)] = values
    return ObservedState(
        stay_ids=np.array([1]), variables=variables, treatment_codes=codes, history=history, carried=carried,
        carried_hour=carried_hour, treatments=given, at_admission=np.zeros((1, len(codes))), age=np.array([60.0]),
        sex=np.array([1.0]), weight=np.array([weight]), alive=np.array([True]),
        random=np.full((1, 100, N_POLICY_HOURLY), coins), random_stay=np.full((1, N_POLICY_STAY), stay_draws),
    )


def test_latest_and_carried_forward_respect_the_age_limit(catalog: Catalog) -> None:
    state = _state(catalog, {"map": [70.0, np.nan, np.nan, 60.0, np.nan]}, hours_seen=5)
    assert state.latest("map") == 60.0
    assert state.latest("map", max_age_hours=2) == 60.0  # measured in hour 4, deciding hour 6
    assert np.isnan(state.latest("map", max_age_hours=1))
    np.testing.assert_array_equal(state.carried_forward("map", 2), [[70.0, 70.0, np.nan, 60.0, 60.0]])
    np.testing.assert_array_equal(state.carried_forward("map", 2, last=2), [[60.0, 60.0]])
    assert np.isnan(state.latest("lactate"))
    with pytest.raises(KeyError, match="unknown variable 'mapp'"):
        state.latest("mapp")


def test_clinician_gives_a_bolus_for_hypotension_and_starts_norepinephrine_after_fluids(catalog: Catalog) -> None:
    clinician = ClinicianPolicy()
    low = {"map": [60.0, 58.0, 59.0], "sbp": [85.0, 84.0, 86.0]}
    # not enough fluid yet: a bolus (stay draw 0.5 -> 500 mL) and no vasopressor
    early = clinician(_state(catalog, low, {"iv_fluid_ml": [500.0, 0.0, 0.0]}, hours_seen=3), 4)
    assert early["iv_fluid_ml"][0] == 500.0
    assert early["norepinephrine"][0] == 0.0
    # 2 L given (> 20 mL/kg for 80 kg), MAP still low for the last two hours: norepinephrine starts
    after = clinician(_state(catalog, low, {"iv_fluid_ml": [1000.0, 1000.0, 0.0]}, hours_seen=3), 4)
    assert after["norepinephrine"][0] == pytest.approx(0.075)
    # on norepinephrine with MAP still low it is titrated up by the stay's step (0.055)
    titrated = clinician(
        _state(catalog, low, {"iv_fluid_ml": [1000.0, 1000.0, 0.0], "norepinephrine": [0.0, 0.0, 0.1]}, hours_seen=3), 4
    )
    assert titrated["norepinephrine"][0] == pytest.approx(0.155)
    # MAP well above target: weaned
    high = {"map": [80.0, 82.0, 84.0], "sbp": [120.0, 125.0, 126.0]}
    weaned = clinician(_state(catalog, high, {"norepinephrine": [0.1, 0.1, 0.1]}, hours_seen=3), 4)
    assert weaned["norepinephrine"][0] == pytest.approx(0.045)
    assert weaned["iv_fluid_ml"][0] == 70.0  # maintenance only (stay draw 0.5 -> 40 + 60 x 0.5 mL/h)


def test_clinician_withholds_a_bolus_after_40_ml_per_kg_in_six_hours(catalog: Catalog) -> None:
    low = {"map": [58.0] * 3, "sbp": [80.0] * 3}
    state = _state(catalog, low, {"iv_fluid_ml": [1000.0, 1000.0, 1300.0]}, hours_seen=3, weight=80.0)
    assert ClinicianPolicy()(state, 4)["iv_fluid_ml"][0] < 250.0


def test_clinician_starts_antibiotics_on_a_positive_screen_and_repeats_them(catalog: Catalog) -> None:
    septic = {"temperature": [38.9, 39.0], "map": [62.0, 61.0], "resp_rate": [26.0, 27.0], "hr": [118.0, 120.0]}
    first = ClinicianPolicy()(_state(catalog, septic, hours_seen=2, coins=0.0), 3)
    assert first["antibiotic"][0] == 1.0
    calm = {"temperature": [36.8, 36.9], "map": [85.0, 86.0], "resp_rate": [14.0, 15.0], "hr": [75.0, 76.0]}
    assert ClinicianPolicy()(_state(catalog, calm, hours_seen=2, coins=0.0), 3)["antibiotic"][0] == 0.0
    # stay draw 0.5 -> every 8 h (interval share 0.6): a dose at hour 1 is repeated at hour 9, not 8
    for hours_seen, due in ((8, 1.0), (7, 0.0)):
        calm_history = {"temperature": [36.8] * hours_seen, "map": [85.0] * hours_seen}
        dosed = {"antibiotic": [1.0] + [0.0] * (hours_seen - 1)}
        state = _state(catalog, calm_history, dosed, hours_seen=hours_seen, coins=0.5)  # coin 0.5: no missed dose
        assert ClinicianPolicy()(state, hours_seen + 1)["antibiotic"][0] == due


def test_clinician_intubates_persistent_hypoxaemia_and_extubates_when_ready(catalog: Catalog) -> None:
    hypoxaemic = {"spo2": [86.0, 85.0, 84.0], "resp_rate": [30.0, 32.0, 33.0]}
    assert ClinicianPolicy()(_state(catalog, hypoxaemic, hours_seen=3), 4)["mechanical_ventilation"][0] == 1.0
    ready = {"spo2": [97.0] * 30, "resp_rate": [16.0] * 30}
    on_vent = {"mechanical_ventilation": [0.0] + [1.0] * 29}
    # intubated in the ICU 29 h ago; the stay's minimum is 12 + 24 * 0.5 = 24 h; coin 0.0 < 0.6
    assert ClinicianPolicy()(_state(catalog, ready, on_vent, hours_seen=30), 31)["mechanical_ventilation"][0] == 0.0
    recent = {"mechanical_ventilation": [0.0] * 20 + [1.0] * 10}
    assert ClinicianPolicy()(_state(catalog, ready, recent, hours_seen=30), 31)["mechanical_ventilation"][0] == 1.0


def test_simple_policies_and_composition(catalog: Catalog) -> None:
    state = _state(catalog, {}, hours_seen=4)
    assert NoTreatmentPolicy()(state, 5) == {}
    assert ConstantPolicy({"norepinephrine": 0.1})(state, 5)["norepinephrine"][0] == 0.1
    schedule = FixedSchedulePolicy({"antibiotic": {5: 1, 13: 1}})
    assert schedule(state, 5)["antibiotic"][0] == 1.0 and schedule(state, 6)["antibiotic"][0] == 0.0
    composed = ComposedPolicy(ConstantPolicy({"iv_fluid_ml": 100.0, "antibiotic": 1.0}), {"antibiotic": NoTreatmentPolicy()})
    assert set(composed(state, 5)) == {"iv_fluid_ml"}
    for policy in (NoTreatmentPolicy(), ClinicianPolicy(), schedule, composed):
        assert isinstance(policy, TreatmentPolicy)


def test_named_policies(catalog: Catalog) -> None:
    for name in POLICY_NAMES:
        assert callable(named_policy(name, from_hour=3, hours=24))
    early = named_policy("early-antibiotics", from_hour=3, hours=24, config=ClinicianConfig())
    assert early(_state(catalog, {}, hours_seen=10), 11)["antibiotic"][0] == 1.0
    with pytest.raises(ValueError, match="unknown policy 'steroids'; choose one of clinician, none"):
        named_policy("steroids", from_hour=1, hours=24)
