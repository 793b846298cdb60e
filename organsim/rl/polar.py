"""POLAR-style discriminative reward model (policy discriminative learning, Dou et al. 2025).

A reward model ``r(context, reference, candidate)`` learns to tell whether the candidate came from
the same policy as the reference: for a context p, two trajectories a1, a2 of one policy and b1
of another, ``loss = -log sigmoid(r(p, a1, a2) - r(p, a1, b1))``. At use time the reference is a
real trajectory and the candidate a simulated one: ``reward = r(context, real, simulated)`` is
high when the simulator behaves like the process that produced the real data.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PolarRewardModel(nn.Module):
    """``r(context, reference, candidate)`` with a shared trajectory encoder.

    Trajectories of any shape (B, ...) are flattened to (B, trajectory_dim) and encoded by the
    same MLP; the scorer reads the context, both embeddings, their product and their absolute
    difference.

    Parameters
    ----------
    context_dim : int
        Size of the context vector.
    trajectory_dim : int
        Number of values in one flattened trajectory (e.g. steps * variables).
    embedding_dim : int
        Size of a trajectory embedding.
    hidden_size : int
        Width of the hidden layers.
    """

    def __init__(
        self,
        context_dim: int,
        trajectory_dim: int,
        *,
        embedding_dim: int = 32,
        hidden_size: int = 64,
    ) -> None:
        super().__init__()
        self.trajectory_dim = trajectory_dim
        self.encoder = nn.Sequential(
            nn.Linear(trajectory_dim, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, embedding_dim),
        )
        self.scorer = nn.Sequential(
            nn.Linear(context_dim + 4 * embedding_dim, hidden_size),
            nn.Tanh(),
            nn.Linear(hidden_size, 1, bias=False),  # a constant cancels in the pairwise loss
        )

    def forward(self, context: Tensor, reference: Tensor, candidate: Tensor) -> Tensor:
        """Scores of shape (B,).

        Parameters
        ----------
        context : Tensor, shape (B, context_dim)
        reference, candidate : Tensor, shape (B, ...) with trajectory_dim values per row
        """
        reference = reference.flatten(start_dim=1)
        candidate = candidate.flatten(start_dim=1)
        if reference.shape[1] != self.trajectory_dim or candidate.shape[1] != self.trajectory_dim:
            raise ValueError(
                f"PolarRewardModel: trajectories flatten to {reference.shape[1]} and "
                f"{candidate.shape[1]} values, expected trajectory_dim={self.trajectory_dim}"
            )
        ref_embedding, cand_embedding = self.encoder(reference), self.encoder(candidate)
        features = [
            context,
            ref_embedding,
            cand_embedding,
            ref_embedding * cand_embedding,
            (ref_embedding - cand_embedding).abs(),
        ]
        return self.scorer(torch.cat(features, dim=-1)).squeeze(-1)


def polar_loss(
    same_policy_scores: Tensor, other_policy_scores: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """Pairwise discrimination loss ``-mean(log sigmoid(r_same - r_other))``.

    Parameters
    ----------
    same_policy_scores : Tensor, shape (B,)
        ``r(p, a1, a2)``: candidate from the reference's policy.
    other_policy_scores : Tensor, shape (B,)
        ``r(p, a1, b1)``: candidate from another policy, same context and reference.

    Returns
    -------
    loss : Tensor, scalar
    metrics : dict of detached scalar tensors
        ``losses/polar_loss`` and ``reward/pairwise_accuracy`` (share of pairs ranked right).
    """
    margin = same_policy_scores - other_policy_scores
    loss = -F.logsigmoid(margin).mean()
    return loss, {
        "losses/polar_loss": loss.detach(),
        "reward/pairwise_accuracy": (margin > 0).to(margin.dtype).mean().detach(),
    }
