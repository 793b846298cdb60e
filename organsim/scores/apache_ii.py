"""APACHE II (Knaus 1985): twelve physiological variables, age and chronic health points."""

from __future__ import annotations

import polars as pl

from organsim.catalog import Catalog, load_catalog
from organsim.scores import tables as t
from organsim.scores.imputation import (
    DERIVED_DECIMALS,
    CarryForwardHours,
    Component,
    age_of,
    carry_forward_lazy,
    score_components,
    worst_over_window,
)
from organsim.utils.errors import DataError

APACHE_II_VARIABLES = (
    "temperature", "map", "hr", "resp_rate", "pao2", "fio2", "paco2", "ph", "hco3",
    "sodium", "potassium", "creatinine", "hematocrit", "wbc", "gcs",
)
APACHE_II_COMPONENTS = (
    "apache_ii_temperature",
    "apache_ii_map",
    "apache_ii_heart_rate",
    "apache_ii_respiratory_rate",
    "apache_ii_oxygenation",
    "apache_ii_acid_base",
    "apache_ii_sodium",
    "apache_ii_potassium",
    "apache_ii_creatinine",
    "apache_ii_hematocrit",
    "apache_ii_wbc",
    "apache_ii_gcs",
)
"""The twelve acute-physiology components, in Knaus 1985's order."""
ALVEOLAR_GAS_FACTOR_MMHG = 713.0
"""Barometric minus water vapour pressure at sea level, 760 - 47 mmHg (alveolar gas equation)."""
RESPIRATORY_QUOTIENT = 0.8
NORMAL_PACO2_MMHG = 40.0
"""PaCO2 assumed in the alveolar gas equation when none was measured within the window."""
CONTEXT_COLUMNS = ("chronic_organ_insufficiency", "admission_type", "acute_renal_failure")


def alveolar_arterial_gradient() -> pl.Expr:
    """A-a O2 gradient in mmHg: FiO2 x 713 - PaCO2 / 0.8 - PaO2 (PaCO2 missing -> 40 mmHg)."""
    paco2 = pl.col("paco2").fill_null(NORMAL_PACO2_MMHG)
    gradient = pl.col("fio2") * ALVEOLAR_GAS_FACTOR_MMHG - paco2 / RESPIRATORY_QUOTIENT - pl.col("pao2")
    return gradient.round(DERIVED_DECIMALS)


def _stay_context(stay_ids: pl.Series, stays: pl.DataFrame | None, context: pl.DataFrame | None) -> pl.DataFrame:
    """Per stay of ``stay_ids``: ``age`` (years), ``apache_ii_chronic_points``, ``acute_renal_failure``."""
    key = stay_ids.dtype
    rows = pl.DataFrame({"stay_id": stay_ids.unique()})
    if stays is not None and "age" in stays.columns:
        if "stay_id" not in stays.columns:
            raise DataError("the stays frame needs a 'stay_id' column", file="<stays>", column="stay_id")
        ages = stays.select(pl.col("stay_id").cast(key), pl.col("age").cast(pl.Float64))
        rows = rows.join(ages, on="stay_id", how="left", maintain_order="left")
    else:
        rows = rows.with_columns(pl.lit(None, dtype=pl.Float64).alias("age"))
    if context is None:
        return rows.with_columns(pl.lit(0, dtype=pl.Int8).alias("apache_ii_chronic_points"),
                                 pl.lit(False).alias("acute_renal_failure"))
    unknown = [c for c in context.columns if c != "stay_id" and c not in CONTEXT_COLUMNS]
    if unknown or "stay_id" not in context.columns:
        raise DataError(f"the APACHE II context frame has columns stay_id and any of {list(CONTEXT_COLUMNS)}; "
                        f"got {context.columns}", file="<context>", column=(unknown or ["stay_id"])[0])
    insufficient = (context["chronic_organ_insufficiency"] if "chronic_organ_insufficiency" in context.columns
                    else pl.Series([None] * context.height, dtype=pl.Boolean)).fill_null(False)
    admission = (context["admission_type"] if "admission_type" in context.columns
                 else pl.Series([None] * context.height, dtype=pl.Utf8))
    bad = insufficient & ~admission.is_in(list(t.APACHE_II_CHRONIC_HEALTH_POINTS)).fill_null(False)
    if bad.any():
        row = int(bad.arg_true()[0]) + 1
        raise DataError(f"admission_type {admission[row - 1]!r} must be one of {list(t.APACHE_II_CHRONIC_HEALTH_POINTS)} "
                        "when chronic_organ_insufficiency is true", file="<context>", row=row, column="admission_type")
    renal_failure = (context["acute_renal_failure"] if "acute_renal_failure" in context.columns
                     else pl.Series([None] * context.height, dtype=pl.Boolean))
    known = pl.DataFrame({
        "stay_id": context["stay_id"].cast(key),
        "apache_ii_chronic_points": pl.Series([
            t.APACHE_II_CHRONIC_HEALTH_POINTS[a] if i else 0 for i, a in zip(insufficient, admission, strict=True)
        ], dtype=pl.Int8),
        "acute_renal_failure": renal_failure.fill_null(False),
    })
    return rows.join(known, on="stay_id", how="left", maintain_order="left").with_columns(
        pl.col("apache_ii_chronic_points").fill_null(0), pl.col("acute_renal_failure").fill_null(False)
    )


def apache_ii(
    hourly: pl.DataFrame,
    stays: pl.DataFrame | None = None,
    *,
    context: pl.DataFrame | None = None,
    carry_forward_hours: CarryForwardHours = None,
    window_hours: int = 24,
    catalog: Catalog | None = None,
) -> pl.DataFrame:
    """Hourly APACHE II components and totals, and the total from each component's worst value over
    the trailing ``window_hours``.

    Components (Knaus 1985, tables in :mod:`organsim.scores.tables`): temperature (degC), MAP, heart
    rate, respiratory rate, oxygenation, arterial pH, sodium, potassium, creatinine (mg/dL; points
    doubled in acute renal failure), hematocrit (%), WBC (10^3/uL), GCS (15 - GCS, the GCS rounded
    to a whole point). Oxygenation uses the A-a gradient (FiO2 x 713 - PaCO2/0.8 - PaO2; PaCO2
    missing -> 40 mmHg) when FiO2 >= 0.5, and PaO2 otherwise (FiO2 missing -> room air). Acid-base
    uses arterial pH, or serum HCO3 when no pH was measured within the window. Age points come from
    ``stays.age``; chronic health points from ``context`` when known (0 when unknown, not counted as
    missing).

    Missing values (:mod:`organsim.scores.imputation`): each input is carried forward within its
    window (vitals 4 h, GCS 8 h, labs 24 h by default); a component without a value scores 0 and is
    counted in ``apache_ii_n_missing`` (age too), one that used a carried value in
    ``apache_ii_n_carried``. PhysioNet 2019 has no PaO2, sodium or GCS: those components are missing
    there and score 0.

    Parameters
    ----------
    hourly
        ``(stay_id, hour, <catalog variables>...)``, as for :func:`~organsim.scores.sofa.sofa`.
    stays
        ``(stay_id, age, ...)``; None gives no age points (counted missing).
    context
        Optional per-stay ``(stay_id, chronic_organ_insufficiency: bool, admission_type:
        "nonoperative" | "emergency_postoperative" | "elective_postoperative", acute_renal_failure:
        bool)``; any column may be left out or null (unknown).
    window_hours
        Trailing window (current hour included) of ``apache_ii_24h``: at the stay's hour 24 it is the
        classic first-day score (see :func:`~organsim.scores.cohort.first_window`).

    Returns
    -------
    pl.DataFrame
        One row per (stay_id, hour), sorted: the twelve components (Int8), ``apache_ii_age_points``,
        ``apache_ii_chronic_points`` (Int8), ``apache_ii_aps`` (Int16, acute physiology score this
        hour), ``apache_ii`` (Int16, APS + age + chronic this hour), ``apache_ii_n_carried``,
        ``apache_ii_n_missing`` (Int8, of the 12 components and age) and ``apache_ii_24h`` (Int16:
        worst-in-window APS + age + chronic).
    """
    catalog = catalog or load_catalog()
    frame = carry_forward_lazy(hourly, APACHE_II_VARIABLES, carry_forward_hours=carry_forward_hours, catalog=catalog)
    per_stay = _stay_context(hourly["stay_id"], stays, context).lazy()
    frame = frame.join(per_stay, on="stay_id", how="left", maintain_order="left")

    fio2 = pl.col("fio2").fill_null(t.ROOM_AIR_FIO2)
    oxygenation = pl.when(fio2 >= t.APACHE_II_FIO2_FOR_AA_GRADIENT).then(
        t.APACHE_II_AA_GRADIENT.expr(alveolar_arterial_gradient())
    ).otherwise(t.APACHE_II_PAO2.expr(pl.col("pao2")))
    oxygenation = pl.when(pl.col("pao2").is_not_null()).then(oxygenation)
    uses_gradient = pl.col("fio2") >= t.APACHE_II_FIO2_FOR_AA_GRADIENT
    oxygenation_age = pl.when(uses_gradient).then(age_of("pao2", "fio2", "paco2")).otherwise(age_of("pao2", "fio2"))
    acid_base = pl.coalesce(t.APACHE_II_PH.expr(pl.col("ph")), t.APACHE_II_HCO3.expr(pl.col("hco3")))
    acid_base_age = pl.when(pl.col("ph").is_not_null()).then(age_of("ph")).otherwise(age_of("hco3"))
    creatinine = t.APACHE_II_CREATININE.expr(pl.col("creatinine"))
    creatinine = pl.when(pl.col("acute_renal_failure")).then(creatinine * 2).otherwise(creatinine)
    gcs = (t.APACHE_II_GCS_MAX - pl.col("gcs").round(0)).clip(0, t.APACHE_II_GCS_MAX - 3).cast(pl.Int8)
    physiology = [
        Component("apache_ii_temperature", t.APACHE_II_TEMPERATURE.expr(pl.col("temperature")), age_of("temperature")),
        Component("apache_ii_map", t.APACHE_II_MAP.expr(pl.col("map")), age_of("map")),
        Component("apache_ii_heart_rate", t.APACHE_II_HEART_RATE.expr(pl.col("hr")), age_of("hr")),
        Component("apache_ii_respiratory_rate", t.APACHE_II_RESPIRATORY_RATE.expr(pl.col("resp_rate")),
                  age_of("resp_rate")),
        Component("apache_ii_oxygenation", oxygenation, oxygenation_age),
        Component("apache_ii_acid_base", acid_base, acid_base_age),
        Component("apache_ii_sodium", t.APACHE_II_SODIUM.expr(pl.col("sodium")), age_of("sodium")),
        Component("apache_ii_potassium", t.APACHE_II_POTASSIUM.expr(pl.col("potassium")), age_of("potassium")),
        Component("apache_ii_creatinine", creatinine, age_of("creatinine")),
        Component("apache_ii_hematocrit", t.APACHE_II_HEMATOCRIT.expr(pl.col("hematocrit")), age_of("hematocrit")),
        Component("apache_ii_wbc", t.APACHE_II_WBC.expr(pl.col("wbc")), age_of("wbc")),
        Component("apache_ii_gcs", gcs, age_of("gcs")),
    ]
    age_points = Component("apache_ii_age_points", t.APACHE_II_AGE.expr(pl.col("age")), pl.lit(0))
    scored = score_components(frame, [*physiology, age_points], "apache_ii", keep=["apache_ii_chronic_points"])
    aps = pl.sum_horizontal([pl.col(c).cast(pl.Int16) for c in APACHE_II_COMPONENTS]).cast(pl.Int16)
    worst_aps = pl.sum_horizontal([worst_over_window(c, window_hours).cast(pl.Int16) for c in APACHE_II_COMPONENTS])
    fixed = pl.col("apache_ii_age_points").cast(pl.Int16) + pl.col("apache_ii_chronic_points").cast(pl.Int16)
    return scored.with_columns(
        aps.alias("apache_ii_aps"),
        (pl.col("apache_ii") + pl.col("apache_ii_chronic_points")).cast(pl.Int16).alias("apache_ii"),
        (worst_aps + fixed).cast(pl.Int16).alias("apache_ii_24h"),
    ).select(
        "stay_id", "hour", *APACHE_II_COMPONENTS, "apache_ii_age_points", "apache_ii_chronic_points",
        "apache_ii_aps", "apache_ii", "apache_ii_n_carried", "apache_ii_n_missing", "apache_ii_24h",
    ).collect()
