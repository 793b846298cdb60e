"""Two toy stages for the runner tests: they add numbers, log their calls and fail on request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from organsim.tracking import Consumes, Stage, StageContext, StageMetrics, StageParams


class ToyParams(StageParams):
    label: str
    log: str
    add: int = 1
    upstream: Annotated[str | None, Consumes("toy")] = None
    fail_flag: str | None = None
    interrupt_flag: str | None = None


def _upstream_value(ctx: StageContext, params: ToyParams) -> int:
    return int((ctx.input("upstream") / "value.txt").read_text()) if params.upstream else 0


def _check_flags(params: ToyParams) -> None:
    if params.fail_flag and Path(params.fail_flag).exists():
        raise RuntimeError(f"{params.label} failed on purpose")
    if params.interrupt_flag and Path(params.interrupt_flag).exists():
        raise KeyboardInterrupt


class Toy(Stage):
    """value = add + the upstream toy's value; logs ``label#attempt`` (attempts counted in the scratch directory)."""

    name = "toy"
    summary = "adds numbers"
    params = ToyParams
    produces = "toy"
    code = ("utils",)

    def run(self, params: ToyParams, ctx: StageContext) -> None:
        with (ctx.work / "attempts").open("a") as attempts:
            attempts.write("x")
        with Path(params.log).open("a") as log:
            log.write(f"{params.label}#{len((ctx.work / 'attempts').read_text())}\n")
        _check_flags(params)
        (ctx.out / "value.txt").write_text(str(params.add + _upstream_value(ctx, params)))

    def metrics(self, out: Path) -> StageMetrics:
        value = float((out / "value.txt").read_text())
        return StageMetrics(values={"value": value}, series={"progress": [value / 2, value]})

    def artifacts(self, out: Path) -> list[Path]:
        return [out / "value.txt"]

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        return f"value {metrics.values['value']:.0f}"


class ToySteps(Toy):
    """A resumable toy: step 1, (maybe fail), step 2; an interrupted attempt is continued after step 1."""

    name = "toy_steps"
    resumable = True

    def run(self, params: ToyParams, ctx: StageContext) -> None:
        with Path(params.log).open("a") as log:
            log.write(f"{params.label}:{'resume' if ctx.resume else 'fresh'}\n")
        if not (ctx.out / "step-1.json").exists():
            (ctx.out / "step-1.json").write_text(json.dumps({"upstream": _upstream_value(ctx, params)}))
        _check_flags(params)
        upstream = json.loads((ctx.out / "step-1.json").read_text())["upstream"]
        (ctx.out / "value.txt").write_text(str(params.add + upstream))
