"""Stay summaries: one row of per-variable statistics per stay.

A stay's hourly record reduced to a fixed-length vector: per variable its mean, standard deviation,
minimum, maximum, first and last measured value, the share of its hours measured and its mean
absolute hour-to-hour change, with the stay's length and statics. The synthetic report's detection
classifier and distance-to-closest-record read these (:mod:`organsim.evaluate.fidelity`,
:mod:`organsim.evaluate.privacy`), and so does the generator's realism screen
(:mod:`organsim.synth.screening`), which is why they live in the data layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from organsim.data.cohort import Cohort

SUMMARY_STATISTICS = ("mean", "std", "min", "max", "first", "last", "measured_fraction", "mean_abs_change")
STATIC_FEATURES = ("age", "sex", "hosp_adm_hours")


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
        consecutive = (pl.col("hour") - pl.col("hour").shift(1)) == 1
        aggregations += [
            x.mean().alias(f"{v}_mean"), x.std().alias(f"{v}_std"), x.min().alias(f"{v}_min"), x.max().alias(f"{v}_max"),
            x.drop_nulls().first().alias(f"{v}_first"), x.drop_nulls().last().alias(f"{v}_last"),
            x.is_not_null().mean().alias(f"{v}_measured_fraction"),
            (x - x.shift(1)).abs().filter(consecutive).mean().alias(f"{v}_mean_abs_change"),
        ]
    per_stay = hourly.group_by("stay_id").agg(aggregations)
    statics = cohort.stays.select("stay_id", pl.col("n_hours").cast(pl.Float64),
                                  *[pl.col(s).cast(pl.Float64) for s in STATIC_FEATURES])
    return statics.join(per_stay.drop("n_rows"), on="stay_id", how="left", maintain_order="left")
