"""The organ-agent network: every weight learns, references gate what an agent sees, masks and caches agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from organsim.agents.model import (
    PRESETS,
    AgentConfig,
    HourInputs,
    OrganAgents,
    reference_sets,
    sample_reference_sets,
)
from organsim.catalog import SYSTEMS

BINS = 5
CHANGE_BINS = 4


def _config(catalog, **fields) -> AgentConfig:
    codes = catalog.variable_codes
    return AgentConfig.from_preset(
        "micro",
        variables=codes,
        variable_systems=tuple(catalog.variable(c).system for c in codes),
        bin_counts=tuple(BINS + (i % 3) for i in range(len(codes))),  # bins differ between variables
        change_bin_counts=tuple(CHANGE_BINS + (i % 2) for i in range(len(codes))),
        treatment_codes=catalog.treatment_codes,
        static_codes=catalog.static_codes,
        **fields,
    )


def _inputs(config: AgentConfig, b: int, t: int, seed: int) -> HourInputs:
    g = torch.Generator().manual_seed(seed)
    v = len(config.variables)
    return HourInputs(
        last_ids=torch.randint(0, BINS + 1, (b, t, v), generator=g),
        observed=(torch.rand(b, t, v, generator=g) < 0.5).float(),
        since=torch.rand(b, t, v, generator=g),
        last_z=torch.randn(b, t, v, generator=g),
        treatments=torch.randn(b, t, 2 * len(config.treatment_codes), generator=g),
        static=torch.randn(b, 2 * len(config.static_codes), generator=g),
        hours=torch.rand(b, t, generator=g),
    )


def _slice(inputs: HourInputs, lo: int, hi: int) -> HourInputs:
    return HourInputs(**{k: (x if k == "static" else x[:, lo:hi]) for k, x in vars(inputs).items()})


@pytest.mark.parametrize("sharing", ["shared", "separate"])
@pytest.mark.parametrize("references", ["random", "none", "all"])
def test_every_trainable_parameter_changes_after_one_step(catalog, sharing, references):
    torch.manual_seed(0)
    config = _config(catalog, backbone_sharing=sharing, dropout=0.1)
    model = OrganAgents(config)
    b, t = 4, 6
    inputs = _inputs(config, b, t, seed=1)
    inputs.last_ids[:, 2] = torch.arange(len(config.variables)) % 2  # targets in value bins (id 0) and change bins
    targets = torch.randint(0, min(BINS, CHANGE_BINS), (b, t, len(config.variables)))
    targets[:, :2] = -100  # unobserved targets are skipped
    refs = (
        sample_reference_sets(b, len(SYSTEMS), torch.Generator().manual_seed(2))
        if references == "random"
        else reference_sets(references, b, len(SYSTEMS))
    )
    refs[0] = True  # one window consults every system, so every reference vector is used
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    out = model(inputs, refs, targets)
    assert out.n_targets == int((targets >= 0).sum()) and torch.isfinite(out.loss)
    out.loss.backward()
    optimizer.step()
    unchanged = [name for name, p in model.named_parameters() if p.requires_grad and torch.equal(p, before[name])]
    assert not unchanged
    # the token embedding of the decoder is not used (inputs go in as vectors) and is frozen
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all("embed_tokens" in name for name in frozen)


def test_an_agent_without_references_ignores_other_systems(catalog):
    torch.manual_seed(0)
    config = _config(catalog)
    model = OrganAgents(config).eval()
    inputs = _inputs(config, 2, 5, seed=3)
    changed = _inputs(config, 2, 5, seed=3)
    renal = [i for i, s in enumerate(config.variable_systems) if s == "renal"]
    changed.last_ids[:, :, renal] = (changed.last_ids[:, :, renal] + 1) % (BINS + 1)
    changed.last_z[:, :, renal] += 3.0
    with torch.no_grad():
        none_a = model(inputs, reference_sets("none", 2, 9)).logits
        none_b = model(changed, reference_sets("none", 2, 9)).logits
        all_a = model(inputs, reference_sets("all", 2, 9)).logits
        all_b = model(changed, reference_sets("all", 2, 9)).logits
    cardio = [i for i, s in enumerate(config.variable_systems) if s == "cardiovascular"]
    assert torch.equal(none_a[:, cardio], none_b[:, cardio])  # renal values are invisible to the heart
    assert not torch.allclose(none_a[:, renal], none_b[:, renal])  # but not to the kidney
    assert not torch.allclose(all_a[:, cardio], all_b[:, cardio])  # with references, the heart sees them


@pytest.mark.parametrize("sharing", ["shared", "separate"])
def test_left_padding_and_cache_stepping_match_a_plain_pass(catalog, sharing):
    torch.manual_seed(0)
    config = _config(catalog, backbone_sharing=sharing)
    model = OrganAgents(config).eval()
    refs = reference_sets("all", 1, 9)
    inputs = _inputs(config, 1, 8, seed=4)
    with torch.no_grad():
        plain = model(inputs, refs).logits
        # three masked padding hours in front change nothing
        padding = _inputs(config, 1, 3, seed=5)
        padded = HourInputs(**{k: x if k == "static" else torch.cat([getattr(padding, k), x], 1) for k, x in vars(inputs).items()})
        mask = torch.tensor([[0, 0, 0] + [1] * 8])
        positions = (mask.cumsum(1) - 1).clamp_min(0)
        assert torch.allclose(model(padded, refs, attention_mask=mask, position_ids=positions).logits, plain, atol=1e-5)
        # five hours at once, then one hour at a time from the cache
        out = model(_slice(inputs, 0, 5), refs, position_ids=torch.arange(5)[None], use_cache=True)
        for hour in range(5, 8):
            out = model(_slice(inputs, hour, hour + 1), refs, position_ids=torch.tensor([[hour]]),
                        past_key_values=out.past_key_values, use_cache=True)
        assert torch.allclose(out.logits, plain, atol=1e-5)


def test_logits_are_over_change_bins_after_a_measurement(catalog):
    config = _config(catalog)
    model = OrganAgents(config).eval()
    inputs = _inputs(config, 2, 3, seed=6)
    inputs.last_ids[0, -1] = 0  # window 0: nothing measured yet -> value bins
    inputs.last_ids[1, -1] = 1  # window 1: every variable measured -> change bins
    out = model(inputs, reference_sets("none", 2, 9))
    width = max(max(a, b) for a, b in zip(config.bin_counts, config.change_bin_counts, strict=True))
    assert out.logits.shape == (2, len(config.variables), width)
    assert torch.equal(out.relative, torch.tensor([[False], [True]]).expand(2, len(config.variables)))
    probs = torch.softmax(out.logits, -1)
    for v, (n_values, n_changes) in enumerate(zip(config.bin_counts, config.change_bin_counts, strict=True)):
        assert torch.all(probs[0, v, n_values:] == 0) and torch.all(probs[1, v, n_changes:] == 0)
        assert torch.all(probs[0, v, :n_values] > 0) and torch.all(probs[1, v, :n_changes] > 0)


def test_heads_start_at_the_training_frequencies(catalog):
    config = _config(catalog)
    model = OrganAgents(config)
    value_counts = [np.arange(n) for n in config.bin_counts]
    change_counts = [np.full(m, 3) for m in config.change_bin_counts]
    model.init_output_priors(value_counts, change_counts)
    n = config.bin_counts[0]
    expected = np.log((np.arange(n) + 1) / (np.arange(n).sum() + n))
    np.testing.assert_allclose(model.heads[0].bias[:n].detach().numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(model.heads[0].bias[n:].detach().numpy(), np.log(1 / config.change_bin_counts[0]), rtol=1e-6)
    with pytest.raises(ValueError, match="counts for"):
        model.init_output_priors([np.ones(2)] * len(config.variables), change_counts)


def test_config_round_trip_and_checks(catalog):
    config = _config(catalog)
    assert AgentConfig.from_dict(config.to_dict()) == config
    assert set(PRESETS) == {"micro", "tiny", "small", "base"}
    with pytest.raises(ValueError, match="backbone_sharing"):
        _config(catalog, backbone_sharing="pooled")
    with pytest.raises(ValueError, match="LoRA adapts"):
        _config(catalog, lora_r=4)
    with pytest.raises(ValueError, match="context_hours"):
        _config(catalog, context_hours=100)
    with pytest.raises(ValueError, match="unknown preset"):
        AgentConfig.from_preset("huge")
    with pytest.raises(ValueError, match="unknown agent config keys"):
        AgentConfig.from_dict({**config.to_dict(), "colour": "red"})


def test_random_reference_sets_mix_none_all_and_subsets():
    refs = sample_reference_sets(400, 9, torch.Generator().manual_seed(0))
    assert refs.shape == (400, 9, 9)
    flat = refs.reshape(-1, 9).float().mean(1)
    assert (flat == 0).any() and (flat == 1).any() and ((flat > 0) & (flat < 1)).any()
    assert torch.equal(refs, sample_reference_sets(400, 9, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="references"):
        reference_sets("some", 1, 9)


def test_squared_error_of_the_predictive_mean_by_hand(catalog):
    torch.manual_seed(0)
    config = _config(catalog)
    model = OrganAgents(config).eval()
    n_variables = len(config.variables)
    g = torch.Generator().manual_seed(7)
    width = model.value_bins_z.shape[1]
    model.set_bin_values(torch.randn(n_variables, width, generator=g), torch.randn(n_variables, width, generator=g))
    model.loss_weights.copy_(torch.rand(n_variables, generator=g) + 0.5)
    inputs = _inputs(config, 3, 1, seed=8)  # one hour: the loss position is the last position
    inputs.last_ids[0] = 0  # window 0 predicts in value bins, the others mostly in change bins
    targets = torch.zeros(3, 1, n_variables, dtype=torch.long)
    targets[1, 0, ::3] = -100  # unobserved targets do not count
    target_z = torch.randn(3, 1, n_variables, generator=g)
    refs = reference_sets("all", 3, 9)
    with torch.no_grad():
        out = model(inputs, refs, targets, target_z)
        logits = model(inputs, refs)  # the same position's logits over the bins it predicts in
    bin_z = torch.where(logits.relative[:, :, None], model.change_bins_z, model.value_bins_z)  # (B, V, K)
    mean_z = (torch.softmax(logits.logits, -1) * bin_z).sum(-1)  # (B, V)
    observed = targets[:, 0] >= 0
    weights = model.loss_weights.expand(3, -1)[observed]
    expected = (weights * (mean_z - target_z[:, 0])[observed] ** 2).sum() / weights.sum()
    assert torch.allclose(out.squared_error, expected, rtol=1e-5)
    assert out.squared_error > 0 and torch.allclose(out.n_targets, weights.sum())
    with torch.no_grad():
        assert model(inputs, refs, targets).squared_error is None  # without target_z, cross-entropy only
    with pytest.raises(ValueError, match="bin values"):
        model.set_bin_values(torch.zeros(n_variables, width + 1), torch.zeros(n_variables, width))
