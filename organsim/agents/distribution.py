"""The predictive distribution of an agent: per variable, probabilities over its value bins.

Chronos style, the distribution is discrete over the bins' decode values (the training mean of
each bin, :attr:`BinTokenizer.centers`): :meth:`BinnedDistribution.mean` is the probability-weighted
mean of those values, :meth:`BinnedDistribution.quantile` the smallest value whose cumulative
probability reaches q, and :meth:`BinnedDistribution.sample` draws bins and returns their values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from organsim.data.tokenizers import BinTokenizer


def center_tensor(tokenizer: BinTokenizer, variables: Sequence[str]) -> torch.Tensor:
    """``(V, K)`` float64 decode values of each variable's bins, zero-padded to K = the largest bin count."""
    columns = tokenizer.columns_of(variables)
    width = max(tokenizer.bin_counts[c] for c in columns)
    out = torch.zeros(len(columns), width, dtype=torch.float64)
    for row, column in enumerate(columns):
        centers = tokenizer.centers[column]
        out[row, : len(centers)] = torch.from_numpy(centers)
    return out


@dataclass
class BinnedDistribution:
    """Next-hour distributions of V variables for B cases.

    Attributes
    ----------
    probs : torch.Tensor
        ``(B, V, K)`` float probabilities over bins (zero on a variable's padding bins).
    centers : torch.Tensor
        ``(V, K)`` float64 value of each bin in catalog units (from :func:`center_tensor`).
    """

    probs: torch.Tensor
    centers: torch.Tensor

    @classmethod
    def from_logits(cls, logits: torch.Tensor, centers: torch.Tensor) -> BinnedDistribution:
        """From ``(B, V, K)`` logits (padding bins at a large negative value)."""
        return cls(probs=torch.softmax(logits.double(), dim=-1), centers=centers.to(logits.device))

    def mean(self) -> torch.Tensor:
        """``(B, V)`` float64 predictive means in catalog units."""
        return (self.probs * self.centers).sum(-1)

    def quantile(self, q: float | Sequence[float]) -> torch.Tensor:
        """``(n_q, B, V)`` float64: for each level, the smallest bin value with cumulative probability >= q."""
        levels = torch.as_tensor(q if isinstance(q, Sequence) else [q], dtype=torch.float64, device=self.probs.device)
        if torch.any((levels <= 0) | (levels >= 1)):
            raise ValueError(f"quantile levels must be in (0, 1), got {levels.tolist()}")
        cdf = self.probs.cumsum(-1)  # (B, V, K)
        last_bin = (self.probs > 0).cumsum(-1).argmax(-1, keepdim=True)  # (B, V, 1) last bin with mass
        index = torch.searchsorted(cdf.contiguous(), levels.expand(*cdf.shape[:-1], -1).contiguous())  # (B, V, n_q)
        index = torch.minimum(index, last_bin)
        values = torch.gather(self.centers.expand(cdf.shape[0], -1, -1), -1, index)  # (B, V, n_q)
        return values.permute(2, 0, 1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, B, V)`` float64 draws (each a bin's value)."""
        b, v, k = self.probs.shape
        flat = self.probs.reshape(b * v, k).float()
        bins = torch.multinomial(flat, n, replacement=True, generator=generator)  # (B*V, n)
        centers = self.centers.expand(b, -1, -1).reshape(b * v, k)
        return torch.gather(centers, 1, bins).reshape(b, v, n).permute(2, 0, 1)
