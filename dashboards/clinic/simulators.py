"""Which simulators answer the dashboard's what-if questions, and the overlap guardrail they use.

:func:`choose_simulators` is the one place that decides. With a trained model, the coordinated twin
(:class:`organsim.counterfactual.TwinSimulator`: the nine organ agents, their reference-selection
policy and the error corrector, usual care from the cohort's behaviour policy) samples ``K``
futures per strategy. On a cohort from organsim's physiology engine, the engine's oracle
(:class:`organsim.counterfactual.EngineOracle`) re-runs the same patient under the strategy and
gives the true counterfactual, one future per strategy: the ground truth to hold the twin against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from clinic.records import load_cohort
from organsim.agents.training import split_as_trained
from organsim.counterfactual import (
    BehaviourPolicy,
    EngineOracle,
    Simulator,
    TwinSimulator,
    behaviour_policy_for,
)
from organsim.data import Cohort
from organsim.utils import DataError, OrgansimError


@dataclass(frozen=True)
class SimulatorChoice:
    """A simulator the what-if page can use, or why one is not available.

    Attributes
    ----------
    kind
        ``"twin"`` or ``"oracle"``.
    simulator
        The simulator; None when it cannot be used here (``reason`` says why).
    label
        What the page tells the clinician it is.
    fixed_samples
        Futures per strategy when the simulator fixes it (the oracle's one true future), else None.
    last_hour
        The last ICU hour the simulator can reach (the engine's simulated hours), else None.
    cohort
        The cohort as this simulator sees it (the twin's: split as the model was trained).
    behaviour
        The behaviour policy the simulator uses for usual care (the twin's), else None.
    reason
        Why ``simulator`` is None.
    """

    kind: str
    simulator: Simulator | None
    label: str
    fixed_samples: int | None = None
    last_hour: int | None = None
    cohort: Cohort | None = None
    behaviour: BehaviourPolicy | None = None
    reason: str | None = None

    def max_horizon(self, decision_hour: int, requested_limit: int) -> int:
        """The longest horizon (hours) from ``decision_hour``: ``requested_limit`` or what the
        simulator can reach, whichever is smaller."""
        if self.last_hour is None:
            return requested_limit
        return max(0, min(requested_limit, self.last_hour - decision_hour + 1))


def twin_choice(cohort: Cohort, model_dir: Path) -> SimulatorChoice:
    """The coordinated twin of ``model_dir`` on ``cohort``, or the reason it cannot be used."""
    label = f"coordinated twin ({model_dir}): sampled futures of the organ agents"
    try:
        loaded = TwinSimulator.load(model_dir, None, device="auto", catalog=cohort.catalog, overlap_adjustment=False)
        data = split_as_trained(cohort, loaded.twin.agents)
        behaviour = behaviour_policy_for(data)
    except (OrgansimError, OSError, ValueError, KeyError) as exc:
        return SimulatorChoice("twin", None, label, reason=f"the model in {model_dir} cannot be used on this cohort: {exc}")
    simulator = TwinSimulator(loaded.twin, behaviour, overlap_adjustment=behaviour is not None)
    references = "learned reference selection" if loaded.twin.coordinated else "every agent reads every system (no policy trained)"
    return SimulatorChoice("twin", simulator, f"{label}, {references}", cohort=data, behaviour=behaviour)


def oracle_choice(cohort: Cohort) -> SimulatorChoice:
    """The physiology engine's oracle on ``cohort``, or the reason it cannot be used."""
    label = "physiology engine oracle: the true counterfactual of this engine patient (one future per strategy)"
    try:
        oracle = EngineOracle.from_cohort(cohort)
    except DataError as exc:
        return SimulatorChoice("oracle", None, label, reason=f"this cohort is not from organsim's physiology engine ({exc})")
    return SimulatorChoice("oracle", oracle, label, fixed_samples=1, last_hour=oracle.engine.config.hours, cohort=cohort)


def choose_simulators(cohort: Cohort, model_dir: Path | None) -> list[SimulatorChoice]:
    """Every simulator for ``cohort``, the coordinated twin first (module docstring); unusable ones
    carry their reason."""
    choices = [twin_choice(cohort, model_dir)] if model_dir is not None else []
    return [*choices, oracle_choice(cohort)]


@st.cache_resource(show_spinner="Loading the simulators (organ agents, behaviour policy) ...", max_entries=4)
def load_simulators(path: str, version: float, model_dir: str | None) -> list[SimulatorChoice]:
    """:func:`choose_simulators` for the cohort at ``path``, built once per cohort and model."""
    return choose_simulators(load_cohort(path, version), Path(model_dir) if model_dir else None)


@st.cache_resource(show_spinner="Learning how patients like this one were treated (overlap guardrail) ...", max_entries=4)
def load_behaviour_policy(path: str, version: float) -> BehaviourPolicy | None:
    """The overlap guardrail's behaviour policy, fitted on the cohort's train split
    (:func:`organsim.counterfactual.behaviour_policy_for`); None when the cohort has no recorded
    treatments (the what-if page then says the check is off)."""
    return behaviour_policy_for(load_cohort(path, version))
