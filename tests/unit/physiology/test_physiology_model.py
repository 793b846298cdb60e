"""The model's equations: steady pre-morbid state, oxygenation, FiO2 protocol, patients, catalog coverage."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from organsim.catalog import Catalog
from organsim.physiology.model import (
    FIO2_SPONTANEOUS,
    FIO2_VENTILATED,
    Model,
    ModelConstants,
    State,
)
from organsim.physiology.noise import PROCESS_CHANNELS, NoiseBank
from organsim.physiology.observation import MEASUREMENT_SPECS
from organsim.physiology.patients import sample_patients


def _patients(n: int = 200, seed: int = 3, septic_fraction: float = 0.5):
    return sample_patients(np.arange(1, n + 1), seed=seed, septic_fraction=septic_fraction, community_onset_fraction=0.7, hours=48)


def test_every_catalog_variable_is_read_out_and_has_a_measurement_model(catalog: Catalog) -> None:
    model = Model(_patients(5), ModelConstants())
    values = model.readout(model.initial_state(), model.resting_inputs(), np.zeros(5))
    assert set(catalog.variable_codes) <= set(values)
    assert set(MEASUREMENT_SPECS) == set(catalog.variable_codes)


def test_premorbid_state_without_insults_is_steady(catalog: Catalog) -> None:
    """Baselines and equations agree: with no infection, insult or treatment nothing drifts."""
    p = _patients(300)
    zero = np.zeros(p.n)
    quiet = replace(
        p, infected=np.zeros(p.n, dtype=bool), infection_hour=np.full(p.n, np.nan), sterile_insult=zero,
        bleeding_l_per_h=zero, mi_severity=zero, mi_troponin_peak=zero, lung_insult=zero, admission_hypothermia=zero,
    )
    model = Model(quiet, ModelConstants())
    x = model.initial_state()
    u = model.resting_inputs()
    first = model.readout(x, u, model.advance_hour(x, u, zero, 6))
    for _ in range(47):
        urine = model.advance_hour(x, u, zero, 6)
    last = model.readout(x, u, urine)
    for code in catalog.variable_codes:
        low, high = catalog.variable(code).plausible
        drift = np.abs(last[code] - first[code])
        allowed = 0.01 * np.abs(first[code]) + 1e-3 * (high - low)
        assert np.all(drift <= allowed), f"{code} drifts at rest by up to {drift.max():.4g}"
    assert np.all(last["hypoxia"] == 0.0) and np.all(last["tissue_damage"] == 0.0)


@pytest.mark.parametrize(("pao2", "expected_sao2"), [(40.0, 75.0), (60.0, 90.5), (100.0, 97.5)])
def test_oxygen_dissociation_matches_the_standard_curve(pao2: float, expected_sao2: float) -> None:
    """Textbook points of the adult oxygen dissociation curve at 37 degC, pH 7.40 (mixed venous
    ~75 % at 40 mmHg, ~90 % at 60 mmHg, ~97.5 % at 100 mmHg)."""
    shunt = np.array([0.0])
    # choose FiO2 so that the shunt-free alveolar PO2 gives the wanted PaO2 (PaO2 = PAO2 when shunt = 0)
    fio2 = np.array([(pao2 + 40.0 / 0.8) / 713.0])
    got_pao2, sao2 = Model.oxygenation(fio2, shunt, np.array([40.0]), np.array([37.0]), np.array([7.4]))
    assert got_pao2[0] == pytest.approx(pao2, abs=1e-9)
    assert sao2[0] == pytest.approx(expected_sao2, abs=0.7)


def test_fio2_protocol_chooses_the_lowest_level_reaching_the_target() -> None:
    p = _patients(400)
    model = Model(p, ModelConstants())
    x = model.initial_state()
    x[State.LUNG_INJURY] = np.random.default_rng(0).uniform(0.0, 0.9, p.n)  # across its range
    for ventilated, levels in ((0.0, FIO2_SPONTANEOUS), (1.0, FIO2_VENTILATED)):
        levels = np.array(levels)
        u = model.resting_inputs()
        u.ventilated = np.full(p.n, ventilated)
        terms = model.hour_terms(u)
        chosen = model.titrate_fio2(x, u, np.full(p.n, 10.0))  # past the post-intubation weaning
        assert np.isin(chosen, levels).all()
        u.fio2 = chosen
        sao2 = model.algebraic(x, u, terms)["sao2"]
        below_top = chosen < levels[-1]
        assert np.all(sao2[below_top] >= p.spo2_target[below_top] - 1e-6)
        above_bottom = chosen > levels[0]
        u.fio2 = levels[np.maximum(np.searchsorted(levels, chosen) - 1, 0)]
        sao2_lower = model.algebraic(x, u, terms)["sao2"]
        assert np.all(sao2_lower[above_bottom] < p.spo2_target[above_bottom] + 1e-6)
        assert below_top.any() and above_bottom.any()


def test_fio2_starts_at_one_after_intubation_and_is_weaned() -> None:
    p = _patients(20)
    model = Model(p, ModelConstants())
    u = model.resting_inputs()
    u.ventilated = np.ones(p.n)
    x = model.initial_state()
    by_hour = [model.titrate_fio2(x, u, np.full(p.n, float(h))) for h in (1, 2, 3, 4, 5)]
    assert np.all(by_hour[0] == 1.0) and np.all(by_hour[1] == 1.0)
    assert np.all(np.diff(np.stack(by_hour), axis=0) <= 1e-12)
    assert np.all(by_hour[2] >= 0.7 - 1e-12)


def test_patients_depend_only_on_seed_and_stay_id() -> None:
    some = sample_patients(np.array([5, 6, 7]), seed=9, septic_fraction=0.35, community_onset_fraction=0.7, hours=72)
    many = sample_patients(np.arange(1, 21), seed=9, septic_fraction=0.35, community_onset_fraction=0.7, hours=72)
    other_seed = sample_patients(np.array([5, 6, 7]), seed=10, septic_fraction=0.35, community_onset_fraction=0.7, hours=72)
    np.testing.assert_array_equal(some.map_baseline, many.map_baseline[4:7])
    np.testing.assert_array_equal(some.infection_hour, many.infection_hour[4:7])
    assert not np.array_equal(some.map_baseline, other_seed.map_baseline)


def test_septic_fraction_sets_the_share_of_infected_patients() -> None:
    for fraction in (0.0, 1.0):
        assert _patients(300, septic_fraction=fraction).infected.mean() == fraction
    share = _patients(3000, septic_fraction=0.35).infected.mean()
    assert abs(share - 0.35) < 3 * np.sqrt(0.35 * 0.65 / 3000)


def test_noise_streams_depend_only_on_seed_and_stay_id() -> None:
    def draw(ids: list[int], seed: int = 1) -> NoiseBank:
        return NoiseBank.draw(np.array(ids), seed=seed, total_hours=40, hours=10, n_variables=4, n_observation_uniforms=3)

    pair, single = draw([3, 8]), draw([8])
    for field in ("process", "measurement", "observation", "observation_stay", "policy", "policy_stay"):
        np.testing.assert_array_equal(getattr(pair, field)[1], getattr(single, field)[0])
    assert not np.array_equal(draw([8], seed=2).measurement, single.measurement)
    # the process noise is a stationary AR(1) with the stated autocorrelation
    long = NoiseBank.draw(np.arange(400), seed=0, total_hours=200, hours=1, n_variables=1, n_observation_uniforms=1)
    z = long.process
    for k, (_, rho) in enumerate(PROCESS_CHANNELS):
        lag1 = np.corrcoef(z[:, :-1, k].ravel(), z[:, 1:, k].ravel())[0, 1]
        assert lag1 == pytest.approx(rho, abs=0.03)
        assert z[:, :, k].std() == pytest.approx(1.0, abs=0.05)
