"""The overlap guardrail: is a strategy's treatment something patients in similar states received?

A model's answer about a strategy is only as good as the data it learnt from: where the strategy
gives treatments nobody in a similar state was given, the answer is an extrapolation. The
guardrail fits a behaviour-policy model on a cohort with recorded treatments, one gradient-boosted
classifier per treatment (scikit-learn ``HistGradientBoostingClassifier``) that predicts the
treatment's action class in an hour from the state before it (:func:`state_features`). Action
classes bin each treatment (:data:`ACTION_BINS`): no fluid, < 200 mL, 200-600 mL, 600-1500 mL,
>= 1500 mL in the hour; no norepinephrine, < 0.1, 0.1-0.3, >= 0.3 ug/kg/min; antibiotic and
ventilation 0/1.

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
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from organsim.catalog import Catalog, load_catalog
from organsim.counterfactual.features import feature_names, state_features
from organsim.counterfactual.futures import Futures
from organsim.counterfactual.policy import RecordedTreatments, StrategyPolicy
from organsim.counterfactual.state import RecordedStates
from organsim.counterfactual.strategy import Strategy
from organsim.data import Cohort
from organsim.utils.errors import DataError

ACTION_BINS: dict[str, tuple[float, ...]] = {
    "iv_fluid_ml": (200.0, 600.0, 1500.0),
    "norepinephrine": (0.1, 0.3),
    "antibiotic": (),
    "mechanical_ventilation": (),
}
"""Per treatment, the edges above 0 that split the doses into classes: class 0 is "none" (<= 0),
class ``i >= 1`` is ``(edge[i-2], edge[i-1])`` with edge[-1] = 0 (binary treatments: 0 / 1)."""
DEFAULT_SUPPORT_THRESHOLD = 0.02
"""Flag an action whose probability under the behaviour policy is below this (2 %)."""


def action_class(code: str, values: np.ndarray) -> np.ndarray:
    """``(n,)`` int action class of treatment ``code`` for ``values`` (see :data:`ACTION_BINS`)."""
    if code not in ACTION_BINS:
        raise KeyError(f"no action classes for treatment {code!r}; known: {', '.join(ACTION_BINS)}")
    values = np.asarray(values, dtype=np.float64)
    return np.where(values > 0, 1 + np.searchsorted(np.asarray(ACTION_BINS[code]), values, side="right"), 0).astype(np.int64)


def action_label(code: str, action: int, unit: str) -> str:
    """Human words for an action class: ``"none"``, ``"given"``, ``"200-600 mL/h"``, ``">= 1500 mL/h"``."""
    edges = ACTION_BINS[code]
    if action == 0:
        return "none"
    if not edges:
        return "given"
    low = 0.0 if action == 1 else edges[action - 2]
    if action - 1 >= len(edges):
        return f">= {low:g} {unit}"
    return f"< {edges[0]:g} {unit}" if action == 1 else f"{low:g}-{edges[action - 1]:g} {unit}"


@dataclass(frozen=True)
class BehaviourPolicyConfig:
    """Settings of the per-treatment classifiers.

    Attributes
    ----------
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization
        ``HistGradientBoostingClassifier`` settings (few, shallow trees with large leaves: smooth
        probabilities rather than memorised rows).
    max_rows
        Rows (stay-hours) used for fitting; a larger cohort is subsampled with ``seed``.
    threads
        OpenMP threads for fitting and prediction (None: the library's default, every core). One
        by default: the models are small, and on a shared CPU OpenMP's busy threads slow a fit
        tenfold (19 s on one thread vs 225 s on all of a loaded 2-core machine, 28,000 stay-hours).
    seed
        Subsampling and boosting seed.
    """

    max_iter: int = 60
    learning_rate: float = 0.1
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    max_rows: int = 200_000
    threads: int | None = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_iter < 1 or self.max_leaf_nodes < 2 or self.min_samples_leaf < 1 or self.max_rows < 100:
            raise ValueError("max_iter >= 1, max_leaf_nodes >= 2, min_samples_leaf >= 1 and max_rows >= 100 are required")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning_rate must lie in (0, 1], got {self.learning_rate}")


class BehaviourPolicy:
    """How the care team of a cohort treated patients, state by state (see the module docstring).

    Fitted attributes end in ``_``: ``classifiers_`` (treatment -> classifier, or None when the
    cohort shows a single action), ``classes_`` (treatment -> the action classes seen),
    ``n_rows_``, ``n_stays_``, ``action_shares_`` (treatment -> share of each action class).

    Examples
    --------
    >>> behaviour = BehaviourPolicy().fit(cohort)                               # doctest: +SKIP
    >>> report = assess_overlap(behaviour, futures, treatments=strategy.governed)  # doctest: +SKIP
    >>> report.in_support, report.explanations                                  # doctest: +SKIP
    """

    def __init__(self, config: BehaviourPolicyConfig | None = None, *, catalog: Catalog | None = None) -> None:
        self.config = config or BehaviourPolicyConfig()
        self.catalog = catalog or load_catalog()
        self.features = feature_names(self.catalog)
        self.classifiers_: dict[str, HistGradientBoostingClassifier | None] = {}
        self.classes_: dict[str, np.ndarray] = {}
        self.action_shares_: dict[str, dict[int, float]] = {}
        self.n_rows_ = 0
        self.n_stays_ = 0

    def fit(self, cohort: Cohort) -> BehaviourPolicy:
        """Fit one classifier per treatment on every recorded stay-hour of ``cohort``; returns self."""
        if not cohort.meta.get("treatments_recorded", False):
            raise DataError("the cohort has no recorded treatments (cohort.json treatments_recorded is false): "
                            "a behaviour policy needs them", file="cohort.json", column="treatments_recorded")
        features = state_features(cohort.hourly, cohort.treatments, cohort.stays, catalog=self.catalog)
        targets = features.select("stay_id", "hour").join(cohort.treatments, on=["stay_id", "hour"], how="left")
        if features.height > self.config.max_rows:
            rng = np.random.default_rng(self.config.seed)
            keep = np.sort(rng.choice(features.height, self.config.max_rows, replace=False))
            features, targets = features[keep], targets[keep]
        x = features.select(self.features).to_numpy().astype(np.float64)
        for code in ACTION_BINS:
            default = self.catalog.treatment(code).default
            y = action_class(code, targets[code].fill_null(default).to_numpy())
            classes, counts = np.unique(y, return_counts=True)
            self.classes_[code] = classes
            self.action_shares_[code] = {int(c): float(n / len(y)) for c, n in zip(classes, counts, strict=True)}
            if len(classes) < 2:
                self.classifiers_[code] = None
                continue
            classifier = HistGradientBoostingClassifier(
                max_iter=self.config.max_iter, learning_rate=self.config.learning_rate,
                max_leaf_nodes=self.config.max_leaf_nodes, min_samples_leaf=self.config.min_samples_leaf,
                l2_regularization=self.config.l2_regularization, early_stopping=False, random_state=self.config.seed,
            )
            with threadpool_limits(limits=self.config.threads, user_api="openmp"):
                self.classifiers_[code] = classifier.fit(x, y)
        self.n_rows_ = features.height
        self.n_stays_ = int(features["stay_id"].n_unique())
        return self

    def _check_fitted(self) -> None:
        if not self.classes_:
            raise RuntimeError("the behaviour policy is not fitted: call fit(cohort) first")

    def probabilities(self, features: pl.DataFrame) -> dict[str, np.ndarray]:
        """Treatment -> ``(n, n_classes)`` probabilities of every action class (all of
        :data:`ACTION_BINS`' classes; a class never seen in fitting has probability 0)."""
        self._check_fitted()
        x = features.select(self.features).to_numpy().astype(np.float64)
        out = {}
        for code, edges in ACTION_BINS.items():
            n_classes = 2 + len(edges) if edges else 2
            probabilities = np.zeros((len(x), n_classes))
            classifier = self.classifiers_[code]
            if classifier is None:
                probabilities[:, int(self.classes_[code][0])] = 1.0
            else:
                with threadpool_limits(limits=self.config.threads, user_api="openmp"):
                    probabilities[:, classifier.classes_.astype(np.int64)] = classifier.predict_proba(x)
            out[code] = probabilities
        return out

    def action_probabilities(
        self,
        hourly: pl.DataFrame,
        treatments: pl.DataFrame,
        stays: pl.DataFrame,
        *,
        treatment_codes: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """The probability of each recorded action given the state before it, for every stay-hour.

        Returns
        -------
        pl.DataFrame
            ``(stay_id, hour, treatment, value, action, probability, usual_action, usual_probability)``:
            ``usual_action`` is the most probable class in that state.
        """
        codes = list(treatment_codes or ACTION_BINS)
        features = state_features(hourly, treatments, stays, catalog=self.catalog)
        given = features.select("stay_id", "hour").join(treatments, on=["stay_id", "hour"], how="left")
        probabilities = self.probabilities(features)
        parts = []
        for code in codes:
            values = given[code].fill_null(self.catalog.treatment(code).default).to_numpy().astype(np.float64)
            actions = action_class(code, values)
            p = probabilities[code]
            parts.append(pl.DataFrame({
                "stay_id": features["stay_id"], "hour": features["hour"], "treatment": [code] * features.height,
                "value": values, "action": actions, "probability": p[np.arange(len(actions)), actions],
                "usual_action": p.argmax(axis=1), "usual_probability": p.max(axis=1),
            }))
        return pl.concat(parts)

    def usual_actions(self, features: pl.DataFrame, code: str) -> list[str]:
        """Per row: what patients in that state received (action classes with probability >= 10 %)."""
        unit = self.catalog.treatment(code).unit
        p = self.probabilities(features)[code]
        return ["; ".join(f"{action_label(code, j, unit)} {row[j]:.0%}" for j in np.argsort(-row) if row[j] >= 0.1) for row in p]


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
