"""Read data_schemas/ into a :class:`~organsim.catalog.models.Catalog`.

The schema directory is ``$ORGANSIM_SCHEMAS`` when set, else ``data_schemas/`` at the root of the
organsim source tree.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from organsim.catalog.models import Catalog
from organsim.utils.errors import CatalogError


def default_schema_dir() -> Path:
    """Where the catalog YAML lives (``$ORGANSIM_SCHEMAS`` or the repository's data_schemas/)."""
    env = os.environ.get("ORGANSIM_SCHEMAS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "data_schemas"


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise CatalogError(f"catalog file {path} is missing")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogError(f"catalog file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"catalog file {path} must hold a mapping at the top level")
    return data


def _location(exc: ValidationError, data: dict) -> str:
    """Turn pydantic's error locations into 'variables[3] (code 'map').plausible: message' lines."""
    lines = []
    for err in exc.errors():
        parts, node = [], data
        for key in err["loc"]:
            if isinstance(key, int) and isinstance(node, list) and key < len(node):
                node = node[key]
                label = f"[{key}]"
                if isinstance(node, dict) and "code" in node:
                    label += f" (code {node['code']!r})"
                parts.append(label)
            else:
                node = node.get(key) if isinstance(node, dict) else None
                parts.append(f".{key}")
        lines.append("".join(parts).lstrip(".") + ": " + err["msg"])
    return "\n  ".join(lines)


@functools.lru_cache(maxsize=8)
def _load(schema_dir: Path) -> Catalog:
    variables = _read_yaml(schema_dir / "variables.yaml")
    treatments = _read_yaml(schema_dir / "treatments.yaml")
    events = _read_yaml(schema_dir / "events.yaml")
    tables = {name: _read_yaml(schema_dir / "tables" / f"{name}.yaml") for name in ("stays", "hourly", "treatments")}
    for name, data in [("variables.yaml", variables), ("treatments.yaml", treatments), ("events.yaml", events)]:
        if data.get("version") != variables.get("version"):
            raise CatalogError(
                f"{schema_dir / name}: version {data.get('version')!r} differs from variables.yaml's "
                f"{variables.get('version')!r}; all catalog files move together"
            )
    raw = {
        "version": variables.get("version"),
        "systems": variables.get("systems"),
        "variables": variables.get("variables"),
        "statics": variables.get("statics"),
        "treatments": treatments.get("treatments"),
        "events": events.get("events"),
        "event_merge_gap_hours": events.get("merge_gap_hours"),
        "tables": tables,
    }
    for source, data, allowed in [
        ("variables.yaml", variables, {"version", "systems", "variables", "statics"}),
        ("treatments.yaml", treatments, {"version", "treatments"}),
        ("events.yaml", events, {"version", "merge_gap_hours", "events"}),
    ]:
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise CatalogError(f"{schema_dir / source}: unknown top-level keys {unknown}; allowed: {sorted(allowed)}")
    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(f"catalog in {schema_dir} is invalid:\n  {_location(exc, raw)}") from exc


def load_catalog(schema_dir: str | Path | None = None) -> Catalog:
    """Load and validate the catalog (cached per directory).

    Raises
    ------
    CatalogError
        When a file is missing, is not YAML, or breaks the schema (the message names the entry).
    """
    return _load(Path(schema_dir) if schema_dir is not None else default_schema_dir())
