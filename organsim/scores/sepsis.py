"""Sepsis-3 onset (Singer 2016): suspected infection plus an acute SOFA rise of 2 or more.

Operationalised as in the PhysioNet/CinC 2019 challenge (Reyna 2020), whose labels the PhysioNet
cohorts carry: suspicion of infection is an hour in which an antibiotic was given; organ dysfunction
is an hour whose SOFA is at least 2 above the lowest SOFA of the preceding 24 hours; the two must
fall together, the SOFA rise between 48 hours before and 24 hours after the antibiotic, and onset is
the earlier of the two hours. Cultures are not recorded in the canonical cohort, so an antibiotic
alone marks suspicion.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from organsim.scores.imputation import check_keys
from organsim.utils.errors import DataError

SEPSIS_SCHEMA: dict[str, pl.DataType] = {
    "stay_id": pl.Int64,
    "suspicion_hour": pl.Int32,
    "sofa_rise_hour": pl.Int32,
    "onset_hour": pl.Int32,
    "method": pl.Utf8,
}
"""Columns of :func:`sepsis3_onset`'s result (one row per stay)."""
FROM_TREATMENTS = "antibiotics+sofa"
FROM_LABEL = "label"


def sepsis3_onset(
    sofa_scores: pl.DataFrame,
    *,
    treatments: pl.DataFrame | None = None,
    stays: pl.DataFrame | None = None,
    method: Literal["auto", "treatments", "label"] = "auto",
    sofa_rise: int = 2,
    rise_window_hours: int = 24,
    hours_before_antibiotic: int = 48,
    hours_after_antibiotic: int = 24,
) -> pl.DataFrame:
    """Sepsis-3 onset hour of each stay, from antibiotics and SOFA or from the cohort's label.

    ``method="treatments"`` (the module docstring's rule): a candidate hour ``t`` has hourly
    ``sofa(t) - min(sofa over [t - rise_window_hours + 1, t]) >= sofa_rise`` and an antibiotic hour
    ``a`` with ``a - hours_before_antibiotic <= t <= a + hours_after_antibiotic``; onset is
    ``min(t, a)`` minimised over all such pairs (the earliest candidate ``t`` with its earliest
    antibiotic ``a``). ``method="label"``: onset is ``stays.sepsis_onset_hour`` (PhysioNet: the
    challenge's onset). ``"auto"`` uses treatments when given, else the label.

    Missing values: the SOFA it reads already follows :mod:`organsim.scores.imputation`; an hour
    without a treatment row means no antibiotic.

    Parameters
    ----------
    sofa_scores
        Output of :func:`~organsim.scores.sofa.sofa` (needs ``stay_id``, ``hour``, ``sofa``).
    treatments
        ``(stay_id, hour, antibiotic, ...)``: antibiotic > 0 means given that hour; None when
        treatments are not recorded.
    stays
        ``(stay_id, sepsis_onset_hour)`` for the label method.

    Returns
    -------
    pl.DataFrame
        :data:`SEPSIS_SCHEMA`, one row per stay of ``sofa_scores``, sorted by stay: the antibiotic
        hour and SOFA-rise hour of the onset (null for the label method), ``onset_hour`` (null
        when the stay never meets Sepsis-3), and the ``method`` used.
    """
    if method == "auto":
        method = "treatments" if treatments is not None else "label"
    check_keys(sofa_scores, "sofa_scores")
    stay_ids = sofa_scores.select(pl.col("stay_id").unique().sort().cast(pl.Int64))
    if method == "label":
        if stays is None or "sepsis_onset_hour" not in stays.columns:
            raise DataError("the label method needs a stays frame with a 'sepsis_onset_hour' column "
                            "(or pass treatments with an 'antibiotic' column)", file="<stays>", column="sepsis_onset_hour")
        labels = stays.select(pl.col("stay_id").cast(pl.Int64), pl.col("sepsis_onset_hour").cast(pl.Int32).alias("onset_hour"))
        out = stay_ids.join(labels, on="stay_id", how="left", maintain_order="left").with_columns(
            pl.lit(None, dtype=pl.Int32).alias("suspicion_hour"),
            pl.lit(None, dtype=pl.Int32).alias("sofa_rise_hour"),
            pl.lit(FROM_LABEL).alias("method"),
        )
        return out.select(list(SEPSIS_SCHEMA))
    if method != "treatments":
        raise ValueError(f"method must be 'auto', 'treatments' or 'label', got {method!r}")
    if treatments is None or "antibiotic" not in treatments.columns:
        raise DataError("the treatments method needs a treatments frame with an 'antibiotic' column",
                        file="<treatments>", column="antibiotic")
    if sofa_rise < 1 or rise_window_hours < 1 or hours_before_antibiotic < 0 or hours_after_antibiotic < 0:
        raise ValueError("sofa_rise and rise_window_hours must be >= 1, the antibiotic windows >= 0")
    check_keys(treatments, "treatments")

    scores = sofa_scores.select(pl.col("stay_id").cast(pl.Int64), pl.col("hour").cast(pl.Int64), "sofa").sort("stay_id", "hour")
    lowest = pl.col("sofa").rolling_min_by("hour", window_size=f"{rise_window_hours}i").over("stay_id")
    rises = scores.filter((pl.col("sofa") - lowest) >= sofa_rise).select(
        "stay_id", pl.col("hour").alias("sofa_rise_hour"),
        (pl.col("hour") - hours_after_antibiotic).alias("earliest_antibiotic"),
    )
    antibiotics = (
        treatments.filter(pl.col("antibiotic") > 0)
        .select(pl.col("stay_id").cast(pl.Int64), pl.col("hour").cast(pl.Int64).alias("suspicion_hour"))
        .with_columns(pl.col("suspicion_hour").alias("earliest_antibiotic"))
        .sort("stay_id", "earliest_antibiotic")
    )
    # for each SOFA rise, the first antibiotic at or after (rise - hours_after_antibiotic); both
    # frames are sorted by (stay_id, earliest_antibiotic), i.e. sorted within each stay
    paired = rises.sort("stay_id", "earliest_antibiotic").join_asof(
        antibiotics, on="earliest_antibiotic", by="stay_id", strategy="forward", check_sortedness=False
    ).filter(pl.col("suspicion_hour") <= pl.col("sofa_rise_hour") + hours_before_antibiotic)
    first = (
        paired.sort("stay_id", "sofa_rise_hour")
        .group_by("stay_id", maintain_order=True)
        .first()
        .select(
            "stay_id",
            pl.col("suspicion_hour").cast(pl.Int32),
            pl.col("sofa_rise_hour").cast(pl.Int32),
            pl.min_horizontal("suspicion_hour", "sofa_rise_hour").cast(pl.Int32).alias("onset_hour"),
        )
    )
    out = stay_ids.join(first, on="stay_id", how="left", maintain_order="left").with_columns(
        pl.lit(FROM_TREATMENTS).alias("method")
    )
    return out.select(list(SEPSIS_SCHEMA))
