"""Scheduled sampling: the two-pass training that reads some fed-back inputs as the model's own draws."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import organsim.agents.training as training
from organsim.agents.features import carry_forward
from organsim.agents.model import HourInputs, sample_reference_sets
from organsim.agents.scheduled_sampling import sampled_input_values
from organsim.agents.training import (
    TrainConfig,
    prepare_agents,
    tiled_windows,
    train_agents,
    window_values,
)
from organsim.cli import app
from organsim.data.windows import HourlyArrays

CONFIG = TrainConfig(max_epochs=2, batch_size=4, n_bins=8, learning_rate=3e-3, seed=3)
VITALS = {"feedback_variables": ("hr", "sbp", "dbp", "map", "resp_rate", "spo2")}  # PhysioNet 2019's hourly-charted ones


@pytest.fixture(scope="module")
def windows_batch(agent_cohort):
    """Untrained micro agents and four training windows: (agents, window values, teacher-forced tensors, references)."""
    agents, cohort = prepare_agents(agent_cohort, preset="micro", train_config=CONFIG, agent_fields=VITALS)
    arrays = HourlyArrays.from_cohort(cohort.subset(split="train"))
    windows = tiled_windows(arrays, agents.config.window_hours)
    window = window_values(arrays, windows, np.arange(4))
    references = sample_reference_sets(4, len(agents.config.systems), torch.Generator().manual_seed(0))
    return agents, window, window.tensors(agents.encoder), references


def _sample(windows_batch, probability, seed=0):
    agents, window, tensors, references = windows_batch
    inputs = HourInputs(**{k: v for k, v in tensors.items() if k not in ("targets", "target_z")})
    length = window.hours.shape[1]
    return sampled_input_values(agents.model, agents.encoder, inputs, references, window.values[:, :length], probability,
                                torch.Generator().manual_seed(seed))


def test_p0_trains_exactly_as_teacher_forcing_even_through_the_two_pass_path(agent_cohort, tmp_path, monkeypatch):
    teacher_forced = train_agents(agent_cohort, tmp_path / "p0", preset="micro", train_config=CONFIG, device="cpu", show_progress=False)

    # p > 0 switches the two passes on; forcing the replacement probability to 0 inside them must
    # leave every loss bit for bit (no side effect of the first pass on the model, its mode or the RNG)
    real = training.sampled_input_values
    calls = []

    def never_replace(model, encoder, inputs, references, values, probability, generator):
        calls.append(probability)
        return real(model, encoder, inputs, references, values, 0.0, generator)

    monkeypatch.setattr(training, "sampled_input_values", never_replace)
    two_pass = train_agents(agent_cohort, tmp_path / "two_pass", preset="micro", train_config=TrainConfig(**{**vars(CONFIG), "scheduled_sampling": 0.5}),
                            device="cpu", show_progress=False)
    assert calls and set(calls) == {0.5}
    assert [(r.train_loss, r.validation_loss) for r in two_pass.history] == [(r.train_loss, r.validation_loss) for r in teacher_forced.history]

    monkeypatch.setattr(training, "sampled_input_values", lambda *args: pytest.fail("p = 0 must not run the first pass"))
    again = train_agents(agent_cohort, tmp_path / "p0_again", preset="micro", train_config=CONFIG, device="cpu", show_progress=False)
    assert [r.train_loss for r in again.history] == [r.train_loss for r in teacher_forced.history]

    monkeypatch.setattr(training, "sampled_input_values", real)
    sampled = train_agents(agent_cohort, tmp_path / "p_half", preset="micro", train_config=TrainConfig(**{**vars(CONFIG), "scheduled_sampling": 0.5}),
                           device="cpu", show_progress=False)
    assert sampled.history[0].train_loss != teacher_forced.history[0].train_loss


def test_p1_replaces_every_measured_fed_back_input_by_a_draw_of_the_hour_before(windows_batch):
    agents, window, tensors, _ = windows_batch
    fed_back = agents.config.fed_back
    assert fed_back.any() and not fed_back.all()
    length = window.hours.shape[1]
    values = window.values[:, :length]
    replaced_values, replaced = _sample(windows_batch, 1.0)

    measured = ~np.isnan(values)
    expected = measured & fed_back[None, None, :]
    expected[:, 0] = False  # the first hour has no forecast
    np.testing.assert_array_equal(replaced, expected)
    assert expected.sum() > 50
    # the others (labs, unmeasured hours, the first hour) are untouched, bit for bit
    np.testing.assert_array_equal(np.where(replaced, 0, replaced_values), np.where(replaced, 0, values))
    # a draw of hour t + 1 is a bin value anchored on the real last value at t
    encoder = agents.encoder
    carried, _ = carry_forward(values)
    for v in np.flatnonzero(fed_back):
        code = agents.config.variables[v]
        value_centers = np.asarray(encoder.tokenizer.centers[encoder.tokenizer.columns_of([code])[0]])  # (k,)
        change_column = encoder.changes.columns_of([code])[0]
        change_values = encoder.changes.scales[change_column] * np.asarray(encoder.changes.centers[change_column])  # (m,)
        for b, t in zip(*np.nonzero(replaced[:, :, v]), strict=True):
            last = carried[b, t - 1, v]  # the real last value at the position that forecast hour t
            candidates = value_centers if np.isnan(last) else last + change_values
            assert np.abs(candidates - replaced_values[b, t, v]).min() < 1e-3
    assert not np.allclose(replaced_values[replaced], values[replaced])


def test_replaced_inputs_are_encoded_as_rollouts_feed_them_and_targets_stay_real(windows_batch):
    agents, window, teacher_forced, _ = windows_batch
    encoder = agents.encoder
    replaced_values, replaced = _sample(windows_batch, 1.0)
    mixed = window.tensors(encoder, replaced_values)
    b, t, v = np.argwhere(replaced)[0]
    # the input reads the draw as measured this hour, as AgentStepper.feed encodes a fed-back value
    code = (encoder.variables[v],)
    assert mixed["observed"][b, t, v] == 1 and mixed["since"][b, t, v] == 0
    assert mixed["last_z"][b, t, v] == pytest.approx(float(encoder.normaliser.zscore(np.array([[replaced_values[b, t, v]]]), code)[0, 0]), abs=1e-5)
    assert not torch.equal(mixed["last_z"], teacher_forced["last_z"])
    # targets are the real next values: the same measured pattern, the change taken from the draw
    np.testing.assert_array_equal(mixed["targets"] >= 0, teacher_forced["targets"] >= 0)
    next_real = window.values[b, t + 1, v]
    if not np.isnan(next_real):
        expected = encoder.normaliser.zscore(np.array([[next_real]]), code) - encoder.normaliser.zscore(np.array([[replaced_values[b, t, v]]]), code)
        assert mixed["target_z"][b, t, v] == pytest.approx(float(np.clip(expected[0, 0], -16, 16)), abs=1e-5)
    # treatments, statics and hours are the real ones
    for key in ("treatments", "static", "hours"):
        assert torch.equal(mixed[key], teacher_forced[key])


def test_hours_are_replaced_whole_with_probability_p_and_the_seed_decides(windows_batch):
    agents, window, _, _ = windows_batch
    fed_back = agents.config.fed_back
    length = window.hours.shape[1]
    measured = ~np.isnan(window.values[:, :length]) & fed_back[None, None, :]
    first, replaced = _sample(windows_batch, 0.5, seed=1)
    chosen = replaced.any(-1)  # (B, T) hours chosen
    np.testing.assert_array_equal(replaced, chosen[:, :, None] & measured)
    share = chosen[:, 1:][measured[:, 1:].any(-1)].mean()
    assert 0.3 < share < 0.7
    again, replaced_again = _sample(windows_batch, 0.5, seed=1)
    np.testing.assert_array_equal(replaced_again, replaced)
    np.testing.assert_array_equal(again, first)
    other, replaced_other = _sample(windows_batch, 0.5, seed=2)
    assert not np.array_equal(replaced_other, replaced)
    with pytest.raises(ValueError, match="probability must be in"):
        _sample(windows_batch, 1.5)


def test_the_setting_is_validated_recorded_and_absent_means_0(agent_cohort, tmp_path):
    with pytest.raises(ValueError, match="scheduled_sampling must be in"):
        TrainConfig(scheduled_sampling=-0.1)
    stored = TrainConfig().to_dict()
    del stored["scheduled_sampling"]  # a model trained before the option
    assert TrainConfig.from_dict(stored).scheduled_sampling == 0

    cohort_dir = agent_cohort.save(tmp_path / "cohort")
    runner = CliRunner()
    refused = runner.invoke(app, ["train", "--cohort", str(cohort_dir), "--out", str(tmp_path / "bad"), "--scheduled-sampling", "1.5"])
    assert refused.exit_code == 2 and "--scheduled-sampling" in refused.output
    assert not (tmp_path / "bad").exists()
    trained = runner.invoke(app, ["train", "--cohort", str(cohort_dir), "--out", str(tmp_path / "model"), "--preset", "micro", "--device", "cpu",
                                  "--epochs", "1", "--batch-size", "4", "--n-bins", "8", "--scheduled-sampling", "0.25"])
    assert trained.exit_code == 0, trained.output
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["training"]["config"]["scheduled_sampling"] == 0.25
