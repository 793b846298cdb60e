"""GRPO losses, aggregations, ratios and config checks against numbers computed by hand."""

import dataclasses
import math

import pytest
import torch

from organsim.rl import (
    BAPOConfig,
    GRPOConfig,
    aggregate_loss,
    grpo_loss,
    importance_log_weights,
    k3_kl,
)

LN = math.log


def test_k3_kl_by_hand():
    # p = 0.5, p_ref = 0.25: log(p_ref / p) = ln 0.5; exp(ln 0.5) - ln 0.5 - 1 = 0.5 + 0.693147 - 1
    logprobs = torch.tensor([[LN(0.5), LN(0.5)]])
    ref = torch.tensor([[LN(0.25), LN(0.5)]])
    torch.testing.assert_close(k3_kl(logprobs, ref), torch.tensor([[0.5 + LN(2.0) - 1.0, 0.0]]))


def test_importance_log_weights_token_and_sequence():
    logprobs = torch.tensor([[0.1, 0.3], [0.2, 5.0]])
    old = torch.zeros(2, 2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    torch.testing.assert_close(importance_log_weights(logprobs, old, mask, level="token"), logprobs)
    # sequence: mean over unmasked tokens: (0.1 + 0.3) / 2 = 0.2 and 0.2 / 1 = 0.2 (5.0 is padding)
    torch.testing.assert_close(
        importance_log_weights(logprobs, old, mask, level="sequence"), torch.full((2, 2), 0.2)
    )
    with pytest.raises(ValueError, match="unknown level 'word'"):
        importance_log_weights(logprobs, old, mask, level="word")


PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    ("loss_type", "kwargs", "expected"),
    [
        ("grpo", {}, (2.0 + 4.0) / 2),  # row means (1+2+3)/3 = 2 and 4/1, then their mean
        ("bnpo", {}, 10.0 / 4),  # masked sum 1+2+3+4 = 10 over 4 tokens
        ("dr_grpo", {}, 10.0 / (2 * 3)),  # over B * L
        ("dr_grpo", {"max_completion_length": 5}, 10.0 / (2 * 5)),
        ("dapo", {}, 10.0 / 4),  # defaults to this batch's tokens
        ("dapo", {"num_items_in_batch": 8}, 10.0 / 8),  # tokens of the whole generation batch
    ],
)
def test_aggregate_loss_by_hand(loss_type, kwargs, expected):
    value = aggregate_loss(PER_TOKEN, MASK, loss_type=loss_type, **kwargs)
    assert value.item() == pytest.approx(expected)


def test_aggregate_loss_rejects_unknown_type():
    with pytest.raises(ValueError, match="unknown loss_type 'sum'"):
        aggregate_loss(PER_TOKEN, MASK, loss_type="sum")


# Two sequences of two tokens; ratios r = pi / pi_old given through log-probabilities, old = 0.
RATIOS = torch.tensor([[1.5, 0.9], [0.5, 1.1]])
ADVANTAGES = torch.tensor([1.0, -2.0])
PAD_MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0]])


def _loss(**kwargs):
    logprobs = RATIOS.log().requires_grad_(True)
    loss, metrics = grpo_loss(logprobs, torch.zeros(2, 2), ADVANTAGES, PAD_MASK, **kwargs)
    return logprobs, loss, metrics


# Per-token -min(r A, clip(r, 0.8, 1.28) A) with epsilon = 0.2, epsilon_high = 0.28:
#   (0,0) A=1,  r=1.5: min(1.5, 1.28) = 1.28 -> -1.28 (clipped high)
#   (0,1) A=1,  r=0.9: -0.9
#   (1,0) A=-2, r=0.5: min(-1.0, 0.8 * -2 = -1.6) = -1.6 -> 1.6 (clipped low)
#   (1,1) padding
@pytest.mark.parametrize(
    ("loss_type", "expected"),
    [
        ("grpo", ((-1.28 - 0.9) / 2 + 1.6) / 2),  # 0.255
        ("bnpo", (-1.28 - 0.9 + 1.6) / 3),  # -0.193333
        ("dapo", (-1.28 - 0.9 + 1.6) / 3),
        ("dr_grpo", (-1.28 - 0.9 + 1.6) / (2 * 2)),  # -0.145
    ],
)
def test_grpo_loss_each_aggregation_by_hand(loss_type, expected):
    _, loss, metrics = _loss(loss_type=loss_type, epsilon=0.2, epsilon_high=0.28)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # one of three valid tokens is clipped on each side
    assert metrics["clip/high_fraction"].item() == pytest.approx(1 / 3)
    assert metrics["clip/low_fraction"].item() == pytest.approx(1 / 3)
    assert metrics["clip/region_fraction"].item() == pytest.approx(2 / 3)


def test_grpo_loss_symmetric_clip_by_hand():
    # epsilon_high defaults to epsilon: (0,0) is clipped at 1.2 -> row 0 mean (-1.2 - 0.9) / 2
    _, loss, _ = _loss(loss_type="grpo", epsilon=0.2)
    assert loss.item() == pytest.approx(((-1.2 - 0.9) / 2 + 1.6) / 2)


def test_grpo_loss_clipped_tokens_carry_no_gradient():
    logprobs, loss, _ = _loss(loss_type="grpo", epsilon=0.2, epsilon_high=0.28)
    loss.backward()
    # d/dlogp of -r A / (2 tokens) / (2 rows) for the unclipped token (0,1): -0.9 * 1 / 4
    expected = torch.tensor([[0.0, -0.9 / 4], [0.0, 0.0]])
    torch.testing.assert_close(logprobs.grad, expected)


def test_grpo_loss_sequence_level_ratio_by_hand():
    # row 0: exp(mean(ln 1.5, ln 0.9)) = sqrt(1.35) = 1.161895, inside [0.8, 1.28] -> -1.161895
    # row 1: only token 0 counts: r = 0.5, A = -2 -> clipped to 0.8 -> 1.6
    _, loss, _ = _loss(
        loss_type="grpo", epsilon=0.2, epsilon_high=0.28, importance_sampling_level="sequence"
    )
    assert loss.item() == pytest.approx((-math.sqrt(1.35) + 1.6) / 2, abs=1e-6)


def test_grpo_loss_kl_term_by_hand():
    # on-policy (r = 1), advantages (1, -1): policy terms -1, -1 | 1, 1 -> "grpo" loss 0.
    # every token has p = 0.5, p_ref = 0.25: k3 = 0.5 + ln 2 - 1 = 0.193147; beta = 0.1.
    logprobs = torch.full((2, 2), LN(0.5))
    ref = torch.full((2, 2), LN(0.25))
    advantages = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 2)
    k3 = 0.5 + LN(2.0) - 1.0
    loss, metrics = grpo_loss(logprobs, logprobs, advantages, mask, beta=0.1, ref_logprobs=ref)
    assert loss.item() == pytest.approx(0.1 * k3)
    assert metrics["losses/kl"].item() == pytest.approx(k3)
    # beta = 0 skips the reference even when one is passed
    loss, metrics = grpo_loss(logprobs, logprobs, advantages, mask, beta=0.0, ref_logprobs=ref)
    assert loss.item() == pytest.approx(0.0)
    assert "losses/kl" not in metrics
    with pytest.raises(ValueError, match="beta > 0 needs ref_logprobs"):
        grpo_loss(logprobs, logprobs, advantages, mask, beta=0.1)


def test_grpo_loss_accepts_per_token_advantages():
    logprobs = RATIOS.log()
    per_sequence, _ = grpo_loss(logprobs, torch.zeros(2, 2), ADVANTAGES, PAD_MASK)
    per_token, _ = grpo_loss(
        logprobs, torch.zeros(2, 2), ADVANTAGES.unsqueeze(-1).expand(2, 2), PAD_MASK
    )
    torch.testing.assert_close(per_sequence, per_token)


def test_grpo_config_defaults_and_clip_higher():
    assert GRPOConfig(loss_type="dapo").upper_epsilon == 0.28
    assert GRPOConfig(loss_type="grpo", epsilon=0.1).upper_epsilon == 0.1
    assert GRPOConfig(loss_type="dapo", epsilon_high=0.4).upper_epsilon == 0.4
    # configs survive dataclasses.replace (nothing is rewritten in __post_init__)
    bapo = GRPOConfig(adaptive_clipping=BAPOConfig())
    assert dataclasses.replace(bapo, learning_rate=0.1).epsilon_high is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss_type": "ppo"}, "loss_type='ppo'"),
        ({"scale_rewards": "max"}, "scale_rewards='max'"),
        ({"importance_sampling_level": "word"}, "importance_sampling_level='word'"),
        ({"num_generations": 1}, "at least 2 completions"),
        ({"epsilon": 1.5}, r"epsilon=1.5 must be in \(0, 1\)"),
        ({"epsilon": 0.3, "epsilon_high": 0.2}, "epsilon_high=0.2 must be >= epsilon=0.3"),
        ({"beta": -0.1}, "beta=-0.1 must be >= 0"),
        ({"num_iterations": 0}, "num_iterations=0"),
        ({"learning_rate": 0.0}, "learning_rate=0.0"),
        ({"max_completion_length": 4}, "normaliser of loss_type='dr_grpo' only"),
        ({"loss_type": "dr_grpo", "max_completion_length": 0}, "max_completion_length=0"),
        ({"max_grad_norm": 0.0}, "max_grad_norm=0.0"),
        (
            {"adaptive_clipping": BAPOConfig(), "epsilon_high": 0.3},
            "leave epsilon_high=None",
        ),
    ],
)
def test_grpo_config_rejects_inconsistent_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GRPOConfig(**kwargs)
