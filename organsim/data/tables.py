"""Plain wide tables (Parquet or CSV) -> Cohort.

Layout read by :func:`read_table`:

**Hourly file** (``.parquet``, ``.csv`` or ``.csv.gz``), one row per (stay, ICU hour):

==========================  ========================================================================
column                      content
==========================  ========================================================================
``stay_id``                 integer, required in every row
``hour``                    integer ICU hour index (1 = first hour), required in every row
``<variable code>``         any subset of the catalog's hourly variables (``hr``, ``map``, ...), in
                            the catalog's unit; empty / ``NaN`` / null = not measured
``<treatment code>``        optional: any of the catalog's treatments (``iv_fluid_ml``, ...). When at
                            least one is present every row is also a treatments row; empty cells
                            and absent treatment columns take the catalog default (not given).
==========================  ========================================================================

**Stays file** (optional, same formats), one row per stay: ``stay_id`` plus any columns of
stays.parquet (``subject_id``, ``age``, ``sex``, ``weight``, ``unit``, ``hosp_adm_hours``,
``sepsis``, ``sepsis_onset_hour``, ``death``, ``split``, ``source``; booleans as true/false or 1/0).
Without it each ``stay_id`` of the hourly file is one stay with ``subject_id = stay_id`` and, since
no labels are known, ``sepsis`` false (the ingest report says so). Without a ``sepsis`` column it is
derived from ``sepsis_onset_hour``.

Checks (each a :class:`~organsim.utils.DataError` naming file, row and column): an unknown column,
a missing ``stay_id``/``hour`` column or value, a stay id absent from the stays file, a duplicate
(stay_id, hour) row or stay, a non-numeric value, a treatment outside its plausible range, an empty
file or one without rows. Variable and static values outside the plausible range are nulled and
counted in the :class:`~organsim.data.validate.IngestReport`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from organsim.catalog import Catalog, load_catalog
from organsim.data.cohort import Cohort
from organsim.data.schema import table_schema
from organsim.data.validate import (
    IngestReport,
    RowLocator,
    check_integral,
    check_not_null,
    check_unique,
    first_true,
    null_out_of_range,
    parse_numeric,
    plausible_bounds,
)
from organsim.utils.errors import DataError

SOURCE = "table"
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")


def read_frame(file: str | Path) -> pl.DataFrame:
    """Read one Parquet or CSV file as it is (CSV cells as text); empty input is a DataError."""
    file = Path(file)
    name = file.name.lower()
    if not file.is_file():
        raise DataError("no such file", file=file)
    try:
        if name.endswith((".parquet", ".pq")):
            frame = pl.read_parquet(file)
        elif name.endswith((".csv", ".csv.gz")):
            if file.stat().st_size == 0:
                raise DataError("empty file: expected a header line and rows", file=file, row=0, column="stay_id")
            frame = pl.read_csv(file, infer_schema=False, null_values=["", "NaN", "nan", "NA"])
        else:
            raise DataError("expected a .parquet, .csv or .csv.gz file", file=file)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read the file: {exc}", file=file) from exc
    if frame.height == 0:
        raise DataError("the file has a header but no rows", file=file, row=1, column=frame.columns[0] if frame.columns else None)
    return frame


def _parse_booleans(frame: pl.DataFrame, columns: list[str], locator: RowLocator) -> pl.DataFrame:
    """Text columns of true/false, 1/0 or yes/no (any case) -> Boolean; anything else is an error."""
    for column in columns:
        if frame.schema[column] == pl.Boolean:
            continue
        text = pl.col(column).cast(pl.Utf8).str.strip_chars().str.to_lowercase()
        index = first_true(frame.select(text.is_not_null() & ~text.is_in([*TRUE_WORDS, *FALSE_WORDS])).to_series())
        if index is not None:
            raise locator.error(f"{frame[column][index]!r} is not a boolean (true/false or 1/0)", index, column)
        frame = frame.with_columns(pl.when(text.is_in(list(TRUE_WORDS))).then(True)
                                   .when(text.is_in(list(FALSE_WORDS))).then(False).alias(column))
    return frame


def _check_columns(frame: pl.DataFrame, allowed: list[str], file: Path, what: str) -> None:
    for column in frame.columns:
        if column not in allowed:
            raise DataError(f"unknown column {column!r} in the {what}; allowed: {allowed}", file=file, row=0, column=column)


def table_to_frames(
    hourly_in: pl.DataFrame,
    stays_in: pl.DataFrame | None,
    catalog: Catalog,
    locators: tuple[RowLocator, RowLocator | None],
    report: IngestReport,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    """Wide hourly (and optional stays) frames -> canonical ``(stays, hourly, treatments or None)``.

    ``hourly_in`` and ``stays_in`` are as read from their files (columns already checked against
    the layout); ``locators`` map their rows back to those files for errors.
    """
    hourly_locator, stays_locator = locators
    variables = [c for c in catalog.variable_codes if c in hourly_in.columns]
    treatments = [c for c in catalog.treatment_codes if c in hourly_in.columns]
    hourly_in = parse_numeric(hourly_in, ["stay_id", "hour", *variables, *treatments], hourly_locator)
    for column, what in (("stay_id", "stay id"), ("hour", "ICU hour")):
        check_not_null(hourly_in, column, hourly_locator, what)
        check_integral(hourly_in, column, hourly_locator)
    check_unique(hourly_in, ["stay_id", "hour"], hourly_locator)
    for code in treatments:
        low, high = catalog.treatment(code).plausible
        value = pl.col(code).cast(pl.Float32)
        outside = (value < pl.lit(low, dtype=pl.Float32)) | (value > pl.lit(high, dtype=pl.Float32))
        index = first_true(hourly_in.select(outside).to_series())
        if index is not None:
            raise hourly_locator.error(f"treatment value {hourly_in[code][index]} outside its plausible range "
                                       f"[{low}, {high}]", index, code)
    keys = [pl.col("stay_id").cast(pl.Int64), pl.col("hour").cast(pl.Int32)]
    bounds = plausible_bounds(catalog)
    hourly, counts = null_out_of_range(hourly_in.select(*keys, *variables), {c: bounds[c] for c in variables})
    report.add_out_of_range(counts)
    treatment_frame = None
    if treatments:
        treatment_frame = hourly_in.select(*keys, *[pl.col(c).fill_null(catalog.treatment(c).default) for c in treatments])

    if stays_in is None:
        stays = hourly.select("stay_id").unique(maintain_order=True).with_columns(pl.lit(False).alias("sepsis"))
        report.rules.append("no stays file: subject_id = stay_id, sepsis false (labels unknown)")
        return stays, hourly, treatment_frame
    schema = table_schema(catalog, "stays")
    numeric = [c for c in stays_in.columns if schema[c].is_numeric()]
    stays_in = parse_numeric(stays_in, numeric, stays_locator)
    stays_in = _parse_booleans(stays_in, [c for c in stays_in.columns if schema[c] == pl.Boolean], stays_locator)
    check_not_null(stays_in, "stay_id", stays_locator, "stay id")
    for column in stays_in.columns:
        if schema[column].is_integer():
            check_integral(stays_in, column, stays_locator)
    check_unique(stays_in, ["stay_id"], stays_locator)
    stays_in = stays_in.with_columns(pl.col("stay_id").cast(pl.Int64))
    index = first_true(~hourly["stay_id"].is_in(stays_in["stay_id"].implode()))
    if index is not None:
        raise hourly_locator.error(f"stay_id {hourly['stay_id'][index]} is not in the stays file "
                                   f"{stays_locator.files[0]}", index, "stay_id")
    statics = [s.code for s in catalog.statics if s.code in stays_in.columns]
    stays, counts = null_out_of_range(stays_in, {c: bounds[c] for c in statics})
    report.add_out_of_range(counts)
    return stays, hourly, treatment_frame


def read_table(
    src: str | Path,
    stays: str | Path | None = None,
    *,
    catalog: Catalog | None = None,
) -> Cohort:
    """Read a wide hourly table (and optionally a stays table) into a canonical :class:`Cohort`.

    Parameters
    ----------
    src
        The hourly file (layout in the module docstring): .parquet, .csv or .csv.gz.
    stays
        Optional stays file in the same formats.
    catalog
        The variable catalog (default: :func:`organsim.catalog.load_catalog`).

    Returns
    -------
    Cohort
        ``source="table"`` (unless the stays file has a ``source`` column); the
        :class:`IngestReport` in ``cohort.meta["provenance"]["ingest_report"]``.
    """
    catalog = catalog or load_catalog()
    src = Path(src)
    report = IngestReport(source=SOURCE, rules=["values outside the catalog's plausible range are nulled and counted"])
    hourly_in = read_frame(src)
    _check_columns(hourly_in, ["stay_id", "hour", *catalog.variable_codes, *catalog.treatment_codes], src, "hourly file")
    for column in ("stay_id", "hour"):
        if column not in hourly_in.columns:
            raise DataError("required column is missing", file=src, row=0, column=column)
    stays_in, stays_locator = None, None
    if stays is not None:
        stays = Path(stays)
        stays_in = read_frame(stays)
        _check_columns(stays_in, [c for c in table_schema(catalog, "stays") if c != "n_hours"], stays, "stays file")
        if "stay_id" not in stays_in.columns:
            raise DataError("required column is missing", file=stays, row=0, column="stay_id")
        stays_locator = RowLocator.single(str(stays))
    report.files = 1 + (stays is not None)
    stays_frame, hourly, treatments = table_to_frames(
        hourly_in, stays_in, catalog, (RowLocator.single(str(src)), stays_locator), report)
    cohort = Cohort.from_frames(stays_frame, hourly, treatments, source=SOURCE, catalog=catalog)
    counts = cohort.counts()
    report.stays, report.hours, report.septic_stays = counts["stays"], counts["hours"], counts["septic_stays"]
    cohort.meta["provenance"] = {
        "path": str(src.resolve()),
        "stays_path": str(stays.resolve()) if stays is not None else None,
        "format": "wide table",
        "ingest_report": report.to_dict(),
    }
    return cohort
