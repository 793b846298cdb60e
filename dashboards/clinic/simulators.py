"""Which simulator answers the dashboard's what-if questions, and the overlap guardrail it uses.

:func:`choose_simulator` is the one place that decides: on a cohort from organsim's physiology
engine, the engine's oracle (:class:`organsim.counterfactual.EngineOracle`) re-runs the same
patient under the strategy and gives the true counterfactual, one future per strategy; any other
cohort needs the coordinated twin, which is not available yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from clinic.records import load_cohort
from organsim.counterfactual import BehaviourPolicy, BehaviourPolicyConfig, EngineOracle, Simulator
from organsim.data import Cohort
from organsim.utils import DataError

BEHAVIOUR_MAX_ROWS = 50_000
"""Stay-hours the overlap guardrail's behaviour policy is fitted on (a seeded sample beyond)."""


@dataclass(frozen=True)
class SimulatorChoice:
    """The simulator behind the what-if page, or why there is none.

    Attributes
    ----------
    simulator
        The simulator; None when no simulator fits the cohort (``reason`` says why).
    label
        What the page tells the clinician it is using.
    fixed_samples
        Futures per strategy when the simulator fixes it (the oracle's one true future), else None.
    last_hour
        The last ICU hour the simulator can reach (the engine's simulated hours), else None.
    reason
        Why ``simulator`` is None.
    """

    simulator: Simulator | None
    label: str
    fixed_samples: int | None = None
    last_hour: int | None = None
    reason: str | None = None

    def max_horizon(self, decision_hour: int, requested_limit: int) -> int:
        """The longest horizon (hours) from ``decision_hour``: ``requested_limit`` or what the
        simulator can reach, whichever is smaller."""
        if self.last_hour is None:
            return requested_limit
        return max(0, min(requested_limit, self.last_hour - decision_hour + 1))


def choose_simulator(cohort: Cohort, model_dir: Path | None) -> SimulatorChoice:
    """The simulator for ``cohort`` (module docstring); ``model_dir`` is the trained model given
    to the dashboard, for the coordinated twin."""
    try:
        oracle = EngineOracle.from_cohort(cohort)
    except DataError as exc:
        return SimulatorChoice(None, "none", reason=(
            f"this cohort is not from organsim's physiology engine ({exc}), and the coordinated twin that answers "
            f"what-if questions on other cohorts{f' with the model in {model_dir}' if model_dir else ''} is not available yet"))
    return SimulatorChoice(oracle, "physiology engine oracle: the true counterfactual of this engine patient (one future per strategy)",
                           fixed_samples=1, last_hour=oracle.engine.config.hours)


@st.cache_resource(show_spinner=False, max_entries=4)
def load_simulator(path: str, version: float, model_dir: str | None) -> SimulatorChoice:
    """:func:`choose_simulator` for the cohort at ``path``, built once per cohort and model."""
    return choose_simulator(load_cohort(path, version), Path(model_dir) if model_dir else None)


def behaviour_training_cohort(cohort: Cohort) -> Cohort:
    """The stays the behaviour policy learns from: the train split when the cohort is split, else all."""
    if "split" in cohort.stays.columns and cohort.stays["split"].null_count() < cohort.stays.height:
        train = cohort.subset(split="train")
        if train.stays.height:
            return train
    return cohort


@st.cache_resource(show_spinner="Learning how patients like this one were treated (overlap guardrail) ...", max_entries=4)
def load_behaviour_policy(path: str, version: float) -> BehaviourPolicy | None:
    """The overlap guardrail's behaviour policy, fitted on the cohort's train split; None when the
    cohort has no recorded treatments (the what-if page then says the check is off)."""
    cohort = load_cohort(path, version)
    if not cohort.meta.get("treatments_recorded", False):
        return None
    config = BehaviourPolicyConfig(max_rows=BEHAVIOUR_MAX_ROWS)
    return BehaviourPolicy(config, catalog=cohort.catalog).fit(behaviour_training_cohort(cohort))
