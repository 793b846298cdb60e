"""The predictive distribution of an agent: per variable, probabilities over bins and their values.

Chronos style, the distribution is discrete over the bins' decode values: a value bin decodes to
the training mean of the values in it (:attr:`BinTokenizer.centers`), a change bin to the last
observed value plus the bin's mean training change (:class:`ChangeTokenizer`), so the values can
differ from case to case. :meth:`BinnedDistribution.mean` is the probability-weighted mean,
:meth:`BinnedDistribution.quantile` the smallest value whose cumulative probability reaches q
(values taken in ascending order), and :meth:`BinnedDistribution.sample` draws bins and returns
their values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from organsim.data.tokenizers import BinTokenizer, ChangeTokenizer


def center_tensor(tokenizer: BinTokenizer | ChangeTokenizer, variables: Sequence[str], width: int | None = None) -> torch.Tensor:
    """``(V, K)`` float64 bin centers of each variable, zero-padded to K (default: the largest bin count).

    Value bins: centers in catalog units. Change bins: centers in units of the variable's scale.
    """
    columns = tokenizer.columns_of(variables)
    width = width or max(tokenizer.bin_counts[c] for c in columns)
    out = torch.zeros(len(columns), width, dtype=torch.float64)
    for row, column in enumerate(columns):
        centers = tokenizer.centers[column]
        out[row, : len(centers)] = torch.from_numpy(np.asarray(centers, dtype=np.float64))
    return out


@dataclass
class BinnedDistribution:
    """Next-hour distributions of V variables for B cases.

    Attributes
    ----------
    probs : torch.Tensor
        ``(B, V, K)`` float probabilities over bins (zero on a variable's padding bins).
    centers : torch.Tensor
        ``(V, K)`` or ``(B, V, K)`` float64 value of each bin in catalog units.
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
        centers = self.centers.expand_as(self.probs)
        # order the bins by value (padding bins, with no mass, last)
        key = torch.where(self.probs > 0, centers, torch.full_like(centers, torch.inf))
        order = torch.argsort(key, dim=-1, stable=True)
        probs, values = torch.gather(self.probs, -1, order), torch.gather(centers, -1, order)
        cdf = probs.cumsum(-1)  # (B, V, K)
        last_bin = (probs > 0).sum(-1, keepdim=True).clamp_min(1) - 1  # (B, V, 1) last bin with mass
        index = torch.searchsorted(cdf.contiguous(), levels.expand(*cdf.shape[:-1], -1).contiguous())  # (B, V, n_q)
        return torch.gather(values, -1, torch.minimum(index, last_bin)).permute(2, 0, 1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(n, B, V)`` float64 draws (each a bin's value)."""
        b, v, k = self.probs.shape
        flat = self.probs.reshape(b * v, k).float()
        bins = torch.multinomial(flat, n, replacement=True, generator=generator)  # (B*V, n)
        centers = self.centers.expand_as(self.probs).reshape(b * v, k)
        return torch.gather(centers, 1, bins).reshape(b, v, n).permute(2, 0, 1)
