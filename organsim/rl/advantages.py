"""Advantage estimators: GAE, group-relative (GRPO) advantages and distributional GAE.

All functions are pure, differentiable where it makes sense, and run on whatever device their
inputs are on. Time-major layout as in CleanRL: index 0 is time, then the environments.
"""

import torch
from torch import Tensor

GROUP_SCALINGS = ("group", "batch", "none")


def gae(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    next_value: Tensor,
    *,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016).

    ``delta_t = r_t + gamma * V_{t+1} * (1 - done_t) - V_t`` and
    ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}``, where ``V_T = next_value``.

    Parameters
    ----------
    rewards : Tensor, shape (T, N)
        Reward received on transition ``t`` of environment ``n``.
    values : Tensor, shape (T, N, *value_shape)
        Value estimate of the state at step ``t``. Trailing dimensions (e.g. quantiles) are
        carried through; rewards and dones broadcast over them.
    dones : Tensor, shape (T, N)
        1 (or True) when the episode ended on transition ``t``: no bootstrapping from ``t + 1``.
    next_value : Tensor, shape (N, *value_shape)
        Value of the state reached after the last transition.
    gamma, gae_lambda : float
        Discount and GAE mixing parameter, both in [0, 1].

    Returns
    -------
    advantages, returns : Tensor, shape (T, N, *value_shape)
        ``returns = advantages + values`` (the TD(lambda) targets of the critic).
    """
    if rewards.shape != dones.shape or rewards.shape != values.shape[: rewards.dim()]:
        raise ValueError(
            f"gae: rewards {tuple(rewards.shape)}, dones {tuple(dones.shape)} and the leading "
            f"dims of values {tuple(values.shape)} must agree"
        )
    extra_dims = (1,) * (values.dim() - rewards.dim())
    rewards = rewards.to(values.dtype).reshape(rewards.shape + extra_dims)
    nonterminal = 1.0 - dones.to(values.dtype).reshape(dones.shape + extra_dims)
    steps = []
    running = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        following = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        delta = rewards[t] + gamma * following * nonterminal[t] - values[t]
        running = delta + gamma * gae_lambda * nonterminal[t] * running
        steps.append(running)
    advantages = torch.stack(steps[::-1])
    return advantages, advantages + values


def group_advantages(rewards: Tensor, *, scale: str = "group", eps: float = 1e-4) -> Tensor:
    """Group-relative advantages (GRPO): rewards centred on their group mean, then scaled.

    Parameters
    ----------
    rewards : Tensor, shape (num_groups, group_size)
        One row per prompt/context, one column per sampled completion.
    scale : {"group", "batch", "none"}
        Divide by the standard deviation of the group (GRPO), of the whole batch (as TRL's
        ``scale_rewards="batch"``), or not at all (Dr.GRPO). Standard deviations are unbiased
        (Bessel-corrected), as ``torch.std`` and TRL compute them.
    eps : float
        Added to the standard deviation so that zero-variance groups give zero advantages.

    Returns
    -------
    Tensor, shape (num_groups, group_size)
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(
            f"group_advantages: rewards must be (num_groups, group_size >= 2), got {tuple(rewards.shape)}"
        )
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale == "group":
        return centred / (rewards.std(dim=1, keepdim=True) + eps)
    elif scale == "batch":
        return centred / (rewards.std() + eps)
    elif scale == "none":
        return centred
    else:
        raise ValueError(
            f"group_advantages: unknown scale {scale!r}; expected one of {GROUP_SCALINGS}"
        )


def zero_variance_groups(rewards: Tensor) -> Tensor:
    """Groups whose completions all got the same reward (they carry no GRPO learning signal).

    Parameters
    ----------
    rewards : Tensor, shape (num_groups, group_size)

    Returns
    -------
    Tensor, shape (num_groups,), bool
    """
    return (rewards == rewards[:, :1]).all(dim=1)


def distributional_gae(
    rewards: Tensor,
    quantiles: Tensor,
    dones: Tensor,
    next_quantiles: Tensor,
    *,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Distributional GAE for a quantile critic (DVPO): GAE run on every quantile.

    Each quantile ``j`` gets its own TD residuals ``delta_t^j = r_t + gamma Z_{t+1}^j - Z_t^j``
    and TD(lambda) target ``Z_t^j + A_t^j``; the quantiles are sorted first, and because the
    targets are positive combinations of sorted values they come out sorted too. The actor's
    advantage is the mean over quantiles (which equals scalar GAE on the quantile mean).

    Parameters
    ----------
    rewards, dones : Tensor, shape (T, N)
    quantiles : Tensor, shape (T, N, M)
        Critic quantiles of the state at step ``t``.
    next_quantiles : Tensor, shape (N, M)
        Critic quantiles of the state after the last transition.
    gamma, gae_lambda : float

    Returns
    -------
    advantages : Tensor, shape (T, N)
        Actor advantage, the mean over quantiles.
    target_quantiles : Tensor, shape (T, N, M)
        Per-quantile TD(lambda) targets for the critic (sorted along the last dim).
    """
    quantile_advantages, target_quantiles = gae(
        rewards,
        quantiles.sort(dim=-1).values,
        dones,
        next_quantiles.sort(dim=-1).values,
        gamma=gamma,
        gae_lambda=gae_lambda,
    )
    return quantile_advantages.mean(dim=-1), target_quantiles
