"""SOFA (Sequential Organ Failure Assessment; Vincent 1996), hour by hour and worst over 24 hours."""

from __future__ import annotations

import polars as pl

from organsim.catalog import Catalog, load_catalog
from organsim.scores import tables as t
from organsim.scores.imputation import (
    DERIVED_DECIMALS,
    MEASURED_SUFFIX,
    CarryForwardHours,
    Component,
    age_of,
    age_of_worse,
    attach_treatments,
    carry_forward_lazy,
    score_components,
    with_window,
    worst_over_window,
)

SOFA_VARIABLES = ("pao2", "fio2", "spo2", "platelets", "bilirubin_total", "map", "gcs", "creatinine", "urine_output")
SOFA_TREATMENTS = ("norepinephrine", "mechanical_ventilation")
SOFA_COMPONENTS = (
    "sofa_respiration",
    "sofa_coagulation",
    "sofa_liver",
    "sofa_cardiovascular",
    "sofa_cns",
    "sofa_renal",
)
"""The six organ subscores, in Vincent 1996's order."""
HOURS_PER_DAY = 24


def oxygenation_ratio(*, spo2_surrogate: bool) -> pl.Expr:
    """PaO2/FiO2 in mmHg, or (optionally) its SpO2/FiO2 estimate, from carried-forward inputs.

    FiO2 (a fraction) missing is taken as room air, 0.21. With ``spo2_surrogate`` and no PaO2, the
    ratio is estimated from Rice 2007's S/F = 64 + 0.84 x P/F when SpO2 <= 97 %.
    """
    fio2 = pl.col("fio2").fill_null(t.ROOM_AIR_FIO2)
    measured = (pl.col("pao2") / fio2).round(DERIVED_DECIMALS)
    if not spo2_surrogate:
        return measured
    estimated = pl.when(pl.col("spo2") <= t.RICE_MAX_SPO2).then(
        ((pl.col("spo2") / fio2 - t.RICE_INTERCEPT) / t.RICE_SLOPE).round(DERIVED_DECIMALS)
    )
    return pl.coalesce(measured, estimated)


def sofa_stratum(total: pl.Expr) -> pl.Expr:
    """The :data:`~organsim.scores.tables.SOFA_STRATA` label ("0-5", "6-10", "11+") of a SOFA total."""
    chain = pl.when(total.is_null()).then(None)
    for label, low, high in t.SOFA_STRATA:
        condition = total >= low if high is None else total.is_between(low, high)
        chain = chain.when(condition).then(pl.lit(label))
    return chain.otherwise(None)


def sofa(
    hourly: pl.DataFrame,
    treatments: pl.DataFrame | None = None,
    *,
    carry_forward_hours: CarryForwardHours = None,
    window_hours: int = 24,
    spo2_surrogate: bool = True,
    catalog: Catalog | None = None,
) -> pl.DataFrame:
    """Hourly SOFA with its six subscores, and the worst-over-``window_hours`` total.

    Subscores (Vincent 1996, tables in :mod:`organsim.scores.tables`):

    - respiration: PaO2/FiO2 (mmHg); 3 or 4 points only while mechanically ventilated
      (``treatments.mechanical_ventilation``), otherwise capped at 2. FiO2 missing is room air (0.21).
      Without PaO2 and with ``spo2_surrogate`` (default), P/F is estimated from SpO2/FiO2 (Rice
      2007, SpO2 <= 97 % only); PhysioNet 2019 has no PaO2, so its respiration subscore comes from
      this surrogate.
    - coagulation: platelets (10^3/uL). liver: total bilirubin (mg/dL). CNS: GCS.
    - cardiovascular: MAP < 70 mmHg gives 1; norepinephrine equivalents (ug/kg/min) > 0 give 3,
      > 0.1 give 4. The published 2 (dopamine <= 5, dobutamine) is not reachable from norepinephrine
      equivalents.
    - renal: the worse of creatinine (mg/dL) and urine output per day (mL/day), the latter estimated
      as the mean measured hourly urine output (mL/h) over the window times 24.

    Missing values (:mod:`organsim.scores.imputation`): each input is carried forward within its
    window (vitals 4 h, GCS 8 h, labs 24 h by default); urine output is averaged over the trailing
    ``window_hours``. A subscore without a value scores 0 and is counted in ``sofa_n_missing``; one
    that used a carried value is counted in ``sofa_n_carried``. When treatments are not recorded
    (``treatments=None``), no vasopressor and no ventilation are assumed: cardiovascular is at most
    1, respiration at most 2.

    Parameters
    ----------
    hourly
        ``(stay_id, hour, <catalog variables>...)``: a cohort's hourly table or a simulated
        trajectory in the same layout; absent variable columns are never measured.
    treatments
        ``(stay_id, hour, norepinephrine, mechanical_ventilation, ...)`` or None (not recorded).
    carry_forward_hours
        Carry-forward windows (see :func:`~organsim.scores.imputation.carry_forward_windows`).
    window_hours
        Window (hours, trailing, current hour included) of ``sofa_24h``.
    spo2_surrogate
        Estimate P/F from SpO2/FiO2 when PaO2 is missing.

    Returns
    -------
    pl.DataFrame
        One row per (stay_id, hour), sorted: the six subscores (Int8, 0-4), ``sofa`` (Int16, 0-24,
        this hour), ``sofa_n_carried``, ``sofa_n_missing`` (Int8, 0-6), ``sofa_24h`` (Int16: the sum
        of each subscore's worst value over the trailing window) and ``sofa_stratum`` (label of
        ``sofa_24h``).
    """
    if window_hours < 1:
        raise ValueError(f"window_hours must be >= 1, got {window_hours}")
    catalog = catalog or load_catalog()
    urine_window = with_window(carry_forward_hours, "urine_output", window_hours - 1)
    frame = carry_forward_lazy(hourly, SOFA_VARIABLES, carry_forward_hours=urine_window, catalog=catalog,
                               keep_measured=("urine_output",))
    frame = attach_treatments(frame, treatments, SOFA_TREATMENTS, catalog=catalog)
    urine_mean = pl.col("urine_output" + MEASURED_SUFFIX).rolling_mean_by("hour", window_size=f"{window_hours}i")
    frame = frame.with_columns(
        (urine_mean.over("stay_id") * HOURS_PER_DAY).round(DERIVED_DECIMALS).alias("urine_ml_per_day")
    )

    ventilated = pl.col("mechanical_ventilation") > 0
    respiration = t.SOFA_RESPIRATION.expr(oxygenation_ratio(spo2_surrogate=spo2_surrogate))
    cap = t.SOFA_RESPIRATION_WITHOUT_SUPPORT_MAX
    respiration = pl.when(~ventilated & (respiration > cap)).then(pl.lit(cap, dtype=pl.Int8)).otherwise(respiration)
    respiration_age = pl.when(pl.col("pao2").is_not_null()).then(age_of("pao2", "fio2")).otherwise(age_of("spo2", "fio2"))
    vasopressor = pl.col("norepinephrine") > 0
    cardiovascular = pl.max_horizontal(
        t.SOFA_CARDIOVASCULAR_MAP.expr(pl.col("map")),
        pl.when(vasopressor).then(t.SOFA_CARDIOVASCULAR_NOREPINEPHRINE.expr(pl.col("norepinephrine"))),
    )
    creatinine = t.SOFA_RENAL_CREATININE.expr(pl.col("creatinine"))
    urine = t.SOFA_RENAL_URINE.expr(pl.col("urine_ml_per_day"))
    components = [
        Component("sofa_respiration", respiration, respiration_age),
        Component("sofa_coagulation", t.SOFA_COAGULATION.expr(pl.col("platelets")), age_of("platelets")),
        Component("sofa_liver", t.SOFA_LIVER.expr(pl.col("bilirubin_total")), age_of("bilirubin_total")),
        Component("sofa_cardiovascular", cardiovascular,
                  pl.when(vasopressor).then(pl.lit(0, dtype=pl.Int64)).otherwise(age_of("map"))),
        Component("sofa_cns", t.SOFA_CNS.expr(pl.col("gcs")), age_of("gcs")),
        Component("sofa_renal", pl.max_horizontal(creatinine, urine),
                  age_of_worse(creatinine, age_of("creatinine"), urine, age_of("urine_output"))),
    ]
    scored = score_components(frame, components, "sofa")
    worst = pl.sum_horizontal([worst_over_window(c, window_hours).cast(pl.Int16) for c in SOFA_COMPONENTS])
    return scored.with_columns(worst.cast(pl.Int16).alias("sofa_24h")).with_columns(
        sofa_stratum(pl.col("sofa_24h")).alias("sofa_stratum")
    ).collect()
