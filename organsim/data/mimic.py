"""MIMIC-IV (v2/v3) loader: the official CSV layout -> a canonical :class:`Cohort` with treatments.

Input: the directory PhysioNet distributes (``SRC/hosp/``, ``SRC/icu/``), each table as ``<name>.csv``
or ``<name>.csv.gz``. Eight tables are read, and only these of their columns (other columns, and
column order, do not matter):

=====================  ===============================================================================
table                  columns read
=====================  ===============================================================================
icu/icustays           subject_id, hadm_id, stay_id, first_careunit, intime, outtime
hosp/patients          subject_id, gender, anchor_age, anchor_year
hosp/admissions        subject_id, hadm_id, admittime, hospital_expire_flag
icu/chartevents        stay_id, charttime, itemid, valuenum
hosp/labevents         subject_id, charttime, itemid, valuenum
icu/outputevents       stay_id, charttime, itemid, value
icu/inputevents        stay_id, starttime, endtime, itemid, amount, amountuom, rate, rateuom,
                       patientweight, ordercategoryname, statusdescription
icu/procedureevents    stay_id, starttime, endtime, itemid
=====================  ===============================================================================

Times are ``YYYY-MM-DD HH:MM:SS``. The event tables are scanned lazily with polars and filtered on
``itemid`` (and, for labevents, on the ICU subjects) inside the streaming engine before anything is
collected, so chartevents (about 30 GB in the full data set) is never held in memory; ``.csv.gz``
is decompressed as a stream by the same scan.

Mapping:

- One stay per icustays row; ``hour = 1 + floor((time - intime) / 1 h)`` and the hourly grid of a
  stay runs from 1 to the hour of ``outtime``. Every grid hour has an hourly and a treatments row.
- Hourly variables: itemids through the catalog (``mimic_iv`` lists of data_schemas/variables.yaml).
  chartevents and outputevents rows belong to their ``stay_id`` and are kept when ``charttime`` lies
  in ``[intime, outtime]``; labevents rows (keyed by subject) go to the stay of the same subject
  whose ``[intime, outtime]`` contains ``charttime``. Values of one variable in one hour are
  averaged, except: variables whose unit is per hour (``.../h``, urine output) are summed over
  the hour, and ``gcs`` is eye + verbal + motor (its three itemids), each the last one charted in
  the hour, when all three were charted in it.
- Units: itemid 223761 (degF) -> degC; FiO2 values between 21 and 100 are percentages -> fraction.
- Plausible ranges (the catalog's hard bounds): single values of averaged variables outside the
  range are nulled before averaging; summed variables and ``gcs`` are checked per hour. Each nulled
  value is counted in the :class:`~organsim.data.validate.IngestReport`.
- Treatments (data_schemas/treatments.yaml), per ICU hour, from ``[starttime, endtime)`` intervals
  clipped to ``[intime, outtime]``; inputevents rows whose ``statusdescription`` is ``Rewritten``
  (superseded by a corrected row) are skipped and counted:

  - ``norepinephrine``: inputevents rows of the vasopressor itemids; ``rate`` is converted to the
    unit of the drug's catalog factor (``mcg/min`` and ``mg/min`` are divided by the row's
    ``patientweight``, else the stay's weight; ``units/hour`` is divided by 60) and multiplied by
    the factor: norepinephrine equivalents in ug/kg/min. The hour's value is the time-weighted mean
    over the whole hour (concurrent drugs add up). Rows without a rate (boluses) are skipped.
  - ``iv_fluid_ml``: inputevents ``amount`` (mL; L x 1000) of the fluid itemids, split across the
    hours in proportion to the overlap; a row with ``starttime == endtime`` falls in one hour.
  - ``antibiotic``: 1 in every hour an inputevents row whose ``ordercategoryname`` contains the
    catalog's ``mimic_iv_category`` ("Antibiotics") overlaps, or in which it starts.
  - ``mechanical_ventilation``: 1 in every hour a procedureevents row of the catalog's itemids
    (225792 invasive, 225794 non-invasive) overlaps.

  Single rates and amounts outside the treatment's plausible range are dropped and counted; an hour
  whose total still exceeds it is capped at the bound and counted as flagged.
- Statics: ``age = anchor_age + year(intime) - anchor_year``; ``sex`` 1 for gender M, 0 for F;
  ``weight`` = the stay's first chartevents 226512 (admission weight, kg), else its first
  inputevents ``patientweight``; ``unit`` from ``first_careunit``: MICU, SICU (also TSICU), else
  ``other``; ``hosp_adm_hours = (admittime - intime)`` in hours (negative = before the ICU);
  ``death = hospital_expire_flag``.
- Sepsis: MIMIC-IV has no Sepsis-3 label, so ``sepsis`` is false and ``sepsis_onset_hour`` null for
  every stay, and ``cohort.meta["provenance"]["sepsis"]`` says so; derive the label with
  ``organsim.scores.sepsis3_onset`` (a higher layer than this loader).

Errors (:class:`~organsim.utils.DataError` naming file, 1-based data row and column; nothing is
written): a missing table or required column, an unreadable CSV, a missing or malformed id, time or
number in a row that is read, a repeated stay, subject or admission, ``outtime`` before ``intime``
or ``endtime`` before ``starttime``, a stay whose subject or admission is missing, an event of a
stay that is not in icustays, a gender other than M/F, an expire flag other than 0/1, and an
amount or rate unit the loader cannot convert. Values that are read but empty (a text-only chart
entry without ``valuenum``) are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import polars as pl

from organsim.catalog import Catalog, load_catalog
from organsim.data.archive import ProgressCallback
from organsim.data.cohort import Cohort
from organsim.data.validate import IngestReport, null_out_of_range, plausible_bounds
from organsim.utils.errors import CatalogError, DataError

SOURCE = "mimic-iv"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SECONDS_PER_HOUR = 3600.0
MICROSECONDS_PER_HOUR = 3_600_000_000
ROW = "_row"
"""Column holding the 0-based data row of the file (the DataError row is this + 1)."""
BAD = "_bad_"
"""Prefix of the per-column parse flags: 0 fine, 1 missing but required, 2 not parseable."""

FAHRENHEIT_ITEMIDS = frozenset({223761})
"""chartevents itemids charted in degF (converted to degC)."""
FIO2_CODE = "fio2"
FIO2_PERCENT_RANGE = (21.0, 100.0)
GCS_CODE = "gcs"
"""Catalog variable whose itemids are components summed per hour (eye, verbal, motor)."""
WEIGHT_CODE = "weight"
CAREUNIT_UNITS = {"MICU": "MICU", "SICU": "SICU", "TSICU": "SICU"}
"""Abbreviation in brackets at the end of ``first_careunit`` -> unit; any other care unit is "other"."""
GENDER_SEX = {"M": 1, "F": 0}
REWRITTEN_STATUS = "Rewritten"
"""inputevents ``statusdescription`` of an entry superseded by a corrected one (skipped)."""
AMOUNT_TO_ML = {"ml": 1.0, "l": 1000.0}
"""Lower-cased inputevents ``amountuom`` -> factor to mL."""


@dataclass(frozen=True)
class RateConversion:
    """How an inputevents ``rateuom`` becomes the unit of a catalog vasopressor factor."""

    unit: str
    multiplier: float
    per_weight: bool


RATE_CONVERSIONS = {
    "mcg/kg/min": RateConversion("ug/kg/min", 1.0, False),
    "mcg/min": RateConversion("ug/kg/min", 1.0, True),
    "mg/kg/min": RateConversion("ug/kg/min", 1000.0, False),
    "mg/min": RateConversion("ug/kg/min", 1000.0, True),
    "mcg/kg/hour": RateConversion("ug/kg/min", 1.0 / 60.0, False),
    "units/min": RateConversion("units/min", 1.0, False),
    "units/hour": RateConversion("units/min", 1.0 / 60.0, False),
}
"""inputevents ``rateuom`` -> (catalog unit, multiplier, divide by weight in kg)."""


ColumnKind = Literal["int", "float", "time", "text"]
_WHAT: dict[str, str] = {"int": "a whole number", "float": "a number", "time": f"a time ({TIME_FORMAT})", "text": "text"}
"""What a value of each column kind must be, for error messages."""


@dataclass(frozen=True)
class Column:
    """A column the loader reads: how to parse it and whether a read row must have it."""

    name: str
    kind: ColumnKind
    required: bool = False


@dataclass(frozen=True)
class MimicTable:
    """One official table: its path under SRC without the extension, and the columns read."""

    path: str
    columns: tuple[Column, ...]


def _columns(spec: str) -> tuple[Column, ...]:
    """``"stay_id:int! charttime:time! valuenum:float"`` -> Columns (``!`` = required)."""
    out = []
    for item in spec.split():
        name, kind = item.split(":")
        if kind.rstrip("!") not in _WHAT:
            raise ValueError(f"column {name}: kind {kind!r} is not one of {sorted(_WHAT)}")
        out.append(Column(name, cast(ColumnKind, kind.rstrip("!")), kind.endswith("!")))
    return tuple(out)


TABLES: dict[str, MimicTable] = {
    "icustays": MimicTable("icu/icustays", _columns(
        "subject_id:int! hadm_id:int! stay_id:int! first_careunit:text intime:time! outtime:time!")),
    "patients": MimicTable("hosp/patients", _columns("subject_id:int! gender:text anchor_age:float anchor_year:int")),
    "admissions": MimicTable("hosp/admissions", _columns(
        "subject_id:int! hadm_id:int! admittime:time! hospital_expire_flag:int")),
    "chartevents": MimicTable("icu/chartevents", _columns("stay_id:int! charttime:time! itemid:int! valuenum:float")),
    "labevents": MimicTable("hosp/labevents", _columns("subject_id:int! charttime:time! itemid:int! valuenum:float")),
    "outputevents": MimicTable("icu/outputevents", _columns("stay_id:int! charttime:time! itemid:int! value:float")),
    "inputevents": MimicTable("icu/inputevents", _columns(
        "stay_id:int! starttime:time! endtime:time! itemid:int! amount:float amountuom:text rate:float rateuom:text "
        "patientweight:float ordercategoryname:text statusdescription:text")),
    "procedureevents": MimicTable("icu/procedureevents", _columns("stay_id:int! starttime:time! endtime:time! itemid:int!")),
}
"""The official tables read, in reading order (see the module docstring)."""


# ------------------------------------------------------------------------------------------ reading
def find_tables(src: str | Path) -> dict[str, Path]:
    """The file of every table of :data:`TABLES` under ``src`` (``.csv.gz`` or ``.csv``).

    Raises
    ------
    DataError
        ``src`` is not a directory, a table is missing, or a table exists both compressed and not.
    """
    src = Path(src)
    if not src.is_dir():
        raise DataError("expected the MIMIC-IV directory (with hosp/ and icu/)", file=src)
    found = {}
    for key, table in TABLES.items():
        candidates = [src / f"{table.path}{ext}" for ext in (".csv.gz", ".csv") if (src / f"{table.path}{ext}").is_file()]
        if not candidates:
            raise DataError(f"required MIMIC-IV table {table.path} is missing (expected {table.path}.csv.gz or .csv)",
                            file=src / f"{table.path}.csv.gz")
        if len(candidates) > 1:
            raise DataError(f"{table.path} exists as both .csv.gz and .csv; keep one", file=candidates[1])
        found[key] = candidates[0]
    return found


def _raw(name: str) -> pl.Expr:
    return pl.col(name).str.strip_chars()


def _parse(column: Column) -> tuple[pl.Expr, pl.Expr]:
    """(parsed value, problem flag Int8: 0 fine, 1 missing and required, 2 not parseable) of a text column."""
    raw = _raw(column.name)
    if column.kind == "int":
        parsed = raw.cast(pl.Int64, strict=False)
    elif column.kind == "float":
        parsed = raw.cast(pl.Float64, strict=False)
    elif column.kind == "time":
        parsed = raw.str.to_datetime(TIME_FORMAT, strict=False, time_unit="us")
    else:
        parsed = raw
    present = raw.is_not_null() & (raw != "")
    flag = (pl.when(present & parsed.is_null()).then(2).when(~present & column.required).then(1).otherwise(0)
            .cast(pl.Int8))
    if column.kind == "float":
        parsed = parsed.fill_nan(None)
    if column.kind == "text":
        parsed = pl.when(present).then(raw)
    return parsed.alias(column.name), flag.alias(BAD + column.name)


def _cell(path: Path, row: int, column: str) -> str:
    """The raw text of data row ``row`` (0-based) of ``column`` (for error messages)."""
    return pl.scan_csv(path, infer_schema=False).slice(row, 1).select(column).collect().item()


def read_table(path: Path, table: MimicTable, keep: pl.Expr | None = None) -> pl.DataFrame:
    """Scan one official table, keep the rows ``keep`` selects, parse its columns and check them.

    Parameters
    ----------
    path
        The .csv or .csv.gz file.
    table
        Which table it is (the columns to read and how to parse them).
    keep
        Optional row filter on the raw text columns, applied in the streaming scan before parsing.

    Returns
    -------
    pl.DataFrame
        :data:`ROW` (0-based data row, UInt32) and the table's columns, parsed (Int64, Float64 with
        NaN as null, Datetime[us], String).

    Raises
    ------
    DataError
        A missing column (row 0), an unreadable CSV, or at the first kept row (file order) with a
        required value missing or a value that does not parse.
    """
    try:
        header = pl.scan_csv(path, infer_schema=False).collect_schema()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read the CSV header ({exc})", file=path, row=0) from exc
    for column in table.columns:
        if column.name not in header:
            raise DataError(f"column of the official {table.path} layout is missing from the header", file=path, row=0,
                            column=column.name)
    scan = pl.scan_csv(path, infer_schema=False).with_row_index(ROW).select(ROW, *(c.name for c in table.columns))
    if keep is not None:
        scan = scan.filter(keep)
    parsed = [expr for column in table.columns for expr in _parse(column)]
    try:
        frame = scan.select(ROW, *parsed).collect(engine="streaming")
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read the CSV ({exc})", file=path) from exc
    first: tuple[int, Column, int] | None = None
    for column in table.columns:
        bad = frame.filter(pl.col(BAD + column.name) > 0)
        if bad.height:
            row = int(bad[ROW].min())
            if first is None or row < first[0]:
                first = (row, column, int(bad.filter(pl.col(ROW) == row)[BAD + column.name][0]))
    if first is not None:
        row, column, problem = first
        if problem == 1:
            raise DataError(f"missing {column.name}", file=path, row=row + 1, column=column.name)
        text = _cell(path, row, column.name)
        raise DataError(f"{text!r} is not {_WHAT[column.kind]}", file=path, row=row + 1, column=column.name)
    return frame.drop([BAD + c.name for c in table.columns])


def _error(frame: pl.DataFrame, mask: pl.Expr, path: Path, column: str, message: str) -> None:
    """Raise ``message`` at the first row (file order) of ``frame`` where ``mask`` holds.

    ``message`` may name ``{cell}`` (that row's ``column``) and any column of the row.
    """
    hits = frame.filter(mask)
    if hits.height:
        row = hits.sort(ROW).row(0, named=True)
        raise DataError(message.format(cell=row[column], **row), file=path, row=row[ROW] + 1, column=column)


def _check_unique(frame: pl.DataFrame, column: str, path: Path) -> None:
    _error(frame, ~pl.col(column).is_first_distinct(), path, column, f"{column} {{cell}} appears more than once")


def _itemid_filter(itemids: set[int]) -> pl.Expr:
    """Raw-text row filter: these itemids, and rows whose itemid is missing or malformed (to report them)."""
    itemid = _raw("itemid").cast(pl.Int64, strict=False)
    return itemid.is_in(sorted(itemids)) | itemid.is_null()


def _attach_stays(frame: pl.DataFrame, stays: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Join each row's stay ``intime`` and ``outtime``; a ``stay_id`` not in icustays is an error."""
    joined = frame.join(stays.select("stay_id", "intime", "outtime"), on="stay_id", how="left", maintain_order="left")
    _error(joined, pl.col("intime").is_null(), path, "stay_id", "stay_id {cell} is not in icu/icustays")
    return joined


def _hour(time: pl.Expr) -> pl.Expr:
    """ICU hour index of ``time``: ``1 + floor((time - intime) / 1 h)`` (needs an ``intime`` column)."""
    return ((time - pl.col("intime")).dt.total_microseconds() // MICROSECONDS_PER_HOUR + 1).cast(pl.Int32)


def _first_per_stay(frame: pl.DataFrame, value: str, time: str) -> pl.DataFrame:
    """stay_id, weight: each stay's earliest non-null, positive ``value`` by ``time`` (file order breaks ties)."""
    return (frame.filter(pl.col(value) > 0).sort(time, maintain_order=True).group_by("stay_id", maintain_order=True)
            .agg(pl.col(value).first().alias(WEIGHT_CODE)))


def _coalesce_weights(first: pl.DataFrame, second: pl.DataFrame) -> pl.DataFrame:
    """stay_id, weight: ``first``'s weight where it has one, else ``second``'s."""
    return first.join(second, on="stay_id", how="full", coalesce=True, suffix="_second").select(
        "stay_id", pl.coalesce(WEIGHT_CODE, f"{WEIGHT_CODE}_second").alias(WEIGHT_CODE))


# ------------------------------------------------------------------------------------------ stays
def read_stays(files: dict[str, Path]) -> pl.DataFrame:
    """icustays + patients + admissions -> one row per stay with its statics (weight comes later).

    Returns
    -------
    pl.DataFrame
        stay_id, subject_id, intime, outtime, n_hours (Int32: the hour index of outtime), age,
        sex, unit, hosp_adm_hours, sepsis (false), death.
    """
    stays_file, patients_file, admissions_file = files["icustays"], files["patients"], files["admissions"]
    icu = read_table(stays_file, TABLES["icustays"])
    if icu.height == 0:
        raise DataError("icu/icustays has no rows", file=stays_file, row=1, column="stay_id")
    _check_unique(icu, "stay_id", stays_file)
    _error(icu, pl.col("outtime") < pl.col("intime"), stays_file, "outtime", "outtime {cell} is before intime {intime}")
    patients = read_table(patients_file, TABLES["patients"])
    _check_unique(patients, "subject_id", patients_file)
    _error(patients, ~pl.col("gender").is_in(list(GENDER_SEX)), patients_file, "gender",
           "gender {cell!r} is not one of M, F")
    admissions = read_table(admissions_file, TABLES["admissions"])
    _check_unique(admissions, "hadm_id", admissions_file)
    _error(admissions, ~pl.col("hospital_expire_flag").is_in([0, 1]), admissions_file, "hospital_expire_flag",
           "hospital_expire_flag {cell} is not 0 or 1")

    stays = icu.join(patients.drop(ROW).with_columns(pl.lit(True).alias("_patient")), on="subject_id", how="left",
                     maintain_order="left")
    _error(stays, pl.col("_patient").is_null(), stays_file, "subject_id", "subject_id {cell} is not in hosp/patients")
    stays = stays.join(admissions.drop(ROW).rename({"subject_id": "_admission_subject"}), on="hadm_id", how="left",
                       maintain_order="left")
    _error(stays, pl.col("_admission_subject").is_null(), stays_file, "hadm_id", "hadm_id {cell} is not in hosp/admissions")
    _error(stays, pl.col("_admission_subject") != pl.col("subject_id"), stays_file, "hadm_id",
           "hadm_id {cell} belongs to subject {_admission_subject} in hosp/admissions, not to {subject_id}")

    abbreviation = pl.col("first_careunit").str.extract(r"\(([^()]*)\)\s*$")
    unit = (pl.when(pl.col("first_careunit").is_not_null())
            .then(abbreviation.replace_strict(CAREUNIT_UNITS, default="other")))
    return stays.select(
        "stay_id", "subject_id", "intime", "outtime",
        _hour(pl.col("outtime")).alias("n_hours"),
        (pl.col("anchor_age") + pl.col("intime").dt.year() - pl.col("anchor_year")).alias("age"),
        pl.col("gender").replace_strict(GENDER_SEX, default=None, return_dtype=pl.Int8).alias("sex"),
        unit.alias("unit"),
        ((pl.col("admittime") - pl.col("intime")).dt.total_microseconds() / MICROSECONDS_PER_HOUR).alias("hosp_adm_hours"),
        pl.lit(False).alias("sepsis"),
        (pl.col("hospital_expire_flag") == 1).alias("death"),
    )


# ------------------------------------------------------------------------------------------ hourly
def variable_itemids(catalog: Catalog) -> dict[int, str]:
    """``{itemid: variable code}`` over the catalog's hourly variables; an itemid listed twice is a CatalogError."""
    out: dict[int, str] = {}
    for variable in catalog.variables:
        for itemid in variable.mimic_iv:
            if itemid in out:
                raise CatalogError(f"MIMIC-IV itemid {itemid} is listed under both {out[itemid]!r} and {variable.code!r}")
            out[itemid] = variable.code
    return out


def _in_stay(frame: pl.DataFrame, report: IngestReport, name: str | None) -> pl.DataFrame:
    """Rows whose ``time`` lies in their stay's ``[intime, outtime]`` -> stay_id, hour, time, itemid, value.

    The rows outside are counted as dropped under ``name`` (not when ``name`` is None).
    """
    inside = pl.col("time").is_between(pl.col("intime"), pl.col("outtime"))
    if name is not None:
        report.add("dropped", f"{name} values outside the stay", frame.select((~inside).sum()).item())
    return frame.filter(inside).select(
        "stay_id", _hour(pl.col("time")).alias("hour"), "time", pl.col("itemid").cast(pl.Int32), "value")


def read_measurements(
    files: dict[str, Path], stays: pl.DataFrame, catalog: Catalog, report: IngestReport,
    progress: ProgressCallback | None = None, done: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """chartevents, labevents and outputevents -> measurement events inside the stays, and admission weights.

    Parameters
    ----------
    files
        Table files from :func:`find_tables`.
    stays
        From :func:`read_stays` (stay_id, subject_id, intime, outtime, ...).
    catalog
        Maps itemids to variables.
    report
        Receives conversion and drop counts.
    progress, done
        ``progress(done + k, len(TABLES))`` is called after the k-th of the three tables.

    Returns
    -------
    events
        stay_id, hour (Int32), time, itemid (Int32), code (Enum of the catalog's variable codes),
        value (Float64, catalog unit): one row per value of a catalog variable charted in
        ``[intime, outtime]`` of its stay.
    weights
        stay_id, weight (kg): the stay's first admission weight in chartevents, at any time.
    """
    itemids = variable_itemids(catalog)
    weight_itemids = set(next(s for s in catalog.statics if s.code == WEIGHT_CODE).mimic_iv)
    chart_path, lab_path, output_path = files["chartevents"], files["labevents"], files["outputevents"]

    chart = read_table(chart_path, TABLES["chartevents"], _itemid_filter(set(itemids) | weight_itemids))
    chart = _attach_stays(chart, stays, chart_path).rename({"charttime": "time", "valuenum": "value"})
    weights = _first_per_stay(chart.filter(pl.col("itemid").is_in(sorted(weight_itemids))), "value", "time")
    chart = chart.filter(pl.col("itemid").is_in(sorted(itemids)))
    report.add("dropped", "chartevents values without valuenum", chart["value"].null_count())
    parts = [_in_stay(chart.filter(pl.col("value").is_not_null()), report, "chartevents")]
    if progress:
        progress(done + 1, len(TABLES))

    subject = _raw("subject_id").cast(pl.Int64, strict=False)
    icu_subjects = sorted(stays["subject_id"].unique().to_list())
    lab = read_table(lab_path, TABLES["labevents"],
                     _itemid_filter(set(itemids)) & (subject.is_in(icu_subjects) | subject.is_null()))
    report.add("dropped", "labevents values without valuenum", lab["valuenum"].null_count())
    lab = lab.filter(pl.col("valuenum").is_not_null()).rename({"charttime": "time", "valuenum": "value"})
    lab = lab.join(stays.select("subject_id", "stay_id", "intime", "outtime"), on="subject_id")
    parts.append(_in_stay(lab, report, None))
    if progress:
        progress(done + 2, len(TABLES))

    output = read_table(output_path, TABLES["outputevents"], _itemid_filter(set(itemids)))
    output = _attach_stays(output, stays, output_path).rename({"charttime": "time"})
    parts.append(_in_stay(output.filter(pl.col("value").is_not_null()), report, "outputevents"))
    if progress:
        progress(done + 3, len(TABLES))
    report.files += 3

    codes = pl.Enum(catalog.variable_codes)
    events = pl.concat(parts, rechunk=False).with_columns(pl.col("itemid").replace_strict(itemids, return_dtype=codes).alias("code"))
    fahrenheit = pl.col("itemid").is_in(sorted(FAHRENHEIT_ITEMIDS))
    percent = (pl.col("code") == FIO2_CODE) & pl.col("value").is_between(*FIO2_PERCENT_RANGE)
    report.add("converted", "temperature_f_to_c", events.select(fahrenheit.sum()).item())
    report.add("converted", "fio2_percent_to_fraction", events.select(percent.sum()).item())
    events = events.with_columns(
        pl.when(fahrenheit).then((pl.col("value") - 32.0) * 5.0 / 9.0)
        .when(percent).then(pl.col("value") / 100.0)
        .otherwise(pl.col("value")).alias("value"))
    return events.select("stay_id", "hour", "time", "itemid", "code", "value"), weights


def _drop_out_of_range_long(
    events: pl.DataFrame, bounds: dict[str, tuple[float, float]]
) -> tuple[pl.DataFrame, dict[str, dict[str, int]]]:
    """Drop long-format ``(code, value)`` rows outside ``bounds[code]`` and count them per code.

    Compares in Float32, as :func:`~organsim.data.validate.null_out_of_range` does; codes without
    bounds pass.
    """
    low = pl.col("code").replace_strict({c: b[0] for c, b in bounds.items()}, default=None, return_dtype=pl.Float32)
    high = pl.col("code").replace_strict({c: b[1] for c, b in bounds.items()}, default=None, return_dtype=pl.Float32)
    value = pl.col("value").cast(pl.Float32)
    below, above = (value < low).fill_null(False), (value > high).fill_null(False)
    sums = events.group_by("code").agg(below.sum().alias("below"), above.sum().alias("above"))
    counts = {str(r["code"]): {"below": int(r["below"]), "above": int(r["above"])} for r in sums.iter_rows(named=True)}
    return events.filter(~(below | above)), counts


def hourly_from_events(events: pl.DataFrame, grid: pl.DataFrame, catalog: Catalog, report: IngestReport) -> pl.DataFrame:
    """Measurement events -> the wide hourly table on the stays' hour grid (rules in the module docstring).

    Parameters
    ----------
    events
        stay_id, hour, time, itemid, code, value, from :func:`read_measurements`.
    grid
        stay_id, hour: every ICU hour of every stay.
    catalog
        Plausible ranges, units (per-hour units are summed) and the GCS components.
    report
        Receives out-of-range and incomplete-GCS counts.

    Returns
    -------
    pl.DataFrame
        ``grid`` plus a Float32 column per catalog variable seen (null = not measured).
    """
    bounds = {v.code: v.plausible for v in catalog.variables}
    summed = sorted(v.code for v in catalog.variables if v.unit.endswith("/h"))
    checked_per_hour = [*summed, GCS_CODE]
    keys = ["stay_id", "hour", "code"]
    averaged, counts = _drop_out_of_range_long(
        events.filter(~pl.col("code").is_in(checked_per_hour)),
        {c: b for c, b in bounds.items() if c not in checked_per_hour})
    report.add_out_of_range(counts)
    means = averaged.group_by(keys).agg(pl.col("value").mean())
    sums = events.filter(pl.col("code").is_in(summed)).group_by(keys).agg(pl.col("value").sum())
    n_components = len(catalog.variable(GCS_CODE).mimic_iv)
    components = (events.filter(pl.col("code") == GCS_CODE).sort("time", maintain_order=True)
                  .group_by(["stay_id", "hour", "itemid"]).agg(pl.col("value").last()))
    gcs = components.group_by(["stay_id", "hour"]).agg(pl.col("value").sum(), pl.len().alias("components"))
    report.add("flagged", "gcs_hours_incomplete", gcs.filter(pl.col("components") < n_components).height)
    gcs = gcs.filter(pl.col("components") == n_components).select(
        "stay_id", "hour", pl.lit(GCS_CODE).cast(events.schema["code"]).alias("code"), "value")
    wide = pl.concat([means, sums, gcs]).pivot(on="code", index=["stay_id", "hour"], values="value")
    wide, counts = null_out_of_range(wide, {c: bounds[c] for c in checked_per_hour if c in wide.columns})
    report.add_out_of_range(counts)
    return grid.join(wide, on=["stay_id", "hour"], how="left", maintain_order="left").with_columns(
        pl.exclude("stay_id", "hour").cast(pl.Float32))


# ------------------------------------------------------------------------------------------ treatments
def _seconds_since_intime(time: pl.Expr) -> pl.Expr:
    return (time - pl.col("intime")).dt.total_microseconds() / 1e6


def spread_over_hours(intervals: pl.DataFrame) -> pl.DataFrame:
    """Split ``[start, end)`` intervals across the ICU hours they overlap, clipped to ``[intime, outtime]``.

    Parameters
    ----------
    intervals
        stay_id, intime, outtime, start, end (Datetime), plus any columns to carry along.

    Returns
    -------
    pl.DataFrame
        One row per (interval, overlapped hour): the input columns, ``hour`` (Int32),
        ``overlap_s`` (seconds of the interval inside that hour and the stay) and ``duration_s``
        (seconds of the whole interval). An interval with ``start == end`` inside the stay gives
        one row, at its hour, with both 0. Intervals entirely outside the stay give no rows.
    """
    frame = intervals.with_columns(
        _seconds_since_intime(pl.col("start")).alias("_start_s"),
        _seconds_since_intime(pl.col("end")).alias("_end_s"),
        _seconds_since_intime(pl.col("outtime")).alias("_stay_s"),
    ).with_columns(
        (pl.col("_end_s") - pl.col("_start_s")).alias("duration_s"),
        pl.max_horizontal("_start_s", pl.lit(0.0)).alias("_from_s"),
        pl.min_horizontal("_end_s", "_stay_s").alias("_to_s"),
    )
    instant = pl.col("duration_s") == 0
    inside = pl.when(instant).then(pl.col("_start_s").is_between(0.0, pl.col("_stay_s"))).otherwise(
        pl.col("_to_s") > pl.col("_from_s"))
    first = (pl.col("_from_s") / SECONDS_PER_HOUR).floor().cast(pl.Int32) + 1
    last = pl.when(instant).then(first).otherwise((pl.col("_to_s") / SECONDS_PER_HOUR).ceil().cast(pl.Int32))
    hour_start_s = (pl.col("hour") - 1).cast(pl.Float64) * SECONDS_PER_HOUR
    overlap = pl.min_horizontal("_to_s", hour_start_s + SECONDS_PER_HOUR) - pl.max_horizontal("_from_s", hour_start_s)
    return (frame.filter(inside).with_columns(pl.int_ranges(first, last + 1, dtype=pl.Int32).alias("hour")).explode("hour")
            .with_columns(pl.when(instant).then(0.0).otherwise(overlap).alias("overlap_s"))
            .drop("_start_s", "_end_s", "_stay_s", "_from_s", "_to_s"))


def _drop_out_of_range(rows: pl.DataFrame, code: str, bounds: tuple[float, float], report: IngestReport) -> pl.DataFrame:
    """Drop rows whose ``value`` lies outside ``bounds``; count them under ``code``."""
    below, above = pl.col("value") < bounds[0], pl.col("value") > bounds[1]
    report.add_out_of_range({code: {"below": rows.select(below.sum()).item(), "above": rows.select(above.sum()).item()}})
    return rows.filter(~(below | above))


def vasopressor_rates(inputs: pl.DataFrame, weights: pl.DataFrame, catalog: Catalog, path: Path,
                      report: IngestReport) -> pl.DataFrame:
    """Vasopressor rows of inputevents -> their rows with ``value``: norepinephrine equivalents in ug/kg/min.

    Parameters
    ----------
    inputs
        inputevents rows (from :func:`read_table`, stays attached).
    weights
        stay_id, weight (kg): used where a row's ``patientweight`` is missing.
    catalog
        The norepinephrine treatment's per-itemid factors and plausible range.
    path
        The inputevents file, for errors.
    report
        Receives skip, conversion and out-of-range counts.

    Raises
    ------
    DataError
        At the first row whose ``rateuom`` is not in :data:`RATE_CONVERSIONS` or does not convert
        to the unit of its drug's factor.
    """
    treatment = catalog.treatment("norepinephrine")
    factors = treatment.norepinephrine_equivalent
    rows = inputs.filter(pl.col("itemid").is_in(sorted(factors)))
    report.add("dropped", "vasopressor rows without a rate", rows["rate"].null_count())
    rows = rows.filter(pl.col("rate").is_not_null())
    pairs = rows.group_by("itemid", "rateuom").agg(pl.col(ROW).min()).sort(ROW)
    conversions = []
    for itemid, rateuom, row in pairs.iter_rows():
        factor = factors[itemid]
        conversion = RATE_CONVERSIONS.get(rateuom or "")
        if conversion is None or conversion.unit != factor.unit:
            known = ", ".join(u for u, c in RATE_CONVERSIONS.items() if c.unit == factor.unit)
            raise DataError(f"rate unit {rateuom!r} of {factor.drug} does not convert to {factor.unit} (known: {known})",
                            file=path, row=row + 1, column="rateuom")
        converted = conversion.per_weight or conversion.multiplier != 1.0
        conversions.append((itemid, rateuom, conversion.multiplier * factor.factor, conversion.per_weight, converted))
    lookup = pl.DataFrame(conversions, schema={"itemid": pl.Int64, "rateuom": pl.Utf8, "_multiplier": pl.Float64,
                                               "_per_weight": pl.Boolean, "_converted": pl.Boolean}, orient="row")
    rows = (rows.join(lookup, on=["itemid", "rateuom"], how="left", maintain_order="left")
            .join(weights, on="stay_id", how="left", maintain_order="left")
            .with_columns(pl.when(pl.col("patientweight") > 0).then(pl.col("patientweight")).otherwise(pl.col(WEIGHT_CODE))
                          .alias("_kg")))
    no_weight = pl.col("_per_weight") & pl.col("_kg").is_null()
    report.add("dropped", "vasopressor rows without a weight", rows.select(no_weight.sum()).item())
    rows = rows.filter(~no_weight)
    for rateuom, n in rows.filter("_converted").group_by("rateuom").len().sort("rateuom").iter_rows():
        report.add("converted", f"vasopressor rate {rateuom} -> {treatment.unit}", n)
    rows = rows.with_columns((pl.col("rate") * pl.col("_multiplier")
                              / pl.when(pl.col("_per_weight")).then(pl.col("_kg")).otherwise(1.0)).alias("value"))
    return _drop_out_of_range(rows, treatment.code, treatment.plausible, report)


def fluid_amounts(inputs: pl.DataFrame, catalog: Catalog, path: Path, report: IngestReport) -> pl.DataFrame:
    """Fluid rows of inputevents -> their rows with ``value``: the amount in mL (rows without one are skipped).

    Raises
    ------
    DataError
        At the first row whose ``amountuom`` is not mL or L (any case).
    """
    treatment = catalog.treatment("iv_fluid_ml")
    rows = inputs.filter(pl.col("itemid").is_in(sorted(treatment.mimic_iv)))
    report.add("dropped", "fluid rows without an amount", rows["amount"].null_count())
    rows = rows.filter(pl.col("amount").is_not_null())
    unit = pl.col("amountuom").str.to_lowercase()
    _error(rows, ~unit.is_in(list(AMOUNT_TO_ML)).fill_null(False), path, "amountuom",
           "amount unit {cell!r} of a fluid is not mL or L")
    rows = rows.with_columns((pl.col("amount") * unit.replace_strict(AMOUNT_TO_ML, return_dtype=pl.Float64)).alias("value"))
    return _drop_out_of_range(rows, treatment.code, (0.0, float("inf")), report)


def read_treatments(
    files: dict[str, Path], stays: pl.DataFrame, chart_weights: pl.DataFrame, grid: pl.DataFrame, catalog: Catalog,
    report: IngestReport, progress: ProgressCallback | None = None, done: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """inputevents and procedureevents -> the treatments table on the hour grid, and the stays' weights.

    Parameters
    ----------
    files, stays
        As for :func:`read_measurements`.
    chart_weights
        stay_id, weight (kg) from chartevents admission weights.
    grid
        stay_id, hour: every ICU hour of every stay.
    catalog
        The treatments: itemids, factors, category, plausible ranges, defaults.
    report
        Receives counts.
    progress, done
        ``progress(done + k, len(TABLES))`` after the k-th of the two tables.

    Returns
    -------
    treatments
        ``grid`` plus a Float32 column per catalog treatment (its default where nothing was given).
    weights
        stay_id, weight (kg): the chartevents admission weight, else the first inputevents
        ``patientweight`` of the stay.
    """
    input_path, procedure_path = files["inputevents"], files["procedureevents"]
    fluid = catalog.treatment("iv_fluid_ml")
    vasopressor = catalog.treatment("norepinephrine")
    antibiotic = catalog.treatment("antibiotic")
    ventilation = catalog.treatment("mechanical_ventilation")
    if not antibiotic.mimic_iv_category:
        raise CatalogError("treatment 'antibiotic' needs mimic_iv_category (the inputevents ordercategoryname text)")
    category = antibiotic.mimic_iv_category
    keep = (_itemid_filter(set(fluid.mimic_iv) | set(vasopressor.norepinephrine_equivalent))
            | _raw("ordercategoryname").str.contains(category, literal=True).fill_null(False))
    inputs = _attach_stays(read_table(input_path, TABLES["inputevents"], keep), stays, input_path)
    rewritten = pl.col("statusdescription") == REWRITTEN_STATUS
    report.add("dropped", "inputevents rows rewritten (superseded)", inputs.select(rewritten.sum()).item())
    inputs = inputs.filter(~rewritten.fill_null(False))
    _error(inputs, pl.col("endtime") < pl.col("starttime"), input_path, "endtime", "endtime {cell} is before starttime {starttime}")
    weights = _coalesce_weights(chart_weights, _first_per_stay(inputs, "patientweight", "starttime"))
    intervals = {
        fluid.code: fluid_amounts(inputs, catalog, input_path, report),
        vasopressor.code: vasopressor_rates(inputs, weights, catalog, input_path, report),
        antibiotic.code: inputs.filter(pl.col("ordercategoryname").str.contains(category, literal=True).fill_null(False)),
    }
    if progress:
        progress(done + 1, len(TABLES))
    procedures = read_table(procedure_path, TABLES["procedureevents"], _itemid_filter(set(ventilation.mimic_iv)))
    procedures = _attach_stays(procedures, stays, procedure_path)
    _error(procedures, pl.col("endtime") < pl.col("starttime"), procedure_path, "endtime",
           "endtime {cell} is before starttime {starttime}")
    intervals[ventilation.code] = procedures
    if progress:
        progress(done + 2, len(TABLES))
    report.files += 2

    table = grid
    for code, rows in intervals.items():
        hours = spread_over_hours(rows.rename({"starttime": "start", "endtime": "end"}))
        report.add("dropped", f"{code} rows outside the stay", rows.height - hours[ROW].n_unique())
        if code == fluid.code:
            share = pl.when(pl.col("duration_s") > 0).then(pl.col("overlap_s") / pl.col("duration_s")).otherwise(1.0)
            per_hour = hours.group_by("stay_id", "hour").agg((pl.col("value") * share).sum().alias(code))
        elif code == vasopressor.code:
            per_hour = hours.group_by("stay_id", "hour").agg((pl.col("value") * pl.col("overlap_s")).sum()
                                                             .truediv(SECONDS_PER_HOUR).alias(code))
        else:
            per_hour = hours.select("stay_id", "hour").unique().with_columns(pl.lit(1.0).alias(code))
        high = catalog.treatment(code).plausible[1]
        capped = pl.col(code) > high
        report.add("flagged", f"{code} hours capped at {high:g}", per_hour.select(capped.sum()).item())
        per_hour = per_hour.with_columns(pl.when(capped).then(high).otherwise(pl.col(code)).alias(code))
        table = table.join(per_hour, on=["stay_id", "hour"], how="left", maintain_order="left")
    for treatment in catalog.treatments:
        if treatment.code in intervals:
            table = table.with_columns(pl.col(treatment.code).fill_null(treatment.default).cast(pl.Float32))
        else:
            report.rules.append(f"treatment {treatment.code} has no MIMIC-IV rule: every hour holds its default")
    return table, weights


# ------------------------------------------------------------------------------------------ shell
def read_mimic_iv(
    src: str | Path,
    *,
    catalog: Catalog | None = None,
    progress: ProgressCallback | None = None,
) -> Cohort:
    """Read the official MIMIC-IV CSV tables into a canonical :class:`Cohort` with treatments.

    Parameters
    ----------
    src
        The MIMIC-IV directory holding ``hosp/`` and ``icu/`` (tables as .csv or .csv.gz).
    catalog
        The variable catalog (default: :func:`organsim.catalog.load_catalog`).
    progress
        Optional ``progress(done, total)`` callback, in tables read (of :data:`TABLES`).

    Returns
    -------
    Cohort
        ``source="mimic-iv"``, every ICU hour of every stay, treatments recorded, no sepsis labels
        (see the module docstring); the :class:`IngestReport` is in
        ``cohort.meta["provenance"]["ingest_report"]``.

    Raises
    ------
    DataError
        On any input error listed in the module docstring; nothing is written in any case.
    """
    catalog = catalog or load_catalog()
    files = find_tables(src)
    report = IngestReport(source=SOURCE, rules=[
        "one stay per icu/icustays row; hour = 1 + floor((time - intime) / 1 h); hours 1 .. hour of outtime",
        "chartevents/outputevents by stay_id, labevents by subject to the stay whose [intime, outtime] holds charttime",
        "values of a variable in one hour are averaged; per-hour units (urine output) summed; "
        "gcs = eye + verbal + motor (last of each in the hour, all three needed)",
        "223761 degF -> degC; FiO2 in [21, 100] is a percentage: divided by 100",
        "values outside the plausible range nulled and counted (single values; per hour for sums and gcs)",
        "norepinephrine = sum of vasopressor rates x catalog factor (ug/kg/min NE equivalents), time-weighted "
        "mean over the hour; mcg/min divided by patientweight; units/hour / 60",
        "iv_fluid_ml = amount split across hours by overlap; antibiotic = an ordercategoryname 'Antibiotics' row "
        "in the hour; mechanical_ventilation = procedureevents 225792/225794 running in the hour",
        "sepsis not labelled (false, onset null): derive Sepsis-3 with organsim.scores.sepsis3_onset",
    ])
    stays = read_stays(files)
    report.files += 3
    if progress:
        progress(3, len(TABLES))
    grid = stays.select("stay_id", pl.int_ranges(1, pl.col("n_hours") + 1, dtype=pl.Int32).alias("hour")).explode("hour")
    events, chart_weights = read_measurements(files, stays, catalog, report, progress, done=3)
    hourly = hourly_from_events(events, grid, catalog, report)
    treatments, weights = read_treatments(files, stays, chart_weights, grid, catalog, report, progress, done=6)
    stays = stays.join(weights, on="stay_id", how="left", maintain_order="left")
    bounds = plausible_bounds(catalog)
    stays, counts = null_out_of_range(stays, {c: bounds[c] for c in ("age", WEIGHT_CODE, "hosp_adm_hours")})
    report.add_out_of_range(counts)
    stays = stays.drop("intime", "outtime", "n_hours")
    report.stays, report.hours, report.septic_stays = stays.height, hourly.height, 0
    provenance = {
        "path": str(Path(src).resolve()),
        "format": "MIMIC-IV CSV (hosp/, icu/)",
        "tables": {key: str(path) for key, path in files.items()},
        "sepsis": "not labelled: MIMIC-IV has no Sepsis-3 label; derive it with organsim.scores.sepsis3_onset",
        "ingest_report": report.to_dict(),
    }
    return Cohort.from_frames(stays, hourly, treatments, source=SOURCE, provenance=provenance,
                              treatments_recorded=True, catalog=catalog)
