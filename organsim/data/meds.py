"""MEDS (Medical Event Data Standard) <-> Cohort, both ways, lossless for organsim's own output.

Layout written by :func:`write_meds` (the MEDS on-disk layout)::

    MEDS_DIR/
      data/<shard>.parquet             subject_id int64, time timestamp[us] (null for statics),
                                       code string, numeric_value float32 (nullable),
                                       stay_id int64 (an extension column: one subject may have
                                       several ICU stays); each subject in one shard, rows sorted by
                                       (subject_id, stay_id, time with nulls first, code)
      metadata/codes.parquet           code, description, parent_codes (list of strings, null)
      metadata/dataset.json            dataset_name, dataset_version, etl_name, etl_version,
                                       meds_version, other_extension_columns
      metadata/subject_splits.parquet  subject_id, split (train | tuning | held_out); only when the
                                       cohort is split (validation -> tuning, test -> held_out)
      metadata/organsim.json           time epoch, cohort source, treatments_recorded, provenance

Time: every stay's ICU hour ``h`` is written at ``2000-01-01T00:00 + h hours`` (:data:`TIME_EPOCH`),
so reading restores ``hour`` exactly. The cohort does not know real dates; a subject's stays share
the epoch and the ``stay_id`` column tells them apart.

Codes (mapped through the catalog, :attr:`Catalog.meds_codes`):

==============================  ===========================================  ======================
code                            meaning                                      time / numeric_value
==============================  ===========================================  ======================
``VITAL//hr``, ``LAB//...``     an hourly variable (``Variable.meds_code``)  hour / value
``TREATMENT//<code>``           a treatment, every treatments row and column hour / value
``ICU_HOUR``                    an hourly row in which nothing was measured  hour / null
``STATIC//<code>``              a numeric static (age, sex, weight, ...)     null / value
``STATIC//unit//<name>``        ICU type                                     null / null
``STATIC//source//<name>``      where the stay came from                     null / null
``LABEL//sepsis``               the stay meets Sepsis-3 (0/1), always        null / 0 or 1
``LABEL//sepsis_onset``         Sepsis-3 onset                               onset hour / null
``LABEL//death``                in-hospital death (0/1), when known          null / 0 or 1
==============================  ===========================================  ======================

Reading (:func:`read_meds`) accepts this layout and MEDS from elsewhere:

- ``stay_id`` defaults to ``subject_id`` when the column is absent.
- With ``metadata/organsim.json`` hours are ``(time - epoch)`` in whole hours. Otherwise hour 1 is
  the stay's first timed event and ``hour = floor((time - first) / 1 h) + 1``.
- Hourly rows are the hours with a catalog variable or ``ICU_HOUR`` event; treatments rows are the
  hours with a treatment event (missing treatment columns take the catalog default).
- Codes the catalog does not map are dropped and counted; so are variable events without a value.
  Several values of one variable in one hour (possible in foreign MEDS) keep the last in input
  order, which MEDS sorts by time, and the rest are counted as dropped. Values outside the
  plausible range are nulled and counted.
- Errors (:class:`~organsim.utils.DataError` with file, row, column): a missing required column,
  a missing subject or stay id, a non-numeric ``numeric_value``, a timed code without a time, a
  treatment value outside its plausible range, a static whose code says categorical but carries a
  value, an unknown split name, an empty shard and a directory without shards.
"""

from __future__ import annotations

import json
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import polars as pl

from organsim.catalog import Catalog, load_catalog
from organsim.data.archive import ProgressCallback
from organsim.data.cohort import Cohort
from organsim.data.validate import (
    IngestReport,
    RowLocator,
    check_not_null,
    first_true,
    null_out_of_range,
    parse_numeric,
    plausible_bounds,
)
from organsim.utils.errors import DataError
from organsim.utils.io import atomic_directory, atomic_write_text

SOURCE = "meds"
MEDS_VERSION = "0.3.3"
TIME_EPOCH = datetime(2000, 1, 1)
"""ICU hour ``h`` of every stay is written at ``TIME_EPOCH + h hours``."""
EMPTY_HOUR_CODE = "ICU_HOUR"
SEPSIS_CODE = "LABEL//sepsis"
SEPSIS_ONSET_CODE = "LABEL//sepsis_onset"
DEATH_CODE = "LABEL//death"
CATEGORICAL_STATICS = ("unit", "source")
SPLIT_TO_MEDS = {"train": "train", "validation": "tuning", "test": "held_out"}
MEDS_TO_SPLIT = {v: k for k, v in SPLIT_TO_MEDS.items()}
REQUIRED_COLUMNS = ("subject_id", "time", "code", "numeric_value")
HOUR_US = 3_600_000_000

DATA_SCHEMA = {
    "subject_id": pl.Int64,
    "time": pl.Datetime("us"),
    "code": pl.Utf8,
    "numeric_value": pl.Float32,
    "stay_id": pl.Int64,
}


def _hour_to_time(hour: pl.Expr) -> pl.Expr:
    return pl.lit(TIME_EPOCH, dtype=pl.Datetime("us")) + pl.duration(hours=hour)


def _events(frame: pl.DataFrame, code: pl.Expr, value: pl.Expr, time: pl.Expr) -> pl.DataFrame:
    return frame.select(
        pl.col("stay_id"), time.cast(pl.Datetime("us")).alias("time"), code.cast(pl.Utf8).alias("code"),
        value.cast(pl.Float32).alias("numeric_value"),
    )


# ------------------------------------------------------------------------------------------ writing
def cohort_to_meds(cohort: Cohort) -> pl.DataFrame:
    """The cohort as one MEDS event frame (columns of :data:`DATA_SCHEMA`), sorted as MEDS requires.

    Pure: see the module docstring for the codes. Every stay yields at least its ``LABEL//sepsis``
    event, so stays without hours survive the round trip.
    """
    catalog = cohort.catalog
    null_time = pl.lit(None, dtype=pl.Datetime("us"))
    null_value = pl.lit(None, dtype=pl.Float32)
    parts = []
    variables = list(catalog.variable_codes)
    long = cohort.hourly.unpivot(index=["stay_id", "hour"], on=variables, variable_name="variable")
    codes = {v.code: v.meds_code for v in catalog.variables}
    measured = long.filter(pl.col("value").is_not_null())
    parts.append(_events(measured, pl.col("variable").replace_strict(codes), pl.col("value"), _hour_to_time(pl.col("hour"))))
    empty = cohort.hourly.filter(pl.sum_horizontal([pl.col(c).is_not_null() for c in variables]) == 0)
    parts.append(_events(empty, pl.lit(EMPTY_HOUR_CODE), null_value, _hour_to_time(pl.col("hour"))))
    treatments = cohort.treatments.unpivot(index=["stay_id", "hour"], on=list(catalog.treatment_codes),
                                           variable_name="treatment")
    parts.append(_events(treatments, pl.lit("TREATMENT//") + pl.col("treatment"), pl.col("value"),
                         _hour_to_time(pl.col("hour"))))
    stays = cohort.stays
    for static in catalog.statics:
        rows = stays.filter(pl.col(static.code).is_not_null())
        parts.append(_events(rows, pl.lit(static.meds_code), pl.col(static.code), null_time))
    for name in CATEGORICAL_STATICS:
        rows = stays.filter(pl.col(name).is_not_null())
        parts.append(_events(rows, pl.lit(f"STATIC//{name}//") + pl.col(name), null_value, null_time))
    parts.append(_events(stays, pl.lit(SEPSIS_CODE), pl.col("sepsis"), null_time))
    onset = stays.filter(pl.col("sepsis_onset_hour").is_not_null())
    parts.append(_events(onset, pl.lit(SEPSIS_ONSET_CODE), null_value, _hour_to_time(pl.col("sepsis_onset_hour"))))
    death = stays.filter(pl.col("death").is_not_null())
    parts.append(_events(death, pl.lit(DEATH_CODE), pl.col("death"), null_time))
    events = pl.concat(parts).join(stays.select("stay_id", "subject_id"), on="stay_id", how="left")
    return events.select(list(DATA_SCHEMA)).sort(["subject_id", "stay_id", "time", "code"], nulls_last=False)


def meds_codes_table(catalog: Catalog, codes: list[str]) -> pl.DataFrame:
    """metadata/codes.parquet for ``codes``: code, description (with unit), parent_codes (null)."""
    described = {v.meds_code: f"{v.description} ({v.unit})" for v in catalog.variables}
    described.update({s.meds_code: f"{s.description} ({s.unit})" for s in catalog.statics})
    described.update({t.meds_code: f"{t.description} ({t.unit})" for t in catalog.treatments})
    described.update({
        EMPTY_HOUR_CODE: "An ICU hour of the stay in which no catalog variable was measured",
        SEPSIS_CODE: "The stay meets Sepsis-3 at some hour (1) or never (0)",
        SEPSIS_ONSET_CODE: "Sepsis-3 onset (at the event's time)",
        DEATH_CODE: "In-hospital death (1) or survival (0)",
    })
    for name in CATEGORICAL_STATICS:
        described.update({c: f"{name}: {c.rsplit('//', 1)[1]}" for c in codes if c.startswith(f"STATIC//{name}//")})
    return pl.DataFrame(
        {"code": codes, "description": [described[c] for c in codes], "parent_codes": [None] * len(codes)},
        schema={"code": pl.Utf8, "description": pl.Utf8, "parent_codes": pl.List(pl.Utf8)},
    )


def write_meds(cohort: Cohort, path: str | Path, *, subjects_per_shard: int = 10_000, overwrite: bool = True) -> Path:
    """Write ``cohort`` as a MEDS dataset directory, atomically (complete at ``path`` or absent).

    Parameters
    ----------
    cohort
        The cohort to export.
    path
        Destination directory (the layout is in the module docstring).
    subjects_per_shard
        Subjects per data/<k>.parquet file; a subject never spans two shards.
    overwrite
        Replace an existing directory at ``path`` (only once the new one is complete).

    Returns
    -------
    Path
        ``path``.
    """
    if subjects_per_shard < 1:
        raise ValueError(f"subjects_per_shard must be at least 1, got {subjects_per_shard}")
    cohort.validate()
    events = cohort_to_meds(cohort)
    subjects = events["subject_id"].unique(maintain_order=True)
    shard_of = pl.DataFrame({"subject_id": subjects, "shard": pl.int_range(len(subjects), eager=True) // subjects_per_shard})
    events = events.join(shard_of, on="subject_id", how="left", maintain_order="left")
    splits = cohort.stays.filter(pl.col("split").is_not_null()).select("subject_id", "split").unique()
    conflicting = splits.filter(pl.col("subject_id").is_duplicated())
    if conflicting.height:
        raise DataError(f"subject {conflicting['subject_id'][0]} has stays in several splits; MEDS splits are per subject",
                        column="split")
    catalog = cohort.catalog
    dataset = {
        "dataset_name": str(cohort.meta.get("source", "organsim")),
        "dataset_version": catalog.version,
        "etl_name": "organsim",
        "etl_version": version("organsim"),
        "meds_version": MEDS_VERSION,
        "other_extension_columns": ["stay_id"],
    }
    header = {
        "time_epoch": TIME_EPOCH.isoformat(),
        "source": cohort.meta.get("source"),
        "catalog_version": catalog.version,
        "treatments_recorded": bool(cohort.meta.get("treatments_recorded", False)),
        "provenance": cohort.meta.get("provenance", {}),
    }
    with atomic_directory(path, overwrite=overwrite) as tmp:
        (tmp / "data").mkdir()
        (tmp / "metadata").mkdir()
        for (shard,), frame in events.group_by("shard", maintain_order=True):
            frame.drop("shard").write_parquet(tmp / "data" / f"{shard}.parquet", compression="zstd", statistics=True)
        codes = sorted(events["code"].unique().to_list())
        meds_codes_table(catalog, codes).write_parquet(tmp / "metadata" / "codes.parquet")
        if splits.height:
            splits.sort("subject_id").select(
                "subject_id", pl.col("split").replace_strict(SPLIT_TO_MEDS).alias("split")
            ).write_parquet(tmp / "metadata" / "subject_splits.parquet")
        atomic_write_text(tmp / "metadata" / "dataset.json", json.dumps(dataset, indent=2) + "\n")
        atomic_write_text(tmp / "metadata" / "organsim.json", json.dumps(header, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)


# ------------------------------------------------------------------------------------------ reading
def _code_kinds(catalog: Catalog) -> pl.DataFrame:
    """code -> (kind, target) for every fixed code this module reads."""
    rows = [(v.meds_code, "variable", v.code) for v in catalog.variables]
    rows += [(t.meds_code, "treatment", t.code) for t in catalog.treatments]
    rows += [(s.meds_code, "static", s.code) for s in catalog.statics]
    rows += [(EMPTY_HOUR_CODE, "hour", None), (SEPSIS_CODE, "label", "sepsis"),
             (SEPSIS_ONSET_CODE, "label", "sepsis_onset_hour"), (DEATH_CODE, "label", "death")]
    return pl.DataFrame(rows, schema={"code": pl.Utf8, "kind": pl.Utf8, "target": pl.Utf8}, orient="row")


def _classify(events: pl.DataFrame, kinds: pl.DataFrame) -> pl.DataFrame:
    """Add ``kind`` and ``target`` (null for codes the catalog does not map) to MEDS events."""
    out = events.join(kinds, on="code", how="left", maintain_order="left")
    categorical = pl.lit(None, pl.Utf8)
    for name in CATEGORICAL_STATICS:
        prefix = f"STATIC//{name}//"
        categorical = pl.when(pl.col("code").str.starts_with(prefix)).then(pl.lit(name)).otherwise(categorical)
    return out.with_columns(
        pl.when(categorical.is_not_null()).then(pl.lit("category")).otherwise(pl.col("kind")).alias("kind"),
        pl.coalesce(pl.col("target"), categorical).alias("target"),
    )


def _read_shard(file: Path, kinds: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    """Read and check one data shard; return its classified events (unmapped codes kept, kind null)."""
    try:
        frame = pl.read_parquet(file)
    except Exception as exc:  # pyarrow/polars raise several types for a corrupt file
        raise DataError(f"cannot read Parquet: {exc}", file=file) from exc
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            raise DataError(f"MEDS data lacks the required column (has {frame.columns})", file=file, row=0, column=column)
    if frame.height == 0:
        raise DataError("MEDS shard has no rows", file=file, row=1, column="subject_id")
    locator = RowLocator.single(str(file))
    if "stay_id" not in frame.columns:
        frame = frame.with_columns(pl.col("subject_id").alias("stay_id"))
    for column, what in (("subject_id", "subject id"), ("stay_id", "stay id"), ("code", "code")):
        check_not_null(frame, column, locator, what)
    for column in ("subject_id", "stay_id"):
        bad = first_true(frame[column].cast(pl.Int64, strict=False).is_null()
                         | (frame[column].cast(pl.Float64, strict=False) != frame[column].cast(pl.Int64, strict=False)))
        if bad is not None:
            raise locator.error(f"{frame[column][bad]!r} is not an integer id", bad, column)
    if not isinstance(frame.schema["time"], pl.Datetime | pl.Null):
        raise DataError(f"time must be a timestamp, not {frame.schema['time']}", file=file, row=0, column="time")
    frame = parse_numeric(frame, ["numeric_value"], locator)
    events = _classify(frame.select(
        pl.col("subject_id").cast(pl.Int64), pl.col("stay_id").cast(pl.Int64), pl.col("time").cast(pl.Datetime("us")),
        pl.col("code").cast(pl.Utf8), pl.col("numeric_value"),
    ).with_row_index("row"), kinds)
    timed = pl.col("kind").is_in(["variable", "treatment", "hour"]) | (pl.col("target") == "sepsis_onset_hour")
    bad = first_true(events.select(timed & pl.col("time").is_null()).to_series())
    if bad is not None:
        raise locator.error(f"code {events['code'][bad]!r} needs a time", bad, "time")
    bad = first_true(events.select((pl.col("kind") == "category") & pl.col("numeric_value").is_not_null()).to_series())
    if bad is not None:
        raise locator.error(f"code {events['code'][bad]!r} names a category and carries no value", bad, "numeric_value")
    for treatment in catalog.treatments:
        low, high = (pl.lit(b, dtype=pl.Float32) for b in treatment.plausible)
        value = pl.col("numeric_value").cast(pl.Float32)
        outside = (pl.col("code") == treatment.meds_code) & ((value < low) | (value > high))
        bad = first_true(events.select(outside).to_series())
        if bad is not None:
            raise locator.error(f"{treatment.meds_code} value {events['numeric_value'][bad]} is outside its plausible "
                                f"range {list(treatment.plausible)}", bad, "numeric_value")
    return events


def _hours(events: pl.DataFrame, epoch: datetime | None) -> pl.Expr:
    if epoch is not None:
        offset = pl.col("time") - pl.lit(epoch, dtype=pl.Datetime("us"))
    else:
        offset = pl.col("time") - pl.col("time").min().over("stay_id")
    whole = offset.dt.total_microseconds().floordiv(HOUR_US)
    return (whole if epoch is not None else whole + 1).cast(pl.Int32)


def meds_to_frames(
    events: pl.DataFrame, catalog: Catalog, epoch: datetime | None, report: IngestReport
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Classified MEDS events -> canonical ``(stays, hourly, treatments)`` frames.

    Parameters
    ----------
    events
        Columns subject_id, stay_id, time, code, numeric_value, kind, target, in input order (of
        several values for one slot the last wins), as the reader builds them.
    catalog
        Variable codes, defaults and plausible ranges.
    epoch
        The time of hour 0 (organsim's own MEDS), or None: hour 1 is each stay's first timed event.
    report
        Receives the dropped and out-of-range counts.
    """
    events = events.with_columns(_hours(events, epoch).alias("hour"))
    unmapped = events.filter(pl.col("kind").is_null())
    report.add("dropped", "events_with_unmapped_codes", unmapped.height)
    report.add("dropped", "unmapped_codes", unmapped["code"].n_unique())
    mapped = events.filter(pl.col("kind").is_not_null())

    def latest(kind: str, key: list[str], drop_null_values: bool) -> pl.DataFrame:
        """The kind's events, one per (key, target): the last in input order (MEDS sorts by time)."""
        rows = mapped.filter(pl.col("kind") == kind)
        if drop_null_values:
            report.add("dropped", f"{kind}_events_without_value", rows["numeric_value"].null_count())
            rows = rows.filter(pl.col("numeric_value").is_not_null())
        kept = rows.unique([*key, "target"], keep="last", maintain_order=True)
        report.add("dropped", f"{kind}_values_superseded", rows.height - kept.height)
        return kept

    def hourly_wide(kind: str) -> pl.DataFrame:
        """(stay_id, hour) + one column per target: the last value in the hour, in input order."""
        rows = mapped.filter(pl.col("kind") == kind)
        report.add("dropped", f"{kind}_events_without_value", rows["numeric_value"].null_count())
        rows = rows.filter(pl.col("numeric_value").is_not_null())
        if rows.height == 0:
            return pl.DataFrame(schema={"stay_id": pl.Int64, "hour": pl.Int32})
        wide = rows.pivot(on="target", index=["stay_id", "hour"], values="numeric_value", aggregate_function="last")
        kept = wide.select(pl.sum_horizontal(pl.exclude("stay_id", "hour").is_not_null()).sum()).item()
        report.add("dropped", f"{kind}_values_superseded_in_same_hour", rows.height - kept)
        return wide

    hours = mapped.filter(pl.col("kind").is_in(["variable", "hour"])).select("stay_id", "hour").unique()
    hourly = hours.join(hourly_wide("variable"), on=["stay_id", "hour"], how="left")
    bounds = plausible_bounds(catalog)
    hourly, counts = null_out_of_range(hourly, {c: bounds[c] for c in catalog.variable_codes if c in hourly.columns})
    report.add_out_of_range(counts)

    treatments = hourly_wide("treatment")
    treatments = treatments.with_columns(
        [pl.col(t.code).fill_null(t.default) for t in catalog.treatments if t.code in treatments.columns])

    stays = events.group_by("stay_id").agg(pl.col("subject_id").first()).sort("stay_id")
    statics = latest("static", ["stay_id"], drop_null_values=True)
    if statics.height:
        stays = stays.join(statics.pivot(on="target", index="stay_id", values="numeric_value"), on="stay_id", how="left")
    categories = latest("category", ["stay_id"], drop_null_values=False)
    for name in CATEGORICAL_STATICS:
        chosen = categories.filter(pl.col("target") == name).select(
            "stay_id", pl.col("code").str.strip_prefix(f"STATIC//{name}//").alias(name))
        stays = stays.join(chosen, on="stay_id", how="left")
    labels = latest("label", ["stay_id"], drop_null_values=False)
    sepsis = labels.filter(pl.col("target") == "sepsis").select("stay_id", (pl.col("numeric_value") != 0).alias("sepsis"))
    onset = labels.filter(pl.col("target") == "sepsis_onset_hour").select("stay_id", pl.col("hour").alias("sepsis_onset_hour"))
    death = labels.filter(pl.col("target") == "death").select("stay_id", (pl.col("numeric_value") != 0).alias("death"))
    stays = stays.join(sepsis, on="stay_id", how="left").join(onset, on="stay_id", how="left").join(death, on="stay_id", how="left")
    stays = stays.with_columns(pl.coalesce(pl.col("sepsis"), pl.col("sepsis_onset_hour").is_not_null()).alias("sepsis"))
    present = [s.code for s in catalog.statics if s.code in stays.columns]
    stays, counts = null_out_of_range(stays, {c: bounds[c] for c in present})
    report.add_out_of_range(counts)
    return stays, hourly, treatments


def _read_splits(path: Path) -> pl.DataFrame | None:
    file = path / "metadata" / "subject_splits.parquet"
    if not file.is_file():
        return None
    splits = pl.read_parquet(file)
    for column in ("subject_id", "split"):
        if column not in splits.columns:
            raise DataError("subject_splits lacks a required column", file=file, row=0, column=column)
    bad = first_true(~splits["split"].is_in(list(MEDS_TO_SPLIT)))
    if bad is not None:
        raise DataError(f"unknown split {splits['split'][bad]!r}; MEDS splits are {list(MEDS_TO_SPLIT)}",
                        file=file, row=bad + 1, column="split")
    return splits.select(pl.col("subject_id").cast(pl.Int64), pl.col("split").replace_strict(MEDS_TO_SPLIT))


def read_meds(
    src: str | Path,
    *,
    catalog: Catalog | None = None,
    progress: ProgressCallback | None = None,
) -> Cohort:
    """Read a MEDS dataset directory into a canonical :class:`Cohort` (see the module docstring).

    Parameters
    ----------
    src
        The MEDS root (with ``data/`` holding ``*.parquet`` shards, searched recursively).
    catalog
        The variable catalog (default: :func:`organsim.catalog.load_catalog`).
    progress
        Optional ``progress(done, total)`` callback, in shards.

    Returns
    -------
    Cohort
        ``source`` from ``metadata/organsim.json`` when present, else ``"meds"``; splits from
        ``metadata/subject_splits.parquet``; the :class:`IngestReport` in
        ``cohort.meta["provenance"]["ingest_report"]``.
    """
    catalog = catalog or load_catalog()
    src = Path(src)
    data_dir = src / "data"
    shards = sorted(data_dir.rglob("*.parquet")) if data_dir.is_dir() else []
    if not shards:
        raise DataError("not a MEDS dataset: no data/*.parquet shards", file=data_dir)
    header_file = src / "metadata" / "organsim.json"
    header: dict[str, Any] = {}
    if header_file.is_file():
        try:
            header = json.loads(header_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON: {exc.msg}", file=header_file, row=exc.lineno) from exc
    epoch = datetime.fromisoformat(header["time_epoch"]) if "time_epoch" in header else None
    report = IngestReport(source=SOURCE, rules=[
        f"codes mapped through the catalog (Variable.meds_code, STATIC//, TREATMENT//, {SEPSIS_CODE}, "
        f"{SEPSIS_ONSET_CODE}, {DEATH_CODE}); unmapped codes dropped and counted",
        "hour = whole hours since the organsim epoch " + TIME_EPOCH.isoformat() if epoch is not None
        else "hour = 1 + whole hours since the stay's first timed event",
        "several values of a code in one hour (or of a static): the last in input order (time) is kept",
        "values outside the catalog's plausible range are nulled and counted",
    ])
    kinds = _code_kinds(catalog)
    parts = []
    for done, file in enumerate(shards, start=1):
        parts.append(_read_shard(file, kinds, catalog))
        report.files += 1
        if progress:
            progress(done, len(shards))
    events = pl.concat(parts).drop("row")
    stays, hourly, treatments = meds_to_frames(events, catalog, epoch, report)
    splits = _read_splits(src)
    if splits is not None:
        stays = stays.join(splits, on="subject_id", how="left")
    source = header.get("source") or SOURCE
    if "source" not in stays.columns:
        stays = stays.with_columns(pl.lit(source).alias("source"))
    stays = stays.with_columns(pl.col("source").fill_null(source))
    report.stays, report.hours = stays.height, hourly.height
    report.septic_stays = int(stays["sepsis"].sum())
    recorded = header.get("treatments_recorded", treatments.height > 0)
    provenance = {"path": str(src.resolve()), "format": "MEDS", "meds_provenance": header.get("provenance", {}),
                  "ingest_report": report.to_dict()}
    return Cohort.from_frames(stays, hourly, treatments, source=source, provenance=provenance,
                              treatments_recorded=recorded, catalog=catalog)
