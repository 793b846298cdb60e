"""PatientTwin.rollout: shapes, seeds, the KV cache against re-encoding, references, treatment policies, correction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from twin_helpers import RangeCorrector

from organsim.agents import AgentForecaster
from organsim.data.windows import Forecaster
from organsim.physiology import ConstantPolicy, NoTreatmentPolicy
from organsim.twin import (
    CORRECTION_COLUMNS,
    PatientTwin,
    ReferencePolicy,
    ReferencePolicyConfig,
    TwinForecaster,
)
from organsim.twin.constraints import HARD_RULES, RULES


@pytest.fixture(scope="module")
def twin(micro_model, catalog):
    return PatientTwin.load(micro_model, device="cpu", corrector=RangeCorrector(catalog), batch_size=16)


def test_shapes_seeds_and_records(twin, test_batch):
    rollout = twin.rollout(test_batch, 6, n_samples=3, seed=0)
    b, v, t, s = test_batch.size, len(test_batch.variables), len(test_batch.treatment_codes), len(twin.systems)
    assert rollout.values.shape == (3, b, 6, v) and rollout.values.dtype == np.float32
    assert rollout.treatments.shape == (3, b, 6, t)
    assert rollout.consulted.shape == (3, b, 6, s, s)
    assert dict(rollout.corrections.schema) == CORRECTION_COLUMNS
    again = twin.rollout(test_batch, 6, n_samples=3, seed=0)
    np.testing.assert_array_equal(rollout.values, again.values)
    assert rollout.corrections.equals(again.corrections)
    other = twin.rollout(test_batch, 6, n_samples=3, seed=1)
    assert not np.array_equal(rollout.values, other.values)
    assert not np.array_equal(rollout.values[0], rollout.values[1])  # samples differ
    # planned treatments are the batch's, for every sample
    planned = test_batch.treatments[:, test_batch.context_hours : test_batch.context_hours + 6]
    np.testing.assert_array_equal(rollout.treatments, np.broadcast_to(planned, rollout.treatments.shape))
    assert not rollout.consulted[..., np.arange(s), np.arange(s)].any()


def test_kv_cache_matches_re_encoding_the_window(twin, test_batch):
    cached = twin.rollout(test_batch, 8, references="all", mean=True, correct=False)
    reencoded = twin.rollout(test_batch, 8, references="all", mean=True, correct=False, use_cache=False)
    np.testing.assert_allclose(cached.values, reencoded.values, rtol=1e-4, atol=1e-4)
    sampled = twin.rollout(test_batch, 4, references="none", n_samples=2, seed=3, correct=False)
    sampled_reencoded = twin.rollout(test_batch, 4, references="none", n_samples=2, seed=3, correct=False, use_cache=False)
    np.testing.assert_allclose(sampled.values, sampled_reencoded.values, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["none", "all"])
def test_fixed_references_match_the_agent_forecaster(twin, test_batch, mode):
    rollout = twin.rollout(test_batch, 5, references=mode, mean=True, correct=False)
    forecast = AgentForecaster(twin.agents, references=mode, device="cpu").predict(test_batch, 5)
    np.testing.assert_array_equal(rollout.values[0], forecast)
    s = len(twin.systems)
    expected = np.ones((s, s), dtype=bool) & ~np.eye(s, dtype=bool) if mode == "all" else np.zeros((s, s), dtype=bool)
    assert (rollout.consulted == expected).all()


def test_reference_arrays_and_the_policy(twin, micro_model, test_batch):
    s = len(twin.systems)
    identity = twin.rollout(test_batch, 3, references=np.eye(s, dtype=bool), mean=True, correct=False)
    none = twin.rollout(test_batch, 3, references="none", mean=True, correct=False)
    np.testing.assert_array_equal(identity.values, none.values)
    only_cardio = np.zeros((s, s), dtype=bool)
    only_cardio[1:, 0] = True  # every other agent consults the cardiovascular system
    custom = twin.rollout(test_batch, 3, references=only_cardio, mean=True, correct=False)
    assert custom.consulted[..., 1:, 0].all() and custom.consulted.sum() == custom.consulted[..., 1:, 0].sum()
    assert not np.array_equal(custom.values, none.values)
    assert not twin.coordinated
    np.testing.assert_array_equal(twin.rollout(test_batch, 3, mean=True, correct=False).values,
                                  twin.rollout(test_batch, 3, references="all", mean=True, correct=False).values)
    with pytest.raises(ValueError, match="reference matrix"):
        twin.rollout(test_batch, 3, references=np.eye(3, dtype=bool))
    with pytest.raises(ValueError, match="references must be"):
        twin.rollout(test_batch, 3, references="some")
    # a policy that always (never) consults gives the "all" ("none") rollout
    for bias, mode in ((20.0, "all"), (-20.0, "none")):
        policy = ReferencePolicy(ReferencePolicyConfig(systems=twin.systems))
        with torch.no_grad():
            policy.subsets.actor[-1].bias.fill_(bias)
        coordinated = PatientTwin(twin.agents, policy=policy, device="cpu")
        assert coordinated.coordinated
        np.testing.assert_array_equal(coordinated.rollout(test_batch, 3, mean=True, correct=False).values,
                                      twin.rollout(test_batch, 3, references=mode, mean=True, correct=False).values)


class RecordingPolicy:
    """Norepinephrine 0.2 from the first simulated hour; remembers every state it was shown."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, object]] = []

    def __call__(self, state, hour):
        self.calls.append((hour, state))
        return {"norepinephrine": np.full(state.n, 0.2)}


def test_a_treatment_policy_decides_every_simulated_hour(twin, test_batch):
    policy = RecordingPolicy()
    rollout = twin.rollout(test_batch, 4, treatment_policy=policy, mean=True, correct=False)
    codes = list(test_batch.treatment_codes)
    norepinephrine = rollout.treatments[..., codes.index("norepinephrine")]
    assert (norepinephrine == np.float32(0.2)).all()
    others = np.delete(rollout.treatments, codes.index("norepinephrine"), axis=-1)
    assert (others == 0).all()  # catalog defaults for the codes the policy left out
    planned = twin.rollout(test_batch, 4, mean=True, correct=False)
    assert not np.array_equal(rollout.values, planned.values)  # the agents saw the policy's treatments
    # one stay: the policy decides hours t+1 .. t+4 and sees simulated vitals every hour, no simulated labs
    one = test_batch.select(np.array([0]))
    policy = RecordingPolicy()
    rollout = twin.rollout(one, 4, treatment_policy=policy, mean=True, correct=False)
    start = int(one.start_hours[0])
    assert [hour for hour, _ in policy.calls] == [start + 1, start + 2, start + 3, start + 4]
    last = policy.calls[-1][1]
    assert last.hours_seen == start + 3 and last.n == 1
    variables = list(one.variables)
    simulated = last.history[:, start:]  # ICU hours t+1 .. t+3
    assert not np.isnan(simulated[:, :, variables.index("hr")]).any()
    assert np.isnan(simulated[:, :, variables.index("lactate")]).all()
    np.testing.assert_array_equal(simulated[0, :, variables.index("hr")], rollout.values[0, 0, :3, variables.index("hr")])
    context = one.values[0, :, variables.index("hr")]  # the real context hours, t - C + 1 .. t
    np.testing.assert_array_equal(last.history[0, start - len(context) : start, variables.index("hr")], context)


def test_hidden_treatments_make_the_twin_treatment_blind(twin, test_batch):
    given = twin.rollout(test_batch, 4, treatment_policy=ConstantPolicy({"norepinephrine": 0.3}), hide_treatments=True, mean=True, correct=False)
    nothing = twin.rollout(test_batch, 4, treatment_policy=NoTreatmentPolicy(), hide_treatments=True, mean=True, correct=False)
    np.testing.assert_array_equal(given.values, nothing.values)
    assert (given.treatments[..., list(test_batch.treatment_codes).index("norepinephrine")] == np.float32(0.3)).all()


def test_bad_treatment_policies_are_named(twin, test_batch):
    with pytest.raises(ValueError, match="unknown treatment 'dopamine'"):
        twin.rollout(test_batch, 2, treatment_policy=ConstantPolicy({"dopamine": 1.0}), correct=False)
    with pytest.raises(ValueError, match="plausible range"):
        twin.rollout(test_batch, 2, treatment_policy=ConstantPolicy({"norepinephrine": -1.0}), correct=False)


class NarrowHeartRate(RangeCorrector):
    """The range corrector with heart rate capped at 70/min, so that the micro model violates it often."""

    def _bounds(self, variables):
        low, high = super()._bounds(variables)
        high = high.copy()
        high[list(variables).index("hr")] = 70.0
        return low, high


def test_correction_redraws_then_projects_and_records(twin, test_batch, catalog):
    corrector = NarrowHeartRate(catalog)
    corrected = PatientTwin(twin.agents, corrector=corrector, device="cpu")
    rollout = corrected.rollout(test_batch, 5, n_samples=2, seed=0)
    hr = list(test_batch.variables).index("hr")
    assert (rollout.values[..., hr] <= 70.0).all()
    rules = set(rollout.corrections["rule"].unique())
    assert {"range", "resampled"} <= rules
    assert corrector.calls == 5  # one projection per simulated hour (one chunk)
    assert rollout.violations_after == {"range": 0}
    assert rollout.violations_before["range"] == rollout.corrections.filter(rule="range").height
    projected = rollout.corrections.filter(rule="range", variable="hr")
    assert (projected["after"] == 70.0).all() and (projected["before"] > 70.0).all()
    first = projected.row(0, named=True)
    assert rollout.values[first["sample"], first["problem"], first["step"] - 1, hr] == 70.0
    # without redrawing, every flagged value is projected
    no_redraw = PatientTwin(twin.agents, corrector=NarrowHeartRate(catalog, max_resamples=0), device="cpu").rollout(test_batch, 5, n_samples=2, seed=0)
    assert "resampled" not in set(no_redraw.corrections["rule"].unique())
    with pytest.raises(ValueError, match="no error corrector"):
        PatientTwin(twin.agents, device="cpu").rollout(test_batch, 2)


def test_the_error_corrector_of_a_loaded_twin_leaves_no_hard_violation(micro_model, test_batch):
    twin = PatientTwin.load(micro_model, device="cpu")
    rollout = twin.rollout(test_batch, 6, n_samples=2, seed=0)
    assert set(rollout.violations_before) == set(RULES)
    assert sum(rollout.violations_before[rule] for rule in HARD_RULES) > 0  # the micro model breaks them ...
    assert all(rollout.violations_after[rule] == 0 for rule in HARD_RULES)  # ... and none is left
    uncorrected = twin.rollout(test_batch, 6, n_samples=2, seed=0, correct=False)
    assert uncorrected.corrections.height == 0 and uncorrected.violations_before == {}


def test_the_twin_as_a_forecaster(twin, test_batch):
    forecaster = TwinForecaster(twin, references="none", correct=False)
    assert forecaster.name == "twin_none" and isinstance(forecaster, Forecaster)
    agents = AgentForecaster(twin.agents, references="none", device="cpu")
    np.testing.assert_array_equal(forecaster.predict(test_batch, 3), agents.predict(test_batch, 3))
    corrected = TwinForecaster(twin).predict(test_batch, 3)
    assert corrected.shape == (test_batch.size, 3, len(test_batch.variables))
    with pytest.raises(ValueError, match="references must be"):
        TwinForecaster(twin, references="some")
