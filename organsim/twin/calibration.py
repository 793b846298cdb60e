"""Calibrated uncertainty bands: split-conformal scaling of the twin's sampled quantile bands.

A band read off a few sampled futures (their 5th and 95th percentiles, say) covers the truth less
often than its nominal level when the agents are overconfident or biased, and more often when they
are underconfident. :class:`BandCalibration` corrects that the split-conformal way (Romano et al.
2019, *Conformalized quantile regression*; with a scale instead of a shift, so each band keeps its
own width and asymmetry):

1. :func:`fit_band_calibration` rolls the twin out factually (the recorded treatments) from
   seeded start hours of stays it did not learn from (the validation split) and keeps, for every
   value observed in the horizon, how far outside or inside the sampled band it fell, as a multiple
   of the band's half-width on that side (the median to the 5th or to the 95th percentile):
   ``r = (median - y) / (median - q_low)`` below the median, ``(y - median) / (q_high - median)``
   above it; half-widths are floored at :data:`WIDTH_FLOOR_SD` of the variable's SD so discrete
   variables (GCS, FiO2) with a zero-width band get a finite score;
2. the scale ``s`` of a variable and horizon bucket is the conformal quantile of its scores at the
   band's level (the ``ceil((n + 1) level) / n`` empirical quantile), fitted where at least
   :data:`MIN_SCORES` observed values back it, else pooled over the variable's buckets, else over
   every variable;
3. :meth:`BandCalibration.bands` stretches (``s > 1``) or narrows (``s < 1``) each side of a band
   around the sample median by ``s``.

Under exchangeability of the calibration stays and new ones, the calibrated band covers an
observed value with probability at least its level. The scales hold for bands read off the number
of samples they were fitted with (``meta["samples"]``): bands of more samples are wider, so fit
with as many samples as the what-ifs use. The sampled futures themselves are left as
they are (their outcomes and scores read the twin's own draws); only the reported bands change.
The calibration is saved beside the model (``band_calibration.json``, :meth:`BandCalibration.save`, written with the draw correlation by
``organsim calibrate``) and loaded with it (:meth:`organsim.twin.PatientTwin.load`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from organsim.data import Cohort
from organsim.data.windows import choose_starts, forecast_batch, forecast_targets
from organsim.twin.saved_module import read_saved_json
from organsim.utils.arrays import nan_quantiles
from organsim.utils.errors import DataError
from organsim.utils.io import atomic_write_text

if TYPE_CHECKING:
    from organsim.twin.twin import PatientTwin

CALIBRATION_FILE = "band_calibration.json"
CALIBRATION_FORMAT = "organsim.band_calibration/1"
HORIZON_BUCKETS = (1, 7, 25)
"""First hour of each horizon bucket: hours 1-6, 7-24 and 25 on are calibrated separately."""
WIDTH_FLOOR_SD = 0.05
"""Smallest half-width of a band side, as a share of the variable's SD (the agents' normaliser)."""
MIN_SCORES = 30
"""Fewest observed values that fit a scale of their own (variable and bucket, or variable)."""
DEFAULT_BAND = (0.05, 0.95)


def horizon_bucket(hours: np.ndarray) -> np.ndarray:
    """Index into :data:`HORIZON_BUCKETS` of each 1-based horizon hour."""
    return np.searchsorted(np.asarray(HORIZON_BUCKETS), np.asarray(hours), side="right") - 1


def band_scores(samples: np.ndarray, truth: np.ndarray, band: tuple[float, float], floor: np.ndarray) -> np.ndarray:
    """Nonconformity scores of observed values against sampled bands.

    Parameters
    ----------
    samples
        ``(K, ..., V)`` sampled values (NaN where a sample has none).
    truth
        ``(..., V)`` observed values, NaN where not observed.
    band
        The band's lower and upper quantile levels.
    floor
        ``(V,)`` smallest half-width of each side.

    Returns
    -------
    np.ndarray
        ``(..., V)`` float64: the distance of ``truth`` from the sample median in half-widths of the
        band's side it lies on (<= 1 inside the raw band); NaN where ``truth`` or the samples are missing.
    """
    low, median, high = nan_quantiles(samples, (band[0], 0.5, band[1]))
    below = (median - truth) / np.maximum(median - low, floor)
    above = (truth - median) / np.maximum(high - median, floor)
    return np.where(truth < median, below, above)


@dataclass(frozen=True)
class BandCalibration:
    """Per-variable, per-horizon-bucket scales of a sampled band (see the module docstring).

    Attributes
    ----------
    variables
        Variable codes, in the order of ``scales``' last axis.
    band
        The band's quantile levels (``(0.05, 0.95)``: the 90 % band).
    scales
        ``(len(HORIZON_BUCKETS), V)`` scale of each side of the band around the median.
    floor
        ``(V,)`` smallest half-width of a side, in catalog units.
    n_scores
        ``(len(HORIZON_BUCKETS), V)`` observed values behind each scale (before pooling).
    coverage_before
        Share of calibration values inside the raw bands (all variables and hours).
    meta
        How it was fitted (stays, cases, samples, horizon, seed).
    """

    variables: tuple[str, ...]
    band: tuple[float, float]
    scales: np.ndarray
    floor: np.ndarray
    n_scores: np.ndarray
    coverage_before: float
    meta: dict[str, Any]

    @property
    def level(self) -> float:
        """The band's nominal coverage, ``band[1] - band[0]``."""
        return self.band[1] - self.band[0]

    def scale_for(self, variables: Sequence[str], horizon: int) -> np.ndarray:
        """``(horizon, len(variables))`` scale of each hour 1..horizon and variable (1 for variables not calibrated)."""
        buckets = horizon_bucket(np.arange(1, horizon + 1))
        out = np.ones((horizon, len(variables)))
        for j, code in enumerate(variables):
            if code in self.variables:
                out[:, j] = self.scales[buckets, self.variables.index(code)]
        return out

    def apply(self, quantiles: np.ndarray, levels: Sequence[float], median: np.ndarray, variables: Sequence[str]) -> np.ndarray:
        """Calibrated quantiles: each ``(H, V)`` quantile of ``quantiles`` (``(Q, H, V)`` at ``levels``)
        moved to ``median + s * (q - median)``, the outer levels (at or beyond the band's) kept at
        least ``s * floor`` from the median; hours are 1..H of the horizon."""
        scale = self.scale_for(variables, quantiles.shape[1])
        floor = np.array([self.floor[self.variables.index(c)] if c in self.variables else 0.0 for c in variables])
        out = np.empty_like(quantiles, dtype=np.float64)
        for i, level in enumerate(levels):
            offset = quantiles[i] - median
            if level <= self.band[0]:
                offset = np.minimum(offset, -floor)
            elif level >= self.band[1]:
                offset = np.maximum(offset, floor)
            out[i] = median + scale * offset
        return out

    def bands(self, samples: np.ndarray, variables: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The calibrated band of ``(K, H, V)`` samples: ``(lower, upper)``, ``(H, V)`` each."""
        low, median, high = nan_quantiles(samples, (self.band[0], 0.5, self.band[1]))
        lower, upper = self.apply(np.stack([low, high]), self.band, median, variables)
        return lower, upper

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CALIBRATION_FORMAT, "variables": list(self.variables), "band": list(self.band),
            "horizon_buckets": list(HORIZON_BUCKETS), "scales": self.scales.round(6).tolist(), "floor": self.floor.tolist(),
            "n_scores": self.n_scores.astype(int).tolist(), "coverage_before": self.coverage_before, "meta": self.meta,
        }

    def save(self, model_dir: str | Path) -> Path:
        """Write ``band_calibration.json`` into ``model_dir`` (atomically); returns its path."""
        path = Path(model_dir) / CALIBRATION_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> BandCalibration:
        """The calibration saved in ``model_dir`` (a DataError naming the file when it is malformed)."""
        path = Path(model_dir) / CALIBRATION_FILE
        data = read_saved_json(path, fmt=CALIBRATION_FORMAT, what="band calibration",
                               missing="no band calibration here: run `organsim calibrate` on the model")
        if list(data.get("horizon_buckets", [])) != list(HORIZON_BUCKETS):
            raise DataError(f"horizon buckets {data.get('horizon_buckets')} differ from this version's {list(HORIZON_BUCKETS)}", file=path)
        variables = tuple(data["variables"])
        scales = np.asarray(data["scales"], dtype=np.float64)
        if scales.shape != (len(HORIZON_BUCKETS), len(variables)) or not np.all(np.isfinite(scales) & (scales > 0)):
            raise DataError(f"scales must be positive numbers, {len(HORIZON_BUCKETS)} rows of {len(variables)}", file=path)
        return cls(variables=variables, band=(float(data["band"][0]), float(data["band"][1])), scales=scales,
                   floor=np.asarray(data["floor"], dtype=np.float64), n_scores=np.asarray(data["n_scores"]),
                   coverage_before=float(data["coverage_before"]), meta=dict(data.get("meta", {})))


def has_band_calibration(model_dir: str | Path) -> bool:
    """A band calibration is saved in ``model_dir``."""
    return (Path(model_dir) / CALIBRATION_FILE).is_file()


def conformal_scale(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile of ``scores`` at ``level``: the ``ceil((n + 1) level)``-th smallest
    (the largest when that exceeds ``n``)."""
    ordered = np.sort(scores[np.isfinite(scores)])
    if not len(ordered):
        raise ValueError("no finite score to calibrate on")
    rank = min(math.ceil((len(ordered) + 1) * level), len(ordered))
    return float(ordered[rank - 1])


def fit_band_calibration(
    twin: PatientTwin,
    cohort: Cohort,
    *,
    split: str = "validation",
    cases: int = 200,
    samples: int = 20,
    horizon: int = 48,
    band: tuple[float, float] = DEFAULT_BAND,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> BandCalibration:
    """Fit the band scales on factual rollouts of ``cohort``'s ``split`` (see the module docstring).

    Parameters
    ----------
    twin
        The twin whose bands are calibrated (its reference policy and error corrector as loaded).
    cohort
        A cohort split as the agents were trained (:func:`organsim.agents.training.split_as_trained`).
    split
        The stays calibrated on; never the ones the agents learnt from.
    cases
        Start hours (one per stay, seeded), at most.
    samples
        Futures per case.
    horizon
        Hours rolled out from each start.
    band
        The band's quantile levels.
    seed
        Seed of the start hours and the rollouts.
    progress
        ``progress(done, total)`` in cases.
    """
    if not 0 < band[0] < 0.5 < band[1] < 1:
        raise ValueError(f"band levels must satisfy 0 < low < 0.5 < high < 1, got {band}")
    if cases < 1 or samples < 2 or horizon < 1:
        raise ValueError(f"cases >= 1, samples >= 2 and horizon >= 1 are required, got {cases}, {samples}, {horizon}")
    part = cohort.subset(split=split)
    if part.stays.height == 0:
        raise ValueError(f"the cohort has no {split!r} stays to calibrate on (split it as the agents were trained)")
    context = twin.agents.config.context_hours
    starts = choose_starts(part, horizon=horizon, per_stay=1, min_context=min(6, context), seed=seed)
    if starts.height == 0:
        raise ValueError(f"no {split!r} stay is long enough for a {horizon}-hour horizon after 6 hours of context")
    if starts.height > cases:
        starts = starts.sample(cases, seed=seed).sort("stay_id", "hour")
    variables = twin.variables
    truth_all = forecast_targets(part, starts, horizon=horizon)  # (B, H, V_batch)
    batch = forecast_batch(part, starts, context_hours=context, horizon=horizon)
    columns = [batch.variables.index(code) for code in variables]
    floor = WIDTH_FLOOR_SD * twin.agents.normaliser.std[twin.agents.normaliser.index(variables)]
    scores = np.full((starts.height, horizon, len(variables)), np.nan)
    chunk = max(1, twin.batch_size // samples)
    for first in range(0, starts.height, chunk):
        rows = np.arange(first, min(first + chunk, starts.height))
        rollout = twin.rollout(batch.select(rows), horizon, n_samples=samples, seed=seed + first)
        values = rollout.values[..., [rollout.variables.index(c) for c in variables]]  # (K, b, H, V)
        truth = truth_all[rows][..., columns]
        scores[rows] = band_scores(values, truth, band, floor)
        if progress is not None:
            progress(int(rows[-1]) + 1, starts.height)
    level = band[1] - band[0]
    buckets = horizon_bucket(np.arange(1, horizon + 1))
    pooled_all = conformal_scale(scores.reshape(-1), level)
    n_scores = np.zeros((len(HORIZON_BUCKETS), len(variables)), dtype=np.int64)
    scales = np.full((len(HORIZON_BUCKETS), len(variables)), pooled_all)
    for j in range(len(variables)):
        per_variable = scores[..., j]
        n_variable = int(np.isfinite(per_variable).sum())
        variable_scale = conformal_scale(per_variable.reshape(-1), level) if n_variable >= MIN_SCORES else pooled_all
        for b in range(len(HORIZON_BUCKETS)):
            in_bucket = per_variable[:, buckets == b]
            n_scores[b, j] = int(np.isfinite(in_bucket).sum())
            scales[b, j] = conformal_scale(in_bucket.reshape(-1), level) if n_scores[b, j] >= MIN_SCORES else variable_scale
    scales = np.maximum(scales, 1e-3)
    observed = scores[np.isfinite(scores)]  # never empty: conformal_scale above needs a finite score
    return BandCalibration(
        variables=tuple(variables), band=(float(band[0]), float(band[1])), scales=scales, floor=np.asarray(floor, dtype=np.float64),
        n_scores=n_scores, coverage_before=float((observed <= 1).mean()),
        meta={"split": split, "stays": int(starts["stay_id"].n_unique()), "cases": int(starts.height), "samples": samples,
              "horizon": horizon, "seed": seed, "observed_values": int(observed.size)},
    )

