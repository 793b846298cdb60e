"""Array helpers shared across layers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def nan_quantiles(values: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """``(Q, ...)`` quantiles over axis 0 ignoring NaN (numpy's default linear interpolation), NaN
    where a slice has no value; ``np.nanquantile`` without its per-slice Python loop."""
    ordered = np.sort(values, axis=0)  # NaN sort last
    counts = np.isfinite(values).sum(axis=0)
    out = np.full((len(quantiles), *values.shape[1:]), np.nan)
    for i, q in enumerate(quantiles):
        position = q * np.maximum(counts - 1, 0)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, np.maximum(counts - 1, 0))
        below = np.take_along_axis(ordered, low[None], axis=0)[0]
        above = np.take_along_axis(ordered, high[None], axis=0)[0]
        out[i] = np.where(counts > 0, below + (above - below) * (position - low), np.nan)
    return out
