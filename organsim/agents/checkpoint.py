"""The model directory: everything needed to rebuild trained agents exactly, and to resume training.

::

    MODEL_DIR/
      config.json          format, architecture (AgentConfig), value and change tokenizers, normaliser, training
                           settings, training state (epochs, losses, best epoch, data split)
      model.safetensors    the weights of the best epoch (lowest validation loss)
      last/                the latest epoch, for ``--resume``
        model.safetensors
        optimizer.pt       AdamW state (read with torch.load(weights_only=True))
        trainer.json       epoch, scheduler state, early-stopping counters

Weights are the whole module's state for a model built from a preset, and only the trainable
tensors (LoRA adapters, embeddings, heads) for a LoRA-adapted base model, whose frozen weights
are re-read from ``base_model``. Every write replaces the directory atomically
(:func:`organsim.utils.io.atomic_directory`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from organsim.agents.features import FeatureEncoder
from organsim.agents.model import AgentConfig, OrganAgents
from organsim.data.normalize import Normaliser
from organsim.data.tokenizers import BinTokenizer, ChangeTokenizer
from organsim.utils.errors import DataError
from organsim.utils.io import atomic_directory, atomic_write_bytes, atomic_write_text

FORMAT = "organsim.agents/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LAST_DIR = "last"


@dataclass
class TrainedAgents:
    """Organ agents with what they need to read data: tokenizer, normaliser and their records.

    Attributes
    ----------
    model
        The network (on CPU after :meth:`load`).
    tokenizer
        The value bins the model was trained with.
    changes
        The change bins the model was trained with.
    normaliser
        Training-split scaling statistics.
    training
        The training settings and state (as stored in config.json; empty for an untrained model).
    """

    model: OrganAgents
    tokenizer: BinTokenizer
    changes: ChangeTokenizer
    normaliser: Normaliser
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # the bins' values in z units are rebuilt from the tokenizers, not stored with the weights
        self.model.set_bin_values(*self.encoder.bin_values_z(self.model.value_bins_z.shape[1]))

    @property
    def config(self) -> AgentConfig:
        """The architecture."""
        return self.model.config

    @property
    def encoder(self) -> FeatureEncoder:
        """The input builder matching this model."""
        config = self.config
        return FeatureEncoder(
            tokenizer=self.tokenizer,
            changes=self.changes,
            normaliser=self.normaliser,
            variables=config.variables,
            treatment_codes=config.treatment_codes,
            static_codes=config.static_codes,
            since_cap_hours=config.since_cap_hours,
        )

    def config_document(self) -> dict[str, Any]:
        """The config.json content."""
        return {
            "format": FORMAT,
            "model": self.config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "changes": self.changes.to_dict(),
            "normaliser": self.normaliser.to_dict(),
            "training": self.training,
        }

    @classmethod
    def load(cls, directory: str | Path, *, weights: str = WEIGHTS_FILE) -> TrainedAgents:
        """Rebuild from a model directory (the best weights by default); errors name the bad file."""
        directory = Path(directory)
        document = read_config(directory)
        try:
            config = AgentConfig.from_dict(document["model"])
            tokenizer = BinTokenizer.from_dict(document["tokenizer"])
            changes = ChangeTokenizer.from_dict(document["changes"])
            normaliser = Normaliser.from_dict(document["normaliser"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed model config: {exc}", file=directory / CONFIG_FILE) from exc
        model = OrganAgents(config)
        load_weights(model, directory / weights)
        model.eval()
        return cls(model=model, tokenizer=tokenizer, changes=changes, normaliser=normaliser, training=document.get("training", {}))


def read_config(directory: Path) -> dict[str, Any]:
    """config.json of a model directory, checked for the format marker."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"not a model directory ({CONFIG_FILE} is missing); train one with `organsim train`", file=path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", file=path, row=exc.lineno) from exc
    if document.get("format") != FORMAT:
        raise DataError(f"unknown model format {document.get('format')!r}; expected {FORMAT!r}", file=path)
    return document


def weights_to_save(model: OrganAgents) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint stores: every tensor, or for a LoRA-adapted base model only the trainable
    ones and the loss weights (the frozen base weights are re-read from ``base_model``)."""
    if model.config.base_model is not None and model.config.lora_r:
        kept = {name: p for name, p in model.named_parameters() if p.requires_grad}
        kept["loss_weights"] = model.loss_weights
        return {name: t.detach().cpu().contiguous() for name, t in kept.items()}
    return {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}


def load_weights(model: OrganAgents, path: Path) -> None:
    """Load a safetensors file into ``model``; a missing or mismatched tensor is a :class:`DataError`."""
    if not path.is_file():
        raise DataError("weights file is missing", file=path)
    try:
        tensors = load_safetensors(path.read_bytes())
    except Exception as exc:  # safetensors raises its own error types for a corrupt file
        raise DataError(f"cannot read safetensors: {exc}", file=path) from exc
    partial = model.config.base_model is not None and model.config.lora_r
    result = model.load_state_dict(tensors, strict=False)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad} | {"loss_weights"}
    missing = [k for k in result.missing_keys if not partial or k in trainable]
    if missing or result.unexpected_keys:
        raise DataError(
            f"weights do not match the architecture in {CONFIG_FILE}: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}",
            file=path,
        )


def write_model_dir(
    directory: Path,
    agents: TrainedAgents,
    *,
    best_weights: dict[str, torch.Tensor] | None,
    last_state: dict[str, Any] | None,
) -> Path:
    """Write (or replace) a model directory atomically.

    Parameters
    ----------
    directory
        Destination.
    agents
        Model, tokenizer, normaliser and the ``training`` record written to config.json.
    best_weights
        New best weights to write; None keeps the existing directory's ``model.safetensors``.
    last_state
        ``{"weights": {...}, "optimizer": state_dict, "trainer": {...}}`` for ``last/``; None
        leaves ``last/`` out.
    """
    directory = Path(directory)
    previous_best = directory / WEIGHTS_FILE
    if best_weights is None and not previous_best.is_file():
        raise ValueError(f"no best weights given and none at {previous_best}")
    with atomic_directory(directory, overwrite=True) as tmp:
        if best_weights is None:
            shutil.copy2(previous_best, tmp / WEIGHTS_FILE)
        else:
            atomic_write_bytes(tmp / WEIGHTS_FILE, save_safetensors(best_weights))
        if last_state is not None:
            last = tmp / LAST_DIR
            last.mkdir()
            atomic_write_bytes(last / WEIGHTS_FILE, save_safetensors(last_state["weights"]))
            buffer = _torch_bytes(last_state["optimizer"])
            atomic_write_bytes(last / "optimizer.pt", buffer)
            atomic_write_text(last / "trainer.json", json.dumps(last_state["trainer"], indent=2) + "\n")
        atomic_write_text(tmp / CONFIG_FILE, json.dumps(agents.config_document(), indent=2, allow_nan=False) + "\n")
    return directory


def read_last_state(directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(optimizer_state, trainer)`` of ``last/`` (the optimizer read with ``weights_only=True``)."""
    last = Path(directory) / LAST_DIR
    for name in ("optimizer.pt", "trainer.json", WEIGHTS_FILE):
        if not (last / name).is_file():
            raise DataError("cannot resume: the last checkpoint is incomplete", file=last / name)
    optimizer = torch.load(last / "optimizer.pt", map_location="cpu", weights_only=True)
    trainer = json.loads((last / "trainer.json").read_text(encoding="utf-8"))
    return optimizer, trainer


def _torch_bytes(obj: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()
