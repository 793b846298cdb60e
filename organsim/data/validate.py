"""Checks every loader applies to what it reads, and the :class:`IngestReport` that records them.

The checks are small frame -> frame (or frame -> error) functions shared by the PhysioNet, MEDS and
wide-table loaders:

- :func:`parse_numeric`: string cells -> Float64; the first cell that is not a number is an error
  naming its file, row and column.
- :func:`null_out_of_range`: values outside the catalog's plausible range (compared in Float32, the
  cohort's storage type, so re-reading a written cohort makes the same decision) become null and
  are counted per variable. This is the catalog's rule: plausible bounds are hard bounds.
- :func:`check_unique`, :func:`check_not_null`, :func:`check_integral`: key checks that raise
  :class:`~organsim.utils.DataError` at the first offending row.

Rows are located through a :class:`RowLocator`, which maps a row of a frame concatenated from many
files back to ``(file, 1-based data row)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from organsim.catalog import Catalog
from organsim.utils.errors import DataError


@dataclass
class IngestReport:
    """What an ingest read, converted, nulled and dropped; stored in ``cohort.meta["provenance"]``.

    Attributes
    ----------
    source
        The loader (``physionet2019``, ``meds``, ``table``).
    files
        Number of input files (archive members, Parquet shards, tables) read.
    stays, hours, septic_stays
        Counts of the resulting cohort.
    out_of_range
        ``{code: {"below": n, "above": n}}``: values outside the catalog's plausible range, nulled.
        Only codes with at least one such value appear.
    converted
        ``{rule: n}``: values changed by a documented unit conversion.
    dropped
        ``{what: n}``: input skipped on purpose (e.g. MEDS codes the catalog does not know).
    flagged
        ``{what: n}``: input kept as it is but worth knowing about (e.g. left-censored onsets).
    rules
        One line per data rule the loader applied, for humans reading the provenance.
    """

    source: str
    files: int = 0
    stays: int = 0
    hours: int = 0
    septic_stays: int = 0
    out_of_range: dict[str, dict[str, int]] = field(default_factory=dict)
    converted: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    flagged: dict[str, int] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)

    def add_out_of_range(self, counts: dict[str, dict[str, int]]) -> None:
        """Add per-variable ``{"below": n, "above": n}`` counts (zeros are not stored)."""
        for code, sides in counts.items():
            if sides["below"] or sides["above"]:
                slot = self.out_of_range.setdefault(code, {"below": 0, "above": 0})
                slot["below"] += sides["below"]
                slot["above"] += sides["above"]

    def add(self, table: str, key: str, n: int) -> None:
        """Add ``n`` to ``self.<table>[key]``, ``table`` one of converted, dropped, flagged (0 is not stored)."""
        if n:
            target = getattr(self, table)
            target[key] = target.get(key, 0) + int(n)

    @property
    def total_out_of_range(self) -> int:
        """All nulled out-of-range values, over every variable."""
        return sum(s["below"] + s["above"] for s in self.out_of_range.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what goes into ``cohort.json``)."""
        out = asdict(self)
        out["out_of_range"] = dict(sorted(out["out_of_range"].items()))
        out["total_out_of_range"] = self.total_out_of_range
        return out


@dataclass(frozen=True)
class RowLocator:
    """Map a 0-based row of a concatenated frame to ``(file, 1-based data row of that file)``.

    Parameters
    ----------
    files
        The files, in the order their rows were concatenated.
    starts
        Global index of each file's first row, ascending, shape ``(len(files),)``.
    """

    files: tuple[str, ...]
    starts: np.ndarray

    @classmethod
    def from_counts(cls, files: list[str], row_counts: list[int]) -> RowLocator:
        """Build from each file's number of data rows."""
        starts = np.concatenate([[0], np.cumsum(row_counts[:-1])]).astype(np.int64) if files else np.zeros(0, np.int64)
        return cls(tuple(files), starts)

    @classmethod
    def single(cls, file: str) -> RowLocator:
        """One file: global row ``i`` is its data row ``i + 1``."""
        return cls((file,), np.zeros(1, np.int64))

    def locate(self, index: int) -> tuple[str, int]:
        """``(file, row)`` of global row ``index`` (row 1 is the first data row, as in DataError)."""
        k = int(np.searchsorted(self.starts, index, side="right")) - 1
        return self.files[k], int(index - self.starts[k]) + 1

    def concat(self, other: RowLocator, offset: int) -> RowLocator:
        """The locator of this frame followed by ``other``'s frame, which starts at row ``offset``."""
        return RowLocator(self.files + other.files, np.concatenate([self.starts, other.starts + offset]))

    def error(self, message: str, index: int, column: str | None = None) -> DataError:
        """A DataError for global row ``index``."""
        file, row = self.locate(index)
        return DataError(message, file=file, row=row, column=column)


def first_true(mask: pl.Series) -> int | None:
    """Index of the first True in a boolean Series (nulls count as False), or None."""
    hits = mask.fill_null(False).arg_true()
    return int(hits[0]) if len(hits) else None


def parse_numeric(frame: pl.DataFrame, columns: list[str], locator: RowLocator) -> pl.DataFrame:
    """Cast string ``columns`` to Float64; NaN becomes null; a non-number is a :class:`DataError`.

    Surrounding white space is ignored. The error names the first offending cell in row order.
    """
    cast = {c: pl.col(c).str.strip_chars().cast(pl.Float64, strict=False) for c in columns if frame.schema[c] == pl.Utf8}
    numeric = [c for c in columns if c not in cast]
    parsed = frame.with_columns(
        [expr.alias(c) for c, expr in cast.items()] + [pl.col(c).cast(pl.Float64) for c in numeric]
    )
    worst: tuple[int, str] | None = None
    for c in cast:
        bad = frame[c].is_not_null() & (frame[c].str.strip_chars() != "") & parsed[c].is_null()
        index = first_true(bad)
        if index is not None and (worst is None or index < worst[0]):
            worst = (index, c)
    if worst is not None:
        index, c = worst
        raise locator.error(f"not a number: {frame[c][index]!r}", index, c)
    return parsed.with_columns([pl.col(c).fill_nan(None) for c in columns])


def check_not_null(frame: pl.DataFrame, column: str, locator: RowLocator, what: str) -> None:
    """Raise at the first row where ``column`` is null (``what`` says what the column is)."""
    index = first_true(frame[column].is_null())
    if index is not None:
        raise locator.error(f"missing {what}", index, column)


def check_integral(frame: pl.DataFrame, column: str, locator: RowLocator) -> None:
    """Raise at the first row where a float ``column`` holds a non-integer (it is an id or an hour)."""
    values = frame[column]
    if values.dtype.is_float():
        index = first_true(values.is_not_null() & ((values != values.floor()) | values.is_infinite()))
        if index is not None:
            raise locator.error(f"{values[index]!r} is not a whole number", index, column)


def check_unique(frame: pl.DataFrame, key: list[str], locator: RowLocator) -> None:
    """Raise at the first row whose ``key`` values repeat an earlier row's (names the last key column)."""
    index = first_true(~frame.select(pl.struct(key).is_first_distinct()).to_series())
    if index is not None:
        values = ", ".join(_show(frame[k][index]) for k in key)
        raise locator.error(f"duplicate ({', '.join(key)}) = ({values}): each must appear once", index, key[-1])


def _show(value: Any) -> str:
    """A key value as a person writes it (1, not 1.0)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def plausible_bounds(catalog: Catalog) -> dict[str, tuple[float, float]]:
    """``{code: (low, high)}`` for every hourly variable and static of the catalog."""
    out = {v.code: v.plausible for v in catalog.variables}
    out.update({s.code: s.plausible for s in catalog.statics})
    return out


def null_out_of_range(
    frame: pl.DataFrame, bounds: dict[str, tuple[float, float]]
) -> tuple[pl.DataFrame, dict[str, dict[str, int]]]:
    """Null the values of each ``bounds`` column outside ``[low, high]`` and count them.

    Columns are cast to Float32 and compared with Float32 bounds, so a value that passed once passes
    again after a Float32 round trip. NaN means "not measured" and becomes null without being
    counted; infinities are out of range.

    Returns
    -------
    frame
        ``frame`` with those columns as Float32, out-of-range values null.
    counts
        ``{column: {"below": n, "above": n}}`` for every column of ``bounds`` present in ``frame``.
    """
    present = [c for c in bounds if c in frame.columns]
    frame = frame.with_columns([pl.col(c).cast(pl.Float32).fill_nan(None) for c in present])
    below = {c: pl.col(c) < pl.lit(bounds[c][0], dtype=pl.Float32) for c in present}
    above = {c: pl.col(c) > pl.lit(bounds[c][1], dtype=pl.Float32) for c in present}
    sums = frame.select(
        [below[c].sum().alias(f"{c}\0below") for c in present] + [above[c].sum().alias(f"{c}\0above") for c in present]
    ).row(0, named=True) if present else {}
    counts = {c: {"below": int(sums[f"{c}\0below"]), "above": int(sums[f"{c}\0above"])} for c in present}
    frame = frame.with_columns(
        [pl.when(below[c] | above[c]).then(None).otherwise(pl.col(c)).alias(c) for c in present]
    )
    return frame, counts
