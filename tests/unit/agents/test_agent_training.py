"""SFT training: windows, checkpoints that reload to identical forecasts, resume, early stopping, rollouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import organsim.agents.training as training
from organsim.agents.checkpoint import TrainedAgents
from organsim.agents.forecaster import AgentForecaster
from organsim.agents.training import (
    TrainConfig,
    balanced_loss_weights,
    consecutive_changes,
    length_bucketed_batches,
    random_windows,
    target_counts,
    tiled_windows,
    train_agents,
)
from organsim.data.windows import HourlyArrays, choose_starts, forecast_batch
from organsim.utils.errors import DataError

CONFIG = TrainConfig(max_epochs=2, batch_size=4, n_bins=8, learning_rate=3e-3, seed=3)


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def trained(agent_cohort, tmp_path_factory):
    """A micro model trained for two epochs: (model dir, in-memory agents' forecasts, batch)."""
    out = tmp_path_factory.mktemp("agents") / "model"
    result = train_agents(agent_cohort, out, preset="micro", train_config=CONFIG, device="cpu", show_progress=False)
    return out, result


def _batch(cohort, horizon=3):
    test = cohort.subset(split="test")
    starts = choose_starts(test, horizon=horizon, per_stay=3, min_context=2, seed=0)
    return forecast_batch(test, starts, context_hours=12, horizon=horizon)


def test_windows_cover_the_stays(agent_cohort):
    arrays = HourlyArrays.from_cohort(agent_cohort)
    spans = arrays.last_hour - arrays.first_hour
    windows = random_windows(arrays, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(windows.positions, minlength=len(spans)), -(-spans // 10))
    last = arrays.last_hour[windows.positions]
    assert np.all(windows.start_hours >= arrays.first_hour[windows.positions])
    assert np.all(windows.start_hours + windows.lengths <= last) and np.all((windows.lengths >= 1) & (windows.lengths <= 10))
    tiled = tiled_windows(arrays, 10)
    assert tiled.lengths.sum() == spans.sum()  # every hour with a next hour, once
    batches = length_bucketed_batches(windows.lengths, 3, 2, np.random.default_rng(1))
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(len(windows.lengths)))
    assert all(len(b) <= 3 for b in batches)


def test_training_writes_a_model_dir_that_reloads_to_identical_forecasts(trained, agent_cohort):
    out, result = trained
    assert [r.epoch for r in result.history] == [1, 2]
    assert all(np.isfinite(r.train_loss) and np.isfinite(r.validation_loss) for r in result.history)
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "last"}
    document = json.loads((out / "config.json").read_text())
    assert document["training"]["state"]["finished"] and document["training"]["split"]["stays"]["test"] == 4
    batch = _batch(agent_cohort)
    first = AgentForecaster(TrainedAgents.load(out), references="all", device="cpu").predict(batch, 3)
    second = AgentForecaster(TrainedAgents.load(out), references="all", device="cpu").predict(batch, 3)
    assert first.shape == (batch.size, 3, len(batch.variables)) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)
    # the best weights are one of the epochs' weights, and the same seed trains the same model
    best = load_file(out / "model.safetensors")
    again = train_agents(agent_cohort, out.parent / "again", preset="micro", train_config=CONFIG, device="cpu", show_progress=False)
    assert again.history == [] or [r.validation_loss for r in again.history] == [r.validation_loss for r in result.history]
    for name, tensor in load_file(out.parent / "again" / "model.safetensors").items():
        assert torch.equal(tensor, best[name]), name


def test_resume_after_an_interrupt_ends_with_the_same_weights(trained, agent_cohort, tmp_path):
    out, result = trained
    interrupted = tmp_path / "interrupted"

    def stop_after_first(record):
        if record.epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_agents(agent_cohort, interrupted, preset="micro", train_config=CONFIG, device="cpu", show_progress=False, on_epoch=stop_after_first)
    assert json.loads((interrupted / "config.json").read_text())["training"]["state"]["epoch"] == 1
    resumed = train_agents(agent_cohort, interrupted, preset="micro", train_config=CONFIG, device="cpu", show_progress=False, resume=True)
    assert [r.epoch for r in resumed.history] == [1, 2]
    for name, tensor in load_file(out / "last" / "model.safetensors").items():
        assert torch.equal(tensor, load_file(interrupted / "last" / "model.safetensors")[name]), name
    # a finished run is left alone; other settings cannot resume it
    again = train_agents(agent_cohort, interrupted, preset="micro", train_config=CONFIG, device="cpu", show_progress=False, resume=True)
    assert again.history == resumed.history
    with pytest.raises(ValueError, match="learning_rate"):
        train_agents(agent_cohort, interrupted, preset="micro", train_config=TrainConfig(**{**vars(CONFIG), "learning_rate": 1.0}),
                     device="cpu", show_progress=False, resume=True)


def test_early_stopping_keeps_the_best_epoch(agent_cohort, tmp_path, monkeypatch):
    losses = iter([3.0, 3.0, 2.0, 2.0, 4.0, 4.0, 5.0, 5.0])  # (none, all) per epoch: best is epoch 2
    monkeypatch.setattr(training, "validation_loss_of", lambda *args, **kwargs: next(losses))
    snapshots = {}

    def snapshot(record):
        snapshots[record.epoch] = load_file(tmp_path / "model" / "last" / "model.safetensors")

    config = TrainConfig(**{**vars(CONFIG), "max_epochs": 6, "patience": 2})
    result = train_agents(agent_cohort, tmp_path / "model", preset="micro", train_config=config, device="cpu", show_progress=False, on_epoch=snapshot)
    assert [r.epoch for r in result.history] == [1, 2, 3, 4] and result.stopped_early
    assert result.best_epoch == 2 and result.best_validation_loss == 2.0
    best = load_file(tmp_path / "model" / "model.safetensors")
    assert all(torch.equal(best[k], snapshots[2][k]) for k in best)
    assert not all(torch.equal(best[k], snapshots[4][k]) for k in best)


def test_rollouts_and_distributions(trained, agent_cohort):
    out, _ = trained
    agents = TrainedAgents.load(out)
    batch = _batch(agent_cohort, horizon=4)
    none = AgentForecaster(agents, references="none", device="cpu")
    assert none.name == "agents_none"
    means = none.predict(batch, 4)
    assert means.shape == (batch.size, 4, len(batch.variables))
    np.testing.assert_array_equal(means[:, :2], none.predict(batch, 2))  # a shorter horizon is a prefix
    paths = none.sample_paths(batch.select(slice(0, 3)), 4, 5, seed=1)
    assert paths.shape == (5, 3, 4, len(batch.variables))
    np.testing.assert_array_equal(paths, none.sample_paths(batch.select(slice(0, 3)), 4, 5, seed=1))
    assert not np.array_equal(paths[0], paths[1])
    dist = none.next_hour(batch)
    quantiles = dist.quantile([0.1, 0.5, 0.9]).numpy()
    assert np.all(quantiles[0] <= quantiles[1]) and np.all(quantiles[1] <= quantiles[2])
    np.testing.assert_allclose(dist.mean().numpy(), means[:, 0], rtol=1e-5)
    custom = AgentForecaster(agents, references=np.eye(9, dtype=bool), device="cpu")
    np.testing.assert_allclose(custom.predict(batch, 2), none.predict(batch, 2), rtol=1e-6)
    with pytest.raises(ValueError, match="plans treatments"):
        none.predict(batch, 5)
    with pytest.raises(ValueError, match="references"):
        AgentForecaster(agents, references="some")


def test_a_broken_model_dir_is_reported_with_its_file(trained, tmp_path):
    out, _ = trained
    with pytest.raises(DataError, match="config.json is missing|not a model directory"):
        TrainedAgents.load(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((out / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match=r"model.safetensors.*cannot read"):
        TrainedAgents.load(broken)


def test_change_statistics_pair_consecutive_measurements(agent_cohort, trained):
    arrays = HourlyArrays.from_cohort(agent_cohort.subset(split="train"))
    changes = consecutive_changes(arrays)
    v = arrays.variables.index("map")
    expected = []
    for position in range(len(arrays.stay_ids)):
        lo = arrays.offsets[position]
        hi = lo + arrays.last_hour[position] - arrays.first_hour[position] + 1
        seen = arrays.values[lo:hi, v]
        expected.extend(np.diff(seen[~np.isnan(seen)].astype(np.float64)))
    np.testing.assert_allclose(changes[v], expected)
    encoder = TrainedAgents.load(trained[0]).encoder
    value_counts, change_counts = target_counts(arrays, encoder)
    measured = int((~np.isnan(arrays.values[:-1, v])).sum())
    assert value_counts[v].sum() + change_counts[v].sum() == measured
    assert change_counts[v].sum() == len(expected)  # every measurement after a stay's first is a change


def test_balanced_loss_weights():
    counts = np.array([900.0, 100.0, 0.0])
    np.testing.assert_allclose(balanced_loss_weights(counts, 0.0), [1, 1, 1])
    full = balanced_loss_weights(counts, 1.0)
    np.testing.assert_allclose(full[0] * 900, full[1] * 100, rtol=1e-6)  # every variable alike
    half = balanced_loss_weights(counts, 0.5)
    np.testing.assert_allclose(half[1] / half[0], 3.0, rtol=1e-6)  # sqrt(900 / 100)
    for weights in (full, half):
        np.testing.assert_allclose((weights[:2] * counts[:2]).sum(), counts.sum(), rtol=1e-6)  # a target weighs 1 on average
        assert weights[2] == 1.0
