"""Cohort -> files other tools read: canonical Parquet, wide CSV, PhysioNet 2019 .psv, MEDS.

Every writer is atomic (the output directory appears complete or not at all; an existing one is
replaced only once the new one is complete) and deterministic (same cohort, same bytes). Each
format is read back by its organsim loader with the same values; what a format cannot hold is
dropped and said in :attr:`ExportSummary.notes` (and in the directory's ``export.json``).

============  ===============================================  ====================================
format        layout                                           read back by
============  ===============================================  ====================================
``parquet``   the canonical cohort directory (stays, hourly,   :meth:`Cohort.load`
              treatments .parquet + cohort.json)
``csv``       ``hourly.csv`` (stay_id, hour, every catalog     :func:`~organsim.data.read_table`
              variable, and the treatments when recorded),     (``hourly.csv``, ``stays.csv``)
              ``stays.csv`` (statics, labels, split, source),
              ``export.json``
``psv``       one ``p<stay_id>.psv`` per stay in the           :func:`~organsim.data.read_physionet2019`
              PhysioNet/CinC 2019 challenge's columns and      and the challenge's own scripts
              order, ``NaN`` for not measured, plus
              ``export.json``
``meds``      :func:`~organsim.data.write_meds`'s layout;      :func:`~organsim.data.read_meds`
              ``metadata/dataset.json`` says ``synthetic``
============  ===============================================  ====================================

PhysioNet files: ``ICULOS`` is the cohort's ``hour``; ``SepsisLabel`` is
:meth:`Cohort.sepsis_labels` (1 from 6 h before onset on); statics repeat on every row
(``Age``, ``Gender``, ``HospAdmTime``; unit ``MICU`` -> Unit1 = 1, Unit2 = 0, ``SICU`` -> 0, 1,
``other`` -> 0, 0, unknown -> NaN, NaN). The challenge has no column for the catalog's other
variables (cvp, pao2, urine output, ...), weight, death, treatments, split or subject ids: they
are dropped with a note. A stay without hourly rows has no file (a challenge file needs a row), and
the loader re-derives the onset as the first labelled hour + 6, so an onset with no hourly row
exactly 6 h before it (e.g. an onset in the first 6 hours) reads back later; both are counted in
the notes. Values are written in the shortest decimal form that reads back to the same float32.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from organsim.data.cohort import SEPSIS_LABEL_LEAD_HOURS, Cohort
from organsim.data.meds import write_meds
from organsim.utils.errors import DataError
from organsim.utils.io import atomic_directory, atomic_write_text

FORMATS = ("parquet", "csv", "psv", "meds")
SYNTHETIC_SOURCES = ("engine", "synthetic")
"""Cohort sources that are simulated, not recorded from patients."""
CHALLENGE_VARIABLES = (
    "HR", "O2Sat", "Temp", "SBP", "MAP", "DBP", "Resp", "EtCO2", "BaseExcess", "HCO3", "FiO2", "pH",
    "PaCO2", "SaO2", "AST", "BUN", "Alkalinephos", "Calcium", "Chloride", "Creatinine",
    "Bilirubin_direct", "Glucose", "Lactate", "Magnesium", "Phosphate", "Potassium",
    "Bilirubin_total", "TroponinI", "Hct", "Hgb", "PTT", "WBC", "Fibrinogen", "Platelets",
)
CHALLENGE_COLUMNS = (*CHALLENGE_VARIABLES, "Age", "Gender", "Unit1", "Unit2", "HospAdmTime", "ICULOS", "SepsisLabel")
"""The 41 columns of a PhysioNet/CinC 2019 file, in the challenge's order."""
UNIT_FLAGS = {"MICU": (1, 0), "SICU": (0, 1), "other": (0, 0)}
EXPORT_MANIFEST = "export.json"
ProgressCallback = Callable[[int, int], None]


@dataclass
class ExportSummary:
    """What an export wrote.

    Attributes
    ----------
    path
        The output directory.
    format
        One of :data:`FORMATS`.
    stays
        Stays written.
    files
        Data files written (for ``psv`` one per stay).
    synthetic
        Whether the export is marked as synthetic (see :func:`is_synthetic`).
    notes
        One line per thing the format could not hold or that reads back differently.
    """

    path: Path
    format: str
    stays: int
    files: int
    synthetic: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "stays": self.stays, "files": self.files,
                "synthetic": self.synthetic, "notes": list(self.notes)}


def is_synthetic(cohort: Cohort) -> bool:
    """True when ``cohort.meta["synthetic"]`` says so, or (absent that key) its source is simulated."""
    if "synthetic" in cohort.meta:
        return bool(cohort.meta["synthetic"])
    return cohort.meta.get("source") in SYNTHETIC_SOURCES


def _manifest(summary: ExportSummary, cohort: Cohort) -> str:
    document = {**summary.to_dict(), "source": cohort.meta.get("source"), "catalog_version": cohort.catalog.version,
                "counts": cohort.counts(), "provenance": cohort.meta.get("provenance", {})}
    document.pop("path")
    return json.dumps(document, indent=2, sort_keys=True, default=str) + "\n"


def _measured_counts(frame: pl.DataFrame, columns: list[str]) -> dict[str, int]:
    """Non-null values per column, only for columns that have any."""
    if not columns or frame.height == 0:
        return {}
    counts = frame.select(pl.col(columns).is_not_null().sum()).row(0, named=True)
    return {c: int(n) for c, n in counts.items() if n}


# ------------------------------------------------------------------------------------------ PhysioNet
def physionet_frame(cohort: Cohort) -> tuple[pl.DataFrame, list[str]]:
    """The cohort's rows in the challenge layout: ``stay_id`` + :data:`CHALLENGE_COLUMNS`; and the notes.

    Pure: no file is touched. Rows are in (stay_id, hour) order; stays without hourly rows are absent.
    """
    catalog = cohort.catalog
    to_code = catalog.physionet_columns
    missing = [c for c in (*CHALLENGE_VARIABLES, "Age", "Gender", "HospAdmTime") if c not in to_code]
    if missing:
        raise ValueError(f"the catalog maps no variable to the challenge column(s) {missing}")
    stays = cohort.stays
    negative = stays.filter(pl.col("stay_id") < 0)
    if negative.height:
        raise DataError(f"stay_id {negative['stay_id'][0]} is negative: a challenge file is named p<digits>.psv",
                        column="stay_id")
    unit1 = pl.col("unit").replace_strict({k: v[0] for k, v in UNIT_FLAGS.items()}, default=None, return_dtype=pl.Int8)
    unit2 = pl.col("unit").replace_strict({k: v[1] for k, v in UNIT_FLAGS.items()}, default=None, return_dtype=pl.Int8)
    statics = stays.select(
        "stay_id",
        pl.col(to_code["Age"]).alias("Age"),
        pl.col(to_code["Gender"]).alias("Gender"),
        unit1.alias("Unit1"),
        unit2.alias("Unit2"),
        pl.col(to_code["HospAdmTime"]).alias("HospAdmTime"),
    )
    labels = cohort.sepsis_labels().select(pl.col("sepsis_label").alias("SepsisLabel"))
    rows = pl.concat([cohort.hourly, labels], how="horizontal").join(statics, on="stay_id", how="left",
                                                                     maintain_order="left")
    frame = rows.select(
        "stay_id",
        *[pl.col(to_code[c]).alias(c) for c in CHALLENGE_VARIABLES],
        "Age", "Gender", "Unit1", "Unit2", "HospAdmTime",
        pl.col("hour").alias("ICULOS"),
        "SepsisLabel",
    )

    notes = []
    kept = set(to_code.values())
    dropped = _measured_counts(cohort.hourly, [c for c in catalog.variable_codes if c not in kept])
    if dropped:
        notes.append("variables the challenge has no column for, dropped (values): "
                     + ", ".join(f"{code} ({n:,})" for code, n in dropped.items()))
    dropped_statics = _measured_counts(stays, [c for c in ("weight", "death", "split") if c in stays.columns])
    if dropped_statics:
        notes.append("stay columns the challenge lacks, dropped (stays with a value): "
                     + ", ".join(f"{c} ({n:,})" for c, n in dropped_statics.items()))
    treated = _measured_counts(cohort.treatments, list(catalog.treatment_codes))
    if cohort.meta.get("treatments_recorded") and cohort.treatments.height:
        notes.append(f"treatments dropped ({cohort.treatments.height:,} treatment hours; "
                     f"columns {', '.join(treated) or 'none given'})")
    other_subject = int((stays["subject_id"] != stays["stay_id"]).sum())
    if other_subject:
        notes.append(f"{other_subject:,} stays have a subject_id other than their stay_id; the loader "
                     "reads subject_id = stay_id")
    empty = stays.filter(pl.col("n_hours") == 0)
    if empty.height:
        notes.append(f"{empty.height:,} stays without hourly rows have no file")
    first_labelled = cohort.hourly.select("stay_id", "hour").join(
        stays.select("stay_id", "sepsis_onset_hour"), on="stay_id").filter(
        pl.col("hour") >= pl.col("sepsis_onset_hour") - SEPSIS_LABEL_LEAD_HOURS).group_by("stay_id").agg(
        pl.col("hour").min().alias("first_labelled"), pl.col("sepsis_onset_hour").first())
    shifted = first_labelled.filter(pl.col("first_labelled") + SEPSIS_LABEL_LEAD_HOURS != pl.col("sepsis_onset_hour"))
    if shifted.height:
        notes.append(f"{shifted.height:,} septic stays have no hourly row {SEPSIS_LABEL_LEAD_HOURS} h before onset "
                     f"(e.g. onset in the first {SEPSIS_LABEL_LEAD_HOURS} hours): their labels are exact, but the "
                     "loader reads the onset as the first labelled hour + 6")
    unlabelled = stays.filter(pl.col("sepsis") & ~pl.col("stay_id").is_in(first_labelled["stay_id"].implode())
                              & (pl.col("n_hours") > 0))
    if unlabelled.height:
        notes.append(f"{unlabelled.height:,} septic stays have no labelled hour (onset unknown or more than "
                     f"{SEPSIS_LABEL_LEAD_HOURS} h after the last row): they read back as not septic")
    return frame, notes


def write_physionet2019(
    cohort: Cohort,
    path: str | Path,
    *,
    overwrite: bool = True,
    progress: ProgressCallback | None = None,
) -> ExportSummary:
    """Write one PhysioNet/CinC 2019 ``p<stay_id>.psv`` per stay (zero-padded to 6 digits) into ``path``.

    Parameters
    ----------
    cohort
        The cohort; its catalog maps codes to challenge columns.
    path
        Output directory (written atomically): the .psv files and ``export.json``.
    overwrite
        Replace an existing directory at ``path`` once the new one is complete.
    progress
        Optional ``progress(done, total)`` callback, in files.

    Returns
    -------
    ExportSummary
        With the notes of :func:`physionet_frame` (what the challenge layout cannot hold).
    """
    frame, notes = physionet_frame(cohort)
    parts = frame.partition_by("stay_id", as_dict=True, maintain_order=True)
    summary = ExportSummary(Path(path), "psv", len(parts), len(parts), is_synthetic(cohort), notes)
    with atomic_directory(path, overwrite=overwrite) as tmp:
        for done, ((stay_id,), part) in enumerate(parts.items(), start=1):
            part.drop("stay_id").write_csv(tmp / f"p{stay_id:06d}.psv", separator="|", null_value="NaN")
            if progress:
                progress(done, len(parts))
        atomic_write_text(tmp / EXPORT_MANIFEST, _manifest(summary, cohort))
    return summary


# ------------------------------------------------------------------------------------------ CSV
def csv_frames(cohort: Cohort) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """``(hourly, stays, notes)`` in :func:`~organsim.data.read_table`'s wide layout. Pure.

    The hourly frame has stay_id, hour and every catalog variable; when treatments are recorded
    their columns join on (stay_id, hour). That layout has one key set for both tables, so hours
    with a treatments row but no hourly row (read back as unmeasured hours) and hourly rows
    without a treatments row (read back with the treatments' defaults) are counted in the notes.
    """
    hourly = cohort.hourly
    notes = []
    if cohort.meta.get("treatments_recorded"):
        keys = ["stay_id", "hour"]
        only_treated = cohort.treatments.join(hourly.select(keys), on=keys, how="anti").height
        only_hourly = hourly.select(keys).join(cohort.treatments.select(keys), on=keys, how="anti").height
        if only_treated:
            notes.append(f"{only_treated:,} treatment hours without an hourly row read back as hours with nothing measured")
        if only_hourly:
            notes.append(f"{only_hourly:,} hourly rows without a treatments row read back with the treatments' defaults")
        hourly = hourly.join(cohort.treatments, on=keys, how="full", coalesce=True).sort(keys)
    stays = cohort.stays.drop("n_hours")
    return hourly, stays, notes


def write_csv(cohort: Cohort, path: str | Path, *, overwrite: bool = True) -> ExportSummary:
    """Write ``hourly.csv``, ``stays.csv`` and ``export.json`` into ``path`` (atomically).

    Read back with ``read_table(path / "hourly.csv", path / "stays.csv")``. Empty cells are not
    measured; booleans are ``true``/``false``.
    """
    hourly, stays, notes = csv_frames(cohort)
    summary = ExportSummary(Path(path), "csv", stays.height, 2, is_synthetic(cohort), notes)
    with atomic_directory(path, overwrite=overwrite) as tmp:
        hourly.write_csv(tmp / "hourly.csv")
        stays.write_csv(tmp / "stays.csv")
        atomic_write_text(tmp / EXPORT_MANIFEST, _manifest(summary, cohort))
    return summary


# ------------------------------------------------------------------------------------------ MEDS, Parquet
def write_meds_export(cohort: Cohort, path: str | Path, *, overwrite: bool = True) -> ExportSummary:
    """:func:`~organsim.data.write_meds`, with ``"synthetic": true|false`` added to metadata/dataset.json.

    The MEDS dataset metadata has no field for it; the extra key is allowed by the MEDS schema and
    tells every reader whether the subjects are real.
    """
    synthetic = is_synthetic(cohort)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True or choose another path")
    with atomic_directory(path, overwrite=overwrite) as tmp:
        write_meds(cohort, tmp, overwrite=True)
        dataset_file = tmp / "metadata" / "dataset.json"
        dataset = json.loads(dataset_file.read_text(encoding="utf-8"))
        dataset["synthetic"] = synthetic
        atomic_write_text(dataset_file, json.dumps(dataset, indent=2) + "\n")
        shards = len(list((tmp / "data").glob("*.parquet")))
    return ExportSummary(path, "meds", cohort.stays.height, shards, synthetic)


def write_parquet(cohort: Cohort, path: str | Path, *, overwrite: bool = True) -> ExportSummary:
    """The canonical cohort directory (:meth:`Cohort.save`); ``cohort.json`` carries source and provenance."""
    cohort.save(path, overwrite=overwrite)
    return ExportSummary(Path(path), "parquet", cohort.stays.height, 3, is_synthetic(cohort))


def export_cohort(
    cohort: Cohort,
    path: str | Path,
    format: str,
    *,
    overwrite: bool = True,
    progress: ProgressCallback | None = None,
) -> ExportSummary:
    """Write ``cohort`` to ``path`` in ``format`` (one of :data:`FORMATS`); see the module docstring.

    ``progress(done, total)`` is called per file for ``psv`` (the one format with many files).
    """
    if format == "parquet":
        return write_parquet(cohort, path, overwrite=overwrite)
    elif format == "csv":
        return write_csv(cohort, path, overwrite=overwrite)
    elif format == "psv":
        return write_physionet2019(cohort, path, overwrite=overwrite, progress=progress)
    elif format == "meds":
        return write_meds_export(cohort, path, overwrite=overwrite)
    raise ValueError(f"unknown export format {format!r}; choose one of {FORMATS}")
