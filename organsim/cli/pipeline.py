"""``organsim pipeline run|check|stages``: declarative pipelines (pipelines/*.yaml) tracked in MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic_core import PydanticUndefined
from rich.table import Table

from organsim.cli.app import app, console, friendly_errors
from organsim.tracking import (
    STAGES,
    Consumes,
    PipelineSpec,
    load_pipeline,
    read_state,
    run_pipeline,
)
from organsim.tracking.pipeline import STATE_FILE
from organsim.tracking.registry import marked_fields

pipeline_app = typer.Typer(help="Run declarative pipelines (pipelines/*.yaml); every run is tracked in MLflow.",
                           no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")

PipelineFile = Annotated[Path, typer.Argument(help="A pipeline file, e.g. pipelines/demo.yaml.")]
Overrides = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a parameter: STAGE.KEY=VALUE (VALUE is YAML). Repeatable.")]


@pipeline_app.command("run")
@friendly_errors
def run(
    file: PipelineFile,
    from_stage: Annotated[str | None, typer.Option("--from", help="Run this stage and every later one (even if unchanged).")] = None,
    only: Annotated[str | None, typer.Option("--only", help="Run just this stage (even if unchanged).")] = None,
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Run directory (default: the file's run_dir, else runs/<name>).")] = None,
    overrides: Overrides = None,
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite in the run directory).")] = None,
) -> None:
    """Run a pipeline: unchanged stages are skipped, an interrupted run resumes, MLflow records every stage."""
    spec = load_pipeline(file, overrides or ())
    result = run_pipeline(spec, run_dir=run_dir, from_stage=from_stage, only=only, tracking_uri=tracking_uri,
                          announce=lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True))
    counts = {status: sum(s.status == status for s in result.stages) for status in ("ran", "resumed", "skipped")}
    done = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    console.print(f"\n[bold]pipeline {spec.name}[/]: {len(result.stages)} stages ({done}) in {result.seconds:.0f} s")
    width = max(len(s.name) for s in result.stages)
    for outcome in result.stages:  # soft_wrap: one line per stage and whole paths, ready to copy
        console.print(f"  {outcome.name:<{width}}  {outcome.status:<7} {outcome.seconds:7.1f} s  {outcome.headline}",
                      markup=False, highlight=False, soft_wrap=True)
    console.print(f"outputs: [bold]{result.run_dir}[/]/<stage>; state: {result.run_dir / STATE_FILE}", soft_wrap=True)
    console.print(f"MLflow run {result.parent_run_id} (experiment {spec.name}); browse it with:\n  [bold]{result.ui_command}[/]",
                  soft_wrap=True)
    dashboard = dashboard_command(spec, result.run_dir)
    if dashboard:
        console.print(f"the clinicians' dashboard on these outputs:\n  [bold]{dashboard}[/]", soft_wrap=True)


def dashboard_command(spec: PipelineSpec, run_dir: Path) -> str | None:
    """``streamlit run dashboards/app.py -- --cohort .. --model ..`` for the pipeline's last model and the
    cohort it was trained on (plus its last synthetic-cohort report); None without a model."""
    models = [stage for stage in spec.stages if stage.kind == "model" and "cohort" in stage.references]
    if not models:
        return None
    model = models[-1]
    command = f"streamlit run dashboards/app.py -- --cohort {run_dir / model.references['cohort']} --model {run_dir / model.name}"
    reports = [stage for stage in spec.stages if stage.stage.name == "report_synthetic"]
    if reports:
        command += f" --report {run_dir / reports[-1].name}"
    return command


@pipeline_app.command("check")
@friendly_errors
def check(
    file: PipelineFile,
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Also show what a run directory has done.")] = None,
    overrides: Overrides = None,
) -> None:
    """Validate a pipeline file (parameters, references, input paths) without running anything."""
    spec = load_pipeline(file, overrides or ())
    directory = run_dir or spec.run_dir or Path("runs") / spec.name
    done = read_state(directory)["stages"] if directory.is_dir() else {}
    table = Table(title=f"pipeline {spec.name} ({len(spec.stages)} stages): valid", caption=f"state: {directory / STATE_FILE}")
    for column in ("stage", "kind", "reads", "writes", "state"):
        table.add_column(column)
    for stage in spec.stages:
        reads = ", ".join([*stage.references.values(), *(str(p) for p in stage.external.values())])
        table.add_row(stage.name, stage.stage.name, reads, stage.kind, done.get(stage.name, {}).get("status", "-"))
    console.print(table)


@pipeline_app.command("stages")
@friendly_errors
def stages(
    name: Annotated[str | None, typer.Argument(help="Show one stage's parameters.")] = None,
) -> None:
    """List the stages a pipeline file can use, or one stage's parameters."""
    if name is None:
        table = Table(title="pipeline stages")
        table.add_column("stage")
        table.add_column("writes")
        table.add_column("what it does")
        for stage_name, stage in sorted(STAGES.items()):
            table.add_row(stage_name, stage.produces, stage.summary)
        console.print(table)
        return
    if name not in STAGES:
        raise KeyError(f"no stage {name!r}; stages: {', '.join(sorted(STAGES))}")
    stage = STAGES[name]
    references = {key: consumes.kind for key, consumes in marked_fields(stage.params, Consumes).items()}
    table = Table(title=f"{name}: {stage.summary}")
    for column in ("parameter", "default", "meaning"):
        table.add_column(column)
    for key, info in stage.params.model_fields.items():
        default = "required" if info.default is PydanticUndefined and info.default_factory is None else (
            repr(info.default_factory()) if info.default_factory is not None else repr(info.default))
        meaning = (info.description or "") + (f" (an earlier {references[key]} stage)" if key in references else "")
        table.add_row(key, default, meaning)
    console.print(table)
