"""The forecast report of a trained model (``organsim evaluate``): the organ agents with references
none and all, the coordinated twin, and the baselines, scored on the same held-out problems.

:func:`evaluate_agents` fits the baselines on the train split, scores every forecaster with
:func:`~organsim.evaluate.accuracy.evaluate_forecasters` (per-system nMSE at 1, 6 and 24 hours, also
by SOFA stratum), writes metrics.json and trajectory plots, and, given a twin, the twin report of
:mod:`organsim.evaluate.twin_report` (constraint violations before and after correction, reference
choices, event chains of simulated against real held-out stays).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from organsim.agents.baselines import GRUForecaster, LastObservationForecaster, RidgeForecaster
from organsim.agents.checkpoint import TrainedAgents
from organsim.agents.forecaster import AgentForecaster
from organsim.agents.model import REFERENCE_MODES
from organsim.data import Cohort
from organsim.data.windows import Forecaster
from organsim.evaluate.accuracy import DEFAULT_HORIZONS, evaluate_forecasters, write_metrics
from organsim.evaluate.plots import plot_trajectories
from organsim.evaluate.twin_report import TwinForecaster, simulate_held_out, write_twin_report
from organsim.twin import PatientTwin
from organsim.utils.progress import progress_bar

BASELINES: tuple[str, ...] = ("locf", "ridge", "gru")
"""Baselines ``organsim evaluate`` can fit on the train split: last observation carried forward,
per-variable ridge regression on the context, a GRU forecaster."""

TWIN_NAME = "twin"
"""Name of the coordinated twin (learned references + error correction) in metrics.json."""

CHAIN_HORIZON = 24
"""Hours simulated per held-out stay for the event-chain comparison and the violation rates."""


def fit_baselines(
    names: Sequence[str], train: Cohort, validation: Cohort, *, context_hours: int, seed: int = 0, device: str = "auto"
) -> dict[str, Forecaster]:
    """Fit the named baselines (:data:`BASELINES`) on the train split (the GRU stops early on validation)."""
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; choose from {BASELINES}")
    fitted: dict[str, Forecaster] = {}
    with progress_bar(transient=True) as bar:
        task = bar.add_task("fitting baselines on the train split", total=len(names))
        for name in names:
            bar.update(task, description=f"fitting baseline {name} on the train split")
            if name == "locf":
                fitted[name] = LastObservationForecaster().fit(train)
            elif name == "ridge":
                fitted[name] = RidgeForecaster(context_hours=context_hours, seed=seed).fit(train)
            else:
                fitted[name] = GRUForecaster(seed=seed, device=device).fit(train, validation)
            bar.advance(task)
    return fitted


def evaluate_agents(
    agents: TrainedAgents,
    cohort: Cohort,
    out: Path,
    *,
    references: str = "all",
    baselines: Sequence[str] = BASELINES,
    per_stay: int | None = 16,
    device: str = "auto",
    seed: int = 0,
    twin: PatientTwin | None = None,
) -> tuple[dict[str, Any], list[Path]]:
    """Score agents (both reference settings), the twin and baselines on ``cohort``'s test split.

    Parameters
    ----------
    agents
        Trained agents.
    cohort
        The cohort, split as in training (:func:`organsim.agents.training.split_as_trained`).
    out
        Report directory: metrics.json (``agents_<references>`` as primary, the others under
        ``baselines``), trajectory plots, and with a twin twin.json, reference_choices.png and
        event_chains.parquet.
    references
        The primary agents' reference setting.
    baselines
        Names from :data:`BASELINES`, fitted on the train split (the GRU also uses the validation split).
    per_stay, device, seed
        Start hours per test stay and horizon, device, seed of start hours, baseline training and
        the twin's sampled futures.
    twin
        The coordinated twin of these agents (with an error corrector), scored as ``"twin"``
        (learned references, correction on); None leaves it out.

    Returns
    -------
    results, written
        :func:`~organsim.evaluate.accuracy.evaluate_forecasters` output (plus ``"twin"``: the
        twin.json document, when a twin was given) and the files written.
    """
    train_part, validation_part, test_part = (cohort.subset(split=s) for s in ("train", "validation", "test"))
    if test_part.stays.height == 0:
        raise ValueError("the cohort has no test stays to score")
    if references not in REFERENCE_MODES:
        raise ValueError(f"references must be one of {REFERENCE_MODES}, got {references!r}")
    context_hours = agents.config.context_hours
    primary = f"agents_{references}"
    forecasters: dict[str, Forecaster] = {primary: AgentForecaster(agents, references=references, device=device)}
    for mode in REFERENCE_MODES:
        forecasters.setdefault(f"agents_{mode}", AgentForecaster(agents, references=mode, device=device))
    twin_forecaster = TwinForecaster(twin) if twin is not None else None
    if twin_forecaster is not None:
        forecasters[TWIN_NAME] = twin_forecaster
    forecasters.update(fit_baselines(baselines, train_part, validation_part, context_hours=context_hours, seed=seed, device=device))
    results = evaluate_forecasters(
        forecasters, test_part, agents.normaliser, horizons=DEFAULT_HORIZONS, context_hours=context_hours,
        per_stay=per_stay, seed=seed, progress=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    written = [write_metrics(out / "metrics.json", primary, results)]
    if twin_forecaster is not None:
        simulations = simulate_held_out(twin, test_part, horizon=_chain_horizon(test_part), seed=seed)
        document, files = write_twin_report(out, twin_forecaster, simulations, test_part,
                                            settings={"horizon": simulations.corrected.horizon, "seed": seed})
        results["twin"] = document
        written += files
    shown = {name: f for name, f in forecasters.items() if name in (primary, TWIN_NAME, *baselines)}
    written += write_plots(shown, test_part, out, context_hours, seed)
    return results, written


def _chain_horizon(test: Cohort, min_context: int = 3) -> int:
    """:data:`CHAIN_HORIZON`, or less when no test stay is long enough."""
    longest = int(test.stays["n_hours"].max())
    return max(1, min(CHAIN_HORIZON, longest - min_context))


def write_plots(forecasters: dict[str, Forecaster], test: Cohort, out: Path, context_hours: int, seed: int) -> list[Path]:
    """Per-system trajectory plots (observed vs each forecaster's free-running forecast) of a few test stays.

    The horizon is 24 hours, or less when no test stay is long enough.
    """
    min_context = 3
    longest = int(test.stays["n_hours"].max())
    horizon = min(24, longest - min_context)
    if horizon < 1:
        return []
    return plot_trajectories(forecasters, test, out, horizon=horizon, context_hours=context_hours, min_context=min_context, seed=seed)
