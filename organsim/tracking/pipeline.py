"""Run a pipeline: skip what is unchanged, resume what was interrupted, record everything in MLflow.

A run directory holds one output directory per stage (``<run_dir>/<stage name>``), the state file
``pipeline.json`` (rewritten atomically after every stage: each stage's status, key and output
hash) and, by default, the MLflow store. For each stage in file order the runner computes the
stage's key from its parameters, inputs and code (:mod:`organsim.tracking.fingerprints`) and

- skips it when the state file records the same key as done and its output is unchanged on disk;
- otherwise runs it: an ordinary stage into a temporary directory renamed into place on success
  (an interruption leaves the previous output or nothing), a resumable stage (train) in place,
  continuing an interrupted attempt with the same key.

``from_stage`` runs that stage and every later one, ``only`` runs one stage; both run the chosen
stages even when unchanged, and need the outputs of the earlier stages they read to exist already.
Every invocation is one MLflow parent run (an interrupted one is reopened by the next invocation)
with a nested run per stage holding its parameters, metrics and artifacts; a skipped stage's
nested run is tagged ``organsim.status=skipped`` and names the run that produced its outputs.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from organsim.tracking.fingerprints import (
    code_version,
    hash_path,
    inputs_hash,
    params_hash,
    stage_key,
)
from organsim.tracking.mlflow_log import (
    LOCAL_ARTIFACTS,
    PRODUCED_BY_TAG,
    STATUS_TAG,
    PipelineTracker,
    default_tracking_uri,
    ui_command,
)
from organsim.tracking.registry import StageContext, StageMetrics
from organsim.tracking.spec import PipelineSpec, StageSpec
from organsim.utils.errors import DataError, OrgansimError
from organsim.utils.io import atomic_directory, atomic_write_text

STATE_FILE = "pipeline.json"
STATE_FORMAT = "organsim.pipeline-state/1"
WORK_DIR = ".work"
LOCK_FILE = ".lock"
KEY_PARTS = ("params", "inputs", "code")

Announce = Callable[[str], None]


@dataclass
class StageOutcome:
    """What happened to one stage in a run.

    Attributes
    ----------
    name, stage
        The stage's name in the pipeline and its kind.
    status
        ``ran``, ``resumed`` or ``skipped``.
    reason
        Why it ran (``first run``, ``parameters changed``, ...) or was skipped.
    seconds
        Time spent on it in this run.
    output
        Its output directory.
    metrics, headline
        What it reported.
    mlflow_run_id
        Its nested MLflow run in this pipeline run.
    """

    name: str
    stage: str
    status: str
    reason: str
    seconds: float
    output: Path
    metrics: StageMetrics
    headline: str
    mlflow_run_id: str


@dataclass
class PipelineResult:
    """A finished pipeline run: where things are, and one :class:`StageOutcome` per stage considered."""

    pipeline: str
    run_dir: Path
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    stages: list[StageOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ui_command(self) -> str:
        """The command that opens the MLflow UI on this run's store."""
        return ui_command(self.tracking_uri)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_state(run_dir: str | Path) -> dict[str, Any]:
    """The state file of a run directory (an empty state when there is none)."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return {"format": STATE_FORMAT, "stages": {}, "mlflow": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}; delete it to start the run directory afresh", file=path, row=exc.lineno) from exc
    if state.get("format") != STATE_FORMAT:
        raise DataError(f"unknown state format {state.get('format')!r}; expected {STATE_FORMAT!r}", file=path)
    return state


def _write_state(run_dir: Path, state: dict[str, Any]) -> None:
    atomic_write_text(run_dir / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")


@contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory (two runs must not write the same outputs)."""
    with (run_dir / LOCK_FILE).open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise OrgansimError(f"another pipeline run is using {run_dir}; wait for it or choose another run directory") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _selection(spec: PipelineSpec, from_stage: str | None, only: str | None) -> tuple[list[StageSpec], bool]:
    """The stages to consider and whether they are forced (chosen with from_stage / only)."""
    if from_stage is not None and only is not None:
        raise ValueError("give --from or --only, not both")
    if only is not None:
        return [spec.stages[spec.index(only)]], True
    if from_stage is not None:
        return list(spec.stages[spec.index(from_stage):]), True
    return list(spec.stages), False


def _decide(stage: StageSpec, entry: dict[str, Any] | None, parts: dict[str, str], key: str, out: Path,
            forced: bool) -> tuple[str, str]:
    """``(action, reason)`` with action ``run``, ``resume`` or ``skip``."""
    interrupted = entry is not None and entry.get("status") != "done"
    if interrupted and stage.stage.resumable and entry.get("key") == key and out.is_dir():
        return "resume", "continuing the interrupted attempt"
    if forced:
        return "run", "chosen with --from/--only"
    if entry is None:
        return "run", "first run"
    if interrupted:
        return "run", f"the last attempt did not finish ({entry.get('status')})"
    if entry.get("key") != key:
        changed = [name for name in KEY_PARTS if entry.get("parts", {}).get(name) != parts[name]]
        words = {"params": "parameters", "inputs": "inputs", "code": "code"}
        return "run", " and ".join(words[c] for c in changed) + " changed"
    if not out.is_dir():
        return "run", "its output is missing"
    if hash_path(out) != entry.get("output_hash"):
        return "run", "its output changed on disk"
    return "skip", "unchanged"


def run_pipeline(
    spec: PipelineSpec,
    *,
    run_dir: str | Path | None = None,
    from_stage: str | None = None,
    only: str | None = None,
    tracking_uri: str | None = None,
    announce: Announce | None = None,
) -> PipelineResult:
    """Run ``spec`` in ``run_dir`` (see the module docstring).

    Parameters
    ----------
    spec
        The validated pipeline (:func:`~organsim.tracking.spec.load_pipeline`).
    run_dir
        Where outputs, state and the local MLflow store go (default: the file's ``run_dir``, else
        ``runs/<name>``).
    from_stage, only
        Run from this stage on, or just this stage (at most one of the two).
    tracking_uri
        MLflow store (default: :func:`~organsim.tracking.mlflow_log.default_tracking_uri`).
    announce
        Called with one line of text as each stage starts and ends.

    Returns
    -------
    PipelineResult

    Raises
    ------
    Exception
        Whatever a stage raised, after its state (``failed`` or ``interrupted``) and its MLflow
        runs (``FAILED`` or ``KILLED``) are recorded; the next call resumes.
    """
    say = announce or (lambda _line: None)
    run_dir = Path(run_dir) if run_dir is not None else spec.run_dir or Path("runs") / spec.name
    run_dir = run_dir.resolve()
    selected, forced = _selection(spec, from_stage, only)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _locked(run_dir):
        state = read_state(run_dir)
        if state.get("pipeline", spec.name) != spec.name:
            raise OrgansimError(f"{run_dir} holds a run of pipeline {state['pipeline']!r}, not {spec.name!r}; choose another run directory")
        state["pipeline"] = spec.name
        state["file"] = str(spec.file)
        selected_names = {s.name for s in selected}
        for stage in selected:
            for target in stage.references.values():
                if target not in selected_names and state["stages"].get(target, {}).get("status") != "done":
                    raise OrgansimError(
                        f"stage {stage.name!r} reads the output of {target!r}, which has not run in {run_dir} yet; "
                        "run the pipeline without --from/--only first"
                    )
        uri = tracking_uri or default_tracking_uri(run_dir)
        tracker = PipelineTracker(uri, spec.name, artifact_root=run_dir / LOCAL_ARTIFACTS)
        previous = state.get("mlflow", {})
        resume_parent = previous.get("parent_run_id") if (previous.get("tracking_uri") == uri and not previous.get("finished", True)) else None
        parent = tracker.start_pipeline(
            spec.name,
            params={"pipeline": spec.name, "file": str(spec.file), "stages": spec.stage_names,
                    "from_stage": from_stage or "", "only": only or ""},
            tags={"organsim.pipeline_file": str(spec.file), "organsim.run_dir": str(run_dir),
                  "organsim.version": version("organsim")},
            resume_run_id=resume_parent,
        )
        state["mlflow"] = {"tracking_uri": uri, "experiment_id": tracker.experiment_id, "parent_run_id": parent, "finished": False}
        _write_state(run_dir, state)
        result = PipelineResult(spec.name, run_dir, uri, tracker.experiment_id, parent)
        started = time.perf_counter()
        try:
            for stage in selected:
                result.stages.append(_run_stage(stage, run_dir, state, tracker, parent, forced, say))
        except BaseException as exc:
            tracker.finish(parent, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            raise
        result.seconds = time.perf_counter() - started
        state["mlflow"]["finished"] = True
        _write_state(run_dir, state)
        tracker.log_artifacts(parent, [spec.file, run_dir / STATE_FILE])
        tracker.finish(parent)
    return result


def _run_stage(stage: StageSpec, run_dir: Path, state: dict[str, Any], tracker: PipelineTracker, parent: str,
               forced: bool, say: Announce) -> StageOutcome:
    """Skip, run or resume one stage, updating the state file and MLflow."""
    started = time.perf_counter()
    out = run_dir / stage.name
    entry = state["stages"].get(stage.name)
    upstream = {target: state["stages"][target]["output_hash"] for target in stage.references.values()}
    parts = {"params": params_hash(stage), "inputs": inputs_hash(stage, upstream), "code": code_version(stage)}
    key = stage_key(**parts)
    action, reason = _decide(stage, entry, parts, key, out, forced)
    params = stage.params.model_dump(mode="json")
    tags = {"organsim.stage": stage.stage.name, STATUS_TAG: "skipped" if action == "skip" else "ran"}
    if action == "skip":
        tags[PRODUCED_BY_TAG] = entry.get("produced_by", "")
    run_id = tracker.start_stage(parent, stage.name, tags=tags)
    if action == "skip":
        metrics = stage.stage.metrics(out)
        tracker.log_stage(run_id, params={"stage": stage.stage.name, **params}, metrics=metrics, artifacts=[])
        tracker.finish(run_id)
        headline = stage.stage.headline(out, metrics)
        say(f"skip   {stage.name}: {reason}" + (f" ({headline})" if headline else ""))
        return StageOutcome(stage.name, stage.stage.name, "skipped", reason, time.perf_counter() - started, out, metrics, headline, run_id)

    say(f"{action:<6} {stage.name} ({stage.stage.name}): {reason}")
    entry = {"stage": stage.stage.name, "status": "running", "key": key, "parts": parts, "started_at": _now(), "mlflow_run_id": run_id}
    state["stages"][stage.name] = entry
    _write_state(run_dir, state)
    work = run_dir / WORK_DIR / stage.name
    if not (work / "key").is_file() or (work / "key").read_text() != key:  # scratch of other settings is useless
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "key").write_text(key)
    inputs = {param: run_dir / target for param, target in stage.references.items()}
    try:
        for leftover in run_dir.glob(f".{stage.name}.*.tmp"):  # temporary output of a killed attempt (atomic_directory)
            shutil.rmtree(leftover, ignore_errors=True)
        if stage.stage.resumable:
            if action == "run" and out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True, exist_ok=True)
            stage.stage.run(stage.params, StageContext(out=out, inputs=inputs, work=work, resume=action == "resume"))
        else:
            with atomic_directory(out, overwrite=True) as tmp:
                stage.stage.run(stage.params, StageContext(out=tmp, inputs=inputs, work=work))
        metrics = stage.stage.metrics(out)
        tracker.log_stage(run_id, params={"stage": stage.stage.name, **params}, metrics=metrics, artifacts=stage.stage.artifacts(out))
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        entry.update(status="interrupted" if interrupted else "failed", error=f"{type(exc).__name__}: {exc}", finished_at=_now())
        _write_state(run_dir, state)
        tracker.finish(run_id, "KILLED" if interrupted else "FAILED")
        raise
    seconds = time.perf_counter() - started
    entry.update(status="done", output_hash=hash_path(out), seconds=round(seconds, 3), finished_at=_now(), produced_by=run_id)
    entry.pop("error", None)
    _write_state(run_dir, state)
    shutil.rmtree(work, ignore_errors=True)
    tracker.finish(run_id)
    headline = stage.stage.headline(out, metrics)
    say(f"done   {stage.name} in {seconds:.1f} s" + (f": {headline}" if headline else ""))
    status = "resumed" if action == "resume" else "ran"
    return StageOutcome(stage.name, stage.stage.name, status, reason, seconds, out, metrics, headline, run_id)
