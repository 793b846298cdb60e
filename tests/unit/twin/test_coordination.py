"""Coordination RL: every algorithm updates the policy, seeds, the train split only, the realism critic, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from organsim.cli import app
from organsim.data.windows import choose_starts, forecast_batch, forecast_targets
from organsim.twin import PatientTwin
from organsim.twin.coordination import (
    ALGORITHMS,
    COORDINATION_FILE,
    CoordinationConfig,
    step_nmse,
    train_reference_policy,
)
from organsim.twin.realism import REALISM_HOURS, RealismCritic

TINY = {"steps": 2, "problems_per_step": 3, "group_size": 2, "horizons": (1, 3), "validation_problems": 4, "validate_every": 1}


@pytest.fixture()
def twin(micro_model):
    return PatientTwin.load(micro_model, device="cpu")


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_algorithm_changes_every_policy_weight(twin, engine_cohort, algo):
    torch.manual_seed(0)
    config = CoordinationConfig(algo=algo, prm_weight=0.5, **TINY)
    initial = {name: p.detach().clone() for name, p in _fresh_policy_weights(algo).items()}
    result = train_reference_policy(twin, engine_cohort, config, progress=False)
    trained = result.policy.state_dict()
    assert set(trained) >= set(initial)
    for name, before in initial.items():
        assert not torch.equal(trained[name], before), f"{algo}: {name} did not change"
    assert [h["horizon"] for h in result.history] == [1, 3]
    assert [v["step"] for v in result.validation] == [1, 2] and result.best_step in (1, 2)
    assert set(result.baselines) == {"none", "all"} and set(result.baselines["all"]["nmse_at"]) == {"1", "3"}
    assert result.consult_rates.shape == (9, 9) and not np.diag(result.consult_rates).any()
    assert twin.coordinated and twin.policy is result.policy


def _fresh_policy_weights(algo):
    """The initial weights train_reference_policy starts from (it seeds torch with config.seed first)."""
    from organsim.catalog import SYSTEMS
    from organsim.twin import ReferencePolicy, ReferencePolicyConfig
    from organsim.utils.seeding import seed_everything

    seed_everything(0)
    return ReferencePolicy(ReferencePolicyConfig(systems=SYSTEMS, value_head=algo == "ppo")).state_dict()


def test_same_seed_same_policy_and_only_train_stays(micro_model, engine_cohort):
    seen: list[np.ndarray] = []
    results = []
    for _ in range(2):
        twin = PatientTwin.load(micro_model, device="cpu")
        simulate = twin.simulate_rows

        def recording(rows, *args, _simulate=simulate, **kwargs):
            seen.append(rows.stay_ids)
            return _simulate(rows, *args, **kwargs)

        twin.simulate_rows = recording
        results.append(train_reference_policy(twin, engine_cohort, CoordinationConfig(**TINY), progress=False))
    for name, tensor in results[0].policy.state_dict().items():
        torch.testing.assert_close(results[1].policy.state_dict()[name], tensor)
    assert results[0].history == results[1].history
    # training rollouts (G = 2 consecutive rows per problem) read train stays; selection validation stays; none a test stay
    split_of = dict(zip(engine_cohort.stays["stay_id"].to_list(), engine_cohort.stays["split"].to_list(), strict=True))
    training = [ids for ids in seen if len(ids) % 2 == 0 and np.array_equal(ids[::2], ids[1::2])]
    assert training and all(split_of[int(s)] == "train" for ids in training for s in ids)
    assert all(split_of[int(s)] in ("train", "validation") for ids in seen for s in ids)


def test_step_nmse_is_the_harness_figure(twin):
    variables = twin.agents.config.variables
    truth = np.full((2, 1, len(variables)), np.nan)
    simulated = np.zeros((2, 1, len(variables)))
    hr, sbp, creatinine = (variables.index(c) for c in ("hr", "sbp", "creatinine"))
    normaliser = twin.agents.normaliser
    mean = {c: float(normaliser.unzscore(np.zeros(len(variables)), variables)[variables.index(c)]) for c in ("hr", "sbp", "creatinine")}
    std = {c: float(normaliser.unzscore(np.ones(len(variables)), variables)[variables.index(c)]) - mean[c] for c in mean}
    simulated[:, 0] = normaliser.unzscore(np.zeros(len(variables)), variables)  # every forecast at the training mean
    truth[0, 0, hr] = mean["hr"] + 2 * std["hr"]  # z error 2
    truth[1, 0, hr] = mean["hr"]  # 0
    truth[0, 0, sbp] = mean["sbp"] + std["sbp"]  # 1
    truth[1, 0, creatinine] = mean["creatinine"] - 3 * std["creatinine"]  # 3
    per_row, per_step = step_nmse(simulated, truth, twin)
    cardio, renal = twin.systems.index("cardiovascular"), twin.systems.index("renal")
    np.testing.assert_allclose(per_row[0, 0, cardio], (4 + 1) / 2, rtol=1e-4)
    np.testing.assert_allclose(per_row[1, 0, renal], 9, rtol=1e-4)
    assert np.isnan(per_row[0, 0, renal])
    # harness: hr mean over its two targets = 2, sbp = 1 -> cardiovascular 1.5; renal 9; mean of the two systems
    np.testing.assert_allclose(per_step[0], (1.5 + 9) / 2, rtol=1e-4)


def test_realism_critic_rewards_score_and_round_trip(twin, engine_cohort, tmp_path):
    config = CoordinationConfig(**{**TINY, "horizons": (1, REALISM_HOURS), "steps": 2}, realism_weight=0.5, realism_steps=3)
    result = train_reference_policy(twin, engine_cohort, config, progress=False)
    assert isinstance(result.critic, RealismCritic) and twin.realism_critic is result.critic
    assert result.history[0]["reward/realism"] == 0.0  # the 1-hour stage is shorter than a stretch
    assert result.history[1]["reward/realism"] != 0.0
    assert set(result.realism) == {"all", "policy"} and all(0 < v < 1 for v in result.realism.values())
    test = engine_cohort.subset(split="test")
    starts = choose_starts(test, horizon=REALISM_HOURS, per_stay=1, min_context=3, seed=0)
    batch = forecast_batch(test, starts, context_hours=12, horizon=REALISM_HOURS)
    truth = forecast_targets(test, starts, horizon=REALISM_HOURS)
    rollout = twin.rollout(batch, REALISM_HOURS, n_samples=2, seed=0)
    score = twin.realism_score(batch, truth, rollout)
    assert 0 < score < 1
    result.critic.save(tmp_path)
    loaded = RealismCritic.load(tmp_path)
    twin.realism_critic = loaded
    assert twin.realism_score(batch, truth, rollout) == pytest.approx(score, rel=1e-6)
    with pytest.raises(ValueError, match="at least two problems"):
        twin.realism_score(batch.select(np.array([0])), truth[:1], twin.rollout(batch.select(np.array([0])), REALISM_HOURS))


def test_coordination_needs_the_validation_split(twin, engine_cohort):
    only_train = engine_cohort.subset(split="train")
    with pytest.raises(ValueError, match="validation split"):
        train_reference_policy(twin, only_train, CoordinationConfig(**TINY), progress=False)
    with pytest.raises(ValueError, match="algo"):
        CoordinationConfig(algo="sac")
    with pytest.raises(ValueError, match="group_size"):
        CoordinationConfig(group_size=1)


def test_coordinate_cli_writes_a_model_dir_the_twin_loads(micro_model, engine_cohort, tmp_path):
    cohort_dir = tmp_path / "cohort"
    engine_cohort.save(cohort_dir)
    out = tmp_path / "coordinated"
    args = ["coordinate", "--model", str(micro_model), "--cohort", str(cohort_dir), "--out", str(out), "--steps", "2",
            "--problems", "3", "--group-size", "2", "--horizons", "1,3", "--validation-problems", "4", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "validation mean nMSE" in result.output and "Wrote" in result.output
    twin = PatientTwin.load(out, device="cpu")
    assert twin.coordinated and twin.realism_critic is None
    record = json.loads((out / COORDINATION_FILE).read_text())
    assert record["config"]["algo"] == "grpo" and len(record["history"]) == 2
    assert (out / "model.safetensors").is_file()  # the agents came along
    bad = CliRunner().invoke(app, [*args[:-2], "--device", "cpu", "--algo", "sac"])
    assert bad.exit_code == 2 and "algo must be one of" in bad.output
