"""``organsim strategies list|validate``, ``organsim whatif``, ``organsim trial`` and ``organsim cf-benchmark``:
the strategy library, what-if runs of the twin, virtual trials, and the ground-truth benchmark."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import numpy as np
import polars as pl
import typer
from rich.markup import escape
from rich.table import Table

from organsim.cli.app import RAY_HELP, app, console, err_console, friendly_errors
from organsim.counterfactual import (
    DEFAULT_CONTRASTS,
    Strategy,
    StrategyError,
    StrategyOutcome,
    cf_benchmark,
    choose_cases,
    load_strategy,
    read_library,
    read_strategy_file,
    strategy_library_dir,
    virtual_trial,
    what_if,
)
from organsim.counterfactual.sharded import TwinSource, sharded_cf_benchmark, sharded_virtual_trial
from organsim.counterfactual.twin_simulator import TwinSimulator
from organsim.data import Cohort
from organsim.utils.progress import progress_bar

strategies_app = typer.Typer(help="Treatment strategies: the library, and checks of strategy files.", no_args_is_help=True)
app.add_typer(strategies_app, name="strategies")


def _rules(strategy: Strategy) -> str:
    parts = [f"{code}: {len(plan.rules)} rule{'s' if len(plan.rules) != 1 else ''}" for code, plan in strategy.treatments.items()]
    return ", ".join(parts) or "none"


@strategies_app.command("list")
@friendly_errors
def list_strategies() -> None:
    """List the strategies of the library (pipelines/strategies/, or $ORGANSIM_STRATEGIES)."""
    entries = read_library()
    table = Table(title=f"strategy library: {strategy_library_dir()}")
    for column in ("name", "governs", "others", "description"):
        table.add_column(column)
    broken = 0
    for entry in entries:
        if entry.strategy is None:
            broken += 1
            table.add_row(entry.name, "[red]invalid[/]", "", escape(entry.error or ""))
            continue
        strategy = entry.strategy
        table.add_row(strategy.name, _rules(strategy), strategy.others, escape(strategy.description))
    console.print(table)
    console.print(f"{len(entries) - broken} valid strateg{'y' if len(entries) - broken == 1 else 'ies'}"
                  + (f", [red]{broken} invalid[/]" if broken else ""))
    if broken:
        raise typer.Exit(code=2)


@strategies_app.command("validate")
@friendly_errors
def validate(
    files: Annotated[list[Path], typer.Argument(help="Strategy YAML files to check.")],
) -> None:
    """Check strategy files against the schema and the catalog; every problem names the line and key."""
    failed = 0
    for path in files:
        try:
            strategy = read_strategy_file(path)
        except (StrategyError, FileNotFoundError) as exc:
            failed += 1
            err_console.print(f"[bold red]invalid:[/] {escape(str(exc))}")
            continue
        console.print(f"[green]valid:[/] {path} ({strategy.name}: governs {_rules(strategy)}; others: {strategy.others})")
    console.print(f"{len(files) - failed} of {len(files)} file{'s' if len(files) != 1 else ''} valid")
    if failed:
        raise typer.Exit(code=2)


# ------------------------------------------------------------------------------ what-if runs
def _strategies(names: list[str]) -> list[Strategy]:
    if not names:
        raise ValueError("give at least one --strategy (a library name, see `organsim strategies list`, or a YAML file)")
    return [load_strategy(name) for name in names]


def _twin_source(model: Path, cohort: Path, behaviour_dir: Path | None, device: str, references: str,
                 overlap_adjustment: bool, treatment_blind: bool) -> TwinSource:
    return TwinSource(str(model), str(cohort), None if behaviour_dir is None else str(behaviour_dir), device=device,
                      references=references, overlap_adjustment=overlap_adjustment, treatment_blind=treatment_blind)


def _twin_and_cohort(source: TwinSource) -> tuple[TwinSimulator, Cohort]:
    """The twin simulator of ``source`` and its cohort split as the model was trained, with the
    cohort's behaviour policy (loaded from or saved to its behaviour directory)."""
    with console.status("loading the twin and the behaviour policy"):
        simulator, data = source.load()
    if simulator.behaviour is None:
        console.print(f"[yellow]note:[/] {source.cohort_dir} recorded no treatments: no behaviour policy, so no overlap check or "
                      "adjustment, and strategies that leave treatments to usual care cannot run")
    return simulator, data


SHARDS_HELP = "Run the cases in this many shards, each part written atomically under --parts (a rerun computes only missing parts)."
WORKERS_HELP = "Local processes or local Ray CPUs for the shards."
PARTS_HELP = "Directory of the shards' parts (default: OUT.parts/ beside OUT); removed once the result is written."


def _where(ray: str | None) -> str:
    return f"on Ray ({ray})" if ray else "on local processes"


def _finish_parts(parts_dir: Path, shards: int, ray: str | None) -> str:
    """Remove the parts once the merged result is written; the sentence that says so."""
    shutil.rmtree(parts_dir, ignore_errors=True)
    return f"Ran {shards} shard{'s' if shards != 1 else ''} {_where(ray)}; their parts in {parts_dir} were merged and removed. "


def _refuse_existing(out: Path, overwrite: bool) -> None:
    """Exit with code 2 before any work when ``out`` exists and ``--overwrite`` was not given."""
    if out.exists() and not overwrite:
        err_console.print(f"[bold red]error:[/] {escape(str(out))} already exists: pass --overwrite or choose another --out")
        raise typer.Exit(code=2)


def _check_stay(data: Cohort, stay: int, at: int) -> None:
    known = data.stays.filter(pl.col("stay_id") == stay)
    if not known.height:
        raise KeyError(f"stay {stay} is not in the cohort (it has {data.stays.height:,} stays, ids "
                       f"{data.stays['stay_id'].min()}..{data.stays['stay_id'].max()})")
    last = int(data.hourly.filter(pl.col("stay_id") == stay)["hour"].max() or 0)
    if not 2 <= at <= last + 1:
        raise ValueError(f"--at {at}: the twin decides from a recorded hour, so the decision hour of stay {stay} must lie in "
                         f"2..{last + 1} (its record covers hours 1..{last})")


def _score_line(outcome: StrategyOutcome, score: str, hours: int) -> str:
    row = outcome.summary.scores.filter((pl.col("score") == score) & (pl.col("horizon_hours") == hours))
    if not row.height or row["mean"][0] is None:
        return "-"
    return f"{row['mean'][0]:.1f} [{row['q05'][0]:.0f}-{row['q95'][0]:.0f}]"


@app.command("whatif")
@friendly_errors
def whatif(
    model: Annotated[Path, typer.Option("--model", help="Model directory written by `organsim train` (and `organsim coordinate`).")],
    cohort: Annotated[Path, typer.Option("--cohort", help="Cohort directory holding the stay (and the training stays).")],
    stay: Annotated[int, typer.Option("--stay", help="The stay id.")],
    at: Annotated[int, typer.Option("--at", help="Decision hour: the first ICU hour the strategies decide (>= 2).")],
    strategy: Annotated[list[str], typer.Option("--strategy", help="A library strategy name or a YAML file; repeat for several.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write (whatif.json and parquet tables).")],
    samples: Annotated[int, typer.Option("--samples", min=1, help="Futures sampled per strategy.")] = 50,
    horizon: Annotated[int, typer.Option("--horizon", min=1, help="Hours simulated from the decision hour.")] = 72,
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed gives the same futures.")] = 0,
    behaviour: Annotated[Path | None, typer.Option("--behaviour", help="Behaviour-policy directory: loaded when saved there, else fitted on the train split and saved there.")] = None,
    match: Annotated[bool, typer.Option("--match/--no-match", help="Matched comparison against the cohort's train stays.")] = True,
    references: Annotated[str, typer.Option("--references", help="The agents' references: policy, all or none.")] = "policy",
    overlap_adjustment: Annotated[bool, typer.Option("--overlap-adjustment/--no-overlap-adjustment", help="Show the agents the nearest dose class the cohort received where a strategy gives a dose class it never received.")] = True,
    treatment_blind: Annotated[bool, typer.Option("--treatment-blind", help="The treatment-blind baseline: the agents see no treatments.")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT when it exists.")] = False,
) -> None:
    """What would these strategies have done for this patient from this hour? K sampled futures each."""
    strategies = _strategies(strategy)
    _refuse_existing(out, overwrite)
    simulator, data = _twin_and_cohort(_twin_source(model, cohort, behaviour, device, references,
                                                    overlap_adjustment and not treatment_blind, treatment_blind))
    _check_stay(data, stay, at)
    started = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(f"what-if: stay {stay} from hour {at}, {samples} futures x {len(strategies)} strategies",
                            total=len(strategies) + 1)
        result = what_if(simulator, data, stay, at, strategies, horizon=horizon, n_samples=samples, seed=seed,
                         behaviour=simulator.behaviour, match_cohort=data.subset(split="train") if match else None,
                         progress=lambda done, total: bar.update(task, completed=done, total=total))
    result.write(out, overwrite=overwrite)
    table = Table(title=f"what-if: stay {stay} from ICU hour {at}, {samples} futures per strategy ({simulator.name})")
    for column in ("strategy", "SOFA 24 h", "SOFA 72 h", "APACHE II 24 h", "death", "overlap", "corrections"):
        table.add_column(column)
    for name, outcome in result.outcomes.items():
        events = outcome.summary.events
        death = events.filter(pl.col("event") == "death")["probability"]
        verdict = "-" if outcome.overlap is None else ("in support" if outcome.overlap.in_support else
                                                        f"[yellow]{outcome.overlap.flags.height} flagged hours[/]")
        corrections = outcome.futures.corrections
        table.add_row(name, _score_line(outcome, "sofa", 24), _score_line(outcome, "sofa", 72), _score_line(outcome, "apache_ii", 24),
                      f"{death[0]:.0%}" if len(death) else "-", verdict, "-" if corrections is None else f"{corrections.height:,}")
    console.print(table)
    for name, outcome in result.outcomes.items():
        if outcome.overlap is not None:
            for explanation in outcome.overlap.explanations[:3]:
                console.print(f"[yellow]overlap:[/] {escape(explanation)}")
            if len(outcome.overlap.explanations) > 3:
                console.print(f"[yellow]overlap:[/] {name}: {len(outcome.overlap.explanations) - 3} more flagged hours in {out}/whatif.json")
    console.print(f"{len(strategies)} strateg{'y' if len(strategies) == 1 else 'ies'} x {samples} futures x {horizon} h in "
                  f"{time.perf_counter() - started:.0f} s. Wrote {out}/whatif.json and "
                  + ", ".join(sorted(p.name for p in out.glob("*.parquet"))) + ".")


def _trial_cases(data: Cohort, stays: str, at: int, seed: int) -> pl.DataFrame:
    """``(stay_id, decision_hour)`` cases from ``--stays``: ``all`` (every stay recorded up to ``at - 1``),
    a number of them (half septic when possible, seeded) or comma-separated ids."""
    last = data.hourly.group_by("stay_id").agg(pl.col("hour").max().alias("last"))
    eligible = data.stays.join(last, on="stay_id").filter(pl.col("last") >= at - 1)
    spec = stays.strip()
    if spec == "all":
        chosen = eligible
    elif spec.isdigit():
        chosen = eligible.join(choose_cases(data, n_stays=int(spec), decision_hours=[at], horizon=1, seed=seed).select("stay_id"),
                               on="stay_id")
    else:
        try:
            ids = [int(part) for part in spec.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"--stays takes 'all', a number of stays or comma-separated stay ids, got {stays!r}") from None
        unknown = [i for i in ids if i not in set(data.stays["stay_id"].to_list())]
        if unknown:
            raise KeyError(f"stay id(s) {unknown[:10]} are not in the cohort")
        short = [i for i in ids if i not in set(eligible["stay_id"].to_list())]
        if short:
            raise ValueError(f"the record of stay(s) {short[:10]} ends before hour {at - 1}: choose an earlier --at")
        chosen = eligible.filter(pl.col("stay_id").is_in(ids))
    if not chosen.height:
        raise ValueError(f"no stay is recorded up to hour {at - 1}: choose an earlier --at")
    return chosen.select("stay_id", pl.lit(at, dtype=pl.Int32).alias("decision_hour")).sort("stay_id")


@app.command("trial")
@friendly_errors
def trial(
    model: Annotated[Path, typer.Option("--model", help="Model directory written by `organsim train` (and `organsim coordinate`).")],
    cohort: Annotated[Path, typer.Option("--cohort", help="Cohort directory.")],
    strategy: Annotated[list[str], typer.Option("--strategy", help="The two arms, A then B (library names or YAML files).")],
    at: Annotated[int, typer.Option("--at", help="Decision hour of every stay (>= 2).")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write (trial.json, effects, per-stay outcomes).")],
    stays: Annotated[str, typer.Option("--stays", help="'all', a number of stays, or comma-separated stay ids.")] = "100",
    split: Annotated[str, typer.Option("--split", help="Split the stays come from: test, validation, train or all.")] = "test",
    samples: Annotated[int, typer.Option("--samples", min=1, help="Futures per stay and arm.")] = 20,
    horizon: Annotated[int, typer.Option("--horizon", min=1, help="Hours simulated from the decision hour.")] = 72,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the stays chosen, the futures and the bootstrap.")] = 0,
    behaviour: Annotated[Path | None, typer.Option("--behaviour", help="Behaviour-policy directory (loaded, or fitted and saved).")] = None,
    references: Annotated[str, typer.Option("--references", help="The agents' references: policy, all or none.")] = "policy",
    overlap_adjustment: Annotated[bool, typer.Option("--overlap-adjustment/--no-overlap-adjustment", help="The twin's overlap adjustment.")] = True,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    shards: Annotated[int, typer.Option("--shards", min=1, help=SHARDS_HELP)] = 1,
    ray: Annotated[str | None, typer.Option("--ray", help=RAY_HELP)] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help=WORKERS_HELP)] = None,
    parts: Annotated[Path | None, typer.Option("--parts", help=PARTS_HELP)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT when it exists.")] = False,
) -> None:
    """A virtual trial: strategy A vs B on many stays, the effect on each outcome with a 95% bootstrap interval.

    With --shards or --ray the stays are run in shards by local processes or a Ray cluster; each
    shard's part is written atomically (a rerun recomputes only missing parts) and the parts are
    merged into the same files. Each shard loads the twin itself: give --behaviour so that the
    behaviour policy is fitted once. The futures depend on the seed and the number of shards.
    """
    arms = _strategies(strategy)
    if len(arms) != 2:
        raise ValueError(f"a trial compares two strategies: give --strategy twice (A, then B), got {len(arms)}")
    if split not in ("test", "validation", "train", "all"):
        raise ValueError(f"--split must be test, validation, train or all, got {split!r}")
    if stays.strip().isdigit() and shards > int(stays):
        raise ValueError(f"--shards ({shards}) cannot exceed --stays ({stays.strip()})")
    _refuse_existing(out, overwrite)
    source = _twin_source(model, cohort, behaviour, device, references, overlap_adjustment, False)
    simulator, data = _twin_and_cohort(source)
    pool = data if split == "all" else data.subset(split=split)
    cases = _trial_cases(pool, stays, at, seed)
    if shards > cases.height:
        raise ValueError(f"--shards ({shards}) cannot exceed the trial's {cases.height} stays")
    sharded = shards > 1 or ray is not None
    parts_dir = parts or out.with_name(out.name + ".parts")
    started = time.perf_counter()
    with progress_bar() as bar:
        label = f"trial: {arms[0].name} vs {arms[1].name}, {cases.height} stays x {samples} futures"
        if sharded:
            task = bar.add_task(f"{label}, {shards} shards {_where(ray)}", total=shards)
            result = sharded_virtual_trial(source, cases, arms[0], arms[1], shards=shards, parts_dir=parts_dir, horizon=horizon,
                                           n_samples=samples, seed=seed, ray_address=ray, workers=workers,
                                           progress=lambda done, total: bar.update(task, completed=done, total=total))
        else:
            task = bar.add_task(label, total=2 * cases.height)
            result = virtual_trial(simulator, data, cases, arms[0], arms[1], horizon=horizon, n_samples=samples, seed=seed,
                                   progress=lambda n: bar.advance(task, n))
    result.write(out, overwrite=overwrite)
    sharding = _finish_parts(parts_dir, shards, ray) if sharded else ""
    table = Table(title=f"virtual trial: {arms[0].name} (A) vs {arms[1].name} (B), {cases.height} stays, effect = A - B")
    for column in ("outcome", "stays", "mean A", "mean B", "effect", "95% CI"):
        table.add_column(column, justify="right" if column != "outcome" else "left")
    for row in result.effects.iter_rows(named=True):
        if row["effect"] is None or np.isnan(row["effect"]):
            continue
        table.add_row(row["outcome"], str(row["n_stays"]), f"{row['mean_a']:.3g}", f"{row['mean_b']:.3g}", f"{row['effect']:+.3g}",
                      f"[{row['ci_low']:+.3g}, {row['ci_high']:+.3g}]")
    console.print(table)
    console.print(f"{cases.height} stays x 2 arms x {samples} futures x {horizon} h in {time.perf_counter() - started:.0f} s. {sharding}"
                  f"Wrote {out}/trial.json, effects.parquet, cases.parquet, stay_outcomes.parquet.")


@app.command("cf-benchmark")
@friendly_errors
def cf_benchmark_command(
    model: Annotated[Path, typer.Option("--model", help="Model directory trained on the engine cohort.")],
    cohort: Annotated[Path, typer.Option("--cohort", help="An engine cohort (`organsim generate`): its test stays are the cases.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write metrics.json to.")],
    stays: Annotated[int, typer.Option("--stays", min=1, help="Cases (stays, half of them septic when possible).")] = 50,
    decision_hours: Annotated[str, typer.Option("--decision-hours", help="Comma-separated decision hours drawn from per case.")] = "6,12,24",
    horizon: Annotated[int, typer.Option("--horizon", min=1, help="Hours simulated from the decision hour.")] = 48,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Futures per case and strategy from each twin variant.")] = 20,
    strategy: Annotated[list[str] | None, typer.Option("--strategy", help="Strategies (default: both sides of the standard contrasts).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the cases and the futures.")] = 0,
    behaviour: Annotated[Path | None, typer.Option("--behaviour", help="Behaviour-policy directory (loaded, or fitted and saved).")] = None,
    references: Annotated[str, typer.Option("--references", help="The agents' references: policy, all or none.")] = "policy",
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    shards: Annotated[int, typer.Option("--shards", min=1, help=SHARDS_HELP)] = 1,
    ray: Annotated[str | None, typer.Option("--ray", help=RAY_HELP)] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help=WORKERS_HELP)] = None,
    parts: Annotated[Path | None, typer.Option("--parts", help=PARTS_HELP)] = None,
) -> None:
    """The twin (and its treatment-blind and no-overlap-adjustment variants) against the engine's true counterfactuals.

    With --shards or --ray the cases are run in shards by local processes or a Ray cluster; each
    shard's part is written atomically (a rerun recomputes only missing parts) and the metrics are
    computed over all cases from the parts. Each shard loads the twin itself: give --behaviour so
    that the behaviour policy is fitted once. The twins' futures depend on the seed and the number
    of shards (the engine's truth does not).
    """
    strategies = _strategies(strategy or sorted({name for pair in DEFAULT_CONTRASTS for name in pair}))
    names = {s.name for s in strategies}
    contrasts = [pair for pair in DEFAULT_CONTRASTS if set(pair) <= names]
    try:
        hours = sorted({int(h) for h in decision_hours.split(",") if h.strip()})
    except ValueError:
        raise ValueError(f"--decision-hours takes comma-separated hours, got {decision_hours!r}") from None
    if not hours or hours[0] < 2:
        raise ValueError(f"--decision-hours must be hours >= 2 (the twin starts from a recorded hour), got {decision_hours!r}")
    if shards > stays:
        raise ValueError(f"--shards ({shards}) cannot exceed --stays ({stays})")
    source = _twin_source(model, cohort, behaviour, device, references, True, False)
    simulator, data = _twin_and_cohort(source)
    test = data.subset(split="test")
    simulators = simulator.variants()
    sharded = shards > 1 or ray is not None
    parts_dir = parts or out.with_name(out.name + ".parts")
    started = time.perf_counter()
    with progress_bar() as bar:
        label = f"cf-benchmark: {stays} stays x {len(strategies)} strategies x (oracle + {len(simulators)} twins)"
        options = {"contrasts": contrasts, "n_stays": stays, "decision_hours": hours, "horizon": horizon, "n_samples": samples,
                   "seed": seed, "out": out}
        if sharded:
            task = bar.add_task(f"{label}, {shards} shards {_where(ray)}", total=shards)
            report = sharded_cf_benchmark(replace(source, variants=True), test, strategies, shards=shards, parts_dir=parts_dir,
                                          split="test", ray_address=ray, workers=workers,
                                          progress=lambda done, total: bar.update(task, completed=done, total=total), **options)
        else:
            task = bar.add_task(label, total=None)
            report = cf_benchmark(test, simulators, strategies, progress=lambda done, total: bar.update(task, completed=done, total=total),
                                  **options)
    sharding = _finish_parts(parts_dir, shards, ray) if sharded else ""
    console.print(benchmark_table(report))
    console.print(f"{len(report['cases'])} cases x {len(strategies)} strategies x {samples} futures x {horizon} h, "
                  f"{len(simulators)} twin variants against {report['truth']} in {time.perf_counter() - started:.0f} s. "
                  f"{sharding}Wrote {out}/metrics.json.")


def benchmark_table(report: dict) -> Table:
    """Headline figures of a cf-benchmark report: nRMSE by horizon (mean over systems), 90% band
    coverage, and the sign accuracy of the SOFA 24 h and MAP 6 h effects (mean over contrasts)."""
    horizons = [str(h) for h in report["horizons"] if h <= report["horizon"]]
    table = Table(title="counterfactual benchmark against the engine's truth",
                  caption="sign: share of cases with a real effect (beyond 0.5 SOFA point, 1 mmHg) whose estimate points the same way")
    table.add_column("simulator")
    for h in horizons:
        table.add_column(f"nRMSE {h} h", justify="right")
    for column in ("coverage 90%", "sign SOFA 24 h", "sign MAP 6 h"):
        table.add_column(column, justify="right")
    for name, metrics in report["simulators"].items():
        cells = [name]
        for h in horizons:
            values = [by_h[h] for by_h in metrics["nrmse"].values() if by_h.get(h) is not None]
            cells.append(f"{np.mean(values):.3f}" if values else "-")
        coverage = metrics["coverage_90"]["all"]
        cells.append("-" if coverage is None else f"{coverage:.3f}")
        for outcome in ("sofa_at_24h", "map_at_6h"):
            signs = [effects[outcome]["sign_accuracy"] for effects in metrics["effects"].values()
                     if outcome in effects and effects[outcome]["sign_accuracy"] is not None]
            cells.append(f"{np.mean(signs):.3f}" if signs else "-")
        table.add_row(*cells)
    return table
