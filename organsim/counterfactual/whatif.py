"""What-if runs and virtual trials: the Python API behind ``organsim whatif`` and the dashboard.

:func:`what_if` answers "what would these strategies have done for this patient from this hour?"
with, per strategy, ``K`` sampled futures from a :class:`~organsim.counterfactual.futures.Simulator`
and their summary (:mod:`~organsim.counterfactual.outcomes`), the overlap guardrail's verdict when a
behaviour policy is given (:mod:`~organsim.counterfactual.overlap`) and, when a cohort to match
from is given, the matched comparison (:mod:`~organsim.counterfactual.matching`).
:meth:`WhatIfResult.write` stores it all in one directory. :func:`virtual_trial` runs two
strategies over many stays and estimates the effect of A vs B with bootstrap intervals.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from organsim.counterfactual.futures import Futures, Simulator, run_futures
from organsim.counterfactual.matching import MatchedComparison, matched_comparison
from organsim.counterfactual.outcomes import (
    OutcomeSummary,
    stay_means,
    summarise_futures,
    trial_effect,
)
from organsim.counterfactual.overlap import DEFAULT_SUPPORT_THRESHOLD, OverlapReport, assess_overlap
from organsim.counterfactual.strategy import Strategy
from organsim.data import Cohort
from organsim.scores import score_cohort
from organsim.twin.behaviour import BehaviourPolicy
from organsim.utils.io import atomic_directory


@dataclass(frozen=True)
class StrategyOutcome:
    """One strategy's answer: its futures, their summary, the overlap verdict and the matched check."""

    strategy: Strategy
    futures: Futures
    summary: OutcomeSummary
    overlap: OverlapReport | None
    matched: MatchedComparison | None


@dataclass(frozen=True)
class WhatIfResult:
    """A what-if run for one stay and decision hour; ``outcomes`` maps strategy name -> answer."""

    stay_id: int
    decision_hour: int
    horizon: int
    n_samples: int
    seed: int
    simulator: str
    outcomes: dict[str, StrategyOutcome]

    def overview(self) -> dict[str, Any]:
        """JSON-ready digest: per strategy, score means at each horizon, event and death
        probabilities, the overlap verdict and its explanations."""
        strategies = {}
        for name, outcome in self.outcomes.items():
            summary = outcome.summary
            strategies[name] = {
                "description": outcome.strategy.description,
                "reference": outcome.strategy.reference,
                "scores": summary.scores.select("score", "horizon_hours", "n", "mean", "q05", "q50", "q95").to_dicts(),
                "events": summary.events.select("event", "probability", "onset_q50").to_dicts(),
                "overlap": outcome.overlap.to_dict() if outcome.overlap is not None else None,
                "matched": outcome.matched.comparison.to_dicts() if outcome.matched is not None else None,
                "corrections": _count_by(outcome.futures.corrections, "rule"),
                "overlap_adjustments": _count_by(outcome.futures.adjustments, "treatment"),
            }
        return {"stay_id": self.stay_id, "decision_hour": self.decision_hour, "horizon": self.horizon,
                "n_samples": self.n_samples, "seed": self.seed, "simulator": self.simulator, "strategies": strategies}

    def write(self, out: str | Path, *, overwrite: bool = False) -> Path:
        """Write the run to directory ``out`` atomically (all files appear together, or none).

        Files: ``whatif.json`` (:meth:`overview`), ``trajectories.parquet`` (every sample: strategy,
        sample, hour, variables, treatments), ``bands.parquet``, ``sample_outcomes.parquet``,
        ``scores.parquet``, ``events.parquet`` (each with a ``strategy`` column), and when present
        ``overlap_actions.parquet``, ``matched.parquet``, ``matched_stays.parquet``,
        ``consulted.parquet`` (the agents' references), ``corrections.parquet`` (the error
        corrector's changes) and ``adjustments.parquet`` (doses the overlap adjustment moved).
        """
        tables: dict[str, list[pl.DataFrame]] = {}

        def add(name: str, strategy: str, frame: pl.DataFrame | None) -> None:
            if frame is not None:
                tables.setdefault(name, []).append(frame.select(pl.lit(strategy).alias("strategy"), pl.all()))

        for name, outcome in self.outcomes.items():
            add("trajectories", name, outcome.futures.samples)
            add("bands", name, outcome.summary.bands)
            add("sample_outcomes", name, outcome.summary.sample_outcomes)
            add("scores", name, outcome.summary.scores)
            add("events", name, outcome.summary.events)
            add("consulted", name, outcome.summary.consulted)
            add("corrections", name, outcome.futures.corrections)
            add("adjustments", name, outcome.futures.adjustments)
            if outcome.overlap is not None:
                add("overlap_actions", name, outcome.overlap.actions)
            if outcome.matched is not None:
                add("matched", name, outcome.matched.comparison)
                add("matched_stays", name, outcome.matched.matches)
        with atomic_directory(out, overwrite=overwrite) as tmp:
            for name, frames in tables.items():
                pl.concat(frames, how="diagonal_relaxed").write_parquet(tmp / f"{name}.parquet", compression="zstd")
            (tmp / "whatif.json").write_text(json.dumps(self.overview(), indent=2, default=str) + "\n", encoding="utf-8")
        return Path(out)


def _count_by(frame: pl.DataFrame | None, column: str) -> dict[str, int] | None:
    """``{value: rows}`` of ``frame`` by ``column``; None when the simulator gave no such frame."""
    if frame is None:
        return None
    return {str(key): int(n) for key, n in frame.group_by(column).len().sort(column).iter_rows()}


def what_if(
    simulator: Simulator,
    cohort: Cohort,
    stay_id: int,
    decision_hour: int,
    strategies: Sequence[Strategy],
    *,
    horizon: int = 72,
    n_samples: int = 100,
    seed: int = 0,
    behaviour: BehaviourPolicy | None = None,
    overlap_threshold: float = DEFAULT_SUPPORT_THRESHOLD,
    match_cohort: Cohort | None = None,
    match_k: int = 20,
    progress: Callable[[int, int], None] | None = None,
) -> WhatIfResult:
    """K sampled futures per strategy for one stay from ``decision_hour``, summarised and checked.

    Parameters
    ----------
    simulator
        What samples the futures (the twin; on engine cohorts the oracle gives the truth, ``n_samples=1``).
    cohort
        The cohort holding the stay's record.
    stay_id, decision_hour
        The patient and the first ICU hour the strategies decide.
    strategies
        Strategies to compare (distinct names).
    horizon, n_samples, seed
        Hours simulated, futures per strategy, and the seed (same seed, same futures).
    behaviour
        A fitted behaviour policy: each strategy's governed treatments are checked for overlap.
    overlap_threshold
        Support threshold of the overlap check.
    match_cohort
        Real stays to match (the matched comparison); None skips it.
    match_k
        Matched stays wanted per strategy.
    progress
        ``progress(done, total)`` over the strategies.
    """
    names = [s.name for s in strategies]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"give one or more strategies with distinct names, got {names}")
    match_scores = score_cohort(match_cohort).hourly if match_cohort is not None else None
    outcomes: dict[str, StrategyOutcome] = {}
    futures_by_name = {}
    for i, strategy in enumerate(strategies):
        futures_by_name[strategy.name] = simulator.simulate(cohort, [stay_id], decision_hour, strategy, horizon=horizon,
                                                            n_samples=n_samples, seed=seed)[0]
        if progress is not None:
            progress(i + 1, len(strategies) + 1)
    summaries = dict(zip(names, summarise_futures(list(futures_by_name.values()), catalog=cohort.catalog), strict=True))
    for strategy in strategies:
        futures, summary = futures_by_name[strategy.name], summaries[strategy.name]
        overlap = (assess_overlap(behaviour, futures, treatments=strategy.governed, threshold=overlap_threshold)
                   if behaviour is not None else None)
        matched = (matched_comparison(match_cohort, futures, summary, k=match_k, cohort_scores=match_scores, seed=seed)
                   if match_cohort is not None else None)
        outcomes[strategy.name] = StrategyOutcome(strategy, futures, summary, overlap, matched)
    if progress is not None:
        progress(len(strategies) + 1, len(strategies) + 1)
    return WhatIfResult(stay_id=int(stay_id), decision_hour=int(decision_hour), horizon=horizon, n_samples=n_samples, seed=seed,
                        simulator=simulator.name, outcomes=outcomes)


@dataclass(frozen=True)
class TrialResult:
    """A virtual trial of strategy A vs B over many (stay, decision hour) cases.

    Attributes
    ----------
    strategy_a, strategy_b
        The arms' strategy names.
    cases
        ``(stay_id, decision_hour)``.
    effects
        :func:`~organsim.counterfactual.outcomes.trial_effect`: ``(outcome, n_stays, mean_a,
        mean_b, effect, ci_low, ci_high)``, effect = A minus B.
    arm_a, arm_b
        Every case's :class:`OutcomeSummary` per arm.
    """

    strategy_a: str
    strategy_b: str
    cases: pl.DataFrame
    effects: pl.DataFrame
    arm_a: list[OutcomeSummary]
    arm_b: list[OutcomeSummary]

    def overview(self) -> dict[str, Any]:
        """JSON-ready digest: the arms, the number of cases, and every outcome's effect with its interval."""
        return {"strategy_a": self.strategy_a, "strategy_b": self.strategy_b, "n_cases": self.cases.height,
                "simulator": self.arm_a[0].simulator if self.arm_a else None,
                "n_samples": self.arm_a[0].n_samples if self.arm_a else None,
                "effect": "A minus B", "effects": self.effects.to_dicts()}

    def write(self, out: str | Path, *, overwrite: bool = False) -> Path:
        """Write the trial to directory ``out`` atomically: ``trial.json`` (:meth:`overview`),
        ``effects.parquet``, ``cases.parquet`` and ``stay_outcomes.parquet`` (per case and arm, the
        mean of each outcome over the samples)."""
        with atomic_directory(out, overwrite=overwrite) as tmp:
            self.effects.write_parquet(tmp / "effects.parquet")
            self.cases.write_parquet(tmp / "cases.parquet")
            stay_means([*self.arm_a, *self.arm_b]).write_parquet(tmp / "stay_outcomes.parquet")
            (tmp / "trial.json").write_text(json.dumps(self.overview(), indent=2, default=str) + "\n", encoding="utf-8")
        return Path(out)


def trial_arms(
    simulator: Simulator,
    cohort: Cohort,
    cases: pl.DataFrame,
    strategy_a: Strategy,
    strategy_b: Strategy,
    *,
    horizon: int,
    n_samples: int,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[OutcomeSummary], list[OutcomeSummary]]:
    """Both arms of a virtual trial: every case's :class:`OutcomeSummary` under A, then under B (in
    case order); ``progress(n)`` is called after each batch of ``n`` case-runs."""
    if strategy_a.name == strategy_b.name:
        raise ValueError(f"the two arms need different strategies, got {strategy_a.name!r} twice")
    futures = run_futures(simulator, cohort, cases, [strategy_a, strategy_b], horizon=horizon, n_samples=n_samples, seed=seed,
                          progress=progress)
    summaries = summarise_futures(futures[strategy_a.name] + futures[strategy_b.name], catalog=cohort.catalog)
    return summaries[: cases.height], summaries[cases.height :]


def virtual_trial(
    simulator: Simulator,
    cohort: Cohort,
    cases: pl.DataFrame,
    strategy_a: Strategy,
    strategy_b: Strategy,
    *,
    horizon: int = 72,
    n_samples: int = 100,
    seed: int = 0,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    progress: Callable[[int], None] | None = None,
) -> TrialResult:
    """Run both strategies on every case (``(stay_id, decision_hour)`` rows) and estimate A vs B;
    ``progress(n)`` is called after each batch of ``n`` case-runs (2 x cases in all)."""
    arm_a, arm_b = trial_arms(simulator, cohort, cases, strategy_a, strategy_b, horizon=horizon, n_samples=n_samples, seed=seed,
                              progress=progress)
    effects = trial_effect(arm_a, arm_b, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    return TrialResult(strategy_a.name, strategy_b.name, cases.select("stay_id", "decision_hour"), effects, arm_a, arm_b)
