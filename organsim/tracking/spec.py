"""Pipeline files: YAML read into a validated :class:`PipelineSpec` before anything runs.

A pipeline file looks like::

    name: demo                      # also the MLflow experiment
    description: engine cohort, tiny models
    run_dir: ../demo_out            # optional; relative to this file (default: runs/<name>)
    stages:
      generate:                     # the stage's name: its output is <run_dir>/generate
        patients: 400               # every other key is a parameter of the stage
      meds:
        stage: export               # the stage kind, when it differs from the name
        cohort: generate            # a reference to an earlier stage's output

Every stage's parameters are validated by its pydantic model (unknown keys and bad values are
errors), references must name an earlier stage of the right kind, and external paths (relative to
the pipeline file) must exist. Errors name the file, the line and the key path, e.g.
``pipelines/demo.yaml line 12, stages.train.epochs: must be >= 1 (got 0)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

import organsim.tracking.command_stages  # noqa: F401  (registers the built-in stages; imports organsim.tracking.stages)
from organsim.tracking.registry import (
    STAGES,
    Consumes,
    ExternalInput,
    Stage,
    StageParams,
    marked_fields,
)
from organsim.utils.errors import OrgansimError

TOP_LEVEL_KEYS = ("name", "description", "run_dir", "stages")
STAGE_KEY = "stage"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PipelineConfigError(OrgansimError):
    """A pipeline file (or a ``--set`` override) is invalid; says which file, line and key.

    Attributes
    ----------
    file
        The pipeline file.
    key
        Dotted key path (``stages.train.epochs``), when the error belongs to one key.
    line
        1-based line of that key in the file, when known.
    """

    def __init__(self, message: str, *, file: str | Path, key: str | None = None, line: int | None = None) -> None:
        self.file, self.key, self.line, self.reason = str(file), key, line, message
        where = self.file + (f" line {line}" if line is not None else "")
        super().__init__(f"{where}, {key}: {message}" if key else f"{where}: {message}")


@dataclass(frozen=True)
class StageSpec:
    """One validated stage of a pipeline.

    Attributes
    ----------
    name
        The stage's name in the pipeline (its output directory is ``<run_dir>/<name>``).
    stage
        The registered :class:`~organsim.tracking.registry.Stage`.
    params
        Its validated parameters.
    references
        Parameter -> the earlier stage it reads.
    external
        Parameter -> an input path from outside the pipeline (absolute).
    """

    name: str
    stage: Stage
    params: StageParams
    references: dict[str, str]
    external: dict[str, Path]

    @property
    def kind(self) -> str:
        """The kind of output this stage writes."""
        return self.stage.output_kind(self.params)


@dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline: its name, file, default run directory and stages in order."""

    name: str
    description: str
    file: Path
    run_dir: Path | None
    stages: tuple[StageSpec, ...]

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def index(self, name: str) -> int:
        """Position of stage ``name``; a KeyError listing the stages when there is none."""
        if name not in self.stage_names:
            raise KeyError(f"the pipeline {self.name} has no stage {name!r}; its stages: {', '.join(self.stage_names)}")
        return self.stage_names.index(name)


def _key_lines(node: yaml.Node, path: tuple = (), lines: dict[tuple, int] | None = None) -> dict[tuple, int]:
    """Key path -> 1-based line of every key (and list item) in a composed YAML document."""
    lines = {} if lines is None else lines
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = path + (key_node.value,)
            lines[key] = key_node.start_mark.line + 1
            _key_lines(value_node, key, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _key_lines(item, path + (i,), lines)
    return lines


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"STAGE.KEY=VALUE"`` -> ``(stage, key, value)`` with VALUE read as YAML (``1``, ``[a, b]``, ``null``)."""
    target, sep, raw = text.partition("=")
    stage, dot, key = target.strip().partition(".")
    if not sep or not dot or not stage or not key:
        raise ValueError(f"override {text!r} must look like STAGE.KEY=VALUE (e.g. train.epochs=1)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f"override {text!r}: the value is not valid YAML ({exc})") from exc
    return stage, key, value


def _error_text(error: Mapping[str, Any], params: type[StageParams]) -> str:
    kind, message = error["type"], str(error["msg"]).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"unknown key; this stage takes {', '.join(params.model_fields)}"
    if kind == "missing":
        return "required key is missing"
    if not error["loc"]:  # a check across keys: the input is the whole stage
        return message
    shown = repr(error["input"])
    return f"{message} (got {shown if len(shown) <= 60 else shown[:57] + '...'})"


def load_pipeline(path: str | Path, overrides: Sequence[str] = ()) -> PipelineSpec:
    """Read and validate a pipeline file.

    Parameters
    ----------
    path
        The YAML file.
    overrides
        ``"STAGE.KEY=VALUE"`` strings applied on top of the file (relative paths in them are
        relative to the current directory).

    Returns
    -------
    PipelineSpec

    Raises
    ------
    PipelineConfigError
        Naming the file, line and key path of the first problem found (all parameter errors of
        the first invalid stage).
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineConfigError("no such pipeline file", file=path)
    text = path.read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text)) if document is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PipelineConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=path,
                                  line=mark.line + 1 if mark else None) from exc

    from_cli: dict[str, set[str]] = {}

    def where(*key: Any) -> tuple[str | None, int | None]:
        """Dotted key path and line; an overridden key has no line and says it came from --set."""
        dotted = ".".join(str(k) for k in key) or None
        if len(key) >= 3 and key[2] in from_cli.get(key[1], ()):
            return f"{dotted} (from --set)", None
        return dotted, next((lines[key[:n]] for n in range(len(key), 0, -1) if key[:n] in lines), None)

    def fail(message: str, *key: Any) -> PipelineConfigError:
        dotted, line = where(*key)
        return PipelineConfigError(message, file=path, key=dotted, line=line)

    if not isinstance(document, dict):
        raise fail("a pipeline file is a mapping with keys name, stages (and optionally description, run_dir)")
    for key in document:
        if key not in TOP_LEVEL_KEYS:
            raise fail(f"unknown key; a pipeline file has {', '.join(TOP_LEVEL_KEYS)}", key)
    name = document.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise fail("name must be a word of letters, digits, '_', '-' or '.'", "name")
    stages_doc = document.get("stages")
    if not isinstance(stages_doc, dict) or not stages_doc:
        raise fail("stages must be a non-empty mapping of stage name -> parameters", "stages")
    raw_stages = {}
    for stage_name, body in stages_doc.items():
        if not isinstance(stage_name, str) or not NAME_PATTERN.match(stage_name):
            raise fail("a stage name must be a word of letters, digits, '_', '-' or '.'", "stages", stage_name)
        if body is not None and not isinstance(body, dict):
            raise fail("a stage is a mapping of parameters (and optionally stage: KIND)", "stages", stage_name)
        raw_stages[stage_name] = dict(body or {})
    for text_override in overrides:
        try:
            stage_name, key, value = parse_override(text_override)
        except ValueError as exc:
            raise PipelineConfigError(str(exc), file=path) from exc
        if stage_name not in raw_stages:
            raise PipelineConfigError(f"override {text_override!r} names no stage; stages: {', '.join(raw_stages)}", file=path)
        raw_stages[stage_name][key] = value
        from_cli.setdefault(stage_name, set()).add(key)

    base = path.resolve().parent
    specs: list[StageSpec] = []
    for stage_name, raw in raw_stages.items():
        kind = raw.pop(STAGE_KEY, stage_name)
        if kind not in STAGES:
            kind_key = (STAGE_KEY,) if STAGE_KEY in stages_doc[stage_name] else ()
            raise fail(f"unknown stage {kind!r}; stages: {', '.join(sorted(STAGES))}", "stages", stage_name, *kind_key)
        stage = STAGES[kind]
        external_fields = marked_fields(stage.params, ExternalInput)
        for key in external_fields:
            if isinstance(raw.get(key), str):
                root = Path.cwd() if key in from_cli.get(stage_name, ()) else base
                raw[key] = str((root / Path(raw[key]).expanduser()).resolve())
        try:
            params = stage.params.model_validate(raw)
        except ValidationError as exc:
            first, *others = exc.errors()
            more = ""
            for other in others:  # every problem of this stage, one line each
                dotted, line = where("stages", stage_name, *other["loc"])
                more += f"\n  {f'line {line}, ' if line else ''}{dotted}: {_error_text(other, stage.params)}"
            raise fail(_error_text(first, stage.params) + more, "stages", stage_name, *first["loc"]) from exc
        external = {key: getattr(params, key) for key in external_fields if getattr(params, key) is not None}
        for key, value in external.items():
            if not value.exists():
                raise fail(f"no such file or directory: {value}", "stages", stage_name, key)
        references = {}
        for key, consumes in marked_fields(stage.params, Consumes).items():
            target = getattr(params, key)
            if target is None:
                continue
            upstream = next((s for s in specs if s.name == target), None)
            if upstream is None:
                later = " (it comes later: stages run in file order)" if target in raw_stages else ""
                raise fail(f"{target!r} names no earlier stage{later}; earlier stages: {', '.join(s.name for s in specs) or 'none'}",
                           "stages", stage_name, key)
            if upstream.kind != consumes.kind:
                raise fail(f"stage {target!r} writes a {upstream.kind}; {key} needs a {consumes.kind}", "stages", stage_name, key)
            references[key] = target
        specs.append(StageSpec(name=stage_name, stage=stage, params=params, references=references, external=external))

    run_dir = document.get("run_dir")
    if run_dir is not None and not isinstance(run_dir, str):
        raise fail("run_dir must be a path", "run_dir")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise fail("description must be text", "description")
    return PipelineSpec(
        name=name,
        description=description,
        file=path.resolve(),
        run_dir=(base / run_dir).resolve() if run_dir else None,
        stages=tuple(specs),
    )
