"""BAPO: balanced policy optimisation with adaptive clipping (Xi et al. 2025, arXiv:2510.18927).

Off-policy updates are dominated by negative-advantage tokens. BAPO picks, for every update, the
ratio clipping bounds ``[c_low, c_high]`` so that positive-advantage tokens carry at least a share
``rho0`` of the gradient-carrying objective:

    rho = sum_{A>0, r <= c_high} |r A| / (sum_{A>0, r <= c_high} |r A| + sum_{A<0, r >= c_low} |r A|)

(a token carries gradient under ``-min(r A, clip(r, c_low, c_high) A)`` exactly when it is inside
the bound on its side). Starting from ``(c_low, c_high) = (a-, a+)``, each search step raises
``c_low`` by ``delta1`` while it stays <= ``b-`` (dropping the most off-policy negative tokens)
and ``c_high`` by ``delta2`` while it stays <= ``b+`` (admitting more positive tokens); the search
stops at the first step where ``rho >= rho0`` or when neither bound can move. ``rho`` never
decreases along the way, so all steps are evaluated at once and the first that meets the target is
taken (one device sync per update).
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from organsim.rl.grpo import clipped_surrogate_loss, importance_log_weights


@dataclass
class BAPOConfig:
    """Adaptive clipping bounds of BAPO (defaults from the issue / paper).

    Attributes
    ----------
    target_positive_share : float
        rho0: the share of the gradient-carrying objective that positive-advantage tokens must
        reach. In (0, 1).
    low_start, low_max : float
        a- and b-: range of the lower ratio bound c_low, ``0 < a- <= b- < 1``.
    high_start, high_max : float
        a+ and b+: range of the upper ratio bound c_high, ``1 < a+ <= b+``.
    low_step, high_step : float
        delta1 and delta2: search steps of c_low and c_high, > 0.
    """

    target_positive_share: float = 0.4
    low_start: float = 0.6
    low_max: float = 0.9
    high_start: float = 1.2
    high_max: float = 3.0
    low_step: float = 0.05
    high_step: float = 0.02

    def __post_init__(self) -> None:
        if not 0.0 < self.target_positive_share < 1.0:
            raise ValueError(
                f"BAPOConfig.target_positive_share={self.target_positive_share} must be in (0, 1)"
            )
        if not 0.0 < self.low_start <= self.low_max < 1.0:
            raise ValueError(
                f"BAPOConfig: need 0 < low_start <= low_max < 1, got low_start={self.low_start}, "
                f"low_max={self.low_max}"
            )
        if not 1.0 < self.high_start <= self.high_max:
            raise ValueError(
                f"BAPOConfig: need 1 < high_start <= high_max, got high_start={self.high_start}, "
                f"high_max={self.high_max}"
            )
        if self.low_step <= 0.0 or self.high_step <= 0.0:
            raise ValueError(
                f"BAPOConfig: low_step={self.low_step} and high_step={self.high_step} must be > 0"
            )


def positive_share(
    ratio: Tensor, advantages: Tensor, mask: Tensor, c_low: Tensor, c_high: Tensor
) -> Tensor:
    """Share rho of positive-advantage tokens in the gradient-carrying objective.

    Parameters
    ----------
    ratio, advantages, mask : Tensor, shape (B, L)
        Importance ratios, per-token advantages and the token mask.
    c_low, c_high : Tensor, shape (S,)
        Candidate bound pairs.

    Returns
    -------
    Tensor, shape (S,)
        rho for every candidate pair; 1 where no token carries gradient at all.
    """
    ratio, advantages, mask = ratio.reshape(-1), advantages.reshape(-1), mask.reshape(-1)
    weight = (ratio * advantages).abs() * mask
    carries_positive = (advantages > 0) & (ratio <= c_high.unsqueeze(-1))  # (S, B*L)
    carries_negative = (advantages < 0) & (ratio >= c_low.unsqueeze(-1))  # (S, B*L)
    positive = (weight * carries_positive).sum(dim=-1)
    total = positive + (weight * carries_negative).sum(dim=-1)
    return torch.where(total > 0, positive / total.clamp(min=torch.finfo(total.dtype).tiny), 1.0)


def bapo_clip_bounds(
    ratio: Tensor, advantages: Tensor, mask: Tensor, config: BAPOConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """Search the clipping bounds (c_low, c_high) as BAPO does.

    Parameters
    ----------
    ratio : Tensor, shape (B, L)
        Importance ratios pi / pi_old (detached).
    advantages : Tensor, shape (B, L)
    mask : Tensor, shape (B, L)
    config : BAPOConfig

    Returns
    -------
    c_low, c_high, share : Tensor, scalars
        The chosen bounds and the positive share rho they give.
    """
    low_steps = int((config.low_max - config.low_start) / config.low_step + 1e-6)
    high_steps = int((config.high_max - config.high_start) / config.high_step + 1e-6)
    step = torch.arange(max(low_steps, high_steps) + 1, device=ratio.device, dtype=ratio.dtype)
    c_low = config.low_start + config.low_step * step.clamp(max=low_steps)
    c_high = config.high_start + config.high_step * step.clamp(max=high_steps)
    shares = positive_share(ratio, advantages, mask.to(ratio.dtype), c_low, c_high)
    met = shares >= config.target_positive_share
    chosen = torch.where(met.any(), met.to(torch.int64).argmax(), step.numel() - 1)
    return c_low[chosen], c_high[chosen], shares[chosen]


def bapo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    config: BAPOConfig,
    loss_type: str = "grpo",
    beta: float = 0.0,
    ref_logprobs: Tensor | None = None,
    importance_sampling_level: str = "token",
    max_completion_length: int | None = None,
    num_items_in_batch: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped surrogate with BAPO's adaptive bounds.

    Parameters are those of :func:`organsim.rl.grpo.clipped_surrogate_loss` with ``config``
    in place of fixed bounds. Shapes: ``logprobs``, ``old_logprobs``, ``mask``, ``ref_logprobs``
    (B, L); ``advantages`` (B,) or (B, L).

    Returns
    -------
    loss : Tensor, scalar
    metrics : dict of detached scalar tensors
        Those of the clipped surrogate plus ``clip/c_low``, ``clip/c_high`` (the bounds chosen)
        and ``clip/positive_share`` (rho under those bounds).
    """
    mask = mask.to(logprobs.dtype)
    token_advantages = (
        advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    ).expand_as(logprobs)
    with torch.no_grad():
        ratio = torch.exp(
            importance_log_weights(logprobs, old_logprobs, mask, level=importance_sampling_level)
        )
        c_low, c_high, share = bapo_clip_bounds(ratio, token_advantages, mask, config)
    loss, metrics = clipped_surrogate_loss(
        logprobs,
        old_logprobs,
        token_advantages,
        mask,
        ratio_low=c_low,
        ratio_high=c_high,
        loss_type=loss_type,
        beta=beta,
        ref_logprobs=ref_logprobs,
        importance_sampling_level=importance_sampling_level,
        max_completion_length=max_completion_length,
        num_items_in_batch=num_items_in_batch,
    )
    metrics["clip/c_low"] = c_low
    metrics["clip/c_high"] = c_high
    metrics["clip/positive_share"] = share
    return loss, metrics
