"""The pipeline stages on data, engine and agents: generate, ingest, split, scores, export, counterfactual, train, evaluate.

The stages of the twin, counterfactual and synthetic-cohort commands are in
:mod:`organsim.tracking.command_stages`; :func:`run_organsim` runs a command for a stage.

Each stage calls organsim's public Python API (the functions the ``organsim`` commands call) and
writes one output directory; its metrics are read back from that directory. Stage-output
references are parameters named after what they read (``cohort``, ``model``, ``source_stage``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator
from rich.progress import Progress, TaskID

from organsim.agents.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_config
from organsim.agents.model import BACKBONE_SHARING, PRESETS, REFERENCE_MODES
from organsim.agents.training import TRAIN_REFERENCES, TrainConfig, train_agents
from organsim.data import Cohort, read_meds, read_physionet2019, read_table
from organsim.data.export import EXPORT_MANIFEST, export_cohort
from organsim.data.export import FORMATS as EXPORT_FORMATS
from organsim.data.mimic import read_mimic_iv
from organsim.evaluate import BASELINES as EVALUATE_BASELINES
from organsim.physiology import (
    POLICY_NAMES,
    ClinicianPolicy,
    EngineConfig,
    PhysiologyEngine,
    Trajectory,
    named_policy,
)
from organsim.scores import score_cohort
from organsim.tracking.distributed import generate_sharded
from organsim.tracking.registry import (
    Consumes,
    ExternalInput,
    Stage,
    StageContext,
    StageMetrics,
    StageParams,
    register_stage,
)
from organsim.utils.errors import OrgansimError
from organsim.utils.io import atomic_write_bytes, atomic_write_text
from organsim.utils.progress import progress_bar

CohortInput = Annotated[str, Consumes("cohort")]
"""Name of an earlier stage that writes a cohort directory."""
ModelInput = Annotated[str, Consumes("model")]
"""Name of an earlier stage that writes a model directory."""
Device = Literal["auto", "cpu", "cuda"]
DEVICE_DOC = "auto (CUDA when present), cpu or cuda"
SCORE_NAMES = ("sofa", "apache_ii", "news2", "qsofa", "sirs")
EVALUATE_LOG = "evaluate.log"
COMMAND_LOG = "command.log"
"""The output of a stage's ``organsim`` command, kept in the stage directory (in the scratch directory when it failed)."""
TRAIN_LOG = "train.log"


def _bar_callback(bar: Progress, task: TaskID) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback (what organsim's loaders and the engine take) moving ``task``."""
    return lambda done, total: bar.update(task, completed=done, total=total)


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    atomic_write_bytes(path, buffer.getvalue())


def run_organsim(args: Sequence[str], ctx: StageContext, label: str, *, log_name: str = COMMAND_LOG) -> None:
    """Run ``organsim <args>`` in a child process with a spinner labelled ``label``.

    The output is written to ``ctx.out / log_name``; on failure to ``ctx.work / log_name`` (the
    output directory is discarded) and an :class:`OrgansimError` carries the last lines.
    """
    command = [sys.executable, "-c", "from organsim.cli import main; main()", *map(str, args)]
    with progress_bar(transient=True) as bar:
        bar.add_task(label, total=None)
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "160"})
    if done.returncode != 0:
        log = atomic_write_text(ctx.work / log_name, done.stdout + done.stderr)
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise OrgansimError(f"organsim {args[0]} failed (exit {done.returncode}, log {log}): " + " | ".join(tail))
    atomic_write_text(ctx.out / log_name, done.stdout + done.stderr)


def metric_horizons(values: dict[str, float], metric: str) -> list[int]:
    """The horizons ``h`` of metrics named ``<name>.<metric>_<h>h``, sorted."""
    return sorted({int(k.rsplit("_", 1)[1][:-1]) for k in values if f".{metric}_" in k})


def horizon_row(values: dict[str, float], name: str, metric: str, horizons: Sequence[int]) -> str:
    """``"0.123/0.456/-"``: ``<name>.<metric>_<h>h`` at each horizon, ``-`` where missing."""
    return "/".join(f"{values[f'{name}.{metric}_{h}h']:.3f}" if f"{name}.{metric}_{h}h" in values else "-" for h in horizons)


# ============================================================================ cohorts
def cohort_metrics(out: Path) -> StageMetrics:
    """Counts of a cohort directory (cohort.json), deaths and the share of stay-hours not measured."""
    meta = json.loads((out / "cohort.json").read_text(encoding="utf-8"))
    counts = meta.get("counts", {})
    values = {key: float(counts[key]) for key in ("stays", "hours", "septic_stays", "treatment_hours") if key in counts}
    values.update({f"split_{name}": float(n) for name, n in counts.get("splits", {}).items()})
    if values.get("stays"):
        values["septic_fraction"] = values["septic_stays"] / values["stays"]
    death = pl.read_parquet(out / "stays.parquet", columns=["death"])["death"]
    if death.null_count() < len(death):
        values["deaths"] = float(death.sum())
    hourly = pl.scan_parquet(out / "hourly.parquet")
    variables = [c for c in hourly.collect_schema().names() if c not in ("stay_id", "hour")]
    if variables and values.get("hours"):
        nulls = hourly.select(pl.sum_horizontal(pl.col(variables).is_null().sum())).collect().item()
        values["missing_fraction"] = nulls / (values["hours"] * len(variables))
    report = meta.get("provenance", {}).get("ingest_report", {})
    if "total_out_of_range" in report:
        values["out_of_range_nulled"] = float(report["total_out_of_range"])
    return StageMetrics(values=values)


def cohort_headline(metrics: StageMetrics) -> str:
    """Stays, hours, septic share, deaths and split sizes in one line."""
    v = metrics.values
    parts = [f"{v.get('stays', 0):,.0f} stays", f"{v.get('hours', 0):,.0f} hours",
             f"{v.get('septic_fraction', 0):.1%} septic"]
    if "deaths" in v:
        parts.append(f"{v['deaths']:,.0f} deaths")
    if "split_train" in v:
        parts.append(f"split {v['split_train']:.0f}/{v['split_validation']:.0f}/{v['split_test']:.0f}")
    return ", ".join(parts)


class CohortStage(Stage):
    """A stage whose output is a canonical cohort directory."""

    produces = "cohort"

    def metrics(self, out: Path) -> StageMetrics:
        return cohort_metrics(out)

    def artifacts(self, out: Path) -> list[Path]:
        return [out / "cohort.json"]

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        return cohort_headline(metrics)


class GenerateParams(StageParams):
    """Parameters of the ``generate`` stage (the physiology engine, as ``organsim generate``)."""

    patients: int = Field(1000, ge=1, description="Stays to generate (ids 1..N).")
    hours: int = Field(72, ge=1, description="ICU hours per stay; a stay ends earlier at death.")
    seed: int = Field(0, ge=0, description="The same seed gives the same cohort.")
    septic_fraction: float = Field(EngineConfig.septic_fraction, ge=0, le=1, description="Share of patients with a sepsis-causing infection.")
    shards: int = Field(1, ge=1, description="Split the stays into this many shards, each written as a part (same cohort).")
    ray: str | None = Field(None, description="Run the shards on Ray: 'local' or a cluster address (default: local processes).")
    workers: int | None = Field(None, ge=1, description="Local processes or local Ray CPUs for the shards (default: all CPUs).")

    @model_validator(mode="after")
    def _shards_fit(self) -> GenerateParams:
        if self.shards > self.patients:
            raise ValueError(f"shards ({self.shards}) cannot exceed patients ({self.patients})")
        return self


@register_stage
class Generate(CohortStage):
    name = "generate"
    summary = "Generate a cohort with the mechanistic physiology engine (optionally sharded over processes or Ray)."
    params = GenerateParams
    code = ("physiology", "data", "utils", "tracking.distributed")

    def run(self, params: GenerateParams, ctx: StageContext) -> None:
        config = EngineConfig(seed=params.seed, n_patients=params.patients, hours=params.hours, septic_fraction=params.septic_fraction)
        with progress_bar(transient=True) as bar:
            if params.shards == 1 and params.ray is None:
                task = bar.add_task("simulating stay-hours", total=params.patients * params.hours)
                cohort = PhysiologyEngine(config).generate(progress=_bar_callback(bar, task))
            else:
                task = bar.add_task(f"simulating {params.shards} shards", total=params.shards)
                cohort = generate_sharded(config, shards=params.shards, parts_dir=ctx.work / "parts", ray_address=params.ray,
                                          workers=params.workers, progress=_bar_callback(bar, task))
        cohort.save(ctx.out)


class IngestParams(StageParams):
    """Parameters of the ``ingest`` stage (as ``organsim ingest <format>``)."""

    format: Literal["cohort", "physionet2019", "mimic-iv", "meds", "table"] = Field(
        description="The input format (cohort: a canonical cohort directory, e.g. from organsim generate).")
    source: Annotated[Path | None, ExternalInput()] = Field(
        None, description="Input file or directory (relative to the pipeline file): cohort directory, PhysioNet "
                          "directory or archive, MIMIC-IV root (hosp/, icu/), MEDS root, or wide table.")
    source_stage: Annotated[str | None, Consumes("meds")] = Field(None, description="Read an earlier stage's MEDS output instead of a path.")
    stays: Annotated[Path | None, ExternalInput()] = Field(None, description="Optional stays table (format table only).")

    @model_validator(mode="after")
    def _one_source(self) -> IngestParams:
        if (self.source is None) == (self.source_stage is None):
            raise ValueError("give exactly one of source (a path) and source_stage (an earlier stage)")
        if self.source_stage is not None and self.format != "meds":
            raise ValueError(f"source_stage reads a MEDS stage output, so format must be meds (got {self.format})")
        if self.stays is not None and self.format != "table":
            raise ValueError(f"stays applies to format table only (got {self.format})")
        return self


@register_stage
class Ingest(CohortStage):
    name = "ingest"
    summary = "Read a cohort directory, PhysioNet 2019 files, MIMIC-IV tables, a MEDS dataset or a wide table into a cohort."
    params = IngestParams
    code = ("data", "utils")

    def run(self, params: IngestParams, ctx: StageContext) -> None:
        source = ctx.input("source_stage") if params.source_stage is not None else params.source
        with progress_bar(transient=True) as bar:
            task = bar.add_task(f"reading {source.name}", total=None)
            if params.format == "cohort":
                cohort = Cohort.load(source)
            elif params.format == "physionet2019":
                cohort = read_physionet2019(source, progress=_bar_callback(bar, task))
            elif params.format == "mimic-iv":
                cohort = read_mimic_iv(source, progress=_bar_callback(bar, task))
            elif params.format == "meds":
                cohort = read_meds(source, progress=_bar_callback(bar, task))
            elif params.format == "table":
                cohort = read_table(source, params.stays)
            else:
                raise ValueError(f"unknown ingest format {params.format!r}")
        cohort.save(ctx.out)


class SplitParams(StageParams):
    """Parameters of the ``split`` stage (``Cohort.split``: by patient, stratified on sepsis)."""

    cohort: CohortInput = Field(description="Stage whose cohort to split.")
    fractions: tuple[float, float, float] = Field((0.7, 0.15, 0.15), description="Train, validation, test shares (sum 1).")
    seed: int = Field(0, ge=0, description="The same seed gives the same split.")

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitParams:
        if any(f < 0 for f in self.fractions) or abs(sum(self.fractions) - 1) > 1e-9:
            raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {list(self.fractions)}")
        return self


@register_stage
class Split(CohortStage):
    name = "split"
    summary = "Split a cohort into train/validation/test by patient, stratified on sepsis."
    params = SplitParams
    code = ("data", "utils")

    def run(self, params: SplitParams, ctx: StageContext) -> None:
        Cohort.load(ctx.input("cohort")).split(params.fractions, seed=params.seed).save(ctx.out)


# ============================================================================ scores, export, counterfactual
class ScoresParams(StageParams):
    """Parameters of the ``scores`` stage (as ``organsim scores``)."""

    cohort: CohortInput = Field(description="Stage whose cohort to score.")
    window_hours: int = Field(24, ge=1, description="Trailing window (hours) of worst-in-window SOFA and APACHE II.")
    spo2_scale: Literal[1, 2] = Field(1, description="NEWS2 SpO2 scale (2 for hypercapnic respiratory failure).")
    spo2_surrogate: bool = Field(True, description="Estimate PaO2/FiO2 from SpO2/FiO2 when PaO2 is missing.")
    chunk_stays: int = Field(1000, ge=1, description="Stays scored per step (bounds memory).")


@register_stage
class Scores(Stage):
    name = "scores"
    summary = "Hourly SOFA, APACHE II, NEWS2, qSOFA, SIRS and critical events (scores.parquet, events.parquet)."
    params = ScoresParams
    produces = "scores"
    code = ("scores", "data", "utils")

    def run(self, params: ScoresParams, ctx: StageContext) -> None:
        cohort = Cohort.load(ctx.input("cohort"))
        stay_ids = cohort.stay_ids
        chunks = [stay_ids[i : i + params.chunk_stays] for i in range(0, len(stay_ids), params.chunk_stays)] or [[]]
        results = []
        with progress_bar(transient=True) as bar:
            task = bar.add_task("scoring stays", total=len(stay_ids))
            for chunk in chunks:
                results.append(score_cohort(cohort.subset(chunk), window_hours=params.window_hours,
                                            spo2_scale=params.spo2_scale, spo2_surrogate=params.spo2_surrogate))
                bar.advance(task, len(chunk))
        _write_parquet(pl.concat([r.hourly for r in results]), ctx.out / "scores.parquet")
        _write_parquet(pl.concat([r.events for r in results]), ctx.out / "events.parquet")

    def metrics(self, out: Path) -> StageMetrics:
        hourly = pl.read_parquet(out / "scores.parquet", columns=["stay_id", *SCORE_NAMES])
        events = pl.read_parquet(out / "events.parquet", columns=["event"])
        values = {"stays": float(hourly["stay_id"].n_unique()), "hours": float(hourly.height)}
        values.update({f"mean_{score}": float(hourly[score].mean()) for score in SCORE_NAMES if hourly.height})
        values.update({f"episodes_{event}": float(n) for event, n in events.group_by("event").len().sort("event").iter_rows()})
        return StageMetrics(values=values)

    def artifacts(self, out: Path) -> list[Path]:
        return [out / "events.parquet"]

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        v = metrics.values
        episodes = sum(n for k, n in v.items() if k.startswith("episodes_"))
        return (f"mean SOFA {v.get('mean_sofa', float('nan')):.1f}, APACHE II {v.get('mean_apache_ii', float('nan')):.1f}, "
                f"NEWS2 {v.get('mean_news2', float('nan')):.1f}; {episodes:,.0f} event episodes")


class ExportParams(StageParams):
    """Parameters of the ``export`` stage (:func:`organsim.data.export.export_cohort`)."""

    cohort: CohortInput = Field(description="Stage whose cohort to export.")
    format: Literal[EXPORT_FORMATS] = Field("meds", description=f"Export format: {', '.join(EXPORT_FORMATS)}.")


@register_stage
class Export(Stage):
    name = "export"
    summary = "Export a cohort as MEDS, canonical Parquet, wide CSV or PhysioNet 2019 .psv files."
    params = ExportParams
    produces = "meds"
    code = ("data", "utils")

    def output_kind(self, params: ExportParams) -> str:
        return "cohort" if params.format == "parquet" else params.format  # canonical Parquet is a cohort directory

    def run(self, params: ExportParams, ctx: StageContext) -> None:
        cohort = Cohort.load(ctx.input("cohort"))
        with progress_bar(transient=True) as bar:
            task = bar.add_task(f"exporting {params.format}", total=None)
            export_cohort(cohort, ctx.out, params.format, progress=_bar_callback(bar, task))

    def metrics(self, out: Path) -> StageMetrics:
        if (out / "cohort.json").is_file():
            return cohort_metrics(out)
        if (out / EXPORT_MANIFEST).is_file():
            manifest = json.loads((out / EXPORT_MANIFEST).read_text(encoding="utf-8"))
            return StageMetrics(values={"stays": float(manifest["stays"]), "files": float(manifest["files"]),
                                        "notes": float(len(manifest["notes"]))})
        shards = sorted((out / "data").glob("*.parquet"))
        events = pl.concat([pl.read_parquet(s, columns=["subject_id", "code"]) for s in shards])
        return StageMetrics(values={"events": float(events.height), "subjects": float(events["subject_id"].n_unique()),
                                    "codes": float(events["code"].n_unique()), "files": float(len(shards))})

    def artifacts(self, out: Path) -> list[Path]:
        return [p for p in (out / "metadata", out / EXPORT_MANIFEST, out / "cohort.json") if p.exists()]

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        v = metrics.values
        if "events" in v:
            return f"MEDS: {v['events']:,.0f} events of {v['subjects']:,.0f} subjects, {v['codes']:.0f} codes, {v['files']:.0f} shard(s)"
        if "files" in v:
            return f"{v['stays']:,.0f} stays in {v['files']:,.0f} files, {v['notes']:.0f} notes on what the format cannot hold"
        return cohort_headline(metrics)


class CounterfactualParams(StageParams):
    """Parameters of the ``counterfactual`` stage: the engine oracle re-runs stays under other strategies."""

    cohort: CohortInput = Field(description="Stage whose engine-generated cohort to re-run.")
    stays: list[int] = Field(default_factory=list, description="Stay ids to re-run (default: the first n_stays stays).")
    n_stays: int = Field(20, ge=1, description="How many stays (from the lowest id) when stays is not given.")
    septic_only: bool = Field(False, description="Take the n_stays from the stays with Sepsis-3 (where treatment matters most).")
    from_hour: int = Field(6, ge=1, description="First ICU hour the strategy decides.")
    policies: list[Literal[POLICY_NAMES]] = Field(["none"], min_length=1, description=f"Strategies: {', '.join(POLICY_NAMES)}.")

    @model_validator(mode="after")
    def _stays_or_count(self) -> CounterfactualParams:
        if self.stays and self.model_fields_set & {"n_stays", "septic_only"}:
            raise ValueError("give stays (ids) or n_stays / septic_only (a selection), not both")
        return self


OUTCOMES = ("death", "death_hour", "sepsis_onset_hour", "last_sofa", "mean_map", "max_lactate",
            "fluids_ml", "norepinephrine_hours", "antibiotic_doses", "ventilated_hours")


def _reduce_over_hours(values: np.ndarray, reduce: str) -> np.ndarray:
    """Per row of ``(n, H)`` ``values``: the mean or max over non-NaN hours, NaN for a row with none."""
    seen = np.isfinite(values)
    if reduce == "mean":
        totals = np.where(seen, values, 0.0).sum(axis=1)
        return np.where(seen.any(axis=1), totals / np.maximum(seen.sum(axis=1), 1), np.nan)
    return np.where(seen.any(axis=1), np.where(seen, values, -np.inf).max(axis=1), np.nan)


def trajectory_outcomes(trajectory: Trajectory, from_hour: int) -> pl.DataFrame:
    """One row per stay: outcomes of a :class:`~organsim.physiology.Trajectory` from ``from_hour`` on.

    Columns: ``stay_id`` and :data:`OUTCOMES` (MAP in mmHg, lactate in mmol/L, fluids in mL, SOFA
    at the stay's last hour, hours on norepinephrine or ventilation, antibiotic doses); MAP and
    lactate are null for a stay that died before ``from_hour``.
    """
    variables, codes = list(trajectory.variables), list(trajectory.treatment_codes)
    hours = np.arange(1, trajectory.true.shape[1] + 1)
    after = (hours[None, :] >= from_hour) & (hours[None, :] <= trajectory.n_hours[:, None])  # (n, H)
    true = np.where(after[:, :, None], trajectory.true, np.nan)
    given = np.where(after[:, :, None], trajectory.treatments, 0.0)
    last = trajectory.n_hours.astype(int) - 1
    return pl.DataFrame({
        "stay_id": trajectory.stay_ids.astype(np.int64),
        "death": np.isfinite(trajectory.death_hour),
        "death_hour": trajectory.death_hour,
        "sepsis_onset_hour": trajectory.sepsis_onset_hour,
        "last_sofa": trajectory.sofa[np.arange(len(last)), last],
        "mean_map": _reduce_over_hours(true[:, :, variables.index("map")], "mean"),  # NaN: died before from_hour
        "max_lactate": _reduce_over_hours(true[:, :, variables.index("lactate")], "max"),
        "fluids_ml": given[:, :, codes.index("iv_fluid_ml")].sum(axis=1),
        "norepinephrine_hours": (given[:, :, codes.index("norepinephrine")] > 0).sum(axis=1).astype(np.float64),
        "antibiotic_doses": given[:, :, codes.index("antibiotic")].sum(axis=1),
        "ventilated_hours": given[:, :, codes.index("mechanical_ventilation")].sum(axis=1),
    }).with_columns(pl.col("death_hour", "sepsis_onset_hour", "last_sofa", "mean_map", "max_lactate").fill_nan(None))


@register_stage
class Counterfactual(Stage):
    name = "counterfactual"
    summary = "Re-run generated stays under other strategies with the engine oracle (the true counterfactual)."
    params = CounterfactualParams
    produces = "counterfactual"
    code = ("physiology", "data", "utils")

    def run(self, params: CounterfactualParams, ctx: StageContext) -> None:
        cohort = Cohort.load(ctx.input("cohort"))
        engine = PhysiologyEngine.from_cohort(cohort)
        if params.from_hour > engine.config.hours:
            raise ValueError(f"from_hour {params.from_hour} is after the cohort's last hour ({engine.config.hours})")
        candidates = cohort.stays.filter(pl.col("sepsis")) if params.septic_only else cohort.stays
        stay_ids = params.stays or candidates["stay_id"].to_list()[: params.n_stays]
        if not stay_ids:
            raise ValueError("the cohort has no septic stays to re-run" if params.septic_only else "the cohort has no stays")
        outcomes, trajectories = [], []
        with progress_bar(transient=True) as bar:
            task = bar.add_task("re-running stays", total=len(params.policies) + 1)
            factual = engine.counterfactuals(stay_ids, ClinicianPolicy(engine.config.clinician), 1)
            bar.advance(task)
            recorded = cohort.subset(list(stay_ids)).hourly.sort("stay_id", "hour")
            replayed = factual.frame("observed").select(recorded.columns).cast(recorded.schema).sort("stay_id", "hour")
            reproduced = replayed.equals(recorded)
            for label, trajectory in [("factual", factual)] + [
                (name, engine.counterfactuals(stay_ids, named_policy(name, from_hour=params.from_hour, hours=engine.config.hours,
                                                                     config=engine.config.clinician), params.from_hour))
                for name in params.policies
            ]:
                outcomes.append(trajectory_outcomes(trajectory, params.from_hour).with_columns(pl.lit(label).alias("policy")))
                trajectories.append(trajectory.frame("true").with_columns(pl.lit(label).alias("policy")))
                bar.advance(task)
        _write_parquet(pl.concat(outcomes).select("policy", "stay_id", *OUTCOMES), ctx.out / "outcomes.parquet")
        _write_parquet(pl.concat(trajectories), ctx.out / "trajectories.parquet")
        check = {"from_hour": params.from_hour, "stays": len(stay_ids), "septic_only": params.septic_only,
                 "factual_reproduced": bool(reproduced)}
        atomic_write_text(ctx.out / "check.json", json.dumps(check, indent=2) + "\n")

    def metrics(self, out: Path) -> StageMetrics:
        outcomes = pl.read_parquet(out / "outcomes.parquet")
        check = json.loads((out / "check.json").read_text(encoding="utf-8"))
        values = {"stays": float(check["stays"]), "factual_reproduced": float(check["factual_reproduced"])}
        for (policy,), group in outcomes.group_by("policy", maintain_order=True):
            values[f"{policy}.deaths"] = float(group["death"].sum())
            for column in ("mean_map", "max_lactate", "last_sofa"):
                values[f"{policy}.{column}"] = float(group[column].mean())
        return StageMetrics(values=values)

    def artifacts(self, out: Path) -> list[Path]:
        return [out / "outcomes.parquet", out / "check.json"]

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        v = metrics.values
        policies = [k.removesuffix(".deaths") for k in v if k.endswith(".deaths") and k != "factual.deaths"]
        shown = "; ".join(f"{p}: {v[p + '.deaths']:.0f} deaths, MAP {v[p + '.mean_map']:.0f}" for p in policies)
        replay = "reproduces" if v["factual_reproduced"] else "DOES NOT reproduce"
        check = json.loads((out / "check.json").read_text(encoding="utf-8"))
        which = "septic stays" if check["septic_only"] else "stays"
        return (f"{v['stays']:.0f} {which} from hour {check['from_hour']}: clinician {v['factual.deaths']:.0f} deaths, "
                f"MAP {v['factual.mean_map']:.0f} mmHg; "
                f"{shown}; the oracle {replay} the recorded cohort")


# ============================================================================ agents
class TrainParams(StageParams):
    """Parameters of the ``train`` stage (as ``organsim train``)."""

    cohort: CohortInput = Field(description="Stage whose cohort to train on (split by patient here if it has no split).")
    preset: Literal[tuple(PRESETS)] = Field("tiny", description="Backbone size.")
    epochs: int = Field(TrainConfig.max_epochs, ge=1, description="Most epochs.")
    patience: int = Field(TrainConfig.patience, ge=1, description="Stop after this many epochs without a better validation loss.")
    batch_size: int = Field(TrainConfig.batch_size, ge=1, description="Windows per step.")
    learning_rate: float = Field(TrainConfig.learning_rate, gt=0, description="Peak AdamW learning rate.")
    n_bins: int = Field(TrainConfig.n_bins, ge=2, description="Value bins per variable.")
    mean_loss_weight: float = Field(TrainConfig.mean_loss_weight, ge=0, description="Weight of the predictive mean's squared error beside the cross-entropy.")
    references: Literal[TRAIN_REFERENCES] = Field("random", description="Reference systems during training.")
    backbone: Literal[BACKBONE_SHARING] = Field("shared", description="One decoder for all agents or one each.")
    base_model: Annotated[Path | None, ExternalInput()] = Field(None, description="Local causal-LM checkpoint to use as the decoder.")
    lora_r: int = Field(0, ge=0, description="LoRA rank on the base model (0: fine-tune all its weights).")
    device: Device = Field("auto", description=DEVICE_DOC)
    seed: int = Field(0, ge=0, description="Seed of initialisation, windows and reference sets.")
    processes: int = Field(1, ge=1, description="Data-parallel processes under `accelerate launch --multi_gpu` "
                                                "(one per GPU; on a CPU, gloo processes); batch_size is per process.")

    @model_validator(mode="after")
    def _lora_needs_base_model(self) -> TrainParams:
        if self.lora_r and self.base_model is None:
            raise ValueError("lora_r adapts a pretrained decoder: give base_model as well")
        return self

    def train_config(self) -> TrainConfig:
        return TrainConfig(max_epochs=self.epochs, patience=self.patience, batch_size=self.batch_size,
                           learning_rate=self.learning_rate, references=self.references, n_bins=self.n_bins,
                           mean_loss_weight=self.mean_loss_weight, seed=self.seed)


@register_stage
class Train(Stage):
    name = "train"
    summary = "Train the nine organ agents (SFT), in this process or N under accelerate launch; resumes an interrupted run."
    params = TrainParams
    produces = "model"
    code = ("agents", "data", "utils")
    resumable = True

    def run(self, params: TrainParams, ctx: StageContext) -> None:
        if params.processes > 1:
            self._launch(params, ctx)
            return
        fields: dict[str, object] = {"backbone_sharing": params.backbone}
        if params.base_model is not None:
            fields.update(base_model=str(params.base_model), lora_r=params.lora_r)
        train_agents(Cohort.load(ctx.input("cohort")), ctx.out, preset=params.preset, train_config=params.train_config(),
                     agent_fields=fields, device=params.device, resume=ctx.resume)

    @staticmethod
    def _launch(params: TrainParams, ctx: StageContext) -> None:
        """``accelerate launch --multi_gpu --num_processes N organsim train ...``: the same training code in N processes."""
        script = Path(sys.executable).with_name("organsim")
        if not script.is_file():
            raise OrgansimError(f"the organsim console script is not beside {sys.executable}; install organsim (pip install -e .)")
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(params.processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(script), "train",
            "--cohort", str(ctx.input("cohort")), "--out", str(ctx.out), "--preset", params.preset, "--device", params.device,
            "--references", params.references, "--epochs", str(params.epochs), "--patience", str(params.patience),
            "--batch-size", str(params.batch_size), "--learning-rate", repr(params.learning_rate), "--n-bins", str(params.n_bins),
            "--mean-loss-weight", repr(params.mean_loss_weight),
            "--backbone", params.backbone, "--lora-r", str(params.lora_r), "--seed", str(params.seed),
        ]
        if params.base_model is not None:
            command += ["--base-model", str(params.base_model)]
        if ctx.resume:
            command.append("--resume")
        with progress_bar(transient=True) as bar:
            bar.add_task(f"training in {params.processes} processes (accelerate launch)", total=None)
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
        log = atomic_write_text(ctx.out / TRAIN_LOG, done.stdout + done.stderr)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise OrgansimError(f"accelerate launch ... organsim train failed (exit {done.returncode}, log {log}): " + " | ".join(tail))

    def metrics(self, out: Path) -> StageMetrics:
        training = read_config(out)["training"]
        state = training["state"]
        history = state["history"]
        return StageMetrics(
            values={"best_epoch": float(state["best_epoch"]), "best_validation_loss": float(state["best_validation_loss"]),
                    "epochs": float(len(history)), "n_parameters": float(training["n_parameters"]),
                    "stopped_early": float(bool(state.get("stopped_early", False)))},
            series={"train_loss": [r["train_loss"] for r in history], "validation_loss": [r["validation_loss"] for r in history]},
        )

    def artifacts(self, out: Path) -> list[Path]:
        return [p for p in (out / CONFIG_FILE, out / WEIGHTS_FILE, out / TRAIN_LOG) if p.is_file()]

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        v = metrics.values
        return (f"{v['n_parameters']:,.0f} parameters, {v['epochs']:.0f} epochs, best validation loss "
                f"{v['best_validation_loss']:.4f} (epoch {v['best_epoch']:.0f})")


class EvaluateParams(StageParams):
    """Parameters of the ``evaluate`` stage (as ``organsim evaluate``)."""

    model: ModelInput = Field(description="Stage whose model to evaluate.")
    cohort: CohortInput = Field(description="Stage whose cohort's test split to score (split as in training).")
    references: Literal[REFERENCE_MODES] = Field("all", description="Reference setting of the primary agents.")
    baselines: list[Literal[EVALUATE_BASELINES]] = Field(list(EVALUATE_BASELINES), description="Baselines fitted on the train split.")
    twin: bool = Field(True, description="Also score the coordinated twin (learned references + error correction) and write twin.json.")
    per_stay: int = Field(4, ge=1, description="Forecast start hours per test stay and horizon.")
    device: Device = Field("auto", description=DEVICE_DOC)
    seed: int = Field(0, ge=0, description="Seed of start hours and baseline training.")


@register_stage
class Evaluate(Stage):
    name = "evaluate"
    summary = "Score the agents and baselines on the test split (nMSE at 1, 6, 24 h): metrics.json and plots."
    params = EvaluateParams
    produces = "report"
    code = ("agents", "twin", "evaluate", "scores", "data", "utils", "cli.agents")

    def run(self, params: EvaluateParams, ctx: StageContext) -> None:
        run_organsim([
            "evaluate", "--model", ctx.input("model"), "--cohort", ctx.input("cohort"), "--out", ctx.out,
            "--references", params.references, "--baselines", ",".join(params.baselines),
            "--twin" if params.twin else "--no-twin", "--per-stay", params.per_stay, "--device", params.device, "--seed", params.seed,
        ], ctx, "evaluating agents, twin and baselines", log_name=EVALUATE_LOG)

    def metrics(self, out: Path) -> StageMetrics:
        document = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        values = {"n_stays": float(document["settings"]["n_stays"])}
        scored = {document["primary"]: document, **document.get("baselines", {})}
        for name, figures in scored.items():
            for horizon, nmse in figures["mean_nmse"].items():
                if nmse is not None:
                    values[f"{name}.mean_nmse_{horizon}h"] = float(nmse)
        return StageMetrics(values=values)

    def artifacts(self, out: Path) -> list[Path]:
        files = [out / name for name in ("metrics.json", "model.json", "twin.json", "event_chains.parquet", EVALUATE_LOG)]
        return [p for p in files if p.is_file()] + sorted(out.glob("*.png"))

    def headline(self, out: Path, metrics: StageMetrics) -> str:
        v = metrics.values
        names = sorted({k.split(".")[0] for k in v if ".mean_nmse_" in k})
        primary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["primary"]
        horizons = metric_horizons(v, "mean_nmse")
        others = "; ".join(f"{n} {horizon_row(v, n, 'mean_nmse', horizons)}" for n in names if n != primary)
        return (f"mean nMSE {'/'.join(f'{h} h' for h in horizons)}: {primary} {horizon_row(v, primary, 'mean_nmse', horizons)}; "
                f"{others}")
