"""GRPO and its variants: clipped surrogate over token sequences, k3 KL, loss aggregation.

Pure functions; :mod:`organsim.rl.grpo_trainer` wires them to a policy. Names follow TRL's
``GRPOConfig``: ``loss_type`` in {"grpo", "dr_grpo", "dapo", "bnpo"},
``epsilon`` / ``epsilon_high`` (DAPO's clip-higher), ``beta`` (KL coefficient; 0 skips the
reference policy), ``scale_rewards`` in {"group", "batch", "none"} and
``importance_sampling_level`` in {"token", "sequence"} (GSPO's sequence-level ratio).

A "sequence" here is whatever the policy emits as a series of decisions ("tokens"): for the subset
policy of :mod:`organsim.rl.policies` it is the K consult-or-not decisions.
"""

import torch
from torch import Tensor

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref) (Schulman's unbiased, non-negative estimator).

    ``exp(ref - logp) - (ref - logp) - 1``, evaluated on tokens sampled from ``pi``.

    Parameters
    ----------
    logprobs, ref_logprobs : Tensor, shape (B, L)

    Returns
    -------
    Tensor, shape (B, L), >= 0
    """
    log_ratio = ref_logprobs - logprobs
    return torch.exp(log_ratio) - log_ratio - 1.0


def importance_log_weights(
    logprobs: Tensor, old_logprobs: Tensor, mask: Tensor, *, level: str = "token"
) -> Tensor:
    """Log importance ratios ``log pi / pi_old`` at token or sequence level.

    Parameters
    ----------
    logprobs, old_logprobs, mask : Tensor, shape (B, L)
    level : {"token", "sequence"}
        "sequence" uses the mean log-ratio over each sequence's unmasked tokens (GSPO).

    Returns
    -------
    Tensor, shape (B, L)
    """
    log_ratio = logprobs - old_logprobs
    if level == "token":
        return log_ratio
    elif level == "sequence":
        per_sequence = (log_ratio * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)
        return per_sequence.unsqueeze(-1).expand_as(log_ratio)
    else:
        raise ValueError(
            f"importance_log_weights: unknown level {level!r}; expected one of {IMPORTANCE_SAMPLING_LEVELS}"
        )


def aggregate_loss(
    per_token_loss: Tensor,
    mask: Tensor,
    *,
    loss_type: str,
    max_completion_length: int | None = None,
    num_items_in_batch: float | Tensor | None = None,
) -> Tensor:
    """Reduce a per-token loss to a scalar as TRL's GRPO loss types do.

    Parameters
    ----------
    per_token_loss, mask : Tensor, shape (B, L)
    loss_type : {"grpo", "dr_grpo", "dapo", "bnpo"}
        "grpo": mean over each sequence's tokens, then mean over sequences.
        "dr_grpo": sum over tokens / (B * max_completion_length).
        "dapo": sum over tokens / ``num_items_in_batch``.
        "bnpo": sum over tokens / number of unmasked tokens in this batch.
    max_completion_length : int, optional
        "dr_grpo" normaliser; defaults to L.
    num_items_in_batch : float or Tensor, optional
        "dapo" normaliser: unmasked tokens in the whole generation batch (all minibatches);
        defaults to those of this batch, where "dapo" and "bnpo" coincide.

    Returns
    -------
    Tensor, scalar
    """
    masked = per_token_loss * mask
    if loss_type == "grpo":
        return (masked.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)).mean()
    elif loss_type == "dr_grpo":
        length = (
            per_token_loss.shape[-1] if max_completion_length is None else max_completion_length
        )
        return masked.sum() / (per_token_loss.shape[0] * length)
    elif loss_type == "dapo":
        normaliser = mask.sum() if num_items_in_batch is None else num_items_in_batch
        return masked.sum() / torch.as_tensor(normaliser, dtype=masked.dtype).clamp(min=1.0)
    elif loss_type == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1.0)
    else:
        raise ValueError(
            f"aggregate_loss: unknown loss_type {loss_type!r}; expected one of {LOSS_TYPES}"
        )


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def clipped_surrogate_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    ratio_low: float | Tensor,
    ratio_high: float | Tensor,
    loss_type: str = "grpo",
    beta: float = 0.0,
    ref_logprobs: Tensor | None = None,
    importance_sampling_level: str = "token",
    max_completion_length: int | None = None,
    num_items_in_batch: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO-style clipped surrogate over token sequences with explicit ratio bounds.

    ``-min(r A, clip(r, ratio_low, ratio_high) A) + beta * k3_kl`` per token, then
    :func:`aggregate_loss`. Shared by :func:`grpo_loss` (bounds ``1 -+ epsilon``) and
    :func:`organsim.rl.bapo.bapo_loss` (adaptive bounds).

    Parameters
    ----------
    logprobs : Tensor, shape (B, L)
        Log-probabilities of the sampled tokens under the policy being trained (with grad).
    old_logprobs : Tensor, shape (B, L)
        Log-probabilities under the policy that sampled them.
    advantages : Tensor, shape (B,) or (B, L)
        One advantage per sequence (GRPO) or per token.
    mask : Tensor, shape (B, L)
        1 for real tokens, 0 for padding.
    ratio_low, ratio_high : float or scalar Tensor
        Clipping bounds on the importance ratio, ``ratio_low < 1 < ratio_high``.
    ref_logprobs : Tensor, shape (B, L), optional
        Reference-policy log-probabilities; required when ``beta > 0``, ignored when 0.
    loss_type, importance_sampling_level, max_completion_length, num_items_in_batch
        See :func:`aggregate_loss` and :func:`importance_log_weights`.

    Returns
    -------
    loss : Tensor, scalar
    metrics : dict of detached scalar tensors
        ``losses/policy_loss``, ``losses/approx_kl`` (k3 KL between old and new policy),
        ``losses/kl`` (to the reference; only when ``beta > 0``), ``clip/low_fraction``,
        ``clip/high_fraction``, ``clip/region_fraction``.
    """
    mask = mask.to(logprobs.dtype)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    advantages = advantages.expand_as(logprobs)
    log_weights = importance_log_weights(
        logprobs, old_logprobs, mask, level=importance_sampling_level
    )
    ratio = torch.exp(log_weights)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, ratio_low, ratio_high) * advantages
    surrogate = -torch.min(unclipped, clipped)
    policy_loss = aggregate_loss(
        surrogate,
        mask,
        loss_type=loss_type,
        max_completion_length=max_completion_length,
        num_items_in_batch=num_items_in_batch,
    )
    metrics = {"losses/policy_loss": policy_loss.detach()}
    if beta > 0.0:
        if ref_logprobs is None:
            raise ValueError("clipped_surrogate_loss: beta > 0 needs ref_logprobs")
        per_token_kl = k3_kl(logprobs, ref_logprobs)
        kl_term = aggregate_loss(
            per_token_kl,
            mask,
            loss_type=loss_type,
            max_completion_length=max_completion_length,
            num_items_in_batch=num_items_in_batch,
        )
        loss = policy_loss + beta * kl_term
        metrics["losses/kl"] = _masked_mean(per_token_kl, mask).detach()
    else:
        loss = policy_loss
    with torch.no_grad():
        token_log_ratio = logprobs - old_logprobs
        metrics["losses/approx_kl"] = _masked_mean(
            torch.exp(token_log_ratio) - 1.0 - token_log_ratio, mask
        )
        low = ((ratio < ratio_low) & (advantages < 0)).to(mask.dtype)
        high = ((ratio > ratio_high) & (advantages > 0)).to(mask.dtype)
        metrics["clip/low_fraction"] = _masked_mean(low, mask)
        metrics["clip/high_fraction"] = _masked_mean(high, mask)
        metrics["clip/region_fraction"] = _masked_mean(low + high, mask)
    return loss, metrics


def grpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    loss_type: str = "grpo",
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    beta: float = 0.0,
    ref_logprobs: Tensor | None = None,
    importance_sampling_level: str = "token",
    max_completion_length: int | None = None,
    num_items_in_batch: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GRPO / Dr.GRPO / DAPO / BNPO loss with the ratio clipped to ``[1 - eps, 1 + eps_high]``.

    Parameters are those of :func:`clipped_surrogate_loss`, with ``epsilon`` and
    ``epsilon_high`` (None means ``epsilon``) in place of explicit ratio bounds. Shapes:
    ``logprobs``, ``old_logprobs``, ``mask``, ``ref_logprobs`` (B, L); ``advantages`` (B,) or (B, L).

    Returns
    -------
    loss : Tensor, scalar
    metrics : dict of detached scalar tensors (see :func:`clipped_surrogate_loss`)
    """
    high = epsilon if epsilon_high is None else epsilon_high
    return clipped_surrogate_loss(
        logprobs,
        old_logprobs,
        advantages,
        mask,
        ratio_low=1.0 - epsilon,
        ratio_high=1.0 + high,
        loss_type=loss_type,
        beta=beta,
        ref_logprobs=ref_logprobs,
        importance_sampling_level=importance_sampling_level,
        max_completion_length=max_completion_length,
        num_items_in_batch=num_items_in_batch,
    )
