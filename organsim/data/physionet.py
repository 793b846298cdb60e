"""PhysioNet/CinC Challenge 2019 loader: ``p<id>.psv`` files (a directory, .tar.gz or .zip) -> Cohort.

Input: one ``|``-separated file per ICU stay, one row per ICU hour, ``NaN`` for not measured, with
the challenge's 40 variables plus ``ICULOS`` and ``SepsisLabel`` (any subset of the variable
columns is accepted; ``ICULOS`` and ``SepsisLabel`` are required).

Mapping (columns through ``catalog.physionet_columns``):

- ``stay_id`` and ``subject_id`` come from the file name: ``p100001.psv`` -> 100001.
- ``hour`` is ``ICULOS`` (1 = first ICU hour; some stays start later, e.g. at 4).
- Statics come from the stay's rows (they must not change within a stay): ``Age`` -> age,
  ``Gender`` -> sex, ``HospAdmTime`` -> hosp_adm_hours, ``Unit1``/``Unit2`` -> unit ``"MICU"`` when
  Unit1 = 1, else ``"SICU"`` when Unit2 = 1, else ``"other"`` when either is 0, else null (unknown).
- Sepsis: the challenge labels an hour 1 from 6 hours before Sepsis-3 onset on, so
  ``sepsis_onset_hour`` = first hour with ``SepsisLabel`` = 1, plus 6, and ``sepsis`` = any 1. The
  per-hour label is not stored twice: :meth:`Cohort.sepsis_labels` recomputes it as
  ``hour >= sepsis_onset_hour - 6``, and this loader checks that the recomputation equals every
  file's ``SepsisLabel`` exactly (a file where it would not is an error). Stays labelled 1 from
  their first row have an onset at most 6 hours after that row; the loader uses exactly 6 (the
  latest onset the labels allow) and counts them as ``onset_left_censored``.

Data rules (recorded in the :class:`~organsim.data.validate.IngestReport`):

- Units: each value is multiplied by the catalog's ``physionet_scale``. ``FiO2`` between 21 and 100
  is a percentage and is divided by 100 (counted as ``fio2_percent_to_fraction``).
- Plausible ranges: values outside the catalog's plausible range are nulled and counted per
  variable. This is how PhysioNet ``Calcium`` is handled: about one value in five lies between 1.0
  and 1.9, i.e. ionised calcium in mmol/L mixed into a total-calcium column in mg/dL. Ionised
  calcium cannot be converted to total calcium without albumin, so those values fall below the
  plausible range of total calcium (2 mg/dL) and are nulled and counted under ``calcium``. The
  same rule nulls FiO2 values that are negative, below 0.21, or between 1 and 21.
- Errors (each a :class:`~organsim.utils.DataError` naming file, row and column): an unknown or
  missing required column, an empty file, a row with the wrong number of fields, a non-numeric
  cell, a missing or non-integer ``ICULOS``, a repeated ``ICULOS`` in one file, a ``SepsisLabel``
  other than 0/1 or not of the challenge's 0...0 1...1 form, a static that changes within a stay,
  a file name without a stay id, and a stay id read twice.

Speed: members are read as bytes (streaming through the archive), their bodies concatenated and
parsed by one multi-threaded ``polars.read_csv`` per batch of files; per-file checks run on the
concatenated frame and are mapped back to file and row by a
:class:`~organsim.data.validate.RowLocator`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import polars as pl

from organsim.catalog import Catalog, load_catalog
from organsim.data.archive import ProgressCallback, iter_files
from organsim.data.cohort import SEPSIS_LABEL_LEAD_HOURS, Cohort, sepsis_label_expr
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

SOURCE = "physionet2019"
HOUR_COLUMN = "ICULOS"
LABEL_COLUMN = "SepsisLabel"
UNIT_COLUMNS = ("Unit1", "Unit2")
REQUIRED_COLUMNS = (HOUR_COLUMN, LABEL_COLUMN)
FIO2_PERCENT_RANGE = (21.0, 100.0)
STAY_FILE_NAME = re.compile(r"^p(\d+)\.psv$")
BATCH_FILES = 10_000
"""Files parsed per polars read: bounds memory on the full 40,336-stay challenge set."""


def known_columns(catalog: Catalog) -> tuple[str, ...]:
    """Every column a challenge file may hold: catalog-mapped ones plus unit, hour and label."""
    return (*catalog.physionet_columns, *UNIT_COLUMNS, *REQUIRED_COLUMNS)


# ------------------------------------------------------------------------------------------ parsing
def stay_id_from_name(name: str) -> int:
    """``.../p100001.psv`` -> 100001; any other file name is a :class:`DataError`."""
    match = STAY_FILE_NAME.match(os.path.basename(name))
    if match is None:
        raise DataError("file name must be p<digits>.psv: the stay id comes from it", file=name)
    return int(match.group(1))


def _header_columns(name: str, head: bytes, known: set[str]) -> tuple[str, ...]:
    """Check a header line against the challenge's columns; return its column names."""
    columns = tuple(c.strip() for c in head.decode("utf-8", errors="replace").split("|"))
    for column in columns:
        if column not in known:
            raise DataError(f"unknown column {column!r}; a PhysioNet 2019 file has {sorted(known)}",
                            file=name, row=0, column=column)
    repeated = [c for c in columns if columns.count(c) > 1]
    if repeated:
        raise DataError("column appears twice in the header", file=name, row=0, column=repeated[0])
    for column in REQUIRED_COLUMNS:
        if column not in columns:
            raise DataError("required column is missing from the header", file=name, row=0, column=column)
    return columns


def _split_file(name: str, data: bytes, headers: dict[bytes, tuple[str, ...]], known: set[str]
                ) -> tuple[tuple[str, ...], bytes, int]:
    """Check one file's header and shape; return (header columns, body ending in newline, rows).

    ``headers`` caches the checked header lines (the challenge's 40,336 files share one).
    """
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    if not data.strip():
        raise DataError("empty file: expected a header line and at least one row", file=name, row=0,
                        column=HOUR_COLUMN)
    head, _, body = data.partition(b"\n")
    columns = headers.get(head)
    if columns is None:
        columns = headers[head] = _header_columns(name, head, known)
    body = body.rstrip(b"\n")
    if not body.strip():
        raise DataError("no data rows after the header", file=name, row=1, column=HOUR_COLUMN)
    lines = body.count(b"\n") + 1
    if body.count(b"|") != lines * (len(columns) - 1) or b"\n\n" in body:
        for row, line in enumerate(body.split(b"\n"), start=1):
            fields = line.count(b"|") + 1 if line else 0
            if fields != len(columns):
                column = columns[min(fields, len(columns) - 1)]
                raise DataError(f"row has {fields} fields, the header {len(columns)}", file=name, row=row, column=column)
    return columns, body + b"\n", lines


def parse_psv(files: list[tuple[str, int, bytes]], catalog: Catalog) -> tuple[pl.DataFrame, RowLocator]:
    """Parse challenge files ``(name, stay_id, content)`` into one raw frame: ``stay_id`` + columns as Float64.

    Files with the same header are parsed together by one ``polars.read_csv``; columns a file lacks
    are null. Rows keep file order within each header group, and the returned locator maps every
    row back to its file and row.
    """
    known = set(known_columns(catalog))
    headers: dict[bytes, tuple[str, ...]] = {}
    groups: dict[tuple[str, ...], list[tuple[str, int, bytes, int]]] = {}
    for name, stay_id, data in files:
        columns, body, lines = _split_file(name, data, headers, known)
        groups.setdefault(columns, []).append((name, stay_id, body, lines))
    frames, locator, offset = [], RowLocator.from_counts([], []), 0
    for columns, members in groups.items():
        names = [m[0] for m in members]
        counts = [m[3] for m in members]
        group_locator = RowLocator.from_counts(names, counts)
        buffer = b"".join(m[2] for m in members)
        read = dict(source=buffer, separator="|", has_header=False, new_columns=list(columns), null_values="NaN",
                    quote_char=None)
        try:
            frame = pl.read_csv(**read, schema=dict.fromkeys(columns, pl.Float64))
            frame = frame.with_columns(pl.all().fill_nan(None))
        except pl.exceptions.ComputeError:  # a non-numeric cell: re-read as text to name it
            frame = parse_numeric(pl.read_csv(**read, schema=dict.fromkeys(columns, pl.Utf8)), list(columns),
                                  group_locator)
        ids = np.repeat(np.array([m[1] for m in members], dtype=np.int64), counts)
        frames.append(frame.with_columns(pl.Series("stay_id", ids)))
        locator = locator.concat(group_locator, offset)
        offset += frame.height
    return pl.concat(frames, how="diagonal_relaxed"), locator


# ------------------------------------------------------------------------------------------ mapping
def _check_constant(raw: pl.DataFrame, column: str, locator: RowLocator) -> None:
    first = raw.select(pl.col(column).first().over("stay_id")).to_series()
    index = first_true(raw[column].ne_missing(first))
    if index is not None:
        raise locator.error(f"a static value changes within the stay: {raw[column][index]} here, "
                            f"{first[index]} in the stay's first row", index, column)


def physionet_to_frames(
    raw: pl.DataFrame, catalog: Catalog, locator: RowLocator, report: IngestReport
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Raw challenge rows -> canonical ``(stays, hourly)`` frames (see the module docstring).

    Parameters
    ----------
    raw
        ``stay_id`` + challenge columns as Float64, in file order (from :func:`parse_psv`).
    catalog
        Maps columns to codes and gives scales and plausible ranges.
    locator
        Maps rows of ``raw`` to file and row for errors.
    report
        Receives the conversion and out-of-range counts.

    Returns
    -------
    stays, hourly
        Frames ready for :meth:`Cohort.from_frames` (one row per stay; one per stay and hour).
    """
    check_not_null(raw, HOUR_COLUMN, locator, "ICU hour (ICULOS)")
    check_integral(raw, HOUR_COLUMN, locator)
    check_unique(raw, ["stay_id", HOUR_COLUMN], locator)
    check_not_null(raw, LABEL_COLUMN, locator, "sepsis label")
    index = first_true(~raw[LABEL_COLUMN].is_in([0.0, 1.0]))
    if index is not None:
        raise locator.error(f"SepsisLabel must be 0 or 1, got {raw[LABEL_COLUMN][index]}", index, LABEL_COLUMN)
    statics = {s.physionet: s.code for s in catalog.statics if s.physionet and s.physionet in raw.columns}
    for column in [*statics, *(c for c in UNIT_COLUMNS if c in raw.columns)]:
        _check_constant(raw, column, locator)

    variables = {v.physionet: v for v in catalog.variables if v.physionet and v.physionet in raw.columns}
    fio2 = next((c for c, v in variables.items() if v.code == "fio2"), None)
    if fio2 is not None:
        low, high = FIO2_PERCENT_RANGE
        percent = pl.col(fio2).is_between(low, high)
        report.add("converted", "fio2_percent_to_fraction", int(raw.select(percent.sum()).item()))
        raw = raw.with_columns(pl.when(percent).then(pl.col(fio2) / 100).otherwise(pl.col(fio2)).alias(fio2))
    hourly = raw.select(
        pl.col("stay_id"),
        pl.col(HOUR_COLUMN).cast(pl.Int32).alias("hour"),
        *[(pl.col(c) * v.physionet_scale if v.physionet_scale != 1 else pl.col(c)).alias(v.code) for c, v in variables.items()],
    )
    bounds = plausible_bounds(catalog)
    hourly, counts = null_out_of_range(hourly, {v.code: bounds[v.code] for v in variables.values()})
    report.add_out_of_range(counts)

    first = raw.group_by("stay_id", maintain_order=True).agg(
        *[pl.col(c).first().alias(code) for c, code in statics.items()],
        *[pl.col(c).first() for c in UNIT_COLUMNS if c in raw.columns],
        pl.col(HOUR_COLUMN).min().alias("first_hour"),
        pl.col(HOUR_COLUMN).filter(pl.col(LABEL_COLUMN) == 1).min().alias("first_positive_hour"),
    )
    unit1 = pl.col("Unit1") if "Unit1" in first.columns else pl.lit(None, pl.Float64)
    unit2 = pl.col("Unit2") if "Unit2" in first.columns else pl.lit(None, pl.Float64)
    stays = first.with_columns(
        pl.col("stay_id").alias("subject_id"),
        pl.when(unit1 == 1).then(pl.lit("MICU")).when(unit2 == 1).then(pl.lit("SICU"))
        .when((unit1 == 0) | (unit2 == 0)).then(pl.lit("other")).otherwise(pl.lit(None, pl.Utf8)).alias("unit"),
        (pl.col("first_positive_hour") + SEPSIS_LABEL_LEAD_HOURS).cast(pl.Int32).alias("sepsis_onset_hour"),
    )
    stays, counts = null_out_of_range(stays, {c: bounds[c] for c in statics.values()})
    report.add_out_of_range(counts)
    if "sex" in stays.columns:  # within [0, 1] but not 0 or 1 is not a sex code either
        fractional = pl.col("sex").is_not_null() & ~pl.col("sex").is_in([0.0, 1.0])
        report.add_out_of_range({"sex": {"below": 0, "above": int(stays.select(fractional.sum()).item())}})
        stays = stays.with_columns(pl.when(fractional).then(None).otherwise(pl.col("sex")).cast(pl.Int8).alias("sex"))
    report.add("flagged", "onset_left_censored",
               int(stays.select((pl.col("first_positive_hour") == pl.col("first_hour")).sum()).item()))

    onset = (pl.col(HOUR_COLUMN).filter(pl.col(LABEL_COLUMN) == 1).min() + SEPSIS_LABEL_LEAD_HOURS).over("stay_id")
    recomputed = raw.select(sepsis_label_expr(onset, pl.col(HOUR_COLUMN))).to_series()
    index = first_true(recomputed != raw[LABEL_COLUMN].cast(pl.Int8))
    if index is not None:
        raise locator.error("SepsisLabel is not of the challenge form 0...0 1...1 (1 from 6 h before onset on)",
                            index, LABEL_COLUMN)
    stays = stays.drop([*UNIT_COLUMNS, "first_hour", "first_positive_hour"], strict=False)
    return stays, hourly


# ------------------------------------------------------------------------------------------ shell
def read_physionet2019(
    src: str | Path,
    *,
    catalog: Catalog | None = None,
    progress: ProgressCallback | None = None,
) -> Cohort:
    """Read PhysioNet/CinC 2019 challenge files into a canonical :class:`Cohort`.

    Parameters
    ----------
    src
        A directory of ``p<id>.psv`` files (searched recursively), or a .tar(.gz) / .zip of them.
    catalog
        The variable catalog (default: :func:`organsim.catalog.load_catalog`).
    progress
        Optional ``progress(done, total)`` callback (files, or compressed bytes for tar archives).

    Returns
    -------
    Cohort
        ``source="physionet2019"``, no treatments (``treatments_recorded=False``); the
        :class:`IngestReport` is in ``cohort.meta["provenance"]["ingest_report"]``.

    Raises
    ------
    DataError
        On any input error listed in the module docstring; nothing is written in any case.
    """
    catalog = catalog or load_catalog()
    report = IngestReport(source=SOURCE, rules=[
        "hour = ICULOS; stay_id = subject_id = digits of p<id>.psv",
        f"sepsis_onset_hour = first hour with SepsisLabel = 1, plus {SEPSIS_LABEL_LEAD_HOURS}; "
        f"SepsisLabel == (hour >= sepsis_onset_hour - {SEPSIS_LABEL_LEAD_HOURS}) checked for every row",
        "FiO2 in [21, 100] is a percentage: divided by 100",
        "values outside the catalog's plausible range are nulled and counted (PhysioNet Calcium below "
        "2 mg/dL is ionised calcium in mmol/L and is nulled this way)",
        "unit: Unit1 = 1 -> MICU, Unit2 = 1 -> SICU, either 0 -> other, both missing -> null",
    ])
    stays_parts: list[pl.DataFrame] = []
    hourly_parts: list[pl.DataFrame] = []
    seen: dict[int, str] = {}
    batch: list[tuple[str, int, bytes]] = []

    def flush() -> None:
        raw, locator = parse_psv(batch, catalog)
        stays, hourly = physionet_to_frames(raw, catalog, locator, report)
        stays_parts.append(stays)
        hourly_parts.append(hourly)
        batch.clear()

    for name, data in iter_files(src, ".psv", progress):
        stay_id = stay_id_from_name(name)
        if stay_id in seen:
            raise DataError(f"stay id {stay_id} was already read from {seen[stay_id]}", file=name)
        seen[stay_id] = name
        batch.append((name, stay_id, data))
        report.files += 1
        if len(batch) == BATCH_FILES:
            flush()
    if batch:
        flush()
    if not stays_parts:
        raise DataError("no p<id>.psv files found", file=src)
    stays = pl.concat(stays_parts)
    hourly = pl.concat(hourly_parts, how="diagonal_relaxed")
    report.stays, report.hours = stays.height, hourly.height
    report.septic_stays = int(stays["sepsis_onset_hour"].is_not_null().sum())
    provenance = {"path": str(Path(src).resolve()), "format": "PhysioNet/CinC 2019 psv", "ingest_report": report.to_dict()}
    return Cohort.from_frames(stays, hourly, None, source=SOURCE, provenance=provenance,
                              treatments_recorded=False, catalog=catalog)
