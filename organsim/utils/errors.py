"""Exceptions that say what was wrong, where, and what to do."""

from __future__ import annotations

from pathlib import Path


class OrgansimError(Exception):
    """Base class of every error organsim raises on purpose."""


class CatalogError(OrgansimError):
    """The catalog YAML (data_schemas/) is malformed: raised at load, never a silent gap."""


class DataError(OrgansimError):
    """Bad input data, located as precisely as the source allows.

    Parameters
    ----------
    message
        What is wrong (and, where useful, what to do about it).
    file
        The file (or archive member) the bad value came from.
    row
        1-based data row within that file (the header is row 0), when known.
    column
        The column name, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        self.reason = message
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)
