"""Critical events (hypotension, hyperlactataemia, hypoxaemia, AKI, ...) as episodes with onset,
offset and peak. The rules and thresholds are data: ``data_schemas/events.yaml`` through the catalog.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from organsim.catalog import Catalog, EventDefinition, load_catalog
from organsim.scores.imputation import (
    AGE_SUFFIX,
    DERIVED_DECIMALS,
    MEASURED_SUFFIX,
    CarryForwardHours,
    carry_forward_lazy,
    check_keys,
)

EVENT_SCHEMA: dict[str, pl.DataType] = {
    "stay_id": pl.Int64,
    "event": pl.Utf8,
    "variable": pl.Utf8,
    "onset_hour": pl.Int32,
    "offset_hour": pl.Int32,
    "peak_hour": pl.Int32,
    "trigger_value": pl.Float64,
    "peak_value": pl.Float64,
    "severity": pl.Utf8,
    "duration_hours": pl.Int32,
    "n_measured_hours": pl.Int32,
}
"""Columns of an events frame (one row per episode)."""
SEVERE = "severe"
MODERATE = "moderate"


def _compare(value: pl.Expr, op: str, threshold: float) -> pl.Expr:
    return (value < threshold if op == "<" else value > threshold).fill_null(False)


def _rule_hours(frame: pl.LazyFrame, event: EventDefinition, catalog: Catalog) -> pl.LazyFrame:
    """Per stay-hour: ``on``, the quantity that fired (``variable``, ``value``), whether it was
    measured this hour, and whether the severe grade holds."""
    code = event.variable
    measured_now = pl.col(code + AGE_SUFFIX) == 0
    if event.kdigo is not None:
        rule = event.kdigo
        raw = pl.col(code + MEASURED_SUFFIX)
        lowest_short = raw.rolling_min_by("hour", window_size=f"{rule.absolute_window_hours + 1}i").over("stay_id")
        lowest_long = raw.rolling_min_by("hour", window_size=f"{rule.relative_window_hours + 1}i").over("stay_id")
        rise = (pl.col(code) - lowest_short).round(DERIVED_DECIMALS)
        ratio = (pl.col(code) / lowest_long).round(DERIVED_DECIMALS)
        on = (rise >= rule.absolute_rise_mg_dl).fill_null(False) | (ratio >= rule.relative_rise).fill_null(False)
        return frame.select(
            "stay_id", "hour", on.alias("on"), pl.lit(code).alias("variable"), pl.col(code).alias("value"),
            measured_now.fill_null(False).alias("measured"), pl.lit(False).alias("severe"),
        )
    primary_on = _compare(pl.col(code), event.op, event.threshold)
    severe = (_compare(pl.col(code), event.op, event.severe) if event.severe is not None else pl.lit(False))
    if event.or_ratio is None:
        return frame.select(
            "stay_id", "hour", primary_on.alias("on"), pl.lit(code).alias("variable"), pl.col(code).alias("value"),
            measured_now.fill_null(False).alias("measured"), severe.alias("severe"),
        )
    ratio_rule = event.or_ratio
    normal_low, normal_high = catalog.variable(ratio_rule.denominator).normal
    denominator = pl.col(ratio_rule.denominator).fill_null((normal_low + normal_high) / 2)
    ratio = (pl.col(ratio_rule.numerator) / denominator).round(DERIVED_DECIMALS)
    ratio_on = _compare(ratio, ratio_rule.op, ratio_rule.threshold)
    ratio_name = f"{ratio_rule.numerator}/{ratio_rule.denominator}"
    ratio_measured = pl.col(ratio_rule.numerator + AGE_SUFFIX) == 0
    return frame.select(
        "stay_id", "hour",
        (primary_on | ratio_on).alias("on"),
        pl.when(primary_on).then(pl.lit(code)).otherwise(pl.lit(ratio_name)).alias("variable"),
        pl.when(primary_on).then(pl.col(code)).otherwise(ratio).alias("value"),
        pl.when(primary_on).then(measured_now).otherwise(ratio_measured).fill_null(False).alias("measured"),
        severe.alias("severe"),
    )


def _episodes(hours: pl.LazyFrame, event: EventDefinition, merge_gap_hours: int) -> pl.LazyFrame:
    """Group the ``on`` hours of one event into episodes (gaps of <= ``merge_gap_hours`` bridged)."""
    on = hours.filter(pl.col("on"))
    gap = pl.col("hour") - pl.col("hour").shift(1).over("stay_id")
    on = on.with_columns(
        (gap.is_null() | (gap > merge_gap_hours + 1)).cast(pl.Int32).cum_sum().over("stay_id").alias("episode")
    )
    lower_is_worse = event.kdigo is None and event.op == "<"
    # the peak is taken over the hours where the quantity that triggered the onset fired
    on = on.with_columns(
        (pl.col("variable") == pl.col("variable").first().over("stay_id", "episode")).alias("of_trigger")
    )
    trigger_values = pl.col("value").filter(pl.col("of_trigger"))
    peak = trigger_values.min() if lower_is_worse else trigger_values.max()
    severity = (
        pl.when(pl.col("severe").any()).then(pl.lit(SEVERE)).otherwise(pl.lit(MODERATE))
        if event.severe is not None else pl.lit(None, dtype=pl.Utf8)
    )
    grouped = on.group_by("stay_id", "episode", maintain_order=True).agg(
        pl.col("variable").first(),
        pl.col("hour").first().alias("onset_hour"),
        pl.col("hour").filter(pl.col("measured")).last().alias("last_measured_hour"),
        pl.col("hour").filter(pl.col("of_trigger") & (pl.col("value") == peak)).first().alias("peak_hour"),
        pl.col("value").first().alias("trigger_value"),
        peak.alias("peak_value"),
        severity.alias("severity"),
        pl.col("measured").sum().alias("n_measured_hours"),
    ).with_columns(pl.coalesce("last_measured_hour", "onset_hour").alias("offset_hour"))
    return grouped.select(
        pl.col("stay_id").cast(pl.Int64),
        pl.lit(event.code).alias("event"),
        "variable",
        pl.col("onset_hour").cast(pl.Int32),
        pl.col("offset_hour").cast(pl.Int32),
        pl.col("peak_hour").cast(pl.Int32),
        pl.col("trigger_value").cast(pl.Float64),
        pl.col("peak_value").cast(pl.Float64),
        "severity",
        (pl.col("offset_hour") - pl.col("onset_hour") + 1).cast(pl.Int32).alias("duration_hours"),
        pl.col("n_measured_hours").cast(pl.Int32),
    )


def critical_events(
    hourly: pl.DataFrame,
    *,
    events: Sequence[str] | None = None,
    carry_forward_hours: CarryForwardHours = None,
    merge_gap_hours: int | None = None,
    catalog: Catalog | None = None,
) -> pl.DataFrame:
    """Critical-event episodes of every stay, from the catalog's event rules.

    An event is "on" in an hour when its rule holds for the hour's value: ``value <op> threshold``
    (hypotension, hyperlactataemia, thrombocytopenia, hyperbilirubinaemia, acidaemia), or, for
    hypoxaemia, SpO2 < 90 % or PaO2/FiO2 < 300; for acute kidney injury the KDIGO creatinine rule:
    a rise of >= 0.3 mg/dL over the lowest value measured in the previous 48 h, or >= 1.5 x the lowest
    in the previous 7 days. On-hours separated by at most ``merge_gap_hours`` (catalog default 1)
    off-hours form one episode.

    Missing values (:mod:`organsim.scores.imputation`): an hour's value is the last measurement
    carried forward within its window (vitals 4 h, labs 24 h by default), so an episode bridges
    unmeasured hours between abnormal measurements; without a value the rule does not fire. A missing
    ratio denominator takes its catalog normal value (FiO2: room air, 0.21). The KDIGO baselines use
    measured values only. ``n_measured_hours`` counts the episode's hours whose value was measured in
    that hour (the rest were carried).

    Parameters
    ----------
    hourly
        ``(stay_id, hour, <catalog variables>...)``: a cohort's hourly table or a simulated
        trajectory in the same layout.
    events
        Event codes to detect (default: all of the catalog's).
    carry_forward_hours
        Carry-forward windows (see :func:`~organsim.scores.imputation.carry_forward_windows`).
    merge_gap_hours
        Largest run of off-hours bridged inside one episode (default: the catalog's).

    Returns
    -------
    pl.DataFrame
        :data:`EVENT_SCHEMA`, one row per episode, sorted by (stay_id, onset_hour, event):
        ``variable`` is the quantity that triggered the onset (``"pao2/fio2"`` when only the ratio
        fired), ``onset_hour`` the first on-hour, ``offset_hour`` the last on-hour with a measured
        value, ``peak_hour``/``peak_value`` the most extreme value of the trigger quantity (lowest
        for "<" rules, highest otherwise), ``trigger_value`` the value at onset, ``severity``
        ``"severe"`` when the catalog's severe grade was reached during the episode, ``"moderate"``
        otherwise, null for events without a severe grade.
    """
    catalog = catalog or load_catalog()
    merge_gap = catalog.event_merge_gap_hours if merge_gap_hours is None else merge_gap_hours
    if merge_gap < 0:
        raise ValueError(f"merge_gap_hours must be >= 0, got {merge_gap}")
    definitions = list(catalog.events) if events is None else [catalog.event(code) for code in events]
    check_keys(hourly, "hourly")
    variables = sorted({
        name for e in definitions
        for name in (e.variable, *((e.or_ratio.numerator, e.or_ratio.denominator) if e.or_ratio else ()))
    })
    kdigo_codes = sorted({e.variable for e in definitions if e.kdigo is not None})
    # collected once, then shared by the lazy per-event plans
    frame = carry_forward_lazy(hourly, variables, carry_forward_hours=carry_forward_hours, catalog=catalog,
                               keep_measured=kdigo_codes).collect().lazy()
    parts = [_episodes(_rule_hours(frame, e, catalog), e, merge_gap) for e in definitions]
    found = pl.concat(parts).collect() if parts else pl.DataFrame(schema=EVENT_SCHEMA)
    return found.select([pl.col(c).cast(d) for c, d in EVENT_SCHEMA.items()]).sort("stay_id", "onset_hour", "event")
