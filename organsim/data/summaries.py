"""Stay summaries: one row of per-variable statistics per stay.

A stay's hourly record reduced to a fixed-length vector: per variable its mean, standard deviation,
minimum, maximum, first and last measured value, the share of its hours measured and its mean
absolute hour-to-hour change, with the stay's length and statics. The synthetic report's detection
classifier and distance-to-closest-record read these (:mod:`organsim.evaluate.fidelity`,
:mod:`organsim.evaluate.privacy`), and so does the generator's realism screen
(:mod:`organsim.synth.screening`), which is why they live in the data layer.

:class:`StayEmbedding` standardises them into the vectors both the report's privacy checks and the
screen's closeness floor measure distances between (:func:`nearest_distances`; exact Euclidean
nearest neighbours, ``sklearn.neighbors.NearestNeighbors``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.neighbors import NearestNeighbors

from organsim.data.cohort import Cohort

SUMMARY_STATISTICS = ("mean", "std", "min", "max", "first", "last", "measured_fraction", "mean_abs_change")
STATIC_FEATURES = ("age", "sex", "hosp_adm_hours")


def mean_abs_change(variable: str) -> pl.Expr:
    """Per stay, the mean ``|x_h - x_{h-1}|`` of ``variable`` over consecutive hours both charted
    (null without two): an aggregation for ``group_by("stay_id")`` over rows sorted by stay and hour."""
    x = pl.col(variable).cast(pl.Float64)
    return (x - x.shift(1)).abs().filter((pl.col("hour") - pl.col("hour").shift(1)) == 1).mean()


def stay_summaries(cohort: Cohort, variables: Sequence[str]) -> pl.DataFrame:
    """One row per stay: ``stay_id``, ``n_hours``, statics and, per variable, the :data:`SUMMARY_STATISTICS`.

    Columns ``<variable>_<statistic>`` (Float64, null where the stay never measured the variable;
    ``std`` needs two values, ``mean_abs_change`` two consecutive hours). ``measured_fraction`` is
    the share of the stay's hourly rows with a value. Rows follow ``cohort.stays``.
    """
    hourly = cohort.hourly.sort("stay_id", "hour")
    aggregations = [pl.len().alias("n_rows")]
    for v in variables:
        x = pl.col(v).cast(pl.Float64)
        aggregations += [
            x.mean().alias(f"{v}_mean"), x.std().alias(f"{v}_std"), x.min().alias(f"{v}_min"), x.max().alias(f"{v}_max"),
            x.drop_nulls().first().alias(f"{v}_first"), x.drop_nulls().last().alias(f"{v}_last"),
            x.is_not_null().mean().alias(f"{v}_measured_fraction"),
            mean_abs_change(v).alias(f"{v}_mean_abs_change"),
        ]
    per_stay = hourly.group_by("stay_id").agg(aggregations)
    statics = cohort.stays.select("stay_id", pl.col("n_hours").cast(pl.Float64),
                                  *[pl.col(s).cast(pl.Float64) for s in STATIC_FEATURES])
    return statics.join(per_stay.drop("n_rows"), on="stay_id", how="left", maintain_order="left")


@dataclass
class StayEmbedding:
    """Standardisation fitted on real-train stay summaries: ``columns`` kept, their ``mean`` and ``std``.

    Every stay becomes one vector: its :func:`stay_summaries`, standardised with the real-train means
    and standard deviations (columns constant or empty in real-train are dropped), not-measured
    entries set to 0 (the real-train mean).
    """

    variables: list[str]
    columns: list[str]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, real_train: Cohort, variables: Sequence[str]) -> StayEmbedding:
        return cls.from_summaries(stay_summaries(real_train, variables), variables)

    @classmethod
    def from_summaries(cls, summaries: pl.DataFrame, variables: Sequence[str]) -> StayEmbedding:
        """:meth:`fit` on real-train stays whose :func:`stay_summaries` (over ``variables``) are at hand."""
        summaries = summaries.drop("stay_id")
        values = summaries.to_numpy().astype(np.float64)  # (stays, F), NaN = not measured
        with warnings.catch_warnings():  # "mean of empty slice" for columns real-train never measured: dropped below
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        keep = np.isfinite(mean) & (std > 0)
        return cls(list(variables), [c for c, k in zip(summaries.columns, keep, strict=True) if k], mean[keep], std[keep])

    def transform(self, cohort: Cohort) -> np.ndarray:
        """``(stays, F)`` float64 standardised vectors in ``cohort.stays`` order, missing = 0."""
        return self.vectors(stay_summaries(cohort, self.variables))

    def vectors(self, summaries: pl.DataFrame) -> np.ndarray:
        """:meth:`transform` of stays whose :func:`stay_summaries` (over :attr:`variables`) are at hand."""
        values = summaries.select(self.columns).to_numpy().astype(np.float64)
        return np.nan_to_num((values - self.mean) / self.std, nan=0.0)


def nearest_distances(queries: np.ndarray, records: np.ndarray, *, leave_one_out: bool = False) -> np.ndarray:
    """``(Q,)`` Euclidean distance of each query row to its nearest row of ``records``.

    ``leave_one_out``: ``queries`` are the ``records`` themselves, and each row's distance is to its
    nearest *other* row (the distance an unseen stay drawn like the records would have to them).
    """
    if not len(records):
        raise ValueError("no records to measure distances to")
    if leave_one_out and len(records) < 2:
        raise ValueError("leave-one-out distances need at least two records")
    distances, _ = NearestNeighbors(n_neighbors=1 + leave_one_out).fit(records).kneighbors(queries)
    return distances[:, int(leave_one_out)]
