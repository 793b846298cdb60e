"""The overlap guardrail: is a strategy's treatment something patients in similar states received?

A model's answer about a strategy is only as good as the data it learnt from: where the strategy
gives treatments nobody in a similar state was given, the answer is an extrapolation. The
guardrail reads a behaviour-policy model fitted on a cohort with recorded treatments
(:class:`organsim.twin.behaviour.BehaviourPolicy`: per treatment, the probability of each action
class in an hour given the state before it).

:func:`assess_overlap` scores every hour of simulated futures: the probability, under the behaviour
policy, of the action class the strategy chose in that hour's state. An (hour, treatment) whose
median probability over the samples falls below ``threshold`` is flagged, with an explanation that
names the hour, the treatment, the dose, the probability and what similar patients received
instead. :func:`overlap_on_record` does the same without a simulator, for the strategy's actions
along the recorded course of a stay (each hour decided from the recorded state before it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from organsim.counterfactual.futures import Futures
from organsim.counterfactual.policy import RecordedTreatments, StrategyPolicy
from organsim.counterfactual.state import RecordedStates
from organsim.counterfactual.strategy import Strategy
from organsim.data import Cohort
from organsim.twin.behaviour import (
    ACTION_BINS,
    BehaviourPolicy,
    action_class,
    action_label,
    state_features,
)

DEFAULT_SUPPORT_THRESHOLD = 0.02
"""Flag an action whose probability under the behaviour policy is below this (2 %)."""


@dataclass(frozen=True)
class OverlapReport:
    """The guardrail's verdict on one strategy's actions.

    Attributes
    ----------
    strategy
        The strategy's name.
    threshold
        Actions less probable than this under the behaviour policy are outside support.
    actions
        ``(sample, hour, hours_after_decision, treatment, value, action, probability)`` for every
        hour and governed treatment (``sample`` is the stay id for :func:`overlap_on_record`).
    flags
        ``(hour, hours_after_decision, treatment, median_value, median_probability,
        share_below_threshold, usual)`` for the (hour, treatment) pairs whose median probability is
        below the threshold.
    explanations
        One sentence per flag.
    """

    strategy: str
    threshold: float
    actions: pl.DataFrame
    flags: pl.DataFrame
    explanations: tuple[str, ...] = field(default_factory=tuple)

    @property
    def in_support(self) -> bool:
        """True when no (hour, treatment) was flagged."""
        return self.flags.height == 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (verdict, explanations, flags)."""
        return {"strategy": self.strategy, "threshold": self.threshold, "in_support": self.in_support,
                "explanations": list(self.explanations), "flags": self.flags.to_dicts(),
                "actions_scored": self.actions.height,
                "median_probability": float(self.actions["probability"].median()) if self.actions.height else None}


def _report(behaviour: BehaviourPolicy, strategy: str, actions: pl.DataFrame, features: pl.DataFrame, threshold: float,
            decision_hour: int) -> OverlapReport:
    grouped = (actions.group_by("hour", "treatment")
               .agg(pl.col("value").median().alias("median_value"), pl.col("probability").median().alias("median_probability"),
                    (pl.col("probability") < threshold).mean().alias("share_below_threshold"),
                    pl.col("row").first().alias("row"))
               .filter(pl.col("median_probability") < threshold)
               .sort("hour", "treatment"))
    usual, explanations = [], []
    for flag in grouped.iter_rows(named=True):
        code = flag["treatment"]
        treatment = behaviour.catalog.treatment(code)
        said = behaviour.usual_actions(features[flag["row"]: flag["row"] + 1], code)[0]
        usual.append(said)
        after = flag["hour"] - decision_hour
        value = flag["median_value"]
        action = int(action_class(code, np.array([value]))[0])
        if treatment.kind == "binary":
            gives = f"{'gives' if action else 'withholds'} {code}"
        else:
            gives = f"gives {code} {value:g} {treatment.unit} ({action_label(code, action, treatment.unit)})"
        explanations.append(
            f"hour {flag['hour']} ({after} h after the decision): {strategy} {gives}, which patients in "
            f"similar states received with probability {flag['median_probability']:.3f} under the behaviour policy fitted on "
            f"{behaviour.n_stays_} stays (threshold {threshold:g}); they received: {said or 'no single usual action'}"
        )
    flags = grouped.drop("row").with_columns(
        (pl.col("hour") - decision_hour).alias("hours_after_decision"),
        pl.Series("usual", usual, dtype=pl.Utf8),
    ).select("hour", "hours_after_decision", "treatment", "median_value", "median_probability", "share_below_threshold", "usual")
    return OverlapReport(strategy=strategy, threshold=threshold,
                         actions=actions.drop("row").with_columns((pl.col("hour") - decision_hour).alias("hours_after_decision"))
                         .select("sample", "hour", "hours_after_decision", "treatment", "value", "action", "probability"),
                         flags=flags, explanations=tuple(explanations))


def assess_overlap(
    behaviour: BehaviourPolicy,
    futures: Futures,
    *,
    treatments: Sequence[str],
    threshold: float = DEFAULT_SUPPORT_THRESHOLD,
) -> OverlapReport:
    """Score the actions of sampled futures (history then each sample) under the behaviour policy.

    Parameters
    ----------
    behaviour
        A fitted :class:`BehaviourPolicy`.
    futures
        The futures of one stay under the strategy.
    treatments
        The treatments to check: the strategy's governed ones (``strategy.governed``); the others
        follow usual or observed care.
    threshold
        Support threshold on the probability of an action.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    hourly, treatment_frame = futures.trajectories()
    stays = pl.DataFrame({"stay_id": np.arange(futures.n_samples, dtype=np.int64)}).join(
        futures.stay.select(pl.col("age").cast(pl.Float64), pl.col("weight").cast(pl.Float64)), how="cross")
    return _assess(behaviour, futures.strategy, hourly, treatment_frame, treatment_frame, stays, treatments, threshold,
                   futures.decision_hour, futures.last_hour)


def _assess(behaviour: BehaviourPolicy, strategy: str, hourly: pl.DataFrame, history: pl.DataFrame, chosen: pl.DataFrame,
            stays: pl.DataFrame, treatments: Sequence[str], threshold: float, decision_hour: int, last_hour: int) -> OverlapReport:
    """Score the actions of ``chosen`` (stay_id, hour, treatments) of hours ``decision_hour .. last_hour`` in the
    states that ``hourly`` and the treatments of ``history`` describe."""
    codes = [c for c in treatments if c in ACTION_BINS]
    features = state_features(hourly, history, stays, catalog=behaviour.catalog).with_row_index("row")
    scored = features.filter(pl.col("hour").is_between(decision_hour, last_hour))
    if not codes or not scored.height:
        empty = pl.DataFrame(schema={"sample": pl.Int64, "hour": pl.Int32, "treatment": pl.Utf8, "value": pl.Float64,
                                     "action": pl.Int64, "probability": pl.Float64, "row": pl.UInt32})
        return _report(behaviour, strategy, empty, features.drop("row"), threshold, decision_hour)
    given = scored.select("stay_id", "hour").join(chosen, on=["stay_id", "hour"], how="left")
    probabilities = behaviour.probabilities(scored)
    parts = []
    for code in codes:
        values = given[code].fill_null(behaviour.catalog.treatment(code).default).cast(pl.Float64).to_numpy()
        actions = action_class(code, values)
        parts.append(pl.DataFrame({"sample": scored["stay_id"].cast(pl.Int64), "hour": scored["hour"],
                                   "treatment": [code] * scored.height, "value": values, "action": actions,
                                   "probability": probabilities[code][np.arange(len(actions)), actions], "row": scored["row"]}))
    return _report(behaviour, strategy, pl.concat(parts), features.drop("row"), threshold, decision_hour)


def overlap_on_record(
    behaviour: BehaviourPolicy,
    strategy: Strategy,
    cohort: Cohort,
    stay_ids: Sequence[int],
    decision_hour: int,
    horizon: int,
    *,
    threshold: float = DEFAULT_SUPPORT_THRESHOLD,
) -> OverlapReport:
    """The guardrail without a simulator: the strategy's action in each hour of the recorded course.

    For each hour ``h`` of ``decision_hour .. decision_hour + horizon - 1`` that a stay's record
    has, the strategy decides from the recorded state before ``h`` (its governed treatments; the
    rest as recorded), and that action is scored under the behaviour policy in that state. The
    recorded course after the decision hour followed other treatments, so later hours show the
    strategy's first move in the states the patient actually went through, not its own course.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    ids = [int(s) for s in stay_ids]
    record = cohort.subset(ids)
    states = RecordedStates(record.hourly, record.treatments, record.stays, catalog=cohort.catalog)
    recorded = RecordedTreatments(record.treatments, catalog=cohort.catalog)
    policy = StrategyPolicy(strategy, decision_hour, usual_care=recorded, observed=recorded, catalog=cohort.catalog)
    decided = []
    last = min(decision_hour + horizon - 1, states.n_hours)
    for hour in range(decision_hour, last + 1):
        actions = policy(states.at(hour), hour)
        decided.append(pl.DataFrame({"stay_id": states.stay_ids, "hour": np.full(len(ids), hour, dtype=np.int32),
                                     **{code: np.asarray(actions[code], dtype=np.float64) for code in strategy.governed}}))
    chosen = pl.concat(decided) if decided else pl.DataFrame(schema={"stay_id": pl.Int64, "hour": pl.Int32})
    return _assess(behaviour, strategy.name, record.hourly, record.treatments, chosen, record.stays, strategy.governed, threshold,
                   decision_hour, last)
