"""Stages that run an ``organsim`` command in a child process: the twin, its counterfactuals, synthetic cohorts.

The commands of these stages live in :mod:`organsim.cli`, a layer this package may not import, and
hold the user-facing logic (checks, defaults, summaries) that a stage should share rather than
copy. So each stage runs its command as ``python -c "from organsim.cli import main; main()" ...``
with a spinner, keeps the command's output as a log in the stage directory, and reads its figures
back from the files the command writes:

- ``coordinate``: ``organsim coordinate`` (the RL reference-selection policy, saved with a copy
  of the model) -> a model;
- ``calibrate``: ``organsim calibrate`` (the correlation of the within-hour draws, then
  split-conformal band scales with correlated draws, saved with a copy of the model) -> a model;
- ``whatif``: ``organsim whatif`` on one stay (the first septic test stay long enough, unless
  named) -> a report;
- ``trial``: ``organsim trial`` (strategy A vs B over test stays) -> a report;
- ``cf_benchmark``: ``organsim cf-benchmark`` against the engine's oracle -> a report;
- ``synthesize``: ``organsim synthesize`` -> a cohort (parquet) or an export;
- ``report_synthetic``: ``organsim report-synthetic`` -> a report.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import Field, model_validator

from organsim.tracking.registry import Stage, StageMetrics, StageParams, register_stage
from organsim.tracking.stages import (
    COMMAND_LOG,
    DEVICE_DOC,
    CohortInput,
    Device,
    ModelInput,
    StageContext,
    horizon_row,
    metric_horizons,
    run_organsim,
)
from organsim.utils.errors import OrgansimError


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    """Numbers of a nested JSON value as ``prefix.key.key`` metrics (lists are skipped)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif _finite(value):
        out[prefix] = float(value)


def _artifacts(out: Path, names: Sequence[str]) -> list[Path]:
    return [out / name for name in names if (out / name).is_file()]


# ============================================================================ coordinate
class CoordinateParams(StageParams):
    """Parameters of the ``coordinate`` stage (as ``organsim coordinate``)."""

    model: ModelInput = Field(description="Stage whose trained agents to coordinate.")
    cohort: CohortInput = Field(description="The cohort the agents were trained on (train split: RL; validation split: selection).")
    algo: Literal["grpo", "bapo", "dapo", "ppo"] = Field("grpo", description="RL algorithm of the reference-selection policy.")
    steps: int = Field(60, ge=1, description="Training steps.")
    problems: int = Field(16, ge=1, description="Forecast problems per step.")
    group_size: int = Field(4, ge=2, description="Rollouts per problem (reference sets compared in a group).")
    horizons: list[int] = Field([1, 6, 24], min_length=1, description="Horizon of each curriculum stage (hours).")
    realism_weight: float = Field(0.0, ge=0, description="Weight of the POLAR realism critic's score in the reward (0: no critic).")
    validation_problems: int = Field(64, ge=1, description="Validation problems for model selection.")
    device: Device = Field("auto", description=DEVICE_DOC)
    seed: int = Field(0, ge=0, description="Seed of initialisation, problems and sampled reference sets.")


@register_stage
class Coordinate(Stage):
    name = "coordinate"
    summary = "Train which systems each organ agent consults (RL); writes the model with its reference policy."
    params = CoordinateParams
    produces = "model"
    code = ("twin", "agents", "rl", "data", "utils", "cli.twin")

    def run(self, params: CoordinateParams, ctx: StageContext) -> None:
        run_organsim([
            "coordinate", "--model", ctx.input("model"), "--cohort", ctx.input("cohort"), "--out", ctx.out,
            "--algo", params.algo, "--steps", params.steps, "--problems", params.problems, "--group-size", params.group_size,
            "--horizons", ",".join(map(str, params.horizons)), "--realism-weight", params.realism_weight,
            "--validation-problems", params.validation_problems, "--device", params.device, "--seed", params.seed,
        ], ctx, f"training the reference-selection policy ({params.algo}, {params.steps} steps)")

    def metrics(self, out: Path) -> StageMetrics:
        record = _read_json(out / "coordination.json")
        values: dict[str, float] = {"best_step": float(record["best_step"])}
        for name, figures in {"policy": record["best_validation"], **record["baselines"]}.items():
            for horizon, nmse in figures.get("nmse_at", {}).items():
                if _finite(nmse):
                    values[f"{name}.nmse_{horizon}h"] = float(nmse)
        series = {key: [float(h[key]) for h in record["history"] if _finite(h.get(key))] for key in ("reward/mean", "consult_rate")}
        return StageMetrics(values=values, series={k.replace("/", "_"): v for k, v in series.items() if v})

    def artifacts(self, out: Path) -> list[Path]:
        return _artifacts(out, ["coordination.json", COMMAND_LOG])

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        v = metrics.values
        horizons = metric_horizons(v, "nmse")
        rows = {name: horizon_row(v, name, "nmse", horizons) for name in ("policy", "none", "all")}
        return (f"validation nMSE {'/'.join(f'{h} h' for h in horizons)}: policy {rows['policy']}, "
                f"none {rows['none']}, all {rows['all']} (best step {v['best_step']:.0f})")


# ============================================================================ calibrate
class CalibrateParams(StageParams):
    """Parameters of the ``calibrate`` stage (as ``organsim calibrate``)."""

    model: ModelInput = Field(description="Stage whose twin's bands to calibrate (train or coordinate).")
    cohort: CohortInput = Field(description="The cohort the agents were trained on (its validation split is calibrated on).")
    cases: int = Field(200, ge=1, description="Start hours (one per stay, seeded), at most.")
    samples: int = Field(20, ge=2, description="Sampled futures per case.")
    horizon: int = Field(48, ge=1, description="Hours rolled out from each start.")
    correlation_windows: int = Field(2000, ge=1, description="Windows of teacher-forced one-step forecasts the draw correlation is "
                                                             "fitted on, at most.")
    device: Device = Field("auto", description=DEVICE_DOC)
    seed: int = Field(0, ge=0, description="Seed of the windows, the start hours and the rollouts.")


@register_stage
class Calibrate(Stage):
    name = "calibrate"
    summary = ("Fit the correlation of the twin's within-hour draws on validation stays, then calibrate its 90 % bands on factual "
               "rollouts with correlated draws (split conformal); writes the model with both.")
    params = CalibrateParams
    produces = "model"
    code = ("twin", "agents", "data", "utils", "cli.twin")

    def run(self, params: CalibrateParams, ctx: StageContext) -> None:
        run_organsim([
            "calibrate", "--model", ctx.input("model"), "--cohort", ctx.input("cohort"), "--out", ctx.out,
            "--cases", params.cases, "--samples", params.samples, "--horizon", params.horizon,
            "--correlation-windows", params.correlation_windows, "--device", params.device, "--seed", params.seed,
        ], ctx, f"fitting the draw correlation and calibrating the twin's bands ({params.cases} validation cases)")

    def metrics(self, out: Path) -> StageMetrics:
        record = _read_json(out / "band_calibration.json")
        scales = [s for row in record["scales"] for s in row]
        correlation = _read_json(out / "draw_correlation.json")
        n_pairs, r = correlation["n_pairs"], correlation["correlation"]
        estimated = [abs(r[i][j]) for i in range(len(r)) for j in range(i + 1, len(r)) if n_pairs[i][j] >= correlation["min_pairs"]]
        return StageMetrics(values={"coverage_before": float(record["coverage_before"]), "scale_median": statistics.median(scales),
                                    "observed_values": float(record["meta"]["observed_values"]),
                                    "draw_pairs_estimated": float(len(estimated)),
                                    "draw_correlation_max_abs": float(max(estimated, default=0.0))})

    def artifacts(self, out: Path) -> list[Path]:
        return _artifacts(out, ["draw_correlation.json", "band_calibration.json", COMMAND_LOG])

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        v = metrics.values
        return (f"draw correlation on {v['draw_pairs_estimated']:.0f} variable pairs (largest |r| {v['draw_correlation_max_abs']:.2f}); "
                f"raw 90 % bands covered {v['coverage_before']:.1%} of {v['observed_values']:.0f} held-out values; "
                f"median scale {v['scale_median']:.2f}")


# ============================================================================ what-if and trials
class WhatIfParams(StageParams):
    """Parameters of the ``whatif`` stage (as ``organsim whatif``)."""

    model: ModelInput = Field(description="Stage whose model (agents, with or without a reference policy) simulates.")
    cohort: CohortInput = Field(description="Stage whose cohort holds the stay and the training stays.")
    stay: int | None = Field(None, description="Stay id; default: the first septic test stay recorded up to the decision hour.")
    at: int = Field(6, ge=2, description="Decision hour: the first ICU hour the strategies decide.")
    strategies: list[str] = Field(["observed_care", "restrictive_fluids_early_norepinephrine"], min_length=1,
                                  description="Library strategy names (pipelines/strategies) or YAML files.")
    samples: int = Field(20, ge=1, description="Futures sampled per strategy.")
    horizon: int = Field(24, ge=1, description="Hours simulated from the decision hour.")
    match: bool = Field(True, description="Matched comparison against the cohort's train stays.")
    device: Device = Field("auto", description=DEVICE_DOC)
    seed: int = Field(0, ge=0, description="Seed of the futures.")


def default_stay(cohort_dir: Path, at: int) -> int:
    """The first septic test stay (else any test stay) whose record reaches hour ``at - 1``."""
    stays = pl.read_parquet(cohort_dir / "stays.parquet", columns=["stay_id", "split", "sepsis"])
    last = pl.scan_parquet(cohort_dir / "hourly.parquet").group_by("stay_id").agg(pl.col("hour").max().alias("last")).collect()
    eligible = stays.join(last, on="stay_id").filter(pl.col("last") >= at - 1)
    test = eligible.filter(pl.col("split") == "test")
    for pool in (test.filter(pl.col("sepsis")), test, eligible):
        if pool.height:
            return int(pool.sort("stay_id")["stay_id"][0])
    raise OrgansimError(f"no stay of {cohort_dir} is recorded up to hour {at - 1}: choose an earlier decision hour (at)")


@register_stage
class WhatIf(Stage):
    name = "whatif"
    summary = "Sampled futures of one stay under each strategy: SOFA/APACHE II outcomes, events, overlap check."
    params = WhatIfParams
    produces = "report"
    code = ("counterfactual", "twin", "agents", "scores", "data", "utils", "cli.counterfactual")

    def run(self, params: WhatIfParams, ctx: StageContext) -> None:
        stay = params.stay if params.stay is not None else default_stay(ctx.input("cohort"), params.at)
        strategies = [arg for name in params.strategies for arg in ("--strategy", name)]
        run_organsim([
            "whatif", "--model", ctx.input("model"), "--cohort", ctx.input("cohort"), "--stay", stay, "--at", params.at,
            *strategies, "--samples", params.samples, "--horizon", params.horizon, "--seed", params.seed,
            "--match" if params.match else "--no-match", "--device", params.device, "--out", ctx.out, "--overwrite",
        ], ctx, f"what-if: stay {stay} from hour {params.at}, {len(params.strategies)} strategies x {params.samples} futures")

    def metrics(self, out: Path) -> StageMetrics:
        record = _read_json(out / "whatif.json")
        values = {"stay_id": float(record["stay_id"]), "decision_hour": float(record["decision_hour"])}
        for name, strategy in record["strategies"].items():
            for score in strategy["scores"]:
                if _finite(score.get("mean")):
                    values[f"{name}.{score['score']}_{score['horizon_hours']}h"] = float(score["mean"])
            for event in strategy["events"]:
                if _finite(event.get("probability")):
                    values[f"{name}.p_{event['event']}"] = float(event["probability"])
            overlap = strategy.get("overlap")
            if overlap is not None:
                values[f"{name}.in_support"] = float(bool(overlap.get("in_support")))
        return StageMetrics(values=values)

    def artifacts(self, out: Path) -> list[Path]:
        return _artifacts(out, ["whatif.json", "bands.parquet", "scores.parquet", "events.parquet", COMMAND_LOG])

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        record = _read_json(out / "whatif.json")
        parts = []
        for name, strategy in record["strategies"].items():
            sofa = [s for s in strategy["scores"] if s["score"] == "sofa" and _finite(s.get("mean"))]
            last = max(sofa, key=lambda s: s["horizon_hours"]) if sofa else None
            overlap = strategy.get("overlap")
            flag = "" if overlap is None or overlap.get("in_support") else " (outside support)"
            parts.append(f"{name} SOFA {last['mean']:.1f} at {last['horizon_hours']} h{flag}" if last else f"{name}{flag}")
        return f"stay {record['stay_id']} from hour {record['decision_hour']}: " + "; ".join(parts)


SHARDS_DOC = "Run the cases in this many shards, each written as a part (a resumed attempt computes only the missing ones)."
RAY_DOC = "Run the shards on Ray: 'local' or a cluster address (default: local processes)."
WORKERS_DOC = "Local processes or local Ray CPUs for the shards (default: all CPUs)."


def _sharding(shards: int, ray: str | None, workers: int | None, ctx: StageContext) -> list[object]:
    """The sharding options of ``organsim trial`` / ``organsim cf-benchmark``; the parts live in the
    stage's work directory, so an interrupted attempt keeps its finished parts."""
    if shards == 1 and ray is None:
        return []
    return ["--shards", shards, *(["--ray", ray] if ray else []), *(["--workers", workers] if workers else []),
            "--parts", ctx.work / "parts"]


class TrialParams(StageParams):
    """Parameters of the ``trial`` stage (as ``organsim trial``)."""

    model: ModelInput = Field(description="Stage whose model simulates.")
    cohort: CohortInput = Field(description="Stage whose cohort's stays are the trial's cases.")
    strategies: list[str] = Field(min_length=2, max_length=2, description="The two arms, A then B (library names or YAML files).")
    at: int = Field(6, ge=2, description="Decision hour of every stay.")
    stays: str = Field("50", description="'all', a number of stays, or comma-separated stay ids.")
    split: Literal["test", "validation", "train", "all"] = Field("test", description="Split the stays come from.")
    samples: int = Field(10, ge=1, description="Futures per stay and arm.")
    horizon: int = Field(24, ge=1, description="Hours simulated from the decision hour.")
    device: Device = Field("auto", description=DEVICE_DOC)
    seed: int = Field(0, ge=0, description="Seed of the stays chosen, the futures and the bootstrap.")
    shards: int = Field(1, ge=1, description=SHARDS_DOC)
    ray: str | None = Field(None, description=RAY_DOC)
    workers: int | None = Field(None, ge=1, description=WORKERS_DOC)

    @model_validator(mode="after")
    def _shards_fit(self) -> TrialParams:
        spec = self.stays.strip()
        stays = int(spec) if spec.isdigit() else None if spec == "all" else len([part for part in spec.split(",") if part.strip()])
        if stays is not None and self.shards > stays:
            raise ValueError(f"shards ({self.shards}) cannot exceed the trial's stays ({stays})")
        return self


@register_stage
class Trial(Stage):
    name = "trial"
    summary = "A virtual trial: strategy A vs B over many stays, each outcome's effect with a 95% interval."
    params = TrialParams
    produces = "report"
    code = ("counterfactual", "twin", "agents", "scores", "data", "utils", "cli.counterfactual")

    def run(self, params: TrialParams, ctx: StageContext) -> None:
        run_organsim([
            "trial", "--model", ctx.input("model"), "--cohort", ctx.input("cohort"),
            "--strategy", params.strategies[0], "--strategy", params.strategies[1], "--at", params.at, "--stays", params.stays,
            "--split", params.split, "--samples", params.samples, "--horizon", params.horizon, "--seed", params.seed,
            "--device", params.device, *_sharding(params.shards, params.ray, params.workers, ctx), "--out", ctx.out, "--overwrite",
        ], ctx, f"virtual trial: {params.strategies[0]} vs {params.strategies[1]}")

    def metrics(self, out: Path) -> StageMetrics:
        effects = pl.read_parquet(out / "effects.parquet")
        values: dict[str, float] = {}
        for row in effects.iter_rows(named=True):
            for key in ("effect", "ci_low", "ci_high"):
                if _finite(row.get(key)):
                    values[f"{row['outcome']}.{key}"] = float(row[key])
        return StageMetrics(values=values)

    def artifacts(self, out: Path) -> list[Path]:
        return _artifacts(out, ["trial.json", "effects.parquet", COMMAND_LOG])

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        effects = pl.read_parquet(out / "effects.parquet").filter(pl.col("effect").is_not_null() & pl.col("effect").is_not_nan())
        rows = list(effects.iter_rows(named=True))
        shown = ([r for r in rows if r["outcome"].startswith(("sofa", "died"))] or rows)[:3]
        if not shown:
            return "no outcome could be compared (horizon shorter than the scored hours?)"
        return "effect A - B: " + "; ".join(f"{r['outcome']} {r['effect']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]" for r in shown)


class CfBenchmarkParams(StageParams):
    """Parameters of the ``cf_benchmark`` stage (as ``organsim cf-benchmark``)."""

    model: ModelInput = Field(description="Stage whose model (trained on the engine cohort) simulates.")
    cohort: CohortInput = Field(description="Stage whose engine cohort's test stays are the cases.")
    stays: int = Field(50, ge=1, description="Cases (stays, half of them septic when possible).")
    decision_hours: list[int] = Field([6, 12, 24], min_length=1, description="Decision hours drawn from per case (>= 2).")
    horizon: int = Field(48, ge=1, description="Hours simulated from the decision hour.")
    samples: int = Field(20, ge=1, description="Futures per case and strategy from each twin variant.")
    strategies: list[str] = Field([], description="Strategies (empty: both sides of the standard contrasts).")
    device: Device = Field("auto", description=DEVICE_DOC)
    seed: int = Field(0, ge=0, description="Seed of the cases and the futures.")
    shards: int = Field(1, ge=1, description=SHARDS_DOC)
    ray: str | None = Field(None, description=RAY_DOC)
    workers: int | None = Field(None, ge=1, description=WORKERS_DOC)

    @model_validator(mode="after")
    def _shards_fit(self) -> CfBenchmarkParams:
        if self.shards > self.stays:
            raise ValueError(f"shards ({self.shards}) cannot exceed stays ({self.stays})")
        return self


@register_stage
class CfBenchmark(Stage):
    name = "cf_benchmark"
    summary = "The twin's counterfactuals against the engine's true ones: nRMSE, effect error, sign accuracy, band coverage."
    params = CfBenchmarkParams
    produces = "report"
    code = ("counterfactual", "twin", "agents", "physiology", "scores", "data", "utils", "cli.counterfactual")

    def run(self, params: CfBenchmarkParams, ctx: StageContext) -> None:
        strategies = [arg for name in params.strategies for arg in ("--strategy", name)]
        run_organsim([
            "cf-benchmark", "--model", ctx.input("model"), "--cohort", ctx.input("cohort"), "--out", ctx.out,
            "--stays", params.stays, "--decision-hours", ",".join(map(str, params.decision_hours)), "--horizon", params.horizon,
            "--samples", params.samples, *strategies, "--seed", params.seed, "--device", params.device,
            *_sharding(params.shards, params.ray, params.workers, ctx),
        ], ctx, f"counterfactual benchmark: {params.stays} stays against the engine's oracle")

    def metrics(self, out: Path) -> StageMetrics:
        report = _read_json(out / "metrics.json")
        values: dict[str, float] = {}
        for name, figures in report["simulators"].items():
            for horizon in map(str, report["horizons"]):
                by_system = [v[horizon] for v in figures["nrmse"].values() if _finite(v.get(horizon))]
                if by_system:
                    values[f"{name}.nrmse_{horizon}h"] = sum(by_system) / len(by_system)
            coverage = figures.get("coverage_90", {}).get("all")
            if _finite(coverage):
                values[f"{name}.coverage_90"] = float(coverage)
            for outcome in ("sofa_at_24h", "map_at_6h"):
                signs = [e[outcome]["sign_accuracy"] for e in figures.get("effects", {}).values()
                         if outcome in e and _finite(e[outcome].get("sign_accuracy"))]
                if signs:
                    values[f"{name}.sign_accuracy_{outcome}"] = sum(signs) / len(signs)
        return StageMetrics(values=values)

    def artifacts(self, out: Path) -> list[Path]:
        return _artifacts(out, ["metrics.json", COMMAND_LOG])

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        v = metrics.values
        names = sorted({k.split(".")[0] for k in v})
        parts = []
        for name in names:
            nrmse = {k.rsplit("_", 1)[1]: x for k, x in v.items() if k.startswith(f"{name}.nrmse_")}
            first = min(nrmse, key=lambda h: int(h[:-1])) if nrmse else None
            text = f"{name}: nRMSE {first} {nrmse[first]:.2f}" if first else name
            if f"{name}.coverage_90" in v:
                text += f", 90% coverage {v[f'{name}.coverage_90']:.2f}"
            if f"{name}.sign_accuracy_map_at_6h" in v:
                text += f", effect sign (MAP 6 h) {v[f'{name}.sign_accuracy_map_at_6h']:.2f}"
            parts.append(text)
        return "; ".join(parts)


# ============================================================================ synthetic cohorts
class SynthesizeParams(StageParams):
    """Parameters of the ``synthesize`` stage (as ``organsim synthesize``)."""

    model: ModelInput = Field(description="Stage whose model (the twin) rolls the synthetic stays forward.")
    cohort: CohortInput = Field(description="The cohort the model was trained on (its train split fits the generators).")
    patients: int = Field(200, ge=1, description="Stays to generate.")
    hours: int = Field(48, ge=2, description="Longest stay in hours.")
    format: Literal["parquet", "csv", "psv", "meds"] = Field("parquet", description="Output format (parquet: a canonical cohort).")
    septic_fraction: float | None = Field(None, ge=0, le=1, description="Share of septic stays (default: the training split's).")
    screen_pool: float = Field(1.0, ge=1, description="Stays generated per stay kept by the realism screen (1: every stay kept).")
    volatility: float = Field(0.0, ge=0, description="SD of each stay's log volatility factors of the vital signs' draw spread (0: none).")
    device: Device = Field("auto", description=DEVICE_DOC)
    seed: int = Field(0, ge=0, description="Seed of every draw.")


@register_stage
class Synthesize(Stage):
    name = "synthesize"
    summary = "A synthetic cohort: drawn initial states rolled forward by the coordinated twin, charted and labelled."
    params = SynthesizeParams
    produces = "cohort"
    code = ("synth", "twin", "agents", "scores", "data", "utils", "cli.synth")

    def output_kind(self, params: StageParams) -> str:
        return "cohort" if getattr(params, "format", "parquet") == "parquet" else "export"

    def run(self, params: SynthesizeParams, ctx: StageContext) -> None:
        fraction = [] if params.septic_fraction is None else ["--septic-fraction", params.septic_fraction]
        run_organsim([
            "synthesize", "--model", ctx.input("model"), "--cohort", ctx.input("cohort"), "--patients", params.patients,
            "--hours", params.hours, "--seed", params.seed, "--format", params.format, *fraction, "--device", params.device,
            "--screen-pool", params.screen_pool, "--volatility", params.volatility, "--out", ctx.out, "--overwrite",
        ], ctx, f"synthesizing {params.patients} stays x {params.hours} h")

    def metrics(self, out: Path) -> StageMetrics:
        if not (out / "cohort.json").is_file():
            return StageMetrics(values={"files": float(sum(1 for p in out.rglob("*") if p.is_file()))})
        counts = _read_json(out / "cohort.json").get("counts", {})
        values = {key: float(counts[key]) for key in ("stays", "hours", "septic_stays") if key in counts}
        if values.get("stays"):
            values["septic_fraction"] = values.get("septic_stays", 0.0) / values["stays"]
        return StageMetrics(values=values)

    def artifacts(self, out: Path) -> list[Path]:
        return _artifacts(out, ["cohort.json", COMMAND_LOG])

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        v = metrics.values
        if "stays" not in v:
            return f"{v.get('files', 0):.0f} files"
        return f"{v['stays']:,.0f} synthetic stays, {v.get('hours', 0):,.0f} hours, {v.get('septic_fraction', 0):.1%} septic"


class ReportSyntheticParams(StageParams):
    """Parameters of the ``report_synthetic`` stage (as ``organsim report-synthetic``)."""

    synthetic: CohortInput = Field(description="Stage whose synthetic cohort to judge.")
    real: CohortInput = Field(description="Stage whose real cohort's train split the generator learned from; its test split is held out.")
    max_stays: int | None = Field(None, ge=5, description="Use at most this many stays per cohort (seeded sample).")
    seed: int = Field(0, ge=0, description="Seed of every sample, split and classifier.")


@register_stage
class ReportSynthetic(Stage):
    name = "report_synthetic"
    summary = "Fidelity, utility (train on synthetic, test on real) and privacy of a synthetic cohort: metrics.json, report.html."
    params = ReportSyntheticParams
    produces = "report"
    code = ("evaluate", "scores", "data", "utils", "cli.synth")

    def run(self, params: ReportSyntheticParams, ctx: StageContext) -> None:
        limit = [] if params.max_stays is None else ["--max-stays", params.max_stays]
        run_organsim([
            "report-synthetic", "--synthetic", ctx.input("synthetic"), "--real-train", ctx.input("real"),
            "--real-test", ctx.input("real"), "--out", ctx.out, "--seed", params.seed, *limit, "--overwrite",
        ], ctx, "synthetic-cohort report (fidelity, utility, privacy)")

    def metrics(self, out: Path) -> StageMetrics:
        metrics = _read_json(out / "metrics.json")
        values = {check["check"]: float(check["value"]) for check in metrics["checks"] if _finite(check.get("value"))}
        values.update({f"passed.{check['check']}": float(check["passed"]) for check in metrics["checks"]
                       if check.get("passed") is not None})
        return StageMetrics(values=values)

    def artifacts(self, out: Path) -> list[Path]:
        return _artifacts(out, ["metrics.json", "report.html", COMMAND_LOG])

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        checks = _read_json(out / "metrics.json")["checks"]
        passed = sum(1 for c in checks if c.get("passed") is True)
        measured = sum(1 for c in checks if c.get("passed") is not None)
        shown = [f"{c['check']} {c['value']:.3f}" for c in checks if _finite(c.get("value"))][:3]
        return f"{passed}/{measured} checks passed; " + ", ".join(shown) + f"; report {out / 'report.html'}"
