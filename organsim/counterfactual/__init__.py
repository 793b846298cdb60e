"""Layer 6: counterfactual treatment runs, checked against ground truth.

>>> from organsim.counterfactual import EngineOracle, load_strategy, summarise_futures
>>> strategy = load_strategy("early_norepinephrine")                       # pipelines/strategies/
>>> oracle = EngineOracle.from_cohort(cohort)                              # doctest: +SKIP
>>> futures = oracle.simulate(cohort, [7], 6, strategy, horizon=48, n_samples=1)   # doctest: +SKIP
>>> summary, = summarise_futures(futures)                                 # doctest: +SKIP

Modules: :mod:`~organsim.counterfactual.strategy` (strategies as data: schema, checks, library),
:mod:`~organsim.counterfactual.state` (what a strategy reads), :mod:`~organsim.counterfactual.policy`
(strategies as treatment policies), :mod:`~organsim.counterfactual.futures` (sampled futures, the
simulator interface, the engine's oracle), :mod:`~organsim.counterfactual.outcomes` (bands, scores,
events, trial effects), :mod:`~organsim.counterfactual.features` (treatment courses),
:mod:`~organsim.counterfactual.overlap` (the guardrail over the behaviour policy of
:mod:`organsim.twin.behaviour`, re-exported here),
:mod:`~organsim.counterfactual.matching` (matched real stays), :mod:`~organsim.counterfactual.benchmark`
(error against the engine's truth), :mod:`~organsim.counterfactual.twin_simulator` (the coordinated
twin as a simulator, with its overlap adjustment and baselines), :mod:`~organsim.counterfactual.whatif`
(what-if runs and virtual trials).
"""

from organsim.counterfactual.benchmark import (
    BENCHMARK_HORIZONS,
    DEFAULT_CONTRASTS,
    band_coverage,
    cf_benchmark,
    choose_cases,
    counterfactual_metrics,
    effect_metrics,
    normalised_rmse,
)
from organsim.counterfactual.features import COURSE_FEATURES, treatment_courses
from organsim.counterfactual.futures import (
    EngineOracle,
    Futures,
    RecordedFuture,
    Simulator,
    run_futures,
)
from organsim.counterfactual.matching import MatchedComparison, matched_comparison
from organsim.counterfactual.outcomes import (
    HORIZONS_HOURS,
    OutcomeSummary,
    quantile_bands,
    stay_means,
    summarise_futures,
    trial_effect,
)
from organsim.counterfactual.overlap import (
    DEFAULT_SUPPORT_THRESHOLD,
    OverlapReport,
    assess_overlap,
    overlap_on_record,
)
from organsim.counterfactual.policy import RecordedTreatments, StrategyPolicy
from organsim.counterfactual.state import RecordedStates, StrategyState
from organsim.counterfactual.strategy import (
    Condition,
    ScheduleRule,
    Strategy,
    StrategyError,
    ThresholdRule,
    TitrationRule,
    TreatmentPlan,
    library_names,
    load_strategy,
    parse_strategy,
    read_library,
    read_strategy_file,
    strategy_library_dir,
)
from organsim.counterfactual.twin_simulator import (
    SupportedTreatments,
    TwinSimulator,
    behaviour_policy_for,
)
from organsim.counterfactual.whatif import (
    StrategyOutcome,
    TrialResult,
    WhatIfResult,
    virtual_trial,
    what_if,
)
from organsim.twin.behaviour import (
    ACTION_BINS,
    BehaviourPolicy,
    BehaviourPolicyConfig,
    state_features,
)

__all__ = [
    "ACTION_BINS",
    "BENCHMARK_HORIZONS",
    "COURSE_FEATURES",
    "DEFAULT_CONTRASTS",
    "DEFAULT_SUPPORT_THRESHOLD",
    "HORIZONS_HOURS",
    "BehaviourPolicy",
    "BehaviourPolicyConfig",
    "Condition",
    "EngineOracle",
    "Futures",
    "MatchedComparison",
    "OutcomeSummary",
    "OverlapReport",
    "RecordedFuture",
    "RecordedStates",
    "RecordedTreatments",
    "ScheduleRule",
    "Simulator",
    "Strategy",
    "StrategyError",
    "StrategyOutcome",
    "StrategyPolicy",
    "StrategyState",
    "SupportedTreatments",
    "ThresholdRule",
    "TitrationRule",
    "TreatmentPlan",
    "TrialResult",
    "TwinSimulator",
    "WhatIfResult",
    "assess_overlap",
    "band_coverage",
    "behaviour_policy_for",
    "cf_benchmark",
    "choose_cases",
    "counterfactual_metrics",
    "effect_metrics",
    "library_names",
    "load_strategy",
    "matched_comparison",
    "normalised_rmse",
    "overlap_on_record",
    "parse_strategy",
    "quantile_bands",
    "read_library",
    "read_strategy_file",
    "run_futures",
    "state_features",
    "stay_means",
    "strategy_library_dir",
    "summarise_futures",
    "treatment_courses",
    "trial_effect",
    "virtual_trial",
    "what_if",
]
