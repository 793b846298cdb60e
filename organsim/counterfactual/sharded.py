"""Counterfactual sweeps in shards, on local processes or a Ray cluster.

A virtual trial (:func:`~organsim.counterfactual.whatif.virtual_trial`) or the ground-truth
benchmark (:func:`~organsim.counterfactual.benchmark.cf_benchmark`) is cut by its cases: the
``(stay_id, decision_hour)`` rows are split into ``shards`` contiguous, near-equal runs. Shard ``i``
loads the simulator and its cohort itself (``source()``, a picklable loader such as
:class:`TwinSource`), runs its cases with the run's seed and returns a compact part, written
atomically by :func:`organsim.utils.shards.run_shards`:

- trial: every case's :class:`~organsim.counterfactual.outcomes.OutcomeSummary` under each arm
  (quantile bands, per-sample outcomes, scores, events, systems consulted; not the sampled futures);
- benchmark: :class:`~organsim.counterfactual.benchmark.CaseForecasts` of the oracle's truth (per
  case and strategy, the true values) and of each simulator (the median, 5th/95th percentiles and
  mean of the samples), with the outcome means of the contrasted strategies: about ``4 x H x V``
  float64 values per case, strategy and simulator, whatever the number of samples.

The merge then computes the result with the very functions of the unsharded run
(:func:`~organsim.counterfactual.outcomes.trial_effect`,
:func:`~organsim.counterfactual.benchmark.benchmark_report`) over all cases in their order. A rerun
after a lost worker or an interruption computes only the missing parts; ``job.json`` in the parts
directory records the settings, so parts of another run are never mixed in.

Seeds: each shard runs its cases with the run's ``seed``, as one unsharded run does for each
batch of cases. The engine's truth and the recorded future do not depend on the batch, so their
results are the same however the cases are sharded; a twin's sampled futures depend on the other
cases of their batch, so a twin's results are deterministic per (settings, seed, shards): one
shard gives exactly the unsharded result, another number of shards a different, equally valid one.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from organsim.agents.training import split_as_trained
from organsim.counterfactual.benchmark import (
    DEFAULT_CONTRASTS,
    CaseForecasts,
    benchmark_report,
    case_forecasts,
    choose_cases,
    contrasted_strategies,
)
from organsim.counterfactual.futures import EngineOracle, Simulator, run_futures
from organsim.counterfactual.outcomes import OutcomeSummary, trial_effect
from organsim.counterfactual.strategy import Strategy
from organsim.counterfactual.twin_simulator import TwinSimulator, behaviour_policy_for
from organsim.counterfactual.whatif import TrialResult, trial_arms
from organsim.data import Cohort
from organsim.utils.io import atomic_write_text
from organsim.utils.shards import ProgressCallback, run_shards

SimulatorSource = Callable[[], tuple[list[Simulator], Cohort]]
"""``source() -> (simulators, cohort)``: what a shard loads; picklable (a module-level function, a
``functools.partial`` of one, or a :class:`TwinSource`)."""

JOB_FILE = "job.json"
SUMMARY_TABLES = ("bands", "sample_outcomes", "scores", "events", "consulted")
TRUTH_FIELDS = ("first",)
"""What the metrics read of the truth's forecasts (its one sample) ..."""
PREDICTED_FIELDS = ("median", "lower", "upper", "mean")
"""... and of a simulator's: the point forecast, the 90 % band and the mean over samples."""


@dataclass(frozen=True)
class TwinSource:
    """The coordinated twin of a model directory and the cohort it was trained on, as a shard loads them.

    Attributes
    ----------
    model_dir, cohort_dir
        Written by ``organsim train`` (and ``organsim coordinate``), and the cohort it was trained on.
    behaviour_dir
        The behaviour policy's directory: loaded when saved there, else fitted on the train split
        and saved there. None: fitted on the train split and kept in memory, so every shard fits
        it again (the same, deterministic fit); save one beforehand to fit it once.
    device
        ``auto``, ``cpu`` or ``cuda``.
    references
        The agents' references: ``policy``, ``all`` or ``none``.
    overlap_adjustment
        The twin's overlap adjustment (off when the cohort recorded no treatments).
    treatment_blind
        The treatment-blind baseline: the agents see no treatments.
    variants
        ``source()`` gives the benchmark's three variants (:meth:`TwinSimulator.variants`) instead
        of this twin alone.
    """

    model_dir: str
    cohort_dir: str
    behaviour_dir: str | None = None
    device: str = "auto"
    references: str = "policy"
    overlap_adjustment: bool = True
    treatment_blind: bool = False
    variants: bool = False

    def load(self) -> tuple[TwinSimulator, Cohort]:
        """The twin simulator (with the cohort's behaviour policy, None when the cohort recorded no
        treatments) and the cohort split as the model was trained."""
        data = Cohort.load(self.cohort_dir)
        loaded = TwinSimulator.load(self.model_dir, None, device=self.device, catalog=data.catalog, references=self.references,
                                    overlap_adjustment=False, hide_treatments=self.treatment_blind)
        data = split_as_trained(data, loaded.twin.agents)
        behaviour = behaviour_policy_for(data, self.behaviour_dir)
        simulator = TwinSimulator(loaded.twin, behaviour, overlap_adjustment=self.overlap_adjustment and behaviour is not None,
                                  hide_treatments=self.treatment_blind, references=self.references)
        return simulator, data

    def __call__(self) -> tuple[list[Simulator], Cohort]:
        simulator, data = self.load()
        return (list(simulator.variants()) if self.variants else [simulator]), data


def case_shards(cases: pl.DataFrame, shards: int) -> list[pl.DataFrame]:
    """``cases`` cut into ``shards`` contiguous, near-equal runs (in order).

    >>> [part.height for part in case_shards(pl.DataFrame({"stay_id": range(10)}), 3)]
    [4, 3, 3]
    """
    if not 1 <= shards <= cases.height:
        raise ValueError(f"shards must lie in 1..{cases.height} (one case at least per shard), got {shards}")
    bounds = np.cumsum([0, *(len(run) for run in np.array_split(np.arange(cases.height), shards))])
    return [cases.slice(int(start), int(stop - start)) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]


def _describe_source(source: SimulatorSource) -> Any:
    if is_dataclass(source) and not isinstance(source, type):
        return {"type": type(source).__name__, **asdict(source)}
    return repr(source)


def claim_parts_dir(parts_dir: str | Path, job: dict[str, Any]) -> None:
    """Record the settings of a sharded run in ``parts_dir/job.json``, or check they match the
    record there: parts of another run are never merged with this run's.

    Raises
    ------
    ValueError
        When ``parts_dir`` holds the parts of a run with other settings (names the settings).
    """
    path = Path(parts_dir) / JOB_FILE
    text = json.dumps(job, indent=2, sort_keys=True, default=str) + "\n"
    if path.is_file():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        wanted = json.loads(text)
        if recorded != wanted:
            differing = sorted(key for key in {*recorded, *wanted} if recorded.get(key) != wanted.get(key))
            raise ValueError(f"{parts_dir} holds the parts of another run (its {', '.join(differing)} differ): "
                             "delete it, or rerun with that run's settings")
        return
    atomic_write_text(path, text)


def _frame_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _array_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- trials
def summaries_files(summaries: Sequence[OutcomeSummary]) -> dict[str, bytes]:
    """``summaries`` as part files: ``summaries.json`` (what was simulated) and one parquet table
    per frame field, the rows of summary ``i`` marked ``item = i``."""
    meta = [{"stay_id": s.stay_id, "decision_hour": s.decision_hour, "horizon": s.horizon, "strategy": s.strategy,
             "simulator": s.simulator, "n_samples": s.n_samples, "consulted": s.consulted is not None} for s in summaries]
    files = {"summaries.json": json.dumps(meta).encode()}
    for table in SUMMARY_TABLES:
        frames = [getattr(s, table).with_columns(pl.lit(i, dtype=pl.Int32).alias("item"))
                  for i, s in enumerate(summaries) if getattr(s, table) is not None]
        if frames:
            files[f"{table}.parquet"] = _frame_bytes(pl.concat(frames))
    return files


def read_summaries(part: Path) -> list[OutcomeSummary]:
    """The summaries written by :func:`summaries_files` to directory ``part``, in order."""
    meta = json.loads((part / "summaries.json").read_text(encoding="utf-8"))
    tables: dict[str, dict[int, pl.DataFrame]] = {}
    for table in SUMMARY_TABLES:
        path = part / f"{table}.parquet"
        frame = pl.read_parquet(path) if path.is_file() else None
        tables[table] = {} if frame is None else {int(key[0]): rows.drop("item")
                                                  for key, rows in frame.partition_by("item", as_dict=True, maintain_order=True).items()}
    return [OutcomeSummary(stay_id=m["stay_id"], decision_hour=m["decision_hour"], horizon=m["horizon"], strategy=m["strategy"],
                           simulator=m["simulator"], n_samples=m["n_samples"], bands=tables["bands"][i],
                           sample_outcomes=tables["sample_outcomes"][i], scores=tables["scores"][i], events=tables["events"][i],
                           consulted=tables["consulted"][i] if m["consulted"] else None)
            for i, m in enumerate(meta)]


def trial_part(source: SimulatorSource, shard_cases: Sequence[pl.DataFrame], strategy_a: Strategy, strategy_b: Strategy,
               horizon: int, n_samples: int, seed: int, index: int) -> dict[str, bytes]:
    """Shard ``index`` of a virtual trial: both arms' summaries of its cases as ``{file name: bytes}``."""
    simulators, cohort = source()
    if len(simulators) != 1:
        raise ValueError(f"a virtual trial runs one simulator, the source gave {len(simulators)}")
    arm_a, arm_b = trial_arms(simulators[0], cohort, shard_cases[index], strategy_a, strategy_b, horizon=horizon,
                              n_samples=n_samples, seed=seed)
    return summaries_files([*arm_a, *arm_b])


def sharded_virtual_trial(
    source: SimulatorSource,
    cases: pl.DataFrame,
    strategy_a: Strategy,
    strategy_b: Strategy,
    *,
    shards: int,
    parts_dir: str | Path,
    horizon: int = 72,
    n_samples: int = 100,
    seed: int = 0,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    ray_address: str | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> TrialResult:
    """:func:`~organsim.counterfactual.whatif.virtual_trial` with the cases run in ``shards`` shards.

    Parameters
    ----------
    source
        What each shard loads: ``source() -> ([the simulator], its cohort)`` (e.g. :class:`TwinSource`).
    cases
        ``(stay_id, decision_hour)`` rows.
    strategy_a, strategy_b
        The arms; the effect is A minus B.
    shards
        Number of shards, in ``1 .. cases.height``.
    parts_dir
        Where the parts go (``part-XXXX/`` and ``job.json``); parts of this run already there are reused.
    horizon, n_samples, seed, n_bootstrap, confidence
        As :func:`~organsim.counterfactual.whatif.virtual_trial` (every shard runs with ``seed``).
    ray_address, workers, progress
        As :func:`organsim.utils.shards.run_shards`: ``None`` for local processes, ``"local"`` or a
        cluster address for Ray; ``progress(parts done, shards)``.

    Raises
    ------
    organsim.utils.shards.ShardsFailed
        When a shard failed; the finished parts are kept for the rerun.
    """
    if strategy_a.name == strategy_b.name:
        raise ValueError(f"the two arms need different strategies, got {strategy_a.name!r} twice")
    cases = cases.select("stay_id", "decision_hour")
    runs = case_shards(cases, shards)
    claim_parts_dir(parts_dir, {"job": "virtual_trial", "source": _describe_source(source), "cases": cases.to_dicts(),
                                "strategies": [strategy_a.model_dump(mode="json"), strategy_b.model_dump(mode="json")],
                                "horizon": horizon, "n_samples": n_samples, "seed": seed, "shards": shards})
    task = functools.partial(trial_part, source, runs, strategy_a, strategy_b, horizon, n_samples, seed)
    parts = run_shards(task, shards, parts_dir, ray_address=ray_address, workers=workers, progress=progress)
    arm_a: list[OutcomeSummary] = []
    arm_b: list[OutcomeSummary] = []
    for part, run in zip(parts, runs, strict=True):
        summaries = read_summaries(part)
        arm_a += summaries[: run.height]
        arm_b += summaries[run.height :]
    effects = trial_effect(arm_a, arm_b, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    return TrialResult(strategy_a.name, strategy_b.name, cases, effects, arm_a, arm_b)


# ----------------------------------------------------------------------------------- benchmark
def forecasts_files(forecasts: CaseForecasts, strategies: Sequence[str], prefix: str, fields: Sequence[str]) -> dict[str, bytes]:
    """``forecasts`` as part files under ``prefix/``: ``cases.parquet``, ``<field>/<j>.npy`` for each
    of ``fields`` and strategy ``j`` of ``strategies``, ``stay_means/<j>.parquet`` for the contrasted
    ones, and ``meta.json``."""
    files = {f"{prefix}/cases.parquet": _frame_bytes(forecasts.cases),
             f"{prefix}/meta.json": json.dumps({"n_samples": forecasts.n_samples, "fields": list(fields)}).encode()}
    for j, name in enumerate(strategies):
        for field in fields:
            files[f"{prefix}/{field}/{j}.npy"] = _array_bytes(getattr(forecasts, field)[name])
        if name in forecasts.stay_means:
            files[f"{prefix}/stay_means/{j}.parquet"] = _frame_bytes(forecasts.stay_means[name])
    return files


def read_forecasts(directory: Path, strategies: Sequence[str], outcome_strategies: Sequence[str]) -> CaseForecasts:
    """The forecasts written by :func:`forecasts_files` to ``directory`` (fields not written are empty)."""
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))

    def arrays(field: str) -> dict[str, np.ndarray]:
        if field not in meta["fields"]:
            return {}
        return {name: np.load(directory / field / f"{j}.npy", allow_pickle=False) for j, name in enumerate(strategies)}

    return CaseForecasts(
        cases=pl.read_parquet(directory / "cases.parquet"),
        first=arrays("first"), median=arrays("median"), lower=arrays("lower"), upper=arrays("upper"), mean=arrays("mean"),
        stay_means={name: pl.read_parquet(directory / "stay_means" / f"{j}.parquet")
                    for j, name in enumerate(strategies) if name in outcome_strategies},
        n_samples=int(meta["n_samples"]),
    )


def benchmark_part(source: SimulatorSource, split: str | None, shard_cases: Sequence[pl.DataFrame], strategies: Sequence[Strategy],
                   outcome_strategies: Sequence[str], horizon: int, n_samples: int, seed: int, index: int) -> dict[str, bytes]:
    """Shard ``index`` of the benchmark: the truth's and every simulator's forecasts of its cases."""
    simulators, cohort = source()
    cohort = cohort if split is None else cohort.subset(split=split)
    cases, names = shard_cases[index], [s.name for s in strategies]
    oracle = EngineOracle.from_cohort(cohort)
    truth = run_futures(oracle, cohort, cases, strategies, horizon=horizon, n_samples=1, seed=seed)
    files = forecasts_files(case_forecasts(truth, catalog=cohort.catalog, outcome_strategies=outcome_strategies), names, "truth",
                            TRUTH_FIELDS)
    for i, simulator in enumerate(simulators):
        futures = run_futures(simulator, cohort, cases, strategies, horizon=horizon, n_samples=n_samples, seed=seed)
        files.update(forecasts_files(case_forecasts(futures, catalog=cohort.catalog, outcome_strategies=outcome_strategies), names,
                                     f"simulator-{i}", PREDICTED_FIELDS))
    files["simulators.json"] = json.dumps({"truth": oracle.name, "simulators": [simulator.name for simulator in simulators]}).encode()
    return files


def sharded_cf_benchmark(
    source: SimulatorSource,
    cohort: Cohort,
    strategies: Sequence[Strategy],
    *,
    shards: int,
    parts_dir: str | Path,
    split: str | None = "test",
    contrasts: Sequence[tuple[str, str]] = DEFAULT_CONTRASTS,
    n_stays: int = 50,
    decision_hours: Sequence[int] = (6, 12, 24),
    horizon: int = 48,
    n_samples: int = 1,
    seed: int = 0,
    out: str | Path | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """:func:`~organsim.counterfactual.benchmark.cf_benchmark` with the cases run in ``shards`` shards.

    Parameters
    ----------
    source
        What each shard loads: ``source() -> (simulators, cohort)`` (e.g. :class:`TwinSource` with
        ``variants=True``); the cohort is cut to ``split`` there.
    cohort
        The same engine cohort, cut to ``split``, from which the driver chooses the cases.
    strategies
        The strategies run; must include both sides of every contrast.
    shards
        Number of shards, in ``1 ..`` the number of cases.
    parts_dir
        Where the parts go (``part-XXXX/`` and ``job.json``); parts of this run already there are reused.
    split
        The split of the loaded cohort whose stays are the cases (None: all of them).
    contrasts, n_stays, decision_hours, horizon, n_samples, seed, out
        As :func:`~organsim.counterfactual.benchmark.cf_benchmark` (every shard runs with ``seed``).
    ray_address, workers, progress
        As :func:`organsim.utils.shards.run_shards`.

    Returns
    -------
    dict
        The report of :func:`~organsim.counterfactual.benchmark.cf_benchmark`.

    Raises
    ------
    organsim.utils.shards.ShardsFailed
        When a shard failed; the finished parts are kept for the rerun.
    """
    names = [s.name for s in strategies]
    outcome_strategies = contrasted_strategies(contrasts, names)
    cases = choose_cases(cohort, n_stays=n_stays, decision_hours=decision_hours, horizon=horizon, seed=seed)
    runs = case_shards(cases, shards)
    claim_parts_dir(parts_dir, {"job": "cf_benchmark", "source": _describe_source(source), "split": split, "cases": cases.to_dicts(),
                                "strategies": [s.model_dump(mode="json") for s in strategies], "horizon": horizon,
                                "n_samples": n_samples, "seed": seed, "shards": shards})
    task = functools.partial(benchmark_part, source, split, runs, list(strategies), outcome_strategies, horizon, n_samples, seed)
    parts = run_shards(task, shards, parts_dir, ray_address=ray_address, workers=workers, progress=progress)
    names_of = json.loads((parts[0] / "simulators.json").read_text(encoding="utf-8"))
    truth = CaseForecasts.concatenate([read_forecasts(part / "truth", names, outcome_strategies) for part in parts])
    predicted = {name: CaseForecasts.concatenate([read_forecasts(part / f"simulator-{i}", names, outcome_strategies) for part in parts])
                 for i, name in enumerate(names_of["simulators"])}
    return benchmark_report(truth, predicted, strategies=names, contrasts=contrasts, horizon=horizon, seed=seed,
                            truth_name=names_of["truth"], cohort_source=cohort.meta.get("source"),
                            catalog=cohort.catalog, out=out)
