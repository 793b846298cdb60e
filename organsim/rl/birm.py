"""BiRM-style bidirectional scoring of partial or complete candidates (Chen et al. 2025).

Two heads read the same per-step features: ``g_t``, the probability that the candidate has been
correct *so far* (a process reward, looking back), and ``h_t``, the probability that it will end
in success (a value, looking forward). A candidate of n valid steps is ranked by

    score = h_n + beta * mean_{t <= n} g_t.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class BiRMConfig:
    """Hyperparameters of BiRM scoring and training.

    Attributes
    ----------
    beta : float
        Weight of the mean correctness-so-far in the score, >= 0.
    value_coef : float
        Weight of the value-head loss against the correctness-head loss, >= 0.
    """

    beta: float = 1.0
    value_coef: float = 1.0

    def __post_init__(self) -> None:
        if self.beta < 0.0 or self.value_coef < 0.0:
            raise ValueError(
                f"BiRMConfig: beta={self.beta} and value_coef={self.value_coef} must be >= 0"
            )


class BiRMHead(nn.Module):
    """The two BiRM heads on top of per-step features from any encoder.

    Parameters
    ----------
    feature_dim : int
        Size of the per-step feature vector.
    """

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.correctness = nn.Linear(feature_dim, 1)
        self.value = nn.Linear(feature_dim, 1)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Logits of g and h, each of shape (B, T), from features of shape (B, T, feature_dim)."""
        return self.correctness(features).squeeze(-1), self.value(features).squeeze(-1)


def birm_score(
    correctness_logits: Tensor, value_logits: Tensor, mask: Tensor, *, beta: float
) -> Tensor:
    """Rank score ``h_n + beta * mean_t g_t`` of each candidate.

    Parameters
    ----------
    correctness_logits, value_logits : Tensor, shape (B, T)
        Logits of g and h per step.
    mask : Tensor, shape (B, T)
        1 on the valid steps (a non-empty prefix of each row).
    beta : float

    Returns
    -------
    Tensor, shape (B,)
    """
    mask = mask.to(correctness_logits.dtype)
    lengths = mask.sum(dim=-1).long()
    if (lengths < 1).any():
        raise ValueError("birm_score: every candidate needs at least one valid step")
    mean_correctness = (torch.sigmoid(correctness_logits) * mask).sum(dim=-1) / lengths
    last_value = torch.sigmoid(value_logits.gather(-1, (lengths - 1).unsqueeze(-1))).squeeze(-1)
    return last_value + beta * mean_correctness


def birm_loss(
    correctness_logits: Tensor,
    value_logits: Tensor,
    correctness_labels: Tensor,
    value_targets: Tensor,
    mask: Tensor,
    config: BiRMConfig,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Binary cross-entropy of both heads over valid steps.

    Parameters
    ----------
    correctness_logits, value_logits : Tensor, shape (B, T)
    correctness_labels : Tensor, shape (B, T)
        1 if the prefix up to step t is correct (soft labels in [0, 1] allowed).
    value_targets : Tensor, shape (B, T)
        Probability of eventual success from step t (e.g. Monte-Carlo estimates or the outcome).
    mask : Tensor, shape (B, T)
    config : BiRMConfig

    Returns
    -------
    loss : Tensor, scalar
    metrics : dict of detached scalar tensors
        ``losses/correctness_loss``, ``losses/value_loss``, ``losses/birm_loss``.
    """
    mask = mask.to(correctness_logits.dtype)
    valid = mask.sum().clamp(min=1.0)
    correctness_loss = (
        F.binary_cross_entropy_with_logits(
            correctness_logits, correctness_labels.to(mask.dtype), reduction="none"
        )
        * mask
    ).sum() / valid
    value_loss = (
        F.binary_cross_entropy_with_logits(
            value_logits, value_targets.to(mask.dtype), reduction="none"
        )
        * mask
    ).sum() / valid
    loss = correctness_loss + config.value_coef * value_loss
    return loss, {
        "losses/correctness_loss": correctness_loss.detach(),
        "losses/value_loss": value_loss.detach(),
        "losses/birm_loss": loss.detach(),
    }
