"""Where a synthetic cohort's vitals go over a stay: the real stays' mean course, held by feedback.

Real ICU stays have a course: on PhysioNet 2019 (train split, stays not septic) the mean over stays
of a vital's change from its first charted value, 12-24 h into the stay, is -3.9 mmHg for systolic
pressure (it falls after admission, then recovers: -1.6 at 36-48 h), +0.46 breaths/min for the
respiratory rate, -1.5 beats/min for heart rate. Free-running, the twin's stays went elsewhere: in
the recorded benchmark's cohort (4,200 stays, a constant shift of the draws fitted by the pilots)
systolic pressure rose (-0.4 at 12-24 h, +3.9 at 36-48 h), the respiratory rate fell (-0.3), heart
rate fell on (-4.8 at 36-48 h). A constant shift (:mod:`organsim.synth.spread`) matches one number,
the median drift over a stay; it cannot bend a course, and the stays' last and mean values, which
the detection classifier reads, came out off (systolic pressure's last value alone told the cohorts
apart at AUROC 0.575, 0.5 is none).

:class:`DriftProfile` holds the real course of the training stays that are not septic: per
stay-length band (quartiles of their lengths: a long stay is a sicker one), per band of the stay's
first charted value (terciles: a stay admitted with a glucose above 144 mg/dL comes down by 17-60
mg/dL over its first day, one admitted below 110 rises by 20-30) and hour of the stay, the mean over
the stays charting the variable then of its value minus the stay's first charted value, smoothed
over :data:`SMOOTH_HOURS` hours and carried forward where fewer than :data:`MIN_STAYS` stays are
left.

The generator (``drift_control`` of :class:`~organsim.synth.generate.SynthesisConfig`, default gain
:data:`GAIN`) steers each batch's stays drawn as not septic: after every simulated hour, per
first-value band, the mean over the band's stays of (target - (last charted value - first)), in
units of the variable's typical change between charted values, times the gain, is the next hour's
shift of their draws' scores (a proportional controller on the cohort's mean course, at most
:data:`MAX_CORRECTION` standard deviations). A stay's own deviations from the course are untouched:
the band's draws lean together. Septic stays are not steered: steering them too pulled their
deterioration toward the average course, and the sepsis-6h logistic AUROC drop went to 0.093. With
the control, the pilots fit no constant shift (it would pull against it).

On the PhysioNet 2019 benchmark (``bench/synthesize.py``, seed 0, stays not septic, 12-24 h / 36-48 h,
synthetic / real): systolic pressure -4.2 / -3.9 and -1.9 / -1.6 mmHg (before: -0.4 and +3.9), MAP
-3.6 / -3.7 and -1.6 / -1.8, respiratory rate +0.27 / +0.46 and +0.57 / +0.55 (before -0.29 and
+0.07), heart rate -2.1 / -1.5 and -2.1 / -1.4 (before -3.0 and -4.8); temperature overshoots, +0.44
/ +0.27 (before +0.29). Single-feature AUROCs of the last values: systolic pressure 0.575 -> 0.502,
heart rate 0.478 -> 0.506, respiratory rate 0.466 -> 0.509, temperature 0.480 -> 0.535. The
detection AUROC went from 0.920 to 0.917, the vitals' values alone from 0.835 to 0.822.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.ndimage import convolve1d

from organsim.agents.features import carry_forward

BANDS = 4
"""Stay-length bands (quantiles of the training stays' lengths) with a course of their own."""
LEVELS = 3
"""Bands of a variable's first charted value (quantiles over the training stays) with a course of their
own: a stay admitted with a high glucose comes down, one admitted low does not."""
SMOOTH_HOURS = 5
"""Hours a course's mean is averaged over (centred), against the noise of few stays."""
MIN_STAYS = 30
"""Training stays of a band charting a variable at an hour for its mean there to count."""
MAX_CORRECTION = 0.5
"""Largest correction of the draws' shift, in standard deviations of the scores."""
GAIN = 1.0
"""The default gain of the drift control (``drift_control`` of :class:`~organsim.synth.generate.SynthesisConfig`)."""


@dataclass
class DriftProfile:
    """The training stays' mean course per stay-length band and first-value band (module docstring).

    Attributes
    ----------
    variables
        The variables, in the order of :attr:`course`'s last axis.
    edges
        ``(bands + 1,)`` stay lengths (hours) bounding the bands; a length at or above ``edges[k]``
        and below ``edges[k + 1]`` is in band ``k`` (the first and last bands are open).
    level_edges
        ``(levels + 1, V)`` first charted values bounding each variable's level bands, likewise.
    course
        ``(bands, levels, hours, V)`` mean change from the first charted value at each hour of the
        stay (hour 0: its first row) of the stays in a length band whose first value is in a level
        band; NaN where no mean ever had :data:`MIN_STAYS` stays.
    """

    variables: tuple[str, ...]
    edges: np.ndarray
    level_edges: np.ndarray
    course: np.ndarray

    @classmethod
    def fit(cls, hourly: pl.DataFrame, n_hours: pl.DataFrame, variables: Sequence[str], *, bands: int = BANDS,
            levels: int = LEVELS, min_stays: int = MIN_STAYS) -> DriftProfile:
        """Fit on the training hours (``stay_id``, ``hour``, the variables) and ``n_hours`` (``stay_id``, ``n_hours``)."""
        lengths = n_hours.select("stay_id", pl.col("n_hours").cast(pl.Int64))
        edges = np.quantile(lengths["n_hours"].to_numpy(), np.linspace(0, 1, bands + 1))
        banded = lengths.with_columns(band=pl.Series(_band(edges, lengths["n_hours"].to_numpy())))
        frame = (hourly.select("stay_id", "hour", *variables).sort("stay_id", "hour")
                 .with_columns(t=pl.col("hour") - pl.col("hour").min().over("stay_id"))
                 .join(banded.select("stay_id", "band"), on="stay_id"))
        hours = int(frame["t"].max()) + 1
        course = np.full((bands, levels, hours, len(variables)), np.nan)
        level_edges = np.full((levels + 1, len(variables)), np.nan)
        kernel = np.ones(SMOOTH_HOURS)
        for j, v in enumerate(variables):
            x = pl.col(v).cast(pl.Float64)
            change = frame.select("stay_id", "band", "t", v).drop_nulls(v).with_columns(first=x.first().over("stay_id"))
            change = change.with_columns(change=x - pl.col("first"))
            if not change.height:
                continue
            firsts = change.group_by("stay_id").agg(pl.col("first").first())["first"].to_numpy()
            level_edges[:, j] = np.quantile(firsts, np.linspace(0, 1, levels + 1))
            change = change.with_columns(level=pl.Series(_band(level_edges[:, j], change["first"].to_numpy())))
            means = change.group_by("band", "level", "t").agg(pl.col("change").sum().alias("total"), pl.len().alias("stays"))
            cells = (means["band"].to_numpy(), means["level"].to_numpy(), means["t"].to_numpy())
            totals = np.zeros((bands, levels, hours))
            counts = np.zeros((bands, levels, hours))
            totals[cells] = means["total"].to_numpy()
            counts[cells] = means["stays"].to_numpy()
            smoothed_total, smoothed_count = convolve1d(np.stack([totals, counts]), kernel, axis=-1, mode="constant")
            mean = np.where(counts >= min_stays, smoothed_total / np.maximum(smoothed_count, 1), np.nan)  # (bands, levels, hours)
            course[..., j] = carry_forward(mean.reshape(-1, hours, 1))[0].reshape(bands, levels, hours)
        return cls(variables=tuple(variables), edges=edges, level_edges=level_edges, course=course)

    def select(self, variables: Sequence[str]) -> DriftProfile:
        """The profile of ``variables`` alone (each one of :attr:`variables`), in that order."""
        index = [self.variables.index(v) for v in variables]
        return DriftProfile(variables=tuple(variables), edges=self.edges, level_edges=self.level_edges[:, index],
                            course=self.course[..., index])

    def band_of(self, n_hours: np.ndarray) -> np.ndarray:
        """``(n,)`` the band of each stay length."""
        return _band(self.edges, n_hours)

    def level_of(self, first: np.ndarray) -> np.ndarray:
        """``(n, V)`` the level band of each stay's first charted value ``(n, V)`` (NaN: band 0, unused)."""
        first = np.asarray(first, dtype=np.float64)
        return np.stack([_band(self.level_edges[:, j], np.nan_to_num(first[:, j], nan=-np.inf)) if np.isfinite(self.level_edges[0, j])
                         else np.zeros(len(first), dtype=np.int64) for j in range(len(self.variables))], axis=1)

    def target(self, bands: np.ndarray, levels: np.ndarray, hour: int) -> np.ndarray:
        """``(n, V)`` the course at ``hour`` of the stay (the last hour's beyond it) of stays in length
        ``bands`` ``(n,)`` and level bands ``levels`` ``(n, V)``."""
        at = self.course[:, :, min(hour, self.course.shape[2] - 1)]  # (bands, levels, V)
        return at[np.asarray(bands)[:, None], np.asarray(levels), np.arange(len(self.variables))[None, :]]

    def summary(self) -> dict[str, Any]:
        """The bands' edges and each variable's course at 6, 12, 24 and 48 h (per length band, then level band), JSON-ready."""
        hours = [h for h in (6, 12, 24, 48) if h < self.course.shape[2]]
        return {"edges": np.round(self.edges, 1).tolist(),
                "course": {v: {f"{h}h": np.round(self.course[:, :, h, j], 3).tolist() for h in hours} for j, v in enumerate(self.variables)}}


def _band(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The band of each value between ``edges`` (the first and last bands open)."""
    return np.clip(np.searchsorted(edges, np.asarray(values), side="right") - 1, 0, len(edges) - 2)

