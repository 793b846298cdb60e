"""A small torch module saved beside a model: a JSON config file and a safetensors weights file.

The reference-selection policy and the realism critic are stored this way in a model directory.
Each file is written atomically; reading checks that both exist, that the config is JSON of the
expected format, and that the weights fit the module, and names the file in a
:class:`~organsim.utils.errors.DataError` when not.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from organsim.utils.errors import DataError
from organsim.utils.io import atomic_directory, atomic_write_bytes, atomic_write_text


def save_module(module: nn.Module, config: dict[str, Any], *, fmt: str, config_path: Path, weights_path: Path) -> None:
    """Write ``module``'s weights to ``weights_path`` and ``{"format": fmt, "config": config}`` to ``config_path``."""
    weights = {name: t.detach().cpu().contiguous() for name, t in module.state_dict().items()}
    atomic_write_bytes(weights_path, save_safetensors(weights))
    atomic_write_text(config_path, json.dumps({"format": fmt, "config": config}, indent=2) + "\n")


def read_module_config(*, fmt: str, config_path: Path, weights_path: Path, incomplete: str, what: str) -> dict[str, Any]:
    """The ``config`` entry of a module saved by :func:`save_module`.

    Parameters
    ----------
    incomplete
        The message when either file is missing (how to make it).
    what
        The module's name in messages (``"reference policy"``).
    """
    for path in (config_path, weights_path):
        if not path.is_file():
            raise DataError(incomplete, file=path)
    document = read_saved_json(config_path, fmt=fmt, what=what, missing=incomplete)
    if "config" not in document:
        raise DataError(f"malformed {what} config: no 'config' entry", file=config_path)
    return document["config"]


def read_saved_json(path: Path, *, fmt: str, what: str, missing: str) -> dict[str, Any]:
    """The JSON document at ``path``, whose ``format`` entry must be ``fmt``; a DataError naming the
    file when it is missing (``missing`` says how to make it), not JSON (with the line) or of
    another format (``what`` names the document in messages: ``"band calibration"``)."""
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(missing, file=path) from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", file=path, row=exc.lineno) from exc
    if document.get("format") != fmt:
        raise DataError(f"unknown {what} format {document.get('format')!r}; expected {fmt!r}", file=path)
    return document


def load_module_weights(module: nn.Module, *, config_path: Path, weights_path: Path, what: str) -> None:
    """Load ``weights_path`` into ``module``; weights that do not fit are a DataError naming the file."""
    try:
        module.load_state_dict(load_safetensors(weights_path.read_bytes()))
    except Exception as exc:  # safetensors and load_state_dict raise their own error types
        raise DataError(f"weights do not match the {what} in {config_path.name}: {exc}", file=weights_path) from exc


def write_beside_model(model_dir: Path, out: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(directory)`` to add files to a model: ``out == model_dir`` adds them to the model
    directory itself (each file written atomically by ``write``); another ``out`` receives a copy of
    the model directory with them, the whole written atomically."""
    model_dir, out = Path(model_dir), Path(out)
    if out.resolve() == model_dir.resolve():
        write(out)
        return
    with atomic_directory(out, overwrite=True) as tmp:
        for item in model_dir.iterdir():
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        write(tmp)
