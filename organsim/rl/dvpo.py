"""DVPO: a distributional (quantile) critic with asymmetric tail regularisation.

The critic has H heads, each predicting M quantiles of the return at the midpoint fractions
``tau_i = (2 i + 1) / (2 M)``. Targets come from :func:`organsim.rl.advantages.distributional_gae`
(one TD(lambda) target per quantile); the actor's advantage is the mean over quantiles.

The DVPO paper's exact tail terms were not available offline; this module states its own
interpretation. With ``q`` the head-mean predicted quantiles (sorted), ``y`` the target quantiles,
``k = max(1, floor(tail_fraction * M))`` and, for a sorted quantile vector ``z``,
``CVaR-(z) = mean(z[:k])``, ``CVaR+(z) = mean(z[-k:])``, lower spread ``s-(z) = mean(z) - CVaR-(z)``
and upper spread ``s+(z) = CVaR+(z) - mean(z)``, the critic loss is

    quantile_huber(all heads, y)                            (QR-DQN quantile Huber loss)
  + lower_tail_coef      * relu(s-(q) - s-(y))              lower-tail CVaR contraction: the
                                                            pessimistic tail may not be wider
                                                            than the target's (noise suppressed)
  + upper_tail_coef      * relu(s+(y) - s+(q))              upper-tail gain: the optimistic tail
                                                            may not be narrower than the target's
                                                            (upside kept for exploration)
  + mean_shift_coef      * (mean(q) - mean(y))^2            the one-sided tail terms must not
                                                            move the mean
  + shape_coef           * mean_i relu(q_h,i - q_h,i+1)     tail shape: no quantile crossing in
                                                            any head's raw output
  + curvature_coef       * mean_i (q_h,i+1 - 2 q_h,i + q_h,i-1)^2   smooth quantile function
  + head_consistency_coef* mean_h,i (q_h,i - q_i)^2         heads agree with their mean

each term averaged over the batch and logged as ``losses/<name>``.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def quantile_midpoints(num_quantiles: int, *, device=None, dtype=None) -> Tensor:
    """Quantile fractions ``tau_i = (2 i + 1) / (2 M)``, shape (M,)."""
    return (2 * torch.arange(num_quantiles, device=device, dtype=dtype) + 1) / (2 * num_quantiles)


class QuantileCritic(nn.Module):
    """A multi-head quantile critic: a shared MLP trunk and H heads of M quantiles each.

    Parameters
    ----------
    observation_dim : int
        Size of the observation vector.
    num_heads : int
        H, the number of heads (an ensemble sharing the trunk).
    num_quantiles : int
        M, quantiles per head (at least 2).
    hidden_size : int
        Width of the two hidden layers.
    """

    def __init__(
        self,
        observation_dim: int,
        *,
        num_heads: int = 2,
        num_quantiles: int = 8,
        hidden_size: int = 64,
    ) -> None:
        super().__init__()
        if num_heads < 1 or num_quantiles < 2:
            raise ValueError(
                f"QuantileCritic: need num_heads >= 1 and num_quantiles >= 2, got {num_heads}, {num_quantiles}"
            )
        self.num_heads = num_heads
        self.num_quantiles = num_quantiles
        self.trunk = nn.Sequential(
            nn.Linear(observation_dim, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, hidden_size),
            nn.Tanh(),
        )
        self.heads = nn.Linear(hidden_size, num_heads * num_quantiles)

    def forward(self, observations: Tensor) -> Tensor:
        """Quantiles of the return, shape (B, H, M), from observations (B, observation_dim)."""
        out = self.heads(self.trunk(observations))  # (B, H * M)
        return out.view(-1, self.num_heads, self.num_quantiles)  # (B, H, M)


def quantile_huber_loss(quantiles: Tensor, targets: Tensor, *, kappa: float = 1.0) -> Tensor:
    """Quantile Huber loss of QR-DQN (Dabney et al. 2018).

    For predicted quantile ``theta_i`` at ``tau_i`` and target sample ``y_j``, with
    ``u = y_j - theta_i``: ``rho(u) = |tau_i - 1{u < 0}| * L_kappa(u) / kappa`` where
    ``L_kappa(u) = u^2 / 2`` if ``|u| <= kappa`` else ``kappa (|u| - kappa / 2)``. The loss sums
    over ``i``, averages over ``j`` and over all leading dims.

    Parameters
    ----------
    quantiles : Tensor, shape (..., M)
        Predicted quantiles at the midpoints of :func:`quantile_midpoints`.
    targets : Tensor, shape (..., M')
        Target samples (detached by the caller); leading dims broadcast with ``quantiles``.
    kappa : float
        Huber threshold, > 0.

    Returns
    -------
    Tensor, scalar
    """
    taus = quantile_midpoints(quantiles.shape[-1], device=quantiles.device, dtype=quantiles.dtype)
    u = targets.unsqueeze(-2) - quantiles.unsqueeze(-1)  # (..., M, M')
    huber = torch.where(u.abs() <= kappa, 0.5 * u**2, kappa * (u.abs() - 0.5 * kappa))
    weight = (taus.unsqueeze(-1) - (u < 0).to(u.dtype)).abs()  # (..., M, M')
    return (weight * huber / kappa).mean(dim=-1).sum(dim=-1).mean()


def _tail_spreads(sorted_quantiles: Tensor, tail_size: int) -> tuple[Tensor, Tensor, Tensor]:
    mean = sorted_quantiles.mean(dim=-1)
    lower = mean - sorted_quantiles[..., :tail_size].mean(dim=-1)
    upper = sorted_quantiles[..., -tail_size:].mean(dim=-1) - mean
    return mean, lower, upper


def dvpo_critic_loss(
    quantiles: Tensor,
    target_quantiles: Tensor,
    *,
    kappa: float = 1.0,
    tail_fraction: float = 0.25,
    lower_tail_coef: float = 0.1,
    upper_tail_coef: float = 0.1,
    mean_shift_coef: float = 0.1,
    shape_coef: float = 0.1,
    curvature_coef: float = 0.01,
    head_consistency_coef: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """DVPO critic loss: quantile Huber loss plus the asymmetric tail terms of the module doc.

    Parameters
    ----------
    quantiles : Tensor, shape (B, H, M)
        Raw critic output (with grad).
    target_quantiles : Tensor, shape (B, M')
        Target quantiles (sorted; detached inside).
    kappa : float
        Huber threshold of the quantile loss.
    tail_fraction : float
        alpha in (0, 0.5]: the tails are the lowest and highest ``max(1, floor(alpha M))``
        quantiles.
    lower_tail_coef, upper_tail_coef, mean_shift_coef, shape_coef, curvature_coef,
    head_consistency_coef : float
        Weights (>= 0) of the regularisers.

    Returns
    -------
    loss : Tensor, scalar
    metrics : dict of detached scalar tensors
        ``losses/quantile_huber``, ``losses/lower_tail``, ``losses/upper_tail``,
        ``losses/mean_shift``, ``losses/tail_shape``, ``losses/tail_curvature``,
        ``losses/head_consistency`` and their weighted sum ``losses/critic_loss``.
    """
    if quantiles.dim() != 3 or target_quantiles.dim() != 2:
        raise ValueError(
            f"dvpo_critic_loss: quantiles must be (B, H, M) and targets (B, M'), got "
            f"{tuple(quantiles.shape)} and {tuple(target_quantiles.shape)}"
        )
    if not 0.0 < tail_fraction <= 0.5:
        raise ValueError(f"dvpo_critic_loss: tail_fraction={tail_fraction} must be in (0, 0.5]")
    targets = target_quantiles.detach().sort(dim=-1).values
    head_mean = quantiles.mean(dim=1)  # (B, M)
    predicted = head_mean.sort(dim=-1).values
    pred_mean, pred_lower, pred_upper = _tail_spreads(
        predicted, max(1, int(tail_fraction * predicted.shape[-1]))
    )
    target_mean, target_lower, target_upper = _tail_spreads(
        targets, max(1, int(tail_fraction * targets.shape[-1]))
    )
    terms = {
        "quantile_huber": quantile_huber_loss(quantiles, targets.unsqueeze(1), kappa=kappa),
        "lower_tail": F.relu(pred_lower - target_lower).mean(),
        "upper_tail": F.relu(target_upper - pred_upper).mean(),
        "mean_shift": ((pred_mean - target_mean) ** 2).mean(),
        "tail_shape": F.relu(quantiles[..., :-1] - quantiles[..., 1:]).mean(),
        "tail_curvature": (
            (quantiles[..., 2:] - 2 * quantiles[..., 1:-1] + quantiles[..., :-2]) ** 2
        ).mean()
        if quantiles.shape[-1] >= 3
        else quantiles.new_zeros(()),
        "head_consistency": ((quantiles - head_mean.unsqueeze(1)) ** 2).mean(),
    }
    coefs = {
        "quantile_huber": 1.0,
        "lower_tail": lower_tail_coef,
        "upper_tail": upper_tail_coef,
        "mean_shift": mean_shift_coef,
        "tail_shape": shape_coef,
        "tail_curvature": curvature_coef,
        "head_consistency": head_consistency_coef,
    }
    loss = sum(coefs[name] * value for name, value in terms.items())
    metrics = {f"losses/{name}": value.detach() for name, value in terms.items()}
    metrics["losses/critic_loss"] = loss.detach()
    return loss, metrics
