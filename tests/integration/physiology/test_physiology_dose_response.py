"""Treatments act in the right direction: paired counterfactuals of the same septic patients.

Each comparison runs the same patients (same parameters, same noise) under two strategies, so the
difference is the treatment effect itself; it is asserted to be positive by more than three standard
errors of the mean paired difference, so a pass is not luck.
"""

from __future__ import annotations

import numpy as np
import pytest

from organsim.physiology import (
    ClinicianPolicy,
    ComposedPolicy,
    ConstantPolicy,
    EngineConfig,
    FixedSchedulePolicy,
    NoTreatmentPolicy,
    PhysiologyEngine,
    Trajectory,
)

pytestmark = pytest.mark.slow

HOURS = 48


@pytest.fixture(scope="module")
def engine() -> PhysiologyEngine:
    return PhysiologyEngine(EngineConfig(seed=11, n_patients=300, hours=HOURS, septic_fraction=1.0))


@pytest.fixture(scope="module")
def septic(engine: PhysiologyEngine) -> list[int]:
    factual = engine.factual()
    ids = factual.stay_ids[np.isfinite(factual.sepsis_onset_hour)]
    assert len(ids) > 200
    return [int(s) for s in ids]


def _value(trajectory: Trajectory, code: str, hour: int) -> np.ndarray:
    return trajectory.true[:, hour - 1, list(trajectory.variables).index(code)]


def _last(values: np.ndarray, trajectory: Trajectory) -> np.ndarray:
    """Each stay's value at its last hour (its death hour for those who die)."""
    return values[np.arange(len(values)), trajectory.n_hours - 1]


def _clearly_positive(difference: np.ndarray, label: str) -> None:
    difference = difference[np.isfinite(difference)]
    mean, error = difference.mean(), difference.std(ddof=1) / np.sqrt(difference.size)
    assert mean > 3.0 * error, f"{label}: mean paired difference {mean:.3g} is not > 3 x its standard error {error:.3g}"


def _without(*codes: str, **fixed: FixedSchedulePolicy | ConstantPolicy) -> ComposedPolicy:
    """The clinician with ``codes`` withheld and ``fixed`` treatments imposed."""
    return ComposedPolicy(ClinicianPolicy(), {**{c: NoTreatmentPolicy() for c in codes}, **fixed})


def test_untreated_septic_patients_deteriorate_and_timely_treatment_improves_them(
    engine: PhysiologyEngine, septic: list[int]
) -> None:
    untreated = engine.counterfactuals(septic, NoTreatmentPolicy(), 1)
    bundle = _without(
        antibiotic=FixedSchedulePolicy({"antibiotic": {h: 1.0 for h in range(1, HOURS + 1, 8)}}),
        iv_fluid_ml=FixedSchedulePolicy({"iv_fluid_ml": {1: 1000.0, 2: 1000.0, 3: 500.0}}),
    )
    treated = engine.counterfactuals(septic, bundle, 1)
    # without treatment: organ failure and inflammation rise, lactate stays high, many die
    _clearly_positive(_last(untreated.sofa, untreated) - untreated.sofa[:, 0], "untreated SOFA rise")
    _clearly_positive(_last(untreated.latent["inflammation"], untreated) - untreated.latent["inflammation"][:, 0],
                      "untreated inflammation rise")
    assert np.isfinite(untreated.death_hour).mean() > 0.15
    # with antibiotics and fluids from the first hour: inflammation and lactate fall, MAP recovers
    _clearly_positive(treated.latent["inflammation"][:, 0] - _last(treated.latent["inflammation"], treated),
                      "treated inflammation fall")
    _clearly_positive(_value(treated, "lactate", 1) - _last(treated.true[:, :, list(treated.variables).index("lactate")], treated),
                      "treated lactate fall")
    _clearly_positive(_last(treated.true[:, :, list(treated.variables).index("map")], treated) - _value(treated, "map", 1),
                      "treated MAP rise")
    # and, patient by patient, treatment beats no treatment
    _clearly_positive(_last(untreated.sofa, untreated) - _last(treated.sofa, treated), "SOFA, untreated - treated")
    assert np.isfinite(treated.death_hour).mean() < np.isfinite(untreated.death_hour).mean() - 0.15


def test_fluids_raise_pressure_filling_and_urine_and_dilute_the_blood(engine: PhysiologyEngine, septic: list[int]) -> None:
    def fluid(ml_per_hour: float) -> ComposedPolicy:
        schedule = FixedSchedulePolicy({"iv_fluid_ml": {h: ml_per_hour for h in range(3, 7)}})
        return _without("norepinephrine", iv_fluid_ml=schedule)

    runs = {dose: engine.counterfactuals(septic, fluid(dose), 3) for dose in (0.0, 250.0, 1000.0)}
    for low, high in ((0.0, 250.0), (250.0, 1000.0)):
        _clearly_positive(_value(runs[high], "map", 6) - _value(runs[low], "map", 6), f"MAP, {high:g} vs {low:g} mL/h")
        _clearly_positive(_value(runs[high], "cvp", 6) - _value(runs[low], "cvp", 6), f"CVP, {high:g} vs {low:g} mL/h")
    _clearly_positive(_value(runs[1000.0], "urine_output", 7) - _value(runs[0.0], "urine_output", 7), "urine output")
    _clearly_positive(_value(runs[0.0], "hematocrit", 6) - _value(runs[1000.0], "hematocrit", 6), "haemodilution")


def test_norepinephrine_raises_pressure_with_dose(engine: PhysiologyEngine, septic: list[int]) -> None:
    runs = {
        dose: engine.counterfactuals(septic, _without(norepinephrine=ConstantPolicy({"norepinephrine": dose})), 3)
        for dose in (0.0, 0.05, 0.1, 0.3)
    }
    doses = sorted(runs)
    for low, high in zip(doses, doses[1:], strict=False):
        _clearly_positive(_value(runs[high], "map", 5) - _value(runs[low], "map", 5), f"MAP, norepinephrine {high} vs {low}")


def test_early_antibiotics_beat_late_antibiotics_beat_none(engine: PhysiologyEngine, septic: list[int]) -> None:
    def antibiotics_from(first: int | None) -> ComposedPolicy:
        doses = {} if first is None else {h: 1.0 for h in range(first, HOURS + 1, 8)}
        return _without(antibiotic=FixedSchedulePolicy({"antibiotic": doses}))

    early, late, never = (engine.counterfactuals(septic, antibiotics_from(h), 1) for h in (1, 24, None))
    _clearly_positive(late.latent["pathogen"][:, 22] - early.latent["pathogen"][:, 22], "pathogen at 23 h, late - early")
    _clearly_positive(_last(never.latent["pathogen"], never) - _last(late.latent["pathogen"], late), "pathogen, none - late")
    _clearly_positive(_last(late.sofa, late) - _last(early.sofa, early), "SOFA, late - early")
    deaths = [np.isfinite(t.death_hour).mean() for t in (early, late, never)]
    assert deaths[0] < deaths[1] < deaths[2], f"deaths early/late/never: {deaths}"


def test_ventilation_improves_oxygenation_of_hypoxaemic_patients(engine: PhysiologyEngine, septic: list[int]) -> None:
    spontaneous = engine.counterfactuals(septic, _without("mechanical_ventilation"), 3)
    hypoxaemic = [s for s, spo2 in zip(septic, _value(spontaneous, "spo2", 4), strict=True) if spo2 < 95.0]
    assert len(hypoxaemic) >= 30
    off = engine.counterfactuals(hypoxaemic, _without("mechanical_ventilation"), 3)
    on = engine.counterfactuals(hypoxaemic, _without(mechanical_ventilation=ConstantPolicy({"mechanical_ventilation": 1.0})), 3)
    for code in ("pao2", "spo2"):
        _clearly_positive(_value(on, code, 8) - _value(off, code, 8), f"{code}, ventilated - not")
    _clearly_positive(_value(off, "resp_rate", 8) - _value(on, "resp_rate", 8), "respiratory rate, not - ventilated")
