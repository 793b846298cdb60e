"""SIRS criteria (systemic inflammatory response syndrome; Bone 1992), hour by hour."""

from __future__ import annotations

import polars as pl

from organsim.catalog import Catalog, load_catalog
from organsim.scores import tables as t
from organsim.scores.imputation import (
    CarryForwardHours,
    Component,
    age_of,
    age_of_worse,
    carry_forward_lazy,
    score_components,
)

SIRS_VARIABLES = ("temperature", "hr", "resp_rate", "paco2", "wbc")
SIRS_COMPONENTS = ("sirs_temperature", "sirs_heart_rate", "sirs_respiratory", "sirs_wbc")
SIRS_POSITIVE_FROM = 2


def sirs(
    hourly: pl.DataFrame,
    *,
    carry_forward_hours: CarryForwardHours = None,
    catalog: Catalog | None = None,
) -> pl.DataFrame:
    """Hourly SIRS criteria: temperature > 38 or < 36 degC; heart rate > 90/min; respiratory rate
    > 20/min or PaCO2 < 32 mmHg; WBC > 12 or < 4 x10^3/uL (band forms are not recorded).

    Missing values (:mod:`organsim.scores.imputation`): each input is carried forward within its
    window (vitals 4 h, labs 24 h by default); the respiratory criterion is met when either of its
    inputs meets it and missing only when both are; a criterion without a value counts as not met
    (0) and is counted in ``sirs_n_missing``, one that used a carried value in ``sirs_n_carried``.

    Parameters
    ----------
    hourly
        ``(stay_id, hour, <catalog variables>...)``, as for :func:`~organsim.scores.sofa.sofa`.

    Returns
    -------
    pl.DataFrame
        One row per (stay_id, hour), sorted: the four criteria (Int8, 0/1), ``sirs`` (Int16, 0-4),
        ``sirs_n_carried``, ``sirs_n_missing`` (Int8) and ``sirs_positive`` (two or more criteria).
    """
    catalog = catalog or load_catalog()
    frame = carry_forward_lazy(hourly, SIRS_VARIABLES, carry_forward_hours=carry_forward_hours, catalog=catalog)
    rate = t.SIRS_RESPIRATORY_RATE.expr(pl.col("resp_rate"))
    paco2 = t.SIRS_PACO2.expr(pl.col("paco2"))
    components = [
        Component("sirs_temperature", t.SIRS_TEMPERATURE.expr(pl.col("temperature")), age_of("temperature")),
        Component("sirs_heart_rate", t.SIRS_HEART_RATE.expr(pl.col("hr")), age_of("hr")),
        Component("sirs_respiratory", pl.max_horizontal(rate, paco2),
                  age_of_worse(rate, age_of("resp_rate"), paco2, age_of("paco2"))),
        Component("sirs_wbc", t.SIRS_WBC.expr(pl.col("wbc")), age_of("wbc")),
    ]
    scored = score_components(frame, components, "sirs")
    return scored.with_columns((pl.col("sirs") >= SIRS_POSITIVE_FROM).alias("sirs_positive")).collect()
