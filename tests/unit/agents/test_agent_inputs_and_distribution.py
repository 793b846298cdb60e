"""Model inputs from raw windows (hand-checked) and the binned predictive distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from organsim.agents.distribution import BinnedDistribution, center_tensor
from organsim.agents.features import FeatureEncoder, carry_forward, leading_empty_mask
from organsim.agents.training import consecutive_changes
from organsim.data.normalize import Normaliser
from organsim.data.tokenizers import BinTokenizer, ChangeTokenizer
from organsim.data.windows import HourlyArrays


@pytest.fixture(scope="module")
def encoder(agent_cohort) -> FeatureEncoder:
    train = agent_cohort.subset(split="train")
    catalog = agent_cohort.catalog
    normaliser = Normaliser.fit(train, split=None)
    arrays = HourlyArrays.from_cohort(train)
    codes = catalog.variable_codes
    return FeatureEncoder(
        tokenizer=BinTokenizer.fit_cohort(train, split=None, n_bins=8),
        changes=ChangeTokenizer.fit(consecutive_changes(arrays), codes, normaliser.std[normaliser.index(codes)], n_bins=6),
        normaliser=normaliser,
        variables=catalog.variable_codes,
        treatment_codes=catalog.treatment_codes,
        static_codes=catalog.static_codes,
        since_cap_hours=4.0,
    )


def test_inputs_carry_the_last_value_forward(encoder):
    v = len(encoder.variables)
    hr = encoder.variables.index("hr")
    values = np.full((1, 6, v), np.nan, dtype=np.float32)
    values[0, 1, hr] = 80.0
    values[0, 4, hr] = 120.0
    treatments = np.zeros((1, 6, len(encoder.treatment_codes)), dtype=np.float32)
    static = np.array([[60.0, 1.0, np.nan, -3.0]], dtype=np.float32)
    inputs = encoder.encode(values, treatments, treatments, static, np.arange(6)[None])
    ids = inputs.last_ids[0, :, hr].numpy()
    expected_80 = encoder.tokenizer.encode(np.array([[80.0]]), ["hr"])[0][0, 0]
    expected_120 = encoder.tokenizer.encode(np.array([[120.0]]), ["hr"])[0][0, 0]
    np.testing.assert_array_equal(ids, [0, expected_80, expected_80, expected_80, expected_120, expected_120])
    np.testing.assert_array_equal(inputs.observed[0, :, hr].numpy(), [0, 1, 0, 0, 1, 0])
    np.testing.assert_allclose(inputs.since[0, :, hr].numpy(), [1, 0, 0.25, 0.5, 0, 0.25])  # cap 4 h
    z80 = encoder.normaliser.zscore(np.array([[80.0]]), ["hr"])[0, 0]
    np.testing.assert_allclose(inputs.last_z[0, :4, hr].numpy(), [0, z80, z80, z80], rtol=1e-6)
    assert torch.all(inputs.last_ids[0, :, [i for i in range(v) if i != hr]] == 0)  # never observed
    np.testing.assert_array_equal(inputs.static[0, 4:].numpy(), [1, 1, 0, 1])  # weight unknown
    assert inputs.static[0, 2] == 0  # unknown static -> 0
    np.testing.assert_allclose(inputs.hours[0].numpy(), np.log1p(np.arange(6)) / 6, rtol=1e-6)


def test_targets_and_fed_back_hours(encoder):
    v = len(encoder.variables)
    hr = encoder.variables.index("hr")
    window = np.full((1, 3, v), np.nan, dtype=np.float32)
    window[0, 1, hr], window[0, 2, hr] = 75.0, 80.0  # hr measured at hours 1 and 2 (the targets of positions 0, 1)
    carried, hours_since = carry_forward(window[:, :2])
    np.testing.assert_array_equal(carried[0, :, hr], [np.nan, 75.0])
    np.testing.assert_array_equal(hours_since[0, :, hr], [np.inf, 0.0])
    targets = encoder.targets(window[:, 1:], carried).numpy()
    assert np.all(targets[0, :, [i for i in range(v) if i != hr]] == -100)
    assert targets[0, 0, hr] == encoder.tokenizer.encode(np.array([[75.0]]), ["hr"])[0][0, 0] - 1  # no last value: value bin
    change = encoder.changes.encode(np.array([[80.0]]), np.array([[75.0]]), ["hr"])[0][0, 0]
    assert targets[0, 1, hr] == change - 1  # from 75 to 80: change bin
    # one more hour after the window: hr measured again, map not (its value and age carry on)
    window = np.full((1, 3, v), np.nan, dtype=np.float32)
    hr, map_ = encoder.variables.index("hr"), encoder.variables.index("map")
    window[0, 0, map_] = 70.0
    window[0, 2, hr] = 90.0
    state = encoder.carry_state(window)
    lactate = encoder.variables.index("lactate")
    assert state.values[0, map_] == 70.0 and state.hours_since[0, map_] == 2 and np.isinf(state.hours_since[0, lactate])
    measured = np.full((1, v), np.nan)
    measured[0, hr] = 95.0
    zeros = np.zeros((1, 1, len(encoder.treatment_codes)), dtype=np.float32)
    step, after = encoder.encode_step(state, measured, zeros, zeros, np.zeros((1, 4), dtype=np.float32), np.array([[3]]))
    np.testing.assert_array_equal(step.observed[0, 0, [hr, map_]].numpy(), [1, 0])
    np.testing.assert_allclose(step.since[0, 0, [hr, map_]].numpy(), [0, 0.75])  # 3 h of a 4 h cap
    assert after.values[0, hr] == 95.0 and after.values[0, map_] == 70.0 and after.hours_since[0, map_] == 3
    # the step's inputs equal those of the whole window with the new hour appended
    whole = encoder.encode(np.concatenate([window, measured[:, None].astype(np.float32)], axis=1),
                           np.zeros((1, 4, len(encoder.treatment_codes)), dtype=np.float32),
                           np.zeros((1, 4, len(encoder.treatment_codes)), dtype=np.float32),
                           np.zeros((1, 4), dtype=np.float32), np.arange(4)[None])
    for name, tensor in vars(step).items():
        if name != "static":
            torch.testing.assert_close(tensor[:, 0], getattr(whole, name)[:, -1])


def test_leading_empty_mask():
    values = np.full((3, 4, 2), np.nan)
    values[0, 2, 1] = 1.0
    values[1, 0, 0] = 1.0
    np.testing.assert_array_equal(leading_empty_mask(values), [[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])


def test_binned_distribution_by_hand():
    centers = torch.tensor([[1.0, 2.0, 4.0], [10.0, 20.0, 0.0]], dtype=torch.float64)  # 2nd variable has 2 bins
    probs = torch.tensor([[[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]]], dtype=torch.float64)
    dist = BinnedDistribution(probs=probs, centers=centers)
    np.testing.assert_allclose(dist.mean().numpy(), [[0.2 + 0.6 + 2.0, 6.0 + 8.0]])
    q = dist.quantile([0.1, 0.5, 0.6, 0.99]).numpy()[:, 0]  # (n_q, V)
    np.testing.assert_allclose(q[:, 0], [1.0, 2.0, 4.0, 4.0])
    np.testing.assert_allclose(q[:, 1], [10.0, 10.0, 10.0, 20.0])  # never the padding bin
    draws = dist.sample(4000, torch.Generator().manual_seed(0))
    assert draws.shape == (4000, 1, 2)
    assert set(draws[:, 0, 1].tolist()) <= {10.0, 20.0}
    np.testing.assert_allclose(draws.mean(0).numpy(), dist.mean().numpy(), rtol=0.05)
    with pytest.raises(ValueError, match="levels"):
        dist.quantile(1.0)
    logits = torch.log(probs)
    np.testing.assert_allclose(BinnedDistribution.from_logits(logits, centers).probs.numpy(), probs.numpy(), atol=1e-12)
    # per-case values (change bins around a last value), not in ascending order
    per_case = torch.tensor([[[5.0, 3.0, 4.0], [7.0, 6.0, 0.0]]], dtype=torch.float64)
    moved = BinnedDistribution(probs=probs, centers=per_case)
    np.testing.assert_allclose(moved.mean().numpy(), [[1.0 + 0.9 + 2.0, 4.2 + 2.4]])
    np.testing.assert_allclose(moved.quantile([0.25, 0.6]).numpy()[:, 0], [[3.0, 6.0], [4.0, 7.0]])


def test_center_tensor_follows_the_tokenizer(encoder):
    table = center_tensor(encoder.tokenizer, ["map", "hr"])
    tokenizer = encoder.tokenizer
    column = tokenizer.variables.index("map")
    np.testing.assert_array_equal(table[0, : tokenizer.bin_counts[column]].numpy(), tokenizer.centers[column])


def test_bin_values_and_mean_targets_in_z_units(encoder):
    """A bin's z value is its decoded value's z-score (value bins) or change of z-score (change bins)."""
    width = max(max(encoder.tokenizer.bin_counts), max(encoder.changes.bin_counts))
    value_bins, change_bins = encoder.bin_values_z(width)
    v = encoder.variables.index("map")
    n_values, n_changes = encoder.tokenizer.bin_counts[v], encoder.changes.bin_counts[v]
    decoded = encoder.tokenizer.decode(np.arange(1, n_values + 1)[:, None], encoder.tokenizer.encode(np.zeros((n_values, 1)), ["map"])[2])
    np.testing.assert_allclose(value_bins[v, :n_values].numpy(), encoder.normaliser.zscore(decoded, ["map"])[:, 0], rtol=1e-5)
    last = np.full((n_changes, 1), 71.0)
    moved = encoder.changes.decode(np.arange(1, n_changes + 1)[:, None], encoder.changes.encode(last, last, ["map"])[2])
    z_change = encoder.normaliser.zscore(moved, ["map"]) - encoder.normaliser.zscore(last, ["map"])
    np.testing.assert_allclose(change_bins[v, :n_changes].numpy(), z_change[:, 0], atol=1e-5)
    assert torch.all(value_bins[v, n_values:] == 0) and torch.all(change_bins[v, n_changes:] == 0)
    # targets of the mean: change of z-score after a measurement, z-score before any, 0 unobserved
    hr = encoder.variables.index("hr")
    next_values = np.full((1, 3, len(encoder.variables)), np.nan)
    carried = np.full_like(next_values, np.nan)
    next_values[0, :2, hr] = [90.0, 100.0]
    carried[0, 1:, hr] = 80.0
    z = encoder.target_z(next_values, carried)[0, :, hr].numpy()
    z90, z100, z80 = encoder.normaliser.zscore(np.array([[90.0], [100.0], [80.0]]), ["hr"])[:, 0]
    np.testing.assert_allclose(z, [z90, z100 - z80, 0.0], rtol=1e-6)
