"""The missing-value rule every score and event in :mod:`organsim.scores` follows.

1. **Carry forward within a window.** The value of a variable at hour ``t`` is its last measurement
   at an hour ``s <= t`` of the same stay with ``t - s <= window``; the window depends on how often the
   variable is charted: :data:`DEFAULT_CARRY_FORWARD_HOURS` gives 4 h for vital signs, 8 h for
   bedside observations (GCS, urine output) and 24 h for laboratory values (catalog ``kind``). A
   caller may pass one window for all variables or a mapping by kind and/or by variable code.
2. **Otherwise normal.** A score component whose inputs have no value within the window scores as
   normal (0 points); an event rule with no value does not fire.
3. **Count what was imputed.** Each score reports, per row, ``<score>_n_carried`` (components whose
   value came from an earlier hour) and ``<score>_n_missing`` (components scored as normal because
   nothing was measured within the window). A variable the frame does not have at all (PhysioNet has
   no GCS, PaO2, urine output, sodium) is simply missing everywhere and counted the same way.

Inside a component, a missing secondary input takes its normal value rather than voiding the
component: FiO2 is room air (0.21) for the P/F ratio, the APACHE II oxygenation and the hypoxaemia
rule, and PaCO2 is 40 mmHg in the APACHE II alveolar gas equation.

Values are read as float64 at six significant digits (``round_sig_figs(6)``): the cohort stores
float32, and 39.1 degC stored as float32 is 39.0999985; rounding makes it compare equal to the
published threshold 39.1 as a clinician would read it.

Treatments are never "unmeasured": an hour without a treatment row gets the catalog default (0, not
given). When no treatments are recorded at all (``treatments=None``, PhysioNet 2019), every treatment
is taken as not given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from organsim.catalog import Catalog, load_catalog
from organsim.utils.errors import DataError

DEFAULT_CARRY_FORWARD_HOURS: dict[str, int] = {"vital": 4, "bedside": 8, "lab": 24}
"""Carry-forward window in hours by catalog variable kind."""

SIGNIFICANT_DIGITS = 6
DERIVED_DECIMALS = 6
"""Derived quantities (ratios, differences, gradients) are rounded to 6 decimals before they meet a
threshold, so 1.2 - 0.9 compares as 0.3, not 0.29999999999999993."""
AGE_SUFFIX = "__age_h"
"""Suffix of the column holding the hours since a carried value was measured (0 = this hour)."""
MEASURED_SUFFIX = "__measured"
"""Suffix of a column holding a variable as measured, before carrying forward."""

CarryForwardHours = int | Mapping[str, int] | None


def carry_forward_windows(
    variables: Sequence[str], carry_forward_hours: CarryForwardHours, catalog: Catalog
) -> dict[str, int]:
    """Window in hours for each of ``variables``.

    Parameters
    ----------
    variables
        Catalog variable codes.
    carry_forward_hours
        ``None`` for :data:`DEFAULT_CARRY_FORWARD_HOURS`; an int for one window for all; a mapping
        whose keys are kinds (``"vital"``, ``"bedside"``, ``"lab"``) and/or variable codes (a code
        overrides its kind; kinds not given keep their default).
    """
    if isinstance(carry_forward_hours, int):
        if carry_forward_hours < 0:
            raise ValueError(f"carry_forward_hours must be >= 0, got {carry_forward_hours}")
        return dict.fromkeys(variables, carry_forward_hours)
    overrides = dict(carry_forward_hours or {})
    known = set(DEFAULT_CARRY_FORWARD_HOURS) | set(catalog.variable_codes)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"carry_forward_hours keys {unknown} are neither a variable kind "
                         f"{sorted(DEFAULT_CARRY_FORWARD_HOURS)} nor a catalog variable code")
    negative = sorted(k for k, v in overrides.items() if v < 0)
    if negative:
        raise ValueError(f"carry_forward_hours must be >= 0; got negative windows for {negative}")
    by_kind = {**DEFAULT_CARRY_FORWARD_HOURS, **{k: v for k, v in overrides.items() if k in DEFAULT_CARRY_FORWARD_HOURS}}
    return {code: overrides.get(code, by_kind[catalog.variable(code).kind]) for code in variables}


def check_keys(frame: pl.DataFrame, name: str) -> None:
    """Raise :class:`DataError` unless ``frame`` has non-null, unique integer (stay_id, hour) keys."""
    for column in ("stay_id", "hour"):
        if column not in frame.columns:
            raise DataError(f"the {name} frame needs a {column!r} column; it has {frame.columns}", file=f"<{name}>", column=column)
        if not frame.schema[column].is_integer():
            raise DataError(f"{column!r} must be an integer column, got {frame.schema[column]}", file=f"<{name}>", column=column)
        nulls = frame[column].is_null()
        if nulls.any():
            raise DataError("missing key value", file=f"<{name}>", row=int(nulls.arg_true()[0]) + 1, column=column)
    repeated = ~frame.select(pl.struct("stay_id", "hour").is_first_distinct()).to_series()
    if repeated.any():
        row = int(repeated.arg_true()[0]) + 1
        stay, hour = frame["stay_id"][row - 1], frame["hour"][row - 1]
        raise DataError(f"duplicate (stay_id, hour) = ({stay}, {hour})", file=f"<{name}>", row=row, column="hour")


def carry_forward(
    hourly: pl.DataFrame,
    variables: Sequence[str],
    *,
    carry_forward_hours: CarryForwardHours = None,
    catalog: Catalog | None = None,
) -> pl.DataFrame:
    """Apply rule 1 of the module docstring to ``variables`` of ``hourly``.

    Parameters
    ----------
    hourly
        ``(stay_id, hour, <variables>...)``, one row per stay-hour, values in catalog units, null for
        not measured. Variables absent from the frame are treated as never measured.
    variables
        Catalog codes to carry forward.
    carry_forward_hours
        See :func:`carry_forward_windows`.

    Returns
    -------
    pl.DataFrame
        ``(stay_id, hour)`` sorted, then for each variable ``<code>`` (float64, null when nothing was
        measured within the window) and ``<code>__age_h`` (int, hours since that measurement: 0 when
        measured this hour, null when missing).
    """
    return carry_forward_lazy(hourly, variables, carry_forward_hours=carry_forward_hours, catalog=catalog).collect()


def carry_forward_lazy(
    hourly: pl.DataFrame,
    variables: Sequence[str],
    *,
    carry_forward_hours: CarryForwardHours = None,
    catalog: Catalog | None = None,
    keep_measured: Sequence[str] = (),
) -> pl.LazyFrame:
    """:func:`carry_forward` as a lazy frame (the scores build on it and collect once), with
    ``<code>__measured`` columns (the values as measured, not carried) for ``keep_measured``."""
    catalog = catalog or load_catalog()
    check_keys(hourly, "hourly")
    windows = carry_forward_windows(variables, carry_forward_hours, catalog)

    def readable(code: str) -> pl.Expr:
        if code in hourly.columns:
            return pl.col(code).cast(pl.Float64).round_sig_figs(SIGNIFICANT_DIGITS)
        return pl.lit(None, dtype=pl.Float64)

    frame = hourly.lazy().select(
        "stay_id", "hour",
        *[readable(code).alias(code) for code in variables],
        *[readable(code).alias(code + MEASURED_SUFFIX) for code in keep_measured],
    ).sort("stay_id", "hour")
    hour = pl.col("hour").cast(pl.Int64)
    out = []
    for code in variables:
        measured_at = pl.when(pl.col(code).is_not_null()).then(hour).forward_fill().over("stay_id")
        age = hour - measured_at
        within = age <= windows[code]
        out += [
            pl.when(within).then(pl.col(code).forward_fill().over("stay_id")).alias(code),
            pl.when(within).then(age).alias(code + AGE_SUFFIX),
        ]
    return frame.with_columns(out)


def attach_treatments(
    frame: pl.LazyFrame,
    treatments: pl.DataFrame | None,
    codes: Sequence[str],
    *,
    catalog: Catalog | None = None,
) -> pl.LazyFrame:
    """Join treatment columns ``codes`` onto ``frame`` by (stay_id, hour).

    Hours without a treatment row, treatment columns the frame lacks, and ``treatments=None`` (not
    recorded) all give the catalog default (0: not given). Values are read at six significant
    digits like the variables.
    """
    catalog = catalog or load_catalog()
    defaults = {code: float(catalog.treatment(code).default) for code in codes}
    if treatments is None:
        return frame.with_columns([pl.lit(defaults[c], dtype=pl.Float64).alias(c) for c in codes])
    check_keys(treatments, "treatments")
    present = [c for c in codes if c in treatments.columns]
    keys = frame.collect_schema()
    given = treatments.lazy().select(
        pl.col("stay_id").cast(keys["stay_id"]),
        pl.col("hour").cast(keys["hour"]),
        *[pl.col(c).cast(pl.Float64).round_sig_figs(SIGNIFICANT_DIGITS) for c in present],
    )
    joined = frame.join(given, on=["stay_id", "hour"], how="left", maintain_order="left")
    return joined.with_columns([
        pl.col(c).fill_null(defaults[c]) if c in present else pl.lit(defaults[c], dtype=pl.Float64).alias(c)
        for c in codes
    ])


def age_of(*codes: str) -> pl.Expr:
    """Largest age (hours since measurement) among the given carried variables; null if all missing."""
    return pl.max_horizontal([pl.col(c + AGE_SUFFIX) for c in codes])


def age_of_worse(points_a: pl.Expr, age_a: pl.Expr, points_b: pl.Expr, age_b: pl.Expr) -> pl.Expr:
    """Age of the alternative that gives a two-way component its points (the higher; ``a`` on ties)."""
    return pl.when(points_b.is_null() | (points_a >= points_b)).then(age_a).otherwise(age_b)


@dataclass(frozen=True)
class Component:
    """One score component before the missing-value rule.

    Attributes
    ----------
    name
        Output column, e.g. ``"sofa_liver"``.
    points
        Int points expression, null when the component's inputs are missing.
    age
        Hours since the oldest input used was measured (0 = all measured this hour).
    """

    name: str
    points: pl.Expr
    age: pl.Expr


def score_components(
    frame: pl.LazyFrame, components: Sequence[Component], score: str, *, keep: Sequence[str] = ()
) -> pl.LazyFrame:
    """Component points with rule 2 applied, their total, and the two counts of rule 3.

    Parameters
    ----------
    frame
        Holds the inputs the components read, with ``stay_id`` and ``hour``.
    components
        The score's components.
    score
        Name of the total column and prefix of the counts.
    keep
        Further columns of ``frame`` to keep (after ``stay_id``, ``hour``).

    Returns
    -------
    pl.LazyFrame
        ``stay_id``, ``hour``, ``keep``, each ``<component>`` (Int8, missing -> 0), ``<score>``
        (Int16 total), ``<score>_n_carried`` and ``<score>_n_missing`` (Int8).
    """
    names = [c.name for c in components]
    # the points are evaluated once, as columns, and the total and counts read those columns
    staged = frame.select(
        "stay_id", "hour", *keep,
        *[c.points.alias(c.name) for c in components],
        *[c.age.alias(c.name + AGE_SUFFIX) for c in components],
    )
    filled = [pl.col(n).fill_null(0).cast(pl.Int8) for n in names]
    missing = pl.sum_horizontal([pl.col(n).is_null().cast(pl.Int8) for n in names])
    carried = pl.sum_horizontal([
        (pl.col(n).is_not_null() & (pl.col(n + AGE_SUFFIX) > 0)).fill_null(False).cast(pl.Int8) for n in names
    ])
    return staged.select(
        "stay_id", "hour", *keep,
        *filled,
        pl.sum_horizontal([f.cast(pl.Int16) for f in filled]).cast(pl.Int16).alias(score),
        carried.cast(pl.Int8).alias(f"{score}_n_carried"),
        missing.cast(pl.Int8).alias(f"{score}_n_missing"),
    )


def with_window(carry_forward_hours: CarryForwardHours, code: str, hours: int) -> dict[str, int]:
    """``carry_forward_hours`` as a mapping, with the window of ``code`` set to ``hours``."""
    if isinstance(carry_forward_hours, int):
        return {**dict.fromkeys(DEFAULT_CARRY_FORWARD_HOURS, carry_forward_hours), code: hours}
    return {**(carry_forward_hours or {}), code: hours}


def worst_over_window(column: str, window_hours: int) -> pl.Expr:
    """Largest value of ``column`` over the trailing window ``(hour - window_hours, hour]`` of each stay.

    The frame must be sorted by (stay_id, hour).
    """
    if window_hours < 1:
        raise ValueError(f"window_hours must be >= 1, got {window_hours}")
    return pl.col(column).rolling_max_by("hour", window_size=f"{window_hours}i").over("stay_id")
