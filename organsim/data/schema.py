"""Polars schemas of the canonical cohort tables, built from data_schemas/tables/*.yaml."""

from __future__ import annotations

import polars as pl

from organsim.catalog import Catalog, TableSchema

POLARS_DTYPES: dict[str, pl.DataType] = {
    "Int8": pl.Int8,
    "Int32": pl.Int32,
    "Int64": pl.Int64,
    "Float32": pl.Float32,
    "Float64": pl.Float64,
    "Utf8": pl.Utf8,
    "Boolean": pl.Boolean,
}


def table_schema(catalog: Catalog, table: str) -> dict[str, pl.DataType]:
    """Ordered ``{column: polars dtype}`` of a cohort table ("stays", "hourly", "treatments")."""
    spec: TableSchema = catalog.tables[table]
    schema = {c.name: POLARS_DTYPES[c.dtype] for c in spec.columns}
    if spec.variable_columns is not None:
        codes = catalog.variable_codes if spec.variable_columns.from_catalog == "variables" else catalog.treatment_codes
        schema.update({code: POLARS_DTYPES[spec.variable_columns.dtype] for code in codes})
    return schema


def required_columns(catalog: Catalog, table: str) -> list[str]:
    """Columns that may never be null."""
    spec = catalog.tables[table]
    cols = [c.name for c in spec.columns if not c.nullable]
    if spec.variable_columns is not None and not spec.variable_columns.nullable:
        cols += list(table_schema(catalog, table))[len(spec.columns):]
    return cols
