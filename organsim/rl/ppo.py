"""PPO-clip losses (Schulman et al. 2017), written as CleanRL's ppo.py computes them.

Pure functions; :mod:`organsim.rl.ppo_trainer` combines them as
``loss = policy_loss - ent_coef * entropy + vf_coef * value_loss``.
"""

import torch
from torch import Tensor


def ppo_policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, *, clip_coef: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped surrogate ``mean(max(-A r, -A clip(r, 1 - c, 1 + c)))``.

    Parameters
    ----------
    logprobs : Tensor, shape (B,)
        Log-probabilities of the taken actions under the current policy (with grad).
    old_logprobs : Tensor, shape (B,)
        Log-probabilities under the policy that collected the rollout.
    advantages : Tensor, shape (B,)
        Advantage estimates (already normalised if the caller wants that).
    clip_coef : float
        c, the clipping range of the ratio around 1.

    Returns
    -------
    loss : Tensor, scalar
    metrics : dict of detached scalar tensors
        ``losses/policy_loss``, ``losses/old_approx_kl`` (mean of ``-log r``),
        ``losses/approx_kl`` (mean of ``(r - 1) - log r``) and ``clip/fraction`` (share of
        samples with ``|r - 1| > c``).
    """
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef)
    loss = torch.max(unclipped, clipped).mean()
    with torch.no_grad():
        metrics = {
            "losses/policy_loss": loss.detach(),
            "losses/old_approx_kl": (-log_ratio).mean(),
            "losses/approx_kl": ((ratio - 1.0) - log_ratio).mean(),
            "clip/fraction": ((ratio - 1.0).abs() > clip_coef).to(ratio.dtype).mean(),
        }
    return loss, metrics


def ppo_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, *, clip_coef: float | None
) -> Tensor:
    """Value loss ``0.5 * mean((V - R)^2)``, optionally clipped as in PPO2.

    With ``clip_coef`` set, ``V_clipped = V_old + clip(V - V_old, -c, c)`` and the loss is
    ``0.5 * mean(max((V - R)^2, (V_clipped - R)^2))``.

    Parameters
    ----------
    values : Tensor, shape (B,)
        Current critic values (with grad).
    old_values : Tensor, shape (B,)
        Critic values recorded during the rollout.
    returns : Tensor, shape (B,)
        TD(lambda) targets.
    clip_coef : float or None
        None for the unclipped loss.

    Returns
    -------
    Tensor, scalar
    """
    unclipped = (values - returns) ** 2
    if clip_coef is None:
        return 0.5 * unclipped.mean()
    clipped_values = old_values + torch.clamp(values - old_values, -clip_coef, clip_coef)
    return 0.5 * torch.max(unclipped, (clipped_values - returns) ** 2).mean()
