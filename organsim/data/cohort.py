"""The canonical cohort: three Parquet tables and a JSON header in one directory.

::

    COHORT_DIR/
      stays.parquet       one row per stay: static data, labels, split, source
      hourly.parquet      (stay_id, hour) + one Float32 column per catalog variable; null = not measured
      treatments.parquet  (stay_id, hour) + one Float32 column per catalog treatment
      cohort.json         source, catalog version, provenance, counts, treatments_recorded

Column schemas come from data_schemas/tables/*.yaml through the catalog, so the catalog is the one
place that says what a cohort holds. polars does the ETL; :meth:`Cohort.to_xarray` gives the dense
(stay, hour, variable) view models read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import xarray as xr

from organsim.catalog import SYSTEMS, Catalog, load_catalog
from organsim.data.schema import required_columns, table_schema
from organsim.utils.errors import DataError
from organsim.utils.io import atomic_directory, atomic_write_text

TABLE_FILES = {"stays": "stays.parquet", "hourly": "hourly.parquet", "treatments": "treatments.parquet"}
SPLITS = ("train", "validation", "test")
SEPSIS_LABEL_LEAD_HOURS = 6
"""The PhysioNet 2019 early-warning label is 1 from this many hours before Sepsis-3 onset on."""


def sepsis_label_expr(onset_hour: pl.Expr, hour: pl.Expr, lead_hours: int = SEPSIS_LABEL_LEAD_HOURS) -> pl.Expr:
    """The per-hour early-warning label (Int8): 1 when ``hour >= onset_hour - lead_hours``, else 0.

    Stays without an onset (null) are 0 at every hour. With ``lead_hours=6`` this is the PhysioNet
    2019 challenge's ``SepsisLabel``.
    """
    return (onset_hour.is_not_null() & (hour >= onset_hour - lead_hours)).fill_null(False).cast(pl.Int8)


def _first_bad_cast(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> tuple[int, str] | None:
    """(row index, reason) of the first value of ``frame[name]`` that ``dtype`` cannot hold exactly."""
    values = frame[name]
    cast = values.cast(dtype, strict=False)
    lost = values.is_not_null() & cast.is_null()
    if dtype.is_integer() and values.dtype.is_float():
        lost = lost | (values.is_not_null() & (values != values.floor()))
    hits = lost.arg_true()
    if not len(hits):
        return None
    return int(hits[0]), f"{values[int(hits[0])]!r} is not a valid {dtype}"


def conform(frame: pl.DataFrame, catalog: Catalog, table: str, *, file: str | Path | None = None) -> pl.DataFrame:
    """Return ``frame`` with exactly the table's columns, in order, with the catalog's dtypes.

    Catalog variable/treatment columns absent from ``frame`` are added (null for variables, the
    treatment's default for treatments); fixed columns must be present. Unknown columns, and values
    the column's dtype cannot hold (text in a number column, 2.5 in an integer column), are
    a :class:`DataError` naming the column (and the row, 1-based, for values).
    """
    schema = table_schema(catalog, table)
    spec = catalog.tables[table]
    fixed = [c.name for c in spec.columns]
    unknown = [c for c in frame.columns if c not in schema]
    if unknown:
        raise DataError(f"unknown column(s) {unknown} in the {table} table; known: {list(schema)}", file=file, row=0,
                        column=unknown[0])
    absent_fixed = [c for c in fixed if c not in frame.columns and not next(x for x in spec.columns if x.name == c).nullable]
    if absent_fixed:
        raise DataError(f"the {table} table lacks required column(s) {absent_fixed}", file=file, column=absent_fixed[0])
    fill: list[pl.Expr] = []
    for name, dtype in schema.items():
        if name in frame.columns:
            continue
        default = None
        if table == "treatments" and name in catalog.treatment_codes:
            default = catalog.treatment(name).default
        fill.append(pl.lit(default, dtype=dtype).alias(name))
    if fill:
        frame = frame.with_columns(fill)
    for name, dtype in schema.items():
        if frame.schema[name] != dtype:
            bad = _first_bad_cast(frame, name, dtype)
            if bad is not None:
                raise DataError(f"{bad[1]} (the {table} table's {name} column is {dtype})", file=file, row=bad[0] + 1,
                                column=name)
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


@dataclass
class Cohort:
    """A canonical ICU cohort (see the module docstring for the on-disk layout).

    Build one with :meth:`from_frames` (which conforms and validates the tables) or :meth:`load`.

    Attributes
    ----------
    stays, hourly, treatments
        The three tables as polars DataFrames, sorted by (stay_id[, hour]).
    meta
        The cohort.json header: ``source``, ``catalog_version``, ``provenance`` (free-form dict),
        ``treatments_recorded`` (bool) and ``counts`` (recomputed on save).
    """

    stays: pl.DataFrame
    hourly: pl.DataFrame
    treatments: pl.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    catalog: Catalog = field(default_factory=load_catalog, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frames(
        cls,
        stays: pl.DataFrame,
        hourly: pl.DataFrame,
        treatments: pl.DataFrame | None = None,
        *,
        source: str,
        provenance: dict[str, Any] | None = None,
        treatments_recorded: bool | None = None,
        catalog: Catalog | None = None,
    ) -> Cohort:
        """Conform three frames to the catalog schemas, fill ``n_hours``, sort and validate.

        ``stays`` may omit ``n_hours`` (computed from ``hourly``), ``subject_id`` (defaults to
        ``stay_id``), ``source`` (defaults to ``source``) and every nullable column.
        """
        catalog = catalog or load_catalog()
        counts = hourly.group_by("stay_id").len("n_hours")
        if "stay_id" in stays.columns:
            counts = counts.with_columns(pl.col("stay_id").cast(stays.schema["stay_id"], strict=False))
        stays = stays.drop([c for c in ("n_hours",) if c in stays.columns]).join(
            counts, on="stay_id", how="left", maintain_order="left")
        stays = stays.with_columns(pl.col("n_hours").fill_null(0))
        if "subject_id" not in stays.columns:
            stays = stays.with_columns(pl.col("stay_id").alias("subject_id"))
        if "source" not in stays.columns:
            stays = stays.with_columns(pl.lit(source).alias("source"))
        if "sepsis" not in stays.columns and "sepsis_onset_hour" in stays.columns:
            stays = stays.with_columns(pl.col("sepsis_onset_hour").is_not_null().alias("sepsis"))
        recorded = treatments is not None if treatments_recorded is None else treatments_recorded
        if treatments is None:
            treatments = pl.DataFrame(schema=table_schema(catalog, "treatments"))
        cohort = cls(
            stays=conform(stays, catalog, "stays").sort("stay_id"),
            hourly=conform(hourly, catalog, "hourly").sort(["stay_id", "hour"]),
            treatments=conform(treatments, catalog, "treatments").sort(["stay_id", "hour"]),
            meta={
                "source": source,
                "catalog_version": catalog.version,
                "provenance": provenance or {},
                "treatments_recorded": bool(recorded),
            },
            catalog=catalog,
        )
        cohort.validate()
        return cohort

    @classmethod
    def load(cls, path: str | Path, *, catalog: Catalog | None = None) -> Cohort:
        """Read a cohort directory written by :meth:`save`; errors name the file that is wrong."""
        path = Path(path)
        catalog = catalog or load_catalog()
        if not path.is_dir():
            raise DataError("not a cohort directory (expected stays.parquet, hourly.parquet, treatments.parquet, cohort.json)", file=path)
        header = path / "cohort.json"
        if not header.is_file():
            raise DataError("cohort.json is missing", file=header)
        try:
            meta = json.loads(header.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON: {exc.msg}", file=header, row=exc.lineno) from exc
        frames = {}
        for table, name in TABLE_FILES.items():
            file = path / name
            if not file.is_file():
                raise DataError(f"{name} is missing from the cohort directory", file=file)
            try:
                frame = pl.read_parquet(file)
            except Exception as exc:  # pyarrow/polars raise several types for a corrupt file
                raise DataError(f"cannot read Parquet: {exc}", file=file) from exc
            frames[table] = conform(frame, catalog, table, file=file)
        cohort = cls(meta=meta, catalog=catalog, **frames)
        cohort.validate(path=path)
        return cohort

    # ------------------------------------------------------------------ validation and writing
    def validate(self, path: str | Path | None = None) -> None:
        """Check keys, nulls and referential integrity; raise :class:`DataError` naming the problem."""
        base = Path(path) if path is not None else None
        for table, frame in (("stays", self.stays), ("hourly", self.hourly), ("treatments", self.treatments)):
            file = base / TABLE_FILES[table] if base else f"<{table} table>"
            for col in required_columns(self.catalog, table):
                nulls = frame[col].is_null()
                if nulls.any():
                    row = int(nulls.arg_true()[0]) + 1
                    raise DataError("missing value in a required column", file=file, row=row, column=col)
            key = list(self.catalog.tables[table].primary_key)
            dup = ~frame.select(pl.struct(key).is_first_distinct()).to_series()  # the repeat, not the original
            if dup.any():
                row = int(dup.arg_true()[0]) + 1
                values = frame.row(row - 1, named=True)
                raise DataError(
                    f"duplicate {tuple(key)} = {tuple(values[k] for k in key)}", file=file, row=row, column=key[-1]
                )
        known = set(self.stays["stay_id"].to_list())
        for table, frame in (("hourly", self.hourly), ("treatments", self.treatments)):
            orphan = ~frame["stay_id"].is_in(list(known))
            if orphan.any():
                row = int(orphan.arg_true()[0]) + 1
                file = base / TABLE_FILES[table] if base else f"<{table} table>"
                raise DataError(f"stay_id {frame['stay_id'][row - 1]} is not in stays", file=file, row=row, column="stay_id")
        stays_file = base / TABLE_FILES["stays"] if base else "<stays table>"
        bad_split = (self.stays["split"].is_not_null() & ~self.stays["split"].is_in(list(SPLITS))).arg_true()
        if len(bad_split):
            row = int(bad_split[0]) + 1
            raise DataError(f"unknown split {self.stays['split'][row - 1]!r}; use one of {SPLITS}", file=stays_file,
                            row=row, column="split")
        contradiction = (self.stays["sepsis_onset_hour"].is_not_null() & ~self.stays["sepsis"]).arg_true()
        if len(contradiction):
            row = int(contradiction[0]) + 1
            raise DataError("the stay has a sepsis onset hour but sepsis is false", file=stays_file, row=row,
                            column="sepsis")

    def counts(self) -> dict[str, Any]:
        """Stays, hours, septic stays and (when split) stays per split."""
        out: dict[str, Any] = {
            "stays": self.stays.height,
            "hours": self.hourly.height,
            "septic_stays": int(self.stays["sepsis"].sum()),
            "treatment_hours": self.treatments.height,
        }
        if self.stays["split"].null_count() < self.stays.height:
            out["splits"] = {s: int((self.stays["split"] == s).sum()) for s in SPLITS}
        return out

    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the cohort directory atomically: it appears complete at ``path`` or not at all."""
        self.validate()
        meta = {**self.meta, "catalog_version": self.catalog.version, "counts": self.counts()}
        with atomic_directory(path, overwrite=overwrite) as tmp:
            for table, name in TABLE_FILES.items():
                getattr(self, table).write_parquet(tmp / name, compression="zstd", statistics=True)
            atomic_write_text(tmp / "cohort.json", json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
        self.meta = meta
        return Path(path)

    # ------------------------------------------------------------------ views and selections
    @property
    def stay_ids(self) -> list[int]:
        return self.stays["stay_id"].to_list()

    def subset(self, stay_ids: list[int] | None = None, *, split: str | None = None) -> Cohort:
        """A new cohort restricted to ``stay_ids`` and/or one ``split``; unknown ids are an error."""
        stays = self.stays
        if split is not None:
            if split not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
            stays = stays.filter(pl.col("split") == split)
        if stay_ids is not None:
            missing = set(stay_ids) - set(self.stays["stay_id"].to_list())
            if missing:
                raise KeyError(f"stay ids not in the cohort: {sorted(missing)[:10]}")
            stays = stays.filter(pl.col("stay_id").is_in(list(stay_ids)))
        ids = stays["stay_id"]
        return Cohort(
            stays=stays,
            hourly=self.hourly.filter(pl.col("stay_id").is_in(ids.implode())),
            treatments=self.treatments.filter(pl.col("stay_id").is_in(ids.implode())),
            meta={**self.meta, "provenance": {**self.meta.get("provenance", {}), "subset_of": self.meta.get("source")}},
            catalog=self.catalog,
        )

    def split(
        self,
        fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
        *,
        seed: int = 0,
        stratify: str = "sepsis",
    ) -> Cohort:
        """Assign ``train``/``validation``/``test`` by subject (all stays of a patient together).

        Subjects are stratified by ``stratify`` (a subject is septic when any of its stays is),
        shuffled with ``seed``, and cut in the given fractions within each stratum. Returns a new
        cohort; the same seed gives the same split.
        """
        if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
            raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
        subjects = (
            self.stays.group_by("subject_id").agg(pl.col(stratify).cast(pl.Int8).max().alias("stratum")).sort("subject_id")
        )
        rng = np.random.default_rng(seed)
        assignment: dict[int, str] = {}
        for _, group in subjects.group_by("stratum", maintain_order=True):
            ids = group["subject_id"].to_numpy().copy()
            rng.shuffle(ids)
            n_train = int(round(fractions[0] * len(ids)))
            n_val = int(round(fractions[1] * len(ids)))
            for i, sid in enumerate(ids):
                assignment[int(sid)] = "train" if i < n_train else "validation" if i < n_train + n_val else "test"
        mapping = pl.DataFrame({"subject_id": list(assignment), "split": list(assignment.values())},
                               schema={"subject_id": pl.Int64, "split": pl.Utf8})
        stays = self.stays.drop("split").join(mapping, on="subject_id", how="left", maintain_order="left").select(
            self.stays.columns)
        meta = {**self.meta, "split": {"fractions": list(fractions), "seed": seed, "stratify": stratify}}
        return Cohort(stays=stays, hourly=self.hourly, treatments=self.treatments, meta=meta, catalog=self.catalog)

    def to_xarray(self, variables: list[str] | None = None, *, table: str = "hourly") -> xr.DataArray:
        """The dense ``(stay, hour, variable)`` float32 array, NaN where not measured.

        ``hour`` runs over every hour from the cohort's smallest to its largest hour index; hours a
        stay does not have are NaN too (its length is ``stays.n_hours``). ``table="treatments"``
        gives the same view of the treatments.
        """
        if table not in ("hourly", "treatments"):
            raise ValueError(f"table must be 'hourly' or 'treatments', got {table!r}")
        frame = self.hourly if table == "hourly" else self.treatments
        codes = list(variables) if variables is not None else (
            list(self.catalog.variable_codes) if table == "hourly" else list(self.catalog.treatment_codes))
        stay_ids = self.stays["stay_id"].to_numpy()
        if frame.height == 0:
            hours = np.arange(0)
        else:
            hours = np.arange(int(frame["hour"].min()), int(frame["hour"].max()) + 1)
        data = np.full((len(stay_ids), len(hours), len(codes)), np.nan, dtype=np.float32)
        if frame.height:
            position = pl.DataFrame({"stay_id": stay_ids, "position": np.arange(len(stay_ids))})
            rows = frame.select("stay_id").join(position, on="stay_id", how="left", maintain_order="left")["position"].to_numpy()
            cols = frame["hour"].to_numpy() - hours[0]
            values = frame.select(codes).to_numpy().astype(np.float32)  # (rows, variables), NaN for null
            data[rows, cols, :] = values
        return xr.DataArray(
            data,
            dims=("stay", "hour", "variable"),
            coords={"stay": stay_ids, "hour": hours, "variable": codes},
            name=table,
            attrs={"source": self.meta.get("source", ""), "catalog_version": self.catalog.version},
        )

    def sepsis_labels(self, lead_hours: int = SEPSIS_LABEL_LEAD_HOURS) -> pl.DataFrame:
        """The per-hour early-warning label for every hourly row, recomputed from ``sepsis_onset_hour``.

        Returns a frame ``(stay_id, hour, sepsis_label)`` in hourly order, ``sepsis_label`` Int8: 1
        from ``lead_hours`` before onset on, 0 otherwise (see :func:`sepsis_label_expr`). For a
        PhysioNet 2019 cohort this equals the files' ``SepsisLabel`` (the loader checks it).
        """
        onset = self.hourly.select("stay_id", "hour").join(
            self.stays.select("stay_id", "sepsis_onset_hour"), on="stay_id", how="left", maintain_order="left")
        return onset.select(
            "stay_id", "hour", sepsis_label_expr(pl.col("sepsis_onset_hour"), pl.col("hour"), lead_hours).alias("sepsis_label"))

    def summary(self) -> dict[str, Any]:
        """Counts, septic fraction and missingness (fraction of hours not measured) per variable and system."""
        n = max(self.hourly.height, 1)
        missing = {code: self.hourly[code].null_count() / n for code in self.catalog.variable_codes}
        by_system = {
            system: float(np.mean([missing[v.code] for v in self.catalog.variables_of(system)])) for system in SYSTEMS
        }
        counts = self.counts()
        return {
            "source": self.meta.get("source"),
            **counts,
            "septic_fraction": counts["septic_stays"] / max(counts["stays"], 1),
            "treatments_recorded": self.meta.get("treatments_recorded", False),
            "missingness_by_variable": missing,
            "missingness_by_system": by_system,
        }
