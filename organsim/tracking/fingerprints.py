"""Content hashes that decide whether a stage must run again.

A stage's key is the SHA-256 of three parts, kept apart in the state file so the runner can say
which one changed: its parameters (canonical JSON), its inputs (the output hashes of the stages it
reads and the content of its external files) and its code version (organsim's version, the source
of the stage class, of the organsim packages and modules it declares and of the catalog YAML).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

import organsim
from organsim.catalog import default_schema_dir
from organsim.tracking.spec import StageSpec

CHUNK_BYTES = 1 << 20
PACKAGE_ROOT = Path(organsim.__file__).resolve().parent


def _feed_file(digest: Any, path: Path) -> None:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)


def _files_under(directory: Path, suffix: str | None = None) -> list[Path]:
    """Files below ``directory`` in a stable order, skipping hidden names (temporary files) and caches."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        found.extend(Path(root) / f for f in sorted(files) if not f.startswith(".") and (suffix is None or f.endswith(suffix)))
    return found


def hash_path(path: str | Path) -> str:
    """SHA-256 of a file's bytes, or of a directory's relative file names and contents (hidden files skipped)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        _feed_file(digest, path)
        return digest.hexdigest()
    if not path.is_dir():
        raise FileNotFoundError(f"cannot hash {path}: no such file or directory")
    for file in _files_under(path):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        _feed_file(digest, file)
        digest.update(b"\0")
    return digest.hexdigest()


@functools.cache
def _code_hash(name: str) -> str:
    """Hash of the source of organsim subpackage or module ``name`` (``"physiology"``, ``"cli.agents"``)."""
    path = PACKAGE_ROOT.joinpath(*name.split("."))
    if path.is_dir():
        files = _files_under(path, ".py")
    elif path.with_suffix(".py").is_file():
        files = [path.with_suffix(".py")]
    else:
        raise ValueError(f"a stage declares code {name!r}, but organsim has no such package or module")
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0")
        _feed_file(digest, file)
    return digest.hexdigest()


def code_version(spec: StageSpec) -> str:
    """Hash of what decides a stage's output besides its parameters and inputs (see the module docstring)."""
    digest = hashlib.sha256()
    digest.update(version("organsim").encode() + b"\0" + spec.stage.source().encode())
    for name in sorted({*spec.stage.code, "catalog"}):
        digest.update(name.encode() + b"\0" + _code_hash(name).encode())
    digest.update(hash_path(default_schema_dir()).encode())
    return digest.hexdigest()


def params_hash(spec: StageSpec) -> str:
    """Hash of the stage kind and its parameters (external paths excluded: their content is an input)."""
    values = spec.params.model_dump(mode="json", exclude=set(spec.external))
    text = json.dumps({"stage": spec.stage.name, "params": values}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def inputs_hash(spec: StageSpec, upstream_outputs: dict[str, str]) -> str:
    """Hash of the stage's inputs: ``upstream_outputs`` (stage name -> output hash) and its external files."""
    parts = {f"stage:{key}": upstream_outputs[target] for key, target in spec.references.items()}
    parts.update({f"path:{key}": hash_path(path) for key, path in spec.external.items()})
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def stage_key(params: str, inputs: str, code: str) -> str:
    """The key the runner compares: one hash of the three parts."""
    return hashlib.sha256(f"{params}:{inputs}:{code}".encode()).hexdigest()
