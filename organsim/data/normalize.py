"""Per-code scaling statistics fitted on a training split: z-scores and [0, 1] min-max scaling.

:class:`Normaliser` holds, for every catalog variable, treatment and static, the mean and standard
deviation of its observed training values and their 1st and 99th percentiles. Models z-score their
inputs and targets with it; the accuracy harness scores nMSE on z-scores and ``mse_minmax`` on
``(x - p01) / (p99 - p01)``. It is saved with a model as JSON (:meth:`Normaliser.to_dict`).

Fallbacks (documented because they change numbers): a code with fewer than two observed training
values, or with zero spread, is scaled by its catalog range instead: the normal range for a
variable, the plausible range for a treatment or static. Then mean = the range's midpoint and
std = a quarter of its width (so the range spans about +-2 sd), and p01/p99 = the range's ends.
A range of zero width (e.g. FiO2's normal [0.21, 0.21]) falls back to the plausible range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from organsim.catalog import Catalog
    from organsim.data.cohort import Cohort

_STATS = ("mean", "std", "p01", "p99")


@dataclass(frozen=True)
class Normaliser:
    """Scaling statistics per code (variables, treatments, statics).

    Attributes
    ----------
    codes : tuple[str, ...]
        The codes, variables first (catalog order), then treatments, then statics.
    mean, std, p01, p99 : np.ndarray
        ``(len(codes),)`` float64, in each code's catalog unit; ``std > 0`` and ``p99 > p01``.
    n_observed : np.ndarray
        ``(len(codes),)`` int64, the number of training values each statistic came from
        (0 where the catalog fallback was used).
    """

    codes: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    p01: np.ndarray
    p99: np.ndarray
    n_observed: np.ndarray

    @classmethod
    def fit(cls, cohort: Cohort, *, split: str | None = "train") -> Normaliser:
        """Fit on the stays of ``split`` (when the cohort has splits) or on every stay.

        Parameters
        ----------
        cohort
            The cohort. Treatment statistics use the recorded treatment rows only.
        split
            Which split to fit on when ``cohort.stays.split`` is set for some stay (the default,
            ``"train"``, is the only honest choice for evaluation); ignored for an unsplit cohort.
            ``None`` fits on every stay.
        """
        catalog = cohort.catalog
        stays, hourly, treatments = cohort.stays, cohort.hourly, cohort.treatments
        if split is not None and stays["split"].null_count() < stays.height:
            chosen = stays.filter(pl.col("split") == split)
            if chosen.height == 0:
                raise ValueError(f"the cohort has no stay in split {split!r}; cannot fit a Normaliser on it")
            ids = chosen["stay_id"].implode()
            stays = chosen
            hourly = hourly.filter(pl.col("stay_id").is_in(ids))
            treatments = treatments.filter(pl.col("stay_id").is_in(ids))
        groups = (
            (hourly, catalog.variable_codes),
            (treatments, catalog.treatment_codes),
            (stays, tuple(s.code for s in catalog.statics)),
        )
        codes: list[str] = []
        rows: list[tuple[float, float, float, float, int]] = []
        for frame, group_codes in groups:
            for code in group_codes:
                observed = frame[code].drop_nulls().drop_nans() if frame[code].dtype.is_float() else frame[code].drop_nulls()
                values = observed.cast(pl.Float64).to_numpy()
                codes.append(code)
                rows.append(_statistics(values, _fallback_range(catalog, code)))
        table = np.array([r[:4] for r in rows], dtype=np.float64)
        return cls(
            codes=tuple(codes),
            mean=table[:, 0],
            std=table[:, 1],
            p01=table[:, 2],
            p99=table[:, 3],
            n_observed=np.array([r[4] for r in rows], dtype=np.int64),
        )

    # ------------------------------------------------------------------ lookups
    def index(self, codes: Sequence[str]) -> np.ndarray:
        """Positions of ``codes`` in :attr:`codes`; an unknown code is a ``KeyError``."""
        position = {c: i for i, c in enumerate(self.codes)}
        unknown = [c for c in codes if c not in position]
        if unknown:
            raise KeyError(f"codes {unknown} are not in this Normaliser (it knows {len(self.codes)} codes)")
        return np.array([position[c] for c in codes], dtype=np.int64)

    def _pick(self, stat: str, codes: Sequence[str], x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != len(codes):
            raise ValueError(f"the last axis of x has {x.shape[-1]} entries but {len(codes)} codes were given")
        return getattr(self, stat)[self.index(codes)]

    # ------------------------------------------------------------------ transforms
    def zscore(self, x: np.ndarray, codes: Sequence[str]) -> np.ndarray:
        """``(x - mean) / std`` along the last axis (one entry per code); NaN stays NaN. Computed in float32."""
        x = np.asarray(x, dtype=np.float32)
        mean, std = self._pick("mean", codes, x).astype(np.float32), self._pick("std", codes, x).astype(np.float32)
        return (x - mean) / std

    def unzscore(self, z: np.ndarray, codes: Sequence[str]) -> np.ndarray:
        """The inverse of :meth:`zscore`: ``z * std + mean``, back in catalog units. Returns float32."""
        z = np.asarray(z, dtype=np.float32)
        return z * self._pick("std", codes, z).astype(np.float32) + self._pick("mean", codes, z).astype(np.float32)

    def minmax(self, x: np.ndarray, codes: Sequence[str]) -> np.ndarray:
        """``(x - p01) / (p99 - p01)`` along the last axis: training values mostly fall in [0, 1]. Float32."""
        x = np.asarray(x, dtype=np.float32)
        p01, p99 = self._pick("p01", codes, x), self._pick("p99", codes, x)
        return (x - p01.astype(np.float32)) / (p99 - p01).astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict ``{"codes": [...], "mean": [...], ...}`` (lists of floats)."""
        out: dict[str, Any] = {"codes": list(self.codes)}
        out.update({stat: [float(v) for v in getattr(self, stat)] for stat in _STATS})
        out["n_observed"] = [int(v) for v in self.n_observed]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normaliser:
        """Rebuild from :meth:`to_dict` output; a malformed dict is a ``ValueError`` naming the key."""
        required = ("codes", *_STATS, "n_observed")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"normaliser dict lacks {missing}")
        n = len(data["codes"])
        bad = [k for k in required[1:] if len(data[k]) != n]
        if bad:
            raise ValueError(f"normaliser dict: {bad} must have one entry per code ({n})")
        arrays = {stat: np.asarray(data[stat], dtype=np.float64) for stat in _STATS}
        if not (np.all(arrays["std"] > 0) and np.all(arrays["p99"] > arrays["p01"])):
            raise ValueError("normaliser dict: std must be > 0 and p99 > p01 for every code")
        return cls(codes=tuple(data["codes"]), n_observed=np.asarray(data["n_observed"], dtype=np.int64), **arrays)


def _fallback_range(catalog: Catalog, code: str) -> tuple[float, float]:
    """The catalog range a code falls back to: normal range for a variable (plausible if it has no width)."""
    if code in catalog.variable_codes:
        variable = catalog.variable(code)
        lo, hi = variable.normal
        return (lo, hi) if hi > lo else variable.plausible
    if code in catalog.treatment_codes:
        return catalog.treatment(code).plausible
    static = next(s for s in catalog.statics if s.code == code)
    return static.plausible


def _statistics(values: np.ndarray, fallback: tuple[float, float]) -> tuple[float, float, float, float, int]:
    """(mean, std, p01, p99, n) of ``values``, with the catalog ``fallback`` range where they are degenerate."""
    lo, hi = fallback
    mid, quarter = (lo + hi) / 2, (hi - lo) / 4
    if len(values) < 2:
        return mid, quarter, lo, hi, 0
    mean, std = float(values.mean()), float(values.std())
    p01, p99 = (float(v) for v in np.percentile(values, [1, 99]))
    n = len(values)
    if std <= 0:
        mean, std, n = mid, quarter, 0
    if p99 <= p01:
        p01, p99 = lo, hi
    return mean, std, p01, p99, n
