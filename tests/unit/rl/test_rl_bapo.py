"""BAPO's positive share and bound search against numbers computed by hand."""

import pytest
import torch

from organsim.rl import BAPOConfig, bapo_clip_bounds, bapo_loss, grpo_loss, positive_share

# Five tokens: ratios and advantages; |r A| = 1.0, 1.35, 0.65, 0.85, 1.0.
RATIO = torch.tensor([[1.0, 1.35, 0.65, 0.85, 1.0]])
ADVANTAGE = torch.tensor([[1.0, 1.0, -1.0, -1.0, -1.0]])
MASK = torch.ones(1, 5)
# A coarse grid: c_low in 0.6, 0.7, 0.8, 0.9 and c_high in 1.2, 1.3, 1.4, 1.5, stepped together.
COARSE = {"low_step": 0.1, "high_max": 1.5, "high_step": 0.1}


def test_positive_share_by_hand():
    # (0.6, 1.2): positives carrying: r=1.0 (1.35 > 1.2 is clipped) -> P = 1.0
    #             negatives carrying (r >= 0.6): 0.65 + 0.85 + 1.0 = 2.5 -> rho = 1 / 3.5
    # (0.8, 1.4): P = 1.0 + 1.35 = 2.35; N = 0.85 + 1.0 = 1.85 -> rho = 2.35 / 4.2
    shares = positive_share(
        RATIO, ADVANTAGE, MASK, torch.tensor([0.6, 0.8]), torch.tensor([1.2, 1.4])
    )
    torch.testing.assert_close(shares, torch.tensor([1 / 3.5, 2.35 / 4.2]))


def test_positive_share_is_one_without_gradient_carrying_tokens():
    shares = positive_share(
        RATIO, torch.zeros_like(ADVANTAGE), MASK, torch.tensor([0.6]), torch.tensor([1.2])
    )
    assert shares.item() == 1.0


@pytest.mark.parametrize(
    ("target", "c_low", "c_high", "share"),
    [
        # step 0 (0.6, 1.2): rho = 1 / 3.5 = 0.2857 already >= 0.25
        (0.25, 0.6, 1.2, 1 / 3.5),
        # step 1 (0.7, 1.3): 0.65 drops out, 1.35 still clipped: 1 / (1 + 1.85) = 0.3509 < 0.4
        # step 2 (0.8, 1.4): 1.35 comes in: 2.35 / (2.35 + 1.85) = 0.5595 >= 0.4
        (0.4, 0.8, 1.4, 2.35 / 4.2),
        # step 3 (0.9, 1.5): 0.85 drops out: 2.35 / (2.35 + 1.0) = 0.7015 >= 0.6
        (0.6, 0.9, 1.5, 2.35 / 3.35),
        # 0.8 is never reached: the search stops with both bounds at their maxima
        (0.8, 0.9, 1.5, 2.35 / 3.35),
    ],
)
def test_bapo_bound_search_by_hand(target, c_low, c_high, share):
    config = BAPOConfig(target_positive_share=target, **COARSE)
    chosen_low, chosen_high, chosen_share = bapo_clip_bounds(RATIO, ADVANTAGE, MASK, config)
    assert chosen_low.item() == pytest.approx(c_low)
    assert chosen_high.item() == pytest.approx(c_high)
    assert chosen_share.item() == pytest.approx(share, rel=1e-5)


def test_bapo_bound_search_default_steps_lower_bound_moves():
    # Defaults: c_low = 0.6 + 0.05 k (up to 0.9), c_high = 1.2 + 0.02 k (up to 3.0).
    # Tokens (r, A): (1.0, 1), (2.0, 1), (0.72, -4). P = 1.0 until c_high >= 2.0 (k = 40).
    # k = 0..2: c_low <= 0.70 < 0.72, N = 2.88, rho = 1 / 3.88 = 0.258 < 0.4
    # k = 3: c_low = 0.75 > 0.72, N = 0, rho = 1 -> chosen: (0.75, 1.26)
    ratio = torch.tensor([[1.0, 2.0, 0.72]])
    advantage = torch.tensor([[1.0, 1.0, -4.0]])
    c_low, c_high, share = bapo_clip_bounds(ratio, advantage, torch.ones(1, 3), BAPOConfig())
    assert (c_low.item(), c_high.item(), share.item()) == pytest.approx((0.75, 1.26, 1.0))


def test_bapo_bound_search_default_steps_upper_bound_moves():
    # Tokens (1.0, 1), (2.01, 1), (0.95, -4): 0.95 >= 0.9 = b- so N = 3.8 always.
    # P = 1 (rho = 1 / 4.8 = 0.208) until c_high = 1.2 + 0.02 k >= 2.01, i.e. k = 41, c_high = 2.02;
    # then P = 3.01 and rho = 3.01 / 6.81 = 0.442 >= 0.4. c_low stopped at 0.9 after k = 6.
    ratio = torch.tensor([[1.0, 2.01, 0.95]])
    advantage = torch.tensor([[1.0, 1.0, -4.0]])
    c_low, c_high, share = bapo_clip_bounds(ratio, advantage, torch.ones(1, 3), BAPOConfig())
    assert c_low.item() == pytest.approx(0.9)
    assert c_high.item() == pytest.approx(2.02)
    assert share.item() == pytest.approx(3.01 / 6.81, rel=1e-5)


def test_bapo_bound_search_ignores_padding():
    # the padded token would otherwise be a heavy negative at r = 1.0
    ratio = torch.tensor([[1.0, 1.0]])
    advantage = torch.tensor([[1.0, -100.0]])
    c_low, c_high, share = bapo_clip_bounds(
        ratio, advantage, torch.tensor([[1.0, 0.0]]), BAPOConfig()
    )
    assert (c_low.item(), c_high.item(), share.item()) == pytest.approx((0.6, 1.2, 1.0))


def test_bapo_loss_is_the_clipped_surrogate_at_the_chosen_bounds():
    logprobs = RATIO.log().requires_grad_(True)
    old = torch.zeros_like(logprobs)
    config = BAPOConfig(target_positive_share=0.4, **COARSE)
    loss, metrics = bapo_loss(logprobs, old, ADVANTAGE, MASK, config=config, loss_type="bnpo")
    assert metrics["clip/c_low"].item() == pytest.approx(0.8)
    assert metrics["clip/c_high"].item() == pytest.approx(1.4)
    # bounds (0.8, 1.4) are epsilon = 0.2 and epsilon_high = 0.4:
    # tokens: -1.0, -1.35, -min(-0.65, 0.8 * -1) = 0.8, 0.85, 1.0 -> sum 0.3 over 5 tokens
    reference, _ = grpo_loss(
        logprobs, old, ADVANTAGE, MASK, loss_type="bnpo", epsilon=0.2, epsilon_high=0.4
    )
    assert loss.item() == pytest.approx(0.3 / 5)
    assert loss.item() == pytest.approx(reference.item())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_positive_share": 1.0}, "target_positive_share=1.0"),
        ({"low_start": 0.95}, "0 < low_start <= low_max < 1"),
        ({"low_max": 1.1}, "0 < low_start <= low_max < 1"),
        ({"high_start": 0.9}, "1 < high_start <= high_max"),
        ({"high_max": 1.1}, "1 < high_start <= high_max"),
        ({"low_step": 0.0}, "low_step=0.0"),
    ],
)
def test_bapo_config_rejects_inconsistent_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BAPOConfig(**kwargs)
