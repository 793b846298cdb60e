"""AgentPRM targets and loss, BiRM scoring and loss, POLAR loss, against hand-computed numbers."""

import math

import pytest
import torch

from organsim.rl import (
    AgentPRMConfig,
    BiRMConfig,
    BiRMHead,
    PolarRewardModel,
    agentprm_loss,
    agentprm_targets,
    birm_loss,
    birm_score,
    polar_loss,
)

# Row 0: three steps, promises M = (0.2, 0.5, 0.6), outcome R = 1.
# Row 1: two steps then padding, promises (0.3, 0.7, pad 9.9), outcome R = 0.
PROMISES = torch.tensor([[0.2, 0.5, 0.6], [0.3, 0.7, 9.9]])
OUTCOMES = torch.tensor([1.0, 0.0])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_agentprm_targets_by_hand():
    # gamma = 0.9, lambda = 0.8 (gamma * lambda = 0.72), value before step 0 = 0.
    # Row 0, previous promises (0, 0.2, 0.5):
    #   delta_0 = 0.9 * 0.2 - 0 = 0.18;  delta_1 = 0.9 * 0.5 - 0.2 = 0.25;  delta_2 = R - 0.5 = 0.5
    #   A_2 = 0.5;  A_1 = 0.25 + 0.72 * 0.5 = 0.61;  A_0 = 0.18 + 0.72 * 0.61 = 0.6192
    #   Q = A + previous = (0.6192, 0.81, 1.0)   (Q at the last step is the outcome)
    # Row 1, previous (0, 0.3):
    #   delta_0 = 0.9 * 0.3 = 0.27;  delta_1 = R - 0.3 = -0.3
    #   A_1 = -0.3;  A_0 = 0.27 + 0.72 * (-0.3) = 0.054;  Q = (0.054, 0.0); padding -> 0
    advantages, q_targets = agentprm_targets(PROMISES, OUTCOMES, MASK, gamma=0.9, gae_lambda=0.8)
    torch.testing.assert_close(advantages, torch.tensor([[0.6192, 0.61, 0.5], [0.054, -0.3, 0.0]]))
    torch.testing.assert_close(q_targets, torch.tensor([[0.6192, 0.81, 1.0], [0.054, 0.0, 0.0]]))


def test_agentprm_targets_monte_carlo_limit_and_initial_promise():
    # gamma = lambda = 1: every Q_t is the outcome, whatever the model says
    _, q_targets = agentprm_targets(PROMISES, OUTCOMES, MASK, gamma=1.0, gae_lambda=1.0)
    torch.testing.assert_close(q_targets, torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    # the initial promise only shifts A_0: delta_0 = 0.9 * 0.2 - 0.1, so A_0 drops by 0.1
    advantages, q_targets = agentprm_targets(
        PROMISES,
        OUTCOMES,
        MASK,
        gamma=0.9,
        gae_lambda=0.8,
        initial_promise=torch.tensor([0.1, 0.0]),
    )
    assert advantages[0, 0].item() == pytest.approx(0.6192 - 0.1)
    assert q_targets[0, 0].item() == pytest.approx(0.6192)


def test_agentprm_targets_need_a_valid_step():
    with pytest.raises(ValueError, match="at least one valid step"):
        agentprm_targets(PROMISES, OUTCOMES, torch.zeros(2, 3), gamma=0.9, gae_lambda=0.8)


def test_agentprm_loss_by_hand():
    # Row 0 only (targets above). L_Q = mean((0.2 - 0.6192)^2, (0.5 - 0.81)^2, (0.6 - 1.0)^2)
    #   = (0.17572864 + 0.0961 + 0.16) / 3 = 0.14394288
    # progress M_t - M_t-1 = (0.2, 0.3, 0.1) against A = (0.6192, 0.61, 0.5): the same errors,
    # so L_A = 0.14394288 too; beta = 0.5 -> 1.5 * 0.14394288
    promises = PROMISES[:1].clone().requires_grad_(True)
    config = AgentPRMConfig(gamma=0.9, gae_lambda=0.8, beta=0.5)
    loss, metrics = agentprm_loss(promises, OUTCOMES[:1], MASK[:1], config)
    assert metrics["losses/promise_loss"].item() == pytest.approx(0.14394288)
    assert metrics["losses/progress_loss"].item() == pytest.approx(0.14394288)
    assert loss.item() == pytest.approx(1.5 * 0.14394288)
    loss.backward()
    # dL_Q/dM_2 = 2 (0.6 - 1.0) / 3; dL_A/dM_2 = the same; dL_A/dM_1 also gets -2 (0.6 - 1.0) / 3
    assert promises.grad[0, 2].item() == pytest.approx(1.5 * 2 * (0.6 - 1.0) / 3)


def test_agentprm_config_checks():
    with pytest.raises(ValueError, match="gamma=1.5"):
        AgentPRMConfig(gamma=1.5)
    with pytest.raises(ValueError, match="beta=-1"):
        AgentPRMConfig(beta=-1)


def test_birm_score_by_hand():
    # row 0, three steps: g = sigmoid(0, ln 3, ln 3) = (0.5, 0.75, 0.75), h_last = sigmoid(ln 4) = 0.8
    #   score = 0.8 + 0.5 * (0.5 + 0.75 + 0.75) / 3 = 0.8 + 0.5 * 2/3
    # row 1, one valid step: g = sigmoid(ln 1/3) = 0.25, h = sigmoid(0) = 0.5 -> 0.5 + 0.5 * 0.25
    g_logits = torch.tensor([[0.0, math.log(3), math.log(3)], [math.log(1 / 3), 7.0, 7.0]])
    h_logits = torch.tensor([[5.0, 5.0, math.log(4)], [0.0, 7.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    scores = birm_score(g_logits, h_logits, mask, beta=0.5)
    torch.testing.assert_close(scores, torch.tensor([0.8 + 0.5 * 2 / 3, 0.5 + 0.5 * 0.25]))
    with pytest.raises(ValueError, match="at least one valid step"):
        birm_score(g_logits, h_logits, torch.zeros(2, 3), beta=0.5)


def test_birm_loss_by_hand():
    # all logits 0: every binary cross-entropy is ln 2, whatever the labels;
    # padding is ignored; total = ln 2 + value_coef * ln 2
    logits = torch.zeros(2, 3)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    loss, metrics = birm_loss(logits, logits, labels, labels, mask, BiRMConfig(value_coef=2.0))
    assert metrics["losses/correctness_loss"].item() == pytest.approx(math.log(2))
    assert metrics["losses/value_loss"].item() == pytest.approx(math.log(2))
    assert loss.item() == pytest.approx(3 * math.log(2))


def test_birm_head_shapes_and_config_checks():
    g, h = BiRMHead(8)(torch.zeros(2, 5, 8))
    assert g.shape == h.shape == (2, 5)
    with pytest.raises(ValueError, match="beta=-1"):
        BiRMConfig(beta=-1)


def test_polar_loss_by_hand():
    # margins (2, 0): -ln sigmoid(2) = ln(1 + e^-2) = 0.126928, -ln sigmoid(0) = ln 2
    loss, metrics = polar_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-2)) + math.log(2)) / 2)
    assert metrics["reward/pairwise_accuracy"].item() == 0.5


def test_polar_reward_model_flattens_trajectories_and_checks_size():
    model = PolarRewardModel(3, 12)
    scores = model(torch.zeros(4, 3), torch.zeros(4, 6, 2), torch.zeros(4, 12))
    assert scores.shape == (4,)
    with pytest.raises(ValueError, match="expected trajectory_dim=12"):
        model(torch.zeros(4, 3), torch.zeros(4, 5, 2), torch.zeros(4, 12))
