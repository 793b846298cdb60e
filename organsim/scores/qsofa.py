"""qSOFA (quick SOFA; Singer 2016, Sepsis-3), hour by hour."""

from __future__ import annotations

import polars as pl

from organsim.catalog import Catalog, load_catalog
from organsim.scores import tables as t
from organsim.scores.imputation import (
    CarryForwardHours,
    Component,
    age_of,
    carry_forward_lazy,
    score_components,
)

QSOFA_VARIABLES = ("resp_rate", "sbp", "gcs")
QSOFA_COMPONENTS = ("qsofa_respiratory_rate", "qsofa_systolic_bp", "qsofa_mentation")
QSOFA_POSITIVE_FROM = 2


def qsofa(
    hourly: pl.DataFrame,
    *,
    carry_forward_hours: CarryForwardHours = None,
    catalog: Catalog | None = None,
) -> pl.DataFrame:
    """Hourly qSOFA: respiratory rate >= 22/min, systolic BP <= 100 mmHg, altered mentation (GCS < 15).

    Missing values (:mod:`organsim.scores.imputation`): each input is carried forward within its
    window (vitals 4 h, GCS 8 h by default); a criterion without a value counts as not met (0) and
    is counted in ``qsofa_n_missing``, one that used a carried value in ``qsofa_n_carried``.
    PhysioNet 2019 has no GCS: mentation is missing there.

    Parameters
    ----------
    hourly
        ``(stay_id, hour, <catalog variables>...)``, as for :func:`~organsim.scores.sofa.sofa`.

    Returns
    -------
    pl.DataFrame
        One row per (stay_id, hour), sorted: the three criteria (Int8, 0/1), ``qsofa`` (Int16, 0-3),
        ``qsofa_n_carried``, ``qsofa_n_missing`` (Int8) and ``qsofa_positive`` (qSOFA >= 2).
    """
    catalog = catalog or load_catalog()
    frame = carry_forward_lazy(hourly, QSOFA_VARIABLES, carry_forward_hours=carry_forward_hours, catalog=catalog)
    components = [
        Component("qsofa_respiratory_rate", t.QSOFA_RESPIRATORY_RATE.expr(pl.col("resp_rate")), age_of("resp_rate")),
        Component("qsofa_systolic_bp", t.QSOFA_SYSTOLIC_BP.expr(pl.col("sbp")), age_of("sbp")),
        Component("qsofa_mentation", t.QSOFA_MENTATION.expr(pl.col("gcs")), age_of("gcs")),
    ]
    scored = score_components(frame, components, "qsofa")
    return scored.with_columns((pl.col("qsofa") >= QSOFA_POSITIVE_FROM).alias("qsofa_positive")).collect()
