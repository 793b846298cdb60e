"""PPO losses, the quantile Huber loss and the DVPO tail terms against numbers computed by hand."""

import itertools
import math

import pytest
import torch

from organsim.rl import (
    DVPOConfig,
    PPOConfig,
    QuantileCritic,
    dvpo_critic_loss,
    ppo_policy_loss,
    ppo_value_loss,
    quantile_huber_loss,
    quantile_midpoints,
)


def test_ppo_policy_loss_by_hand():
    # ratios 1.5, 0.5, 1.0; advantages 1, -1, 2; clip 0.2:
    #   max(-1.5, -1.2) = -1.2;  max(0.5, 0.8) = 0.8;  max(-2, -2) = -2  -> mean -0.8
    # clip fraction: |r - 1| > 0.2 for the first two -> 2/3
    # approx_kl = mean((r - 1) - ln r) = (0.5 - ln 1.5 + (-0.5 + ln 2) + 0) / 3
    # old_approx_kl = mean(-ln r) = (-ln 1.5 + ln 2 + 0) / 3
    ratios = torch.tensor([1.5, 0.5, 1.0])
    loss, metrics = ppo_policy_loss(
        ratios.log(), torch.zeros(3), torch.tensor([1.0, -1.0, 2.0]), clip_coef=0.2
    )
    assert loss.item() == pytest.approx(-0.8)
    assert metrics["clip/fraction"].item() == pytest.approx(2 / 3)
    assert metrics["losses/approx_kl"].item() == pytest.approx(
        (0.5 - math.log(1.5) - 0.5 + math.log(2.0)) / 3
    )
    assert metrics["losses/old_approx_kl"].item() == pytest.approx(
        (-math.log(1.5) + math.log(2.0)) / 3
    )


def test_ppo_value_loss_clipped_and_unclipped_by_hand():
    # values (1, 2), old (0.5, 2.5), returns (2, 0), clip 0.2
    # unclipped squared errors: 1, 4 -> 0.5 * mean = 1.25
    # clipped values: 0.5 + 0.2 = 0.7 and 2.5 - 0.2 = 2.3 -> errors 1.69, 5.29
    # max per sample: 1.69, 5.29 -> 0.5 * mean = 1.745
    values, old, returns = (
        torch.tensor([1.0, 2.0]),
        torch.tensor([0.5, 2.5]),
        torch.tensor([2.0, 0.0]),
    )
    assert ppo_value_loss(values, old, returns, clip_coef=None).item() == pytest.approx(1.25)
    assert ppo_value_loss(values, old, returns, clip_coef=0.2).item() == pytest.approx(1.745)


def test_quantile_midpoints():
    torch.testing.assert_close(quantile_midpoints(4), torch.tensor([0.125, 0.375, 0.625, 0.875]))


@pytest.mark.parametrize(
    ("kappa", "expected"),
    [
        # taus (0.25, 0.75), theta (0, 1), targets (0.5, 2.0); u = y_j - theta_i
        # kappa = 1: i=0: u = 0.5, 2.0 (>= 0, weight 0.25): L = 0.125, 1.5 -> 0.03125, 0.375
        #            i=1: u = -0.5 (weight 0.25), 1.0 (weight 0.75): L = 0.125, 0.5 -> 0.03125, 0.375
        #            mean over j then sum over i: 0.203125 + 0.203125
        (1.0, 0.40625),
        # kappa = 0.5 (L / kappa): i=0: 0.25 * 0.125/0.5 = 0.0625, 0.25 * 0.875/0.5 = 0.4375 -> 0.25
        #                          i=1: 0.25 * 0.125/0.5 = 0.0625, 0.75 * 0.375/0.5 = 0.5625 -> 0.3125
        (0.5, 0.5625),
    ],
)
def test_quantile_huber_loss_by_hand(kappa, expected):
    loss = quantile_huber_loss(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 2.0]]), kappa=kappa)
    assert loss.item() == pytest.approx(expected)


def test_quantile_huber_loss_matches_a_loop():
    torch.manual_seed(0)
    quantiles, targets, kappa = torch.randn(3, 4), torch.randn(3, 5), 0.7
    total = 0.0
    for b, i in itertools.product(range(3), range(4)):
        tau = (2 * i + 1) / 8
        per_target = []
        for j in range(5):
            u = (targets[b, j] - quantiles[b, i]).item()
            huber = 0.5 * u * u if abs(u) <= kappa else kappa * (abs(u) - 0.5 * kappa)
            per_target.append(abs(tau - (u < 0)) * huber / kappa)
        total += sum(per_target) / 5
    loss = quantile_huber_loss(quantiles, targets, kappa=kappa)
    assert loss.item() == pytest.approx(total / 3, rel=1e-5)


def test_dvpo_tail_terms_by_hand():
    # Two heads, four quantiles, tail of k = floor(0.25 * 4) = 1 quantile; both rows predict
    # head 0 = (0, 1, 2, 3), head 1 = (2, 1, 2, 5) -> head mean q = (1, 1, 2, 4):
    # mean 2, lower spread 2 - 1 = 1, upper spread 4 - 2 = 2.
    # row 0 target (1.5, 2, 3, 5.5): mean 3, lower spread 1.5, upper 2.5
    #   lower relu(1 - 1.5) = 0, upper relu(2.5 - 2) = 0.5, mean shift (2 - 3)^2 = 1
    # row 1 target (1.5, 1.5, 2, 3): mean 2, lower spread 0.5, upper 1
    #   lower relu(1 - 0.5) = 0.5, upper relu(1 - 2) = 0, mean shift 0
    # tail shape: adjacent crossings relu(q_i - q_i+1): head 0 none, head 1 (2 > 1) once -> 1/6
    # curvature: head 0 second differences 0, 0; head 1: 2 - 2 + 2 = 2, 5 - 4 + 1 = 2 -> (0+0+4+4)/4
    # head consistency: deviations from q are (-1, 0, 0, -1) and (1, 0, 0, 1) -> 4 / 8
    heads = torch.tensor([[0.0, 1.0, 2.0, 3.0], [2.0, 1.0, 2.0, 5.0]])
    quantiles = heads.expand(2, 2, 4).clone().requires_grad_(True)
    targets = torch.tensor([[1.5, 2.0, 3.0, 5.5], [1.5, 1.5, 2.0, 3.0]])
    coefs = {
        "lower_tail_coef": 0.3,
        "upper_tail_coef": 0.4,
        "mean_shift_coef": 0.5,
        "shape_coef": 0.6,
        "curvature_coef": 0.7,
        "head_consistency_coef": 0.8,
    }
    loss, metrics = dvpo_critic_loss(quantiles, targets, tail_fraction=0.25, **coefs)
    expected = {  # metric name -> (value, coefficient)
        "lower_tail": (0.25, 0.3),
        "upper_tail": (0.25, 0.4),
        "mean_shift": (0.5, 0.5),
        "tail_shape": (1 / 6, 0.6),
        "tail_curvature": (2.0, 0.7),
        "head_consistency": (0.5, 0.8),
    }
    for name, (value, _) in expected.items():
        assert metrics[f"losses/{name}"].item() == pytest.approx(value), name
    huber = quantile_huber_loss(quantiles, targets.unsqueeze(1))
    assert metrics["losses/quantile_huber"].item() == pytest.approx(huber.item())
    weighted = sum(value * coef for value, coef in expected.values())
    assert loss.item() == pytest.approx(huber.item() + weighted)
    loss.backward()
    assert quantiles.grad.abs().sum() > 0


def test_dvpo_critic_loss_rejects_bad_shapes_and_tail_fraction():
    with pytest.raises(ValueError, match=r"\(B, H, M\)"):
        dvpo_critic_loss(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="tail_fraction=0.7"):
        dvpo_critic_loss(torch.zeros(2, 1, 4), torch.zeros(2, 4), tail_fraction=0.7)


def test_quantile_critic_shape():
    critic = QuantileCritic(5, num_heads=3, num_quantiles=7)
    assert critic(torch.zeros(4, 5)).shape == (4, 3, 7)
    with pytest.raises(ValueError, match="num_quantiles >= 2"):
        QuantileCritic(5, num_quantiles=1)


@pytest.mark.parametrize(
    ("config_cls", "kwargs", "message"),
    [
        (PPOConfig, {"num_steps": 0}, "num_steps=0"),
        (PPOConfig, {"gamma": 1.5}, "gamma=1.5"),
        (PPOConfig, {"clip_coef": 0.0}, "clip_coef=0.0"),
        (PPOConfig, {"ent_coef": -1.0}, "ent_coef=-1.0"),
        (PPOConfig, {"target_kl": 0.0}, "target_kl=0.0"),
        (DVPOConfig, {"clip_vloss": True}, "clip_vloss must be False"),
        (DVPOConfig, {"kappa": 0.0}, "kappa=0.0"),
        (DVPOConfig, {"tail_fraction": 0.6}, "tail_fraction=0.6"),
        (DVPOConfig, {"shape_coef": -0.1}, "shape_coef=-0.1"),
        (DVPOConfig, {"gae_lambda": -0.1}, "DVPOConfig: gamma=0.99 and gae_lambda=-0.1"),
    ],
)
def test_ppo_and_dvpo_configs_reject_inconsistent_fields(config_cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        config_cls(**kwargs)
