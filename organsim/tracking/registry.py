"""What a pipeline stage is, and the registry of stages a pipeline file may name.

A stage is a class with a pydantic parameter model (unknown keys are errors), the kind of output it
produces (``"cohort"``, ``"model"``, ...), the organsim packages whose code decides that output, and
three methods: :meth:`Stage.run` fills the stage's output directory, :meth:`Stage.metrics` and
:meth:`Stage.artifacts` read what MLflow should record back from that directory (so a skipped
stage reports the same figures as the run that produced it).

Parameters that read another stage's output are strings annotated with :class:`Consumes` (the
pipeline loader checks that they name an earlier stage of that kind); parameters that read a file
outside the pipeline are paths annotated with :class:`ExternalInput` (resolved against the pipeline
file's directory, required to exist, and hashed by content). Adding a stage is one class decorated
with :func:`register_stage`.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class StageParams(BaseModel):
    """Base of every stage's parameters: frozen, and an unknown key is a validation error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Consumes:
    """Marks a parameter as the name of an earlier stage whose output of kind ``kind`` it reads."""

    kind: str


@dataclass(frozen=True)
class ExternalInput:
    """Marks a path parameter as an input from outside the pipeline (hashed by content)."""


@dataclass(frozen=True)
class StageContext:
    """Where a stage reads and writes.

    Attributes
    ----------
    out
        The directory to fill. For an ordinary stage it is a fresh temporary directory that the
        runner renames to ``<run_dir>/<stage name>`` once :meth:`Stage.run` returns; a resumable
        stage gets the final directory itself.
    inputs
        Parameter name -> output directory of the stage it names (:class:`Consumes` parameters).
    work
        Scratch directory kept across interrupted attempts with the same parameters and inputs
        (removed after success): for parts of sharded work.
    resume
        True when an interrupted attempt of a resumable stage left its state in ``out``.
    """

    out: Path
    inputs: Mapping[str, Path]
    work: Path
    resume: bool = False

    def input(self, name: str) -> Path:
        """The output directory of the stage named by parameter ``name``."""
        if name not in self.inputs:
            raise KeyError(f"parameter {name!r} names no earlier stage; inputs: {sorted(self.inputs)}")
        return self.inputs[name]


@dataclass(frozen=True)
class StageMetrics:
    """Figures a stage reports: single ``values`` and per-step ``series`` (step = position + 1)."""

    values: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)


class Stage(ABC):
    """A kind of pipeline stage (subclass, set the class attributes, decorate with :func:`register_stage`).

    Attributes
    ----------
    name
        The name pipeline files use (``stage: <name>``).
    summary
        One line for ``organsim pipeline stages``.
    params
        The :class:`StageParams` subclass validating this stage's parameters.
    produces
        Kind of output (what :class:`Consumes` parameters of later stages ask for).
    code
        organsim subpackages or modules (``"physiology"``, ``"tracking.distributed"``) whose source
        decides the output; with this class's own source, the catalog and the organsim version
        they form the stage's code version.
    resumable
        The stage writes its output directory in place and continues an interrupted attempt itself.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    params: ClassVar[type[StageParams]]
    produces: ClassVar[str]
    code: ClassVar[tuple[str, ...]]
    resumable: ClassVar[bool] = False

    def output_kind(self, params: StageParams) -> str:
        """The kind of output these parameters produce (``produces`` unless a stage varies it)."""
        return self.produces

    @abstractmethod
    def run(self, params: Any, ctx: StageContext) -> None:
        """Compute the stage and write its output into ``ctx.out``."""

    @abstractmethod
    def metrics(self, out: Path) -> StageMetrics:
        """The figures to log, read from a finished output directory."""

    def artifacts(self, out: Path) -> list[Path]:
        """Files or directories of the finished output to store in MLflow (small ones: reports,
        models, plots; not whole cohorts)."""
        return []

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        """One line for the run summary, from the finished output ``out`` and its ``metrics``."""
        return ""

    def source(self) -> str:
        """This stage's own source code (part of its code version)."""
        return inspect.getsource(type(self))


STAGES: dict[str, Stage] = {}
"""Stage name -> the stage, for every registered stage."""


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator: add an instance of ``cls`` to :data:`STAGES` under ``cls.name``."""
    if cls.name in STAGES and type(STAGES[cls.name]) is not cls:
        raise ValueError(f"a stage named {cls.name!r} is already registered ({type(STAGES[cls.name]).__qualname__})")
    STAGES[cls.name] = cls()
    return cls


def field_marker(params: type[StageParams], name: str, marker: type) -> Any:
    """The ``marker`` instance (:class:`Consumes` or :class:`ExternalInput`) on field ``name``, or None."""
    for meta in params.model_fields[name].metadata:
        if isinstance(meta, marker):
            return meta
    return None


def marked_fields(params: type[StageParams], marker: type) -> dict[str, Any]:
    """Field name -> ``marker`` instance for every field of ``params`` carrying one."""
    found = {name: field_marker(params, name, marker) for name in params.model_fields}
    return {name: meta for name, meta in found.items() if meta is not None}
