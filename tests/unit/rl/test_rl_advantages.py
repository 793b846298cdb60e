"""GAE, group-relative advantages and distributional GAE against numbers computed by hand."""

import math

import pytest
import torch

from organsim.rl import distributional_gae, gae, group_advantages, zero_variance_groups


def test_gae_three_steps_by_hand():
    # gamma = 0.9, lambda = 0.8, so gamma * lambda = 0.72; V_3 (next_value) = 2.0.
    # env 0, no episode end:
    #   delta_2 = 2 + 0.9 * 2.0 - 1.5 = 2.3
    #   delta_1 = 0 + 0.9 * 1.5 - 1.0 = 0.35
    #   delta_0 = 1 + 0.9 * 1.0 - 0.5 = 1.4
    #   A_2 = 2.3; A_1 = 0.35 + 0.72 * 2.3 = 2.006; A_0 = 1.4 + 0.72 * 2.006 = 2.84432
    # env 1, the episode ends on transition 1 (no bootstrap from V_2, no carry of A_2):
    #   delta_1 = 0 - 1.0 = -1.0; A_2 = 2.3; A_1 = -1.0; A_0 = 1.4 + 0.72 * (-1.0) = 0.68
    rewards = torch.tensor([[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]])
    values = torch.tensor([[0.5, 0.5], [1.0, 1.0], [1.5, 1.5]])
    dones = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    advantages, returns = gae(
        rewards, values, dones, torch.tensor([2.0, 2.0]), gamma=0.9, gae_lambda=0.8
    )
    expected = torch.tensor([[2.84432, 0.68], [2.006, -1.0], [2.3, 2.3]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values)


def test_gae_lambda_one_is_discounted_return_minus_value():
    # lambda = 1: A_0 = r_0 + g r_1 + g^2 r_2 + g^3 V_3 - V_0 = 1 + 0 + 0.81 * 2 + 0.729 * 2 - 0.5
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [1.0], [1.5]])
    advantages, _ = gae(
        rewards, values, torch.zeros(3, 1), torch.tensor([2.0]), gamma=0.9, gae_lambda=1.0
    )
    assert advantages[0, 0].item() == pytest.approx(1 + 0.81 * 2 + 0.729 * 2 - 0.5)


def test_gae_accepts_bool_dones_and_rejects_mismatched_shapes():
    rewards = torch.ones(2, 3)
    values = torch.zeros(2, 3)
    bool_dones = torch.zeros(2, 3, dtype=torch.bool)
    a, _ = gae(rewards, values, bool_dones, torch.zeros(3), gamma=0.5, gae_lambda=0.5)
    b, _ = gae(rewards, values, bool_dones.float(), torch.zeros(3), gamma=0.5, gae_lambda=0.5)
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="must agree"):
        gae(rewards, torch.zeros(3, 2), bool_dones, torch.zeros(2), gamma=0.5, gae_lambda=0.5)


REWARDS = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])


def test_group_advantages_group_scale():
    # group 0: mean 2, unbiased std sqrt(((-1)^2 + 0 + 1^2) / 2) = 1 -> (-1, 0, 1) / (1 + 1e-4)
    # group 1: all equal -> 0 / (0 + 1e-4) = 0
    expected = torch.tensor([[-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]) / (1.0 + 1e-4)
    torch.testing.assert_close(group_advantages(REWARDS, scale="group"), expected)


def test_group_advantages_batch_scale():
    # centred on group means: (-1, 0, 1, 0, 0, 0); std of all six rewards (1, 2, 3, 0, 0, 0):
    # mean 1, squared deviations 0 + 1 + 4 + 1 + 1 + 1 = 8, unbiased variance 8 / 5 = 1.6
    std = math.sqrt(1.6)
    expected = torch.tensor([[-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]) / (std + 1e-4)
    torch.testing.assert_close(group_advantages(REWARDS, scale="batch"), expected)


def test_group_advantages_no_scale():
    expected = torch.tensor([[-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(group_advantages(REWARDS, scale="none"), expected)


def test_group_advantages_rejects_unknown_scale_and_bad_shapes():
    with pytest.raises(ValueError, match="unknown scale 'median'"):
        group_advantages(REWARDS, scale="median")
    with pytest.raises(ValueError, match="group_size >= 2"):
        group_advantages(torch.ones(4, 1))


def test_zero_variance_groups():
    rewards = torch.tensor([[1.0, 1.0], [0.0, 1.0], [2.0, 2.0]])
    assert zero_variance_groups(rewards).tolist() == [True, False, True]


def test_distributional_gae_by_hand():
    # gamma = 0.5, lambda = 1, one env, two quantiles, no episode end, Z_2 (next) = (2, 4).
    # quantile 0: delta_1 = 2 + 0.5 * 2 - 1 = 2, delta_0 = 1 + 0.5 * 1 - 0 = 1.5
    #             A_1 = 2, A_0 = 1.5 + 0.5 * 2 = 2.5; targets Z + A: 2.5, 3
    # quantile 1: delta_1 = 2 + 0.5 * 4 - 3 = 1, delta_0 = 1 + 0.5 * 3 - 2 = 0.5
    #             A_1 = 1, A_0 = 0.5 + 0.5 * 1 = 1;   targets: 3, 4
    # actor advantage = mean over quantiles: A_0 = (2.5 + 1) / 2 = 1.75, A_1 = (2 + 1) / 2 = 1.5
    rewards = torch.tensor([[1.0], [2.0]])
    quantiles = torch.tensor([[[2.0, 0.0]], [[1.0, 3.0]]])  # step 0 given unsorted on purpose
    advantages, targets = distributional_gae(
        rewards,
        quantiles,
        torch.zeros(2, 1),
        torch.tensor([[2.0, 4.0]]),
        gamma=0.5,
        gae_lambda=1.0,
    )
    torch.testing.assert_close(advantages, torch.tensor([[1.75], [1.5]]))
    torch.testing.assert_close(targets, torch.tensor([[[2.5, 3.0]], [[3.0, 4.0]]]))


def test_distributional_gae_mean_matches_scalar_gae():
    torch.manual_seed(0)
    rewards, dones = torch.randn(5, 3), (torch.rand(5, 3) < 0.3).float()
    quantiles = torch.randn(5, 3, 4).sort(-1).values
    next_quantiles = torch.randn(3, 4).sort(-1).values
    advantages, _ = distributional_gae(
        rewards, quantiles, dones, next_quantiles, gamma=0.9, gae_lambda=0.7
    )
    scalar, _ = gae(
        rewards,
        quantiles.mean(-1),
        dones,
        next_quantiles.mean(-1),
        gamma=0.9,
        gae_lambda=0.7,
    )
    torch.testing.assert_close(advantages, scalar)
