"""What the coordinated twin adds to the forecast report: its corrections, its reference choices, and
whether its simulated stays have the critical events the real ones had.

- :class:`TwinForecaster` puts a :class:`~organsim.twin.PatientTwin` behind the Forecaster protocol
  (point forecasts: predictive means fed back, the error corrector on, the learned references), so
  the accuracy harness scores it beside the agents and the baselines; it tallies which systems each
  agent consulted in every simulated hour it produced.
- :func:`simulate_held_out` samples one future per held-out stay, from a seeded start hour, twice
  with the same seed: with the error corrector and without it. :func:`constraint_violations`
  counts the rule violations of both (:mod:`organsim.twin.constraints`) per simulated hour, and
  :func:`event_chain_comparison` compares the critical events of the corrected futures with the
  real stays' (:func:`organsim.scores.compare_event_chains`: events present in both, order
  preserved, onset-time and trigger-value differences).
- :func:`realism` scores the corrected futures with the POLAR realism critic saved with the model
  (:meth:`~organsim.twin.PatientTwin.realism_score`; 0.5 = indistinguishable from real).
- :func:`reference_frequencies` and :func:`plot_reference_choices` give the ``S x S`` matrix of how
  often agent ``s`` consulted system ``r``, as numbers and as a heat map.

:func:`write_twin_report` writes all of it (twin.json, reference_choices.png, event_chains.parquet).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib.figure import Figure
from rich.table import Table

from organsim.data.cohort import Cohort
from organsim.data.windows import ForecastBatch, HourlyArrays
from organsim.scores import compare_event_chains, critical_events
from organsim.twin import PatientTwin, Rollout
from organsim.twin.constraints import HARD_RULES, RULES, ConstraintSet
from organsim.utils.io import atomic_write_bytes, atomic_write_text

TWIN_REPORT = "twin.json"
REFERENCE_HEATMAP = "reference_choices.png"
EVENT_CHAINS = "event_chains.parquet"


class TwinForecaster:
    """The coordinated twin as a point forecaster, counting the reference sets it used.

    Parameters
    ----------
    twin
        The twin (with an error corrector when ``correct``).
    references
        Its reference setting (``"policy"``: the learned selection, ``"all"`` without one).
    correct
        Run the error corrector after each simulated hour.

    Attributes
    ----------
    consulted_hours_ : np.ndarray
        ``(S, S)`` int64: simulated hours in which agent ``s`` consulted system ``r``, over every
        :meth:`predict` call so far.
    simulated_hours_ : int
        Simulated hours (problems x hours) those counts are out of.
    """

    def __init__(self, twin: PatientTwin, *, references: str = "policy", correct: bool = True) -> None:
        self.twin = twin
        self.references = references
        self.correct = correct
        n_systems = len(twin.systems)
        self.consulted_hours_ = np.zeros((n_systems, n_systems), dtype=np.int64)
        self.simulated_hours_ = 0

    def predict(self, batch: ForecastBatch, horizon: int) -> np.ndarray:
        """``(B, horizon, V)`` float32 predictive means in raw units, fed back and corrected hour by hour."""
        rollout = self.twin.rollout(batch, horizon, n_samples=1, references=self.references, correct=self.correct, mean=True)
        self.consulted_hours_ += rollout.consulted.sum(axis=(0, 1, 2))
        self.simulated_hours_ += rollout.n_samples * batch.size * horizon
        return rollout.values[0]


def reference_frequencies(consulted_hours: np.ndarray, simulated_hours: int, systems: tuple[str, ...]) -> dict[str, Any]:
    """The reference choices as a JSON-ready document.

    Parameters
    ----------
    consulted_hours
        ``(S, S)`` counts: hours in which agent ``s`` (row) consulted system ``r`` (column).
    simulated_hours
        Hours the counts are out of.
    systems
        The ``S`` system codes.

    Returns
    -------
    dict
        ``{"systems", "simulated_hours", "share": S x S list (row = agent, column = consulted
        system, share of hours), "mean_consulted": per agent, mean number of systems consulted}``.
    """
    share = consulted_hours / simulated_hours if simulated_hours else np.zeros(consulted_hours.shape)
    return {
        "systems": list(systems),
        "simulated_hours": int(simulated_hours),
        "share": [[round(float(x), 6) for x in row] for row in share],
        "mean_consulted": {s: round(float(share[i].sum()), 6) for i, s in enumerate(systems)},
    }


def plot_reference_choices(frequencies: dict[str, Any], *, title: str) -> Figure:
    """Heat map of :func:`reference_frequencies`: rows are agents, columns the systems they consulted."""
    systems = frequencies["systems"]
    share = np.asarray(frequencies["share"], dtype=float)
    figure = Figure(figsize=(7.5, 6.2), layout="constrained")
    ax = figure.subplots()
    own = np.eye(len(systems), dtype=bool)  # an agent always reads its own system: left blank
    image = ax.imshow(np.ma.masked_where(own, share), vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(systems)), systems, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(systems)), systems, fontsize=8)
    ax.set_xlabel("system consulted")
    ax.set_ylabel("agent")
    for i in range(len(systems)):
        for j in range(len(systems)):
            ax.text(j, i, "-" if i == j else f"{share[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if share[i, j] < 0.5 else "black")
    figure.colorbar(image, ax=ax, label="share of simulated hours")
    ax.set_title(title, fontsize=10)
    return figure


@dataclass(frozen=True)
class HeldOutSimulations:
    """One sampled future per held-out stay, with and without the error corrector (same seed).

    Attributes
    ----------
    batch
        The problems: one seeded start hour ``t`` per stay long enough for the horizon.
    corrected, uncorrected
        The two rollouts (``n_samples = 1``).
    previous
        ``(B, V)`` the last context hour's values, each variable carried forward from its last
        measurement in the context (NaN when the context never measured it): what the first
        simulated hour is checked against.
    truth
        ``(B, H, V)`` the real hours ``t+1 .. t+H`` (NaN = not measured).
    """

    batch: ForecastBatch
    corrected: Rollout
    uncorrected: Rollout
    previous: np.ndarray
    truth: np.ndarray


def last_observed(values: np.ndarray) -> np.ndarray:
    """``(B, C, V)`` -> ``(B, V)``: each variable's last non-NaN value over the context (NaN if none)."""
    finite = ~np.isnan(values)
    last = values.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1)  # (B, V) index of the last finite hour
    picked = np.take_along_axis(values, last[:, None, :], axis=1)[:, 0]
    return np.where(finite.any(axis=1), picked, np.nan)


def simulate_held_out(
    twin: PatientTwin,
    test: Cohort,
    *,
    horizon: int = 24,
    min_context: int = 3,
    references: str = "policy",
    seed: int = 0,
) -> HeldOutSimulations:
    """Sample one future of ``horizon`` hours per held-out stay, with and without correction.

    The context is as long as the agents read before a ``horizon``-hour rollout (their
    ``context_hours``, shortened so context and rollout fit the trained ``window_hours``, as
    :class:`~organsim.agents.forecaster.AgentStepper` does), so the first simulated hour is checked
    against the same carried-forward values the twin's corrector saw.

    Parameters
    ----------
    twin
        The twin, with an error corrector.
    test
        The held-out cohort.
    horizon, min_context
        Hours simulated, fewest stay hours in the context.
    references
        The twin's reference setting.
    seed
        Seed of the start hours and of the sampling (both rollouts share it).

    Returns
    -------
    HeldOutSimulations

    Raises
    ------
    ValueError
        When no stay is long enough for ``min_context + horizon`` hours.
    """
    arrays = HourlyArrays.from_cohort(test)
    starts = arrays.starts(horizon=horizon, per_stay=1, min_context=min_context, seed=seed)
    if starts.height == 0:
        raise ValueError(f"no held-out stay is long enough for {min_context} context hours and a {horizon}-hour horizon")
    config = twin.agents.config
    context_hours = max(1, min(config.context_hours, config.window_hours - horizon + 1))
    batch = arrays.batch(starts, context_hours=context_hours, horizon=horizon)
    runs = {
        correct: twin.rollout(batch, horizon, n_samples=1, seed=seed, references=references, correct=correct)
        for correct in (True, False)
    }
    return HeldOutSimulations(batch=batch, corrected=runs[True], uncorrected=runs[False], previous=last_observed(batch.values),
                              truth=arrays.targets(starts, horizon=horizon))


def constraint_violations(simulations: HeldOutSimulations, constraints: ConstraintSet) -> dict[str, Any]:
    """Rule violations per simulated hour of the sampled futures, without and with the corrector.

    Each simulated hour is checked against the hour before it (the first against the context's
    last values carried forward), with :meth:`ConstraintSet.violations` counting values for the
    range and rate rules and hours for the others.

    Returns
    -------
    dict
        ``{"simulated_hours", "uncorrected": {rule: per hour}, "corrected": {rule: per hour},
        "hard_per_hour": {"uncorrected", "corrected"}, "corrections": {rule: values changed
        (``"resampled"``: redrawn by their agent)}}``; per-hour figures are counts / simulated hours.
    """
    batch = simulations.batch
    columns = [batch.variables.index(code) for code in constraints.variables]
    hours = simulations.corrected.values.shape[0] * batch.size * simulations.corrected.horizon
    out: dict[str, Any] = {"simulated_hours": int(hours)}
    for name, rollout in (("uncorrected", simulations.uncorrected), ("corrected", simulations.corrected)):
        path = rollout.values[0][:, :, columns]  # (B, H, V)
        previous = np.concatenate([simulations.previous[:, None, columns], path[:, :-1]], axis=1)
        counts = constraints.count(previous.reshape(-1, len(columns)), path.reshape(-1, len(columns)))
        out[name] = {rule: counts[rule] / hours for rule in RULES}
    out["hard_per_hour"] = {name: sum(out[name][rule] for rule in HARD_RULES) for name in ("uncorrected", "corrected")}
    out["corrections"] = dict(Counter(simulations.corrected.corrections["rule"].to_list()))
    return out


def realism(twin: PatientTwin, simulations: HeldOutSimulations) -> dict[str, Any]:
    """The realism score of the corrected sampled futures (:meth:`PatientTwin.realism_score`).

    Returns
    -------
    dict
        ``{"score": 0.5 = the POLAR critic cannot tell simulated from real stretches, near 0 = it
        always can, "hours", "problems"}``; ``score`` is None, with the ``reason``, when the model
        has no critic or there are too few problems (< 2) or hours to score.
    """
    critic = twin.realism_critic
    if critic is None:
        return {"score": None, "reason": "no realism critic saved with the model (organsim coordinate --realism-weight trains one)"}
    batch, horizon = simulations.batch, simulations.corrected.horizon
    if batch.size < 2 or horizon < critic.config.hours:
        return {"score": None, "reason": f"the critic compares {critic.config.hours}-hour stretches of two or more problems; "
                                         f"got {batch.size} problems of {horizon} hours"}
    score = twin.realism_score(batch, simulations.truth, simulations.corrected)
    return {"score": float(score), "hours": critic.config.hours, "problems": int(batch.size)}


def event_chain_comparison(simulations: HeldOutSimulations, test: Cohort) -> tuple[dict[str, Any], pl.DataFrame]:
    """Critical events of the corrected simulated futures against the real stays' over the same hours.

    Both trajectories share the stay's real hours up to ``t`` (so carried values and KDIGO baselines
    agree); only episodes with onset after ``t`` are compared.

    Returns
    -------
    summary, stays
        :attr:`organsim.scores.EventChainComparison.summary` and its per-stay chains.
    """
    batch = simulations.batch
    horizon = simulations.corrected.horizon
    starts = pl.DataFrame({"stay_id": batch.stay_ids.astype(np.int64), "t": batch.start_hours.astype(np.int64)})
    history = (
        test.hourly.with_columns(pl.col("stay_id").cast(pl.Int64))
        .join(starts, on="stay_id")
        .filter(pl.col("hour") <= pl.col("t") + horizon)
    )
    offsets = np.arange(1, horizon + 1)
    future = pl.DataFrame({
        "stay_id": np.repeat(batch.stay_ids.astype(np.int64), horizon),
        "hour": (batch.start_hours.astype(np.int64)[:, None] + offsets[None, :]).ravel(),
        **{code: simulations.corrected.values[0][:, :, i].ravel() for i, code in enumerate(batch.variables)},
    }).fill_nan(None)  # NaN = not simulated: null, as in a cohort
    real = history.drop("t")
    simulated = pl.concat(
        [history.filter(pl.col("hour") <= pl.col("t")).drop("t"), future.select(real.columns).cast(real.schema)]
    ).sort("stay_id", "hour")

    def after_start(events: pl.DataFrame) -> pl.DataFrame:
        return events.join(starts, on="stay_id").filter(pl.col("onset_hour") > pl.col("t")).drop("t")

    catalog = test.catalog
    comparison = compare_event_chains(
        after_start(critical_events(real, catalog=catalog)),
        after_start(critical_events(simulated, catalog=catalog)),
        stay_ids=batch.stay_ids.tolist(),
    )
    return comparison.summary, comparison.stays


def write_twin_report(
    out: Path,
    forecaster: TwinForecaster,
    simulations: HeldOutSimulations,
    test: Cohort,
    *,
    settings: dict[str, Any],
) -> tuple[dict[str, Any], list[Path]]:
    """Write twin.json, the reference heat map and the per-stay event chains into ``out``.

    Parameters
    ----------
    out
        Report directory (exists).
    forecaster
        The twin forecaster the accuracy harness used (its reference tallies are reported).
    simulations
        :func:`simulate_held_out` output.
    test
        The held-out cohort.
    settings
        Extra settings recorded in twin.json (horizon, seed, ...).

    Returns
    -------
    document, written
        The twin.json content and the files written.
    """
    twin = forecaster.twin
    frequencies = reference_frequencies(forecaster.consulted_hours_, forecaster.simulated_hours_, twin.systems)
    constraints = ConstraintSet.from_catalog(test.catalog, [v for v in simulations.batch.variables if v in twin.variables])
    chains, stays = event_chain_comparison(simulations, test)
    document = {
        "coordinated": twin.coordinated,
        "references": forecaster.references,
        "settings": {**settings, "held_out_stays": int(simulations.batch.size)},
        "constraint_violations": constraint_violations(simulations, constraints),
        "reference_choices": frequencies,
        "realism": realism(twin, simulations),
        "event_chains": chains,
    }
    described = "learned reference policy" if twin.coordinated else "no reference policy saved: all references"
    figure = plot_reference_choices(frequencies, title=f"systems each agent consulted ({described})")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    written = [
        atomic_write_text(out / TWIN_REPORT, json.dumps(document, indent=2, allow_nan=False) + "\n"),
        atomic_write_bytes(out / REFERENCE_HEATMAP, buffer.getvalue()),
    ]
    parquet = io.BytesIO()
    stays.write_parquet(parquet)
    written.append(atomic_write_bytes(out / EVENT_CHAINS, parquet.getvalue()))
    return document, written


def twin_summary(document: dict[str, Any]) -> Table:
    """A rich table of twin.json: violations per simulated hour without / with correction, and the event chains."""
    violations = document["constraint_violations"]
    chains = document["event_chains"]
    described = "learned references" if document["coordinated"] else "no reference policy saved: all references"
    table = Table(title=f"coordinated twin ({described}): {violations['simulated_hours']:,} sampled hours of "
                        f"{document['settings']['held_out_stays']:,} held-out stays")
    table.add_column("constraint")
    table.add_column("kind")
    table.add_column("per hour, uncorrected", justify="right")
    table.add_column("per hour, corrected", justify="right")
    for rule in RULES:
        table.add_row(rule, "hard" if rule in HARD_RULES else "band",
                      f"{violations['uncorrected'][rule]:.4f}", f"{violations['corrected'][rule]:.4f}")

    def figure(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    occurrence, onset, order = chains["occurrence"], chains["onset_difference_hours"], chains["order"]
    score = document["realism"]["score"]
    table.caption = (
        f"realism score {figure(score, '.3f')} (0.5: indistinguishable from real); event chains vs real: F1 {figure(occurrence['f1'], '.2f')} (precision {figure(occurrence['precision'], '.2f')}, "
        f"recall {figure(occurrence['recall'], '.2f')}); onset |difference| {figure(onset['mean_absolute'], '.1f')} h; "
        f"order preserved in {figure(order['fraction_order_preserved'], '.0%')} of "
        f"{order['n_stays_with_two_shared_events']} stays with two shared events"
    )
    return table
