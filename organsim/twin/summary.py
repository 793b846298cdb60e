"""A compact summary of a stay's current state: what the reference-selection policy decides from.

Per organ system (the nine of the catalog, in order) four numbers, computed over the system's
variables from what the agents read (last measured values carried forward, and hours since):

- ``abnormality``: mean of ``|z|`` of the last values (training-split z-scores, clipped to
  +-:data:`~organsim.agents.features.Z_CLIP`; variables never measured count 0);
- ``direction``: mean of the signed z-scores (same convention);
- ``staleness``: mean of ``min(hours since measured, cap) / cap`` (1 = never measured);
- ``trend``: mean of ``|change|`` of the z-scored last values over the last
  :data:`TREND_HOURS` hours (0 where either end is unknown);

then the hour of the stay, ``log1p(hour) / 6``. ``9 * 4 + 1 = 37`` features per stay.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from organsim.agents.features import Z_CLIP
from organsim.data.normalize import Normaliser

FEATURES_PER_SYSTEM = ("abnormality", "direction", "staleness", "trend")
TREND_HOURS = 6
"""Hours over which ``trend`` measures the change of the last values."""


def summary_size(n_systems: int) -> int:
    """Number of summary features for ``n_systems`` systems."""
    return n_systems * len(FEATURES_PER_SYSTEM) + 1


def state_summary(
    carried: np.ndarray,
    hours_since: np.ndarray,
    hours: np.ndarray,
    *,
    normaliser: Normaliser,
    variables: Sequence[str],
    variable_systems: Sequence[str],
    systems: Sequence[str],
    since_cap_hours: float,
) -> np.ndarray:
    """``(n, 9 * 4 + 1)`` float32 summary of ``n`` stays (see the module docstring).

    Parameters
    ----------
    carried
        ``(n, L, V)`` last measured value at each of the last ``L`` hours (NaN = none yet); the
        last hour is the current one, and ``L >= 1``.
    hours_since
        ``(n, V)`` hours since each variable was last measured (inf = never).
    hours
        ``(n,)`` ICU hour of the current hour.
    normaliser
        Training-split means and standard deviations.
    variables, variable_systems
        The ``V`` variable codes of the last axis and the system of each.
    systems
        The systems, in the order of the output.
    since_cap_hours
        Cap of the staleness (hours).
    """
    z = np.clip(normaliser.zscore(carried, tuple(variables)), -Z_CLIP, Z_CLIP)  # (n, L, V), NaN = none
    current = z[:, -1]
    earlier = z[:, max(0, z.shape[1] - 1 - TREND_HOURS)]
    known = ~np.isnan(current)
    abnormality = np.where(known, np.abs(current), 0.0)
    direction = np.where(known, current, 0.0)
    staleness = np.minimum(hours_since, since_cap_hours) / since_cap_hours
    trend = np.nan_to_num(np.abs(current - earlier), nan=0.0)
    membership = np.array([[s == system for s in variable_systems] for system in systems], dtype=np.float64)  # (S, V)
    membership /= membership.sum(axis=1, keepdims=True)
    per_system = [feature @ membership.T for feature in (abnormality, direction, staleness, trend)]  # each (n, S)
    hour_feature = np.log1p(np.clip(hours, 0, None)) / 6.0
    return np.concatenate([*per_system, hour_feature[:, None]], axis=1).astype(np.float32)
