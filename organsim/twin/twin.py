"""PatientTwin: the nine organ agents simulating together, coordinated, hour by hour.

A rollout starts from the context of each problem of a :class:`~organsim.data.windows.ForecastBatch`
(real hours up to ``t``) and simulates hours ``t+1 .. t+horizon``. Every hour:

1. each agent gets the systems it consults this hour: a fixed setting (``"none"``, ``"all"``, an
   ``(S, S)`` matrix) or the learned reference-selection policy
   (:class:`~organsim.twin.policy.ReferencePolicy`, its most likely set, decided from the state
   summary of :mod:`organsim.twin.summary`);
2. all agents predict the next hour together, one incremental decoder step with the key/value
   cache (:class:`~organsim.agents.forecaster.AgentStepper`): the context is encoded once, then
   each hour costs one step. The reference set of the new hour may differ from earlier hours';
   cached hours keep the references they were encoded with (the context those of the first hour);
3. a value is drawn from each variable's predictive distribution (or its mean with ``mean=True``); the
   draws of the variables that are not fed back persist from hour to hour, and the draws of one
   hour are correlated across variables when a draw correlation is loaded (:class:`PersistentDraws`,
   :mod:`organsim.twin.draw_correlation`);
4. the error-correction agent (``correct=True``) checks the joint hour against physiological
   constraints: the outputs it flags are redrawn from the same distributions (up to
   ``max_resamples`` times), then what is still violated is projected; every change is recorded;
5. the treatments of the next hour are the batch's planned ones, or what ``treatment_policy``
   decides from what a bedside team would see of the simulated stay
   (:class:`~organsim.twin.bedside.BedsideRecord`);
6. the corrected hour is fed back as measured (the hourly-charted variables; labs keep their last
   real value, as in training) and the next hour is predicted.

Many problems and samples run in one batch (rows ``problems x samples``, in chunks of
``batch_size`` rows), on CPU or CUDA (bf16 autocast there). The same seed gives the same rollout.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch

from organsim.agents.checkpoint import TrainedAgents
from organsim.agents.distribution import BinnedDistribution
from organsim.agents.features import carry_forward
from organsim.agents.forecaster import AgentRuntime, AgentStepper, measured_length_chunks
from organsim.agents.model import REFERENCE_MODES
from organsim.catalog import Catalog, load_catalog
from organsim.data.windows import ForecastBatch
from organsim.twin.bedside import BedsideRecord, TreatmentDecider
from organsim.twin.calibration import BandCalibration, has_band_calibration
from organsim.twin.correction import ErrorCorrector
from organsim.twin.draw_correlation import DrawCorrelation, has_draw_correlation
from organsim.twin.policy import ReferencePolicy, has_reference_policy
from organsim.twin.realism import RealismCritic, has_realism_critic, stretch_features
from organsim.twin.summary import TREND_HOURS, state_summary

CORRECTION_COLUMNS = {
    "sample": pl.Int64,
    "problem": pl.Int64,
    "step": pl.Int64,
    "variable": pl.String,
    "rule": pl.String,
    "before": pl.Float64,
    "after": pl.Float64,
}
"""Schema of :attr:`Rollout.corrections`."""

RESAMPLED_RULE = "resampled"
"""The ``rule`` of a correction record where a flagged agent output was redrawn (before projection)."""


class Corrector(Protocol):
    """The error-correction agent as the twin calls it (:class:`organsim.twin.correction.ErrorCorrector`).

    Both methods take the previous hour and the new hour of ``n`` rows, ``(n, V)`` raw values in
    the order of ``variables``; flagged outputs are redrawn up to ``max_resamples`` times.
    """

    max_resamples: int

    def violating(self, values_prev: np.ndarray, values_new: np.ndarray, variables: Sequence[str]) -> np.ndarray:
        """``(n, V)`` bool: agent outputs that violate a constraint and should be redrawn."""
        ...

    def correct(
        self, values_prev: np.ndarray, values_new: np.ndarray, variables: Sequence[str]
    ) -> tuple[np.ndarray, list[dict[str, Any]], Mapping[str, int], Mapping[str, int]]:
        """``(corrected (n, V), records, violations_before, violations_after)``.

        ``records``: one dict per changed value (``row``, ``variable``, ``rule``, ``before``,
        ``after``); the violation dicts count violations per rule.
        """
        ...


ReferenceChooser = Callable[[int, np.ndarray], torch.Tensor]
"""``(step, summary (n, F)) -> (n, S, S)`` bool reference sets of simulated hour ``t + step + 1``."""


@dataclass(frozen=True)
class Rollout:
    """Simulated futures of B problems, ``n_samples`` each.

    Attributes
    ----------
    values
        ``(n_samples, B, horizon, V)`` float32 simulated hours ``t+1 .. t+horizon`` in raw catalog
        units, in :attr:`variables` (the batch's) order; variables the agents lack are NaN.
    treatments
        ``(n_samples, B, horizon, T)`` float32 treatments of those hours (planned, or decided by
        the treatment policy), in :attr:`treatment_codes` order. With ``hide_treatments`` the
        agents saw none, but these are still the hours' treatments.
    consulted
        ``(n_samples, B, horizon, S, S)`` bool: ``[.., s, r]`` agent ``s`` consulted system ``r``
        to predict that hour (the diagonal is False: an agent always reads its own system).
    corrections
        One row per value the error corrector changed: ``sample``, ``problem`` (index in the
        batch), ``step`` (the hour ``t + step``, 1-based), ``variable``, ``rule`` (a constraint,
        or ``"resampled"`` for a flagged output redrawn before projection), ``before``,
        ``after``.
    violations_before, violations_after
        Rule -> number of constraint violations (:data:`organsim.twin.constraints.RULES`; hard
        rules count values, the others hours) in the hours handed to the projection (after
        redrawing) and left after it, summed over every simulated hour; empty without correction.
    variables, treatment_codes, systems
        Codes of the last axes.
    stay_ids, start_hours
        ``(B,)`` the problems' stays and last context hours ``t``.
    draws
        ``(n_samples, B, V_model)`` float32 normal scores of the last simulated hour's draws
        (:attr:`PersistentDraws.score`, before any redraw of that hour), in the twin's variable
        order (:attr:`PatientTwin.variables`); pass them as ``draws`` to the next
        :meth:`PatientTwin.rollout` of the same rows to continue their draw processes (a lab keeps
        its quantile, a vital its serial correlation). None when the rollout was not made by a twin.
    """

    values: np.ndarray
    treatments: np.ndarray
    consulted: np.ndarray
    corrections: pl.DataFrame
    violations_before: dict[str, int]
    violations_after: dict[str, int]
    variables: tuple[str, ...]
    treatment_codes: tuple[str, ...]
    systems: tuple[str, ...]
    stay_ids: np.ndarray
    start_hours: np.ndarray
    draws: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return int(self.values.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.values.shape[2])


@dataclass
class SimulatedRows:
    """What :meth:`PatientTwin.simulate_rows` returns for ``n`` rows (model variable order).

    Attributes
    ----------
    values
        ``(n, horizon, V_model)`` float32 simulated (corrected) hours.
    treatments
        ``(n, horizon, T)`` float32 treatments of those hours (batch order).
    consulted
        ``(n, horizon, S, S)`` bool reference sets used (diagonal False).
    records
        Correction records with ``row`` and ``step`` (1-based).
    violations_before, violations_after
        Counts per rule.
    draws
        ``(n, V_model)`` float32 normal scores of the last hour's draws (:attr:`Rollout.draws`).
    """

    values: np.ndarray
    treatments: np.ndarray
    consulted: np.ndarray
    records: list[dict[str, Any]]
    violations_before: Counter
    violations_after: Counter
    draws: np.ndarray


class TwinForecaster:
    """The twin behind the :class:`~organsim.data.windows.Forecaster` protocol (the accuracy harness).

    ``predict`` rolls the twin out feeding back predictive means (one sample) with the given
    reference setting and correction.

    Parameters
    ----------
    twin
        The twin.
    references
        As in :meth:`PatientTwin.rollout`.
    correct
        Run the error corrector.
    name
        Forecaster name (default ``twin_<references>``).
    """

    def __init__(self, twin: PatientTwin, *, references: str | np.ndarray = "policy", correct: bool = True, name: str | None = None) -> None:
        twin.reference_chooser(references)  # checks the setting now
        self.twin = twin
        self.references = references
        self.correct = correct
        self.name = name or f"twin_{references if isinstance(references, str) else 'custom'}"

    def predict(self, batch: ForecastBatch, horizon: int) -> np.ndarray:
        """``(B, horizon, V)`` float32 free-running predictive means in raw units."""
        return self.twin.rollout(batch, horizon, references=self.references, correct=self.correct, mean=True).values[0]


DEFAULT_DRAW_PERSISTENCE = 1.0
"""Default hour-to-hour correlation of the draws of the variables that are not fed back."""


class PersistentDraws:
    """The uniform numbers each simulated hour's draws invert at, persistent over hours where asked.

    Labs are not fed back during a rollout (they keep their last real value, as in training), so
    nothing ties one hour's draw of an unmeasured lab to the next: independent draws make a path
    jump between the tails of its predictive distribution every hour, and scores that take the
    worst value of 24 hours (SOFA, APACHE II) read those tails. Here each variable's normal score
    follows an AR(1) process, ``z_h = rho z_{h-1} + sqrt(1 - rho^2) e_h``, and the uniform is
    ``Phi(z_h)``: every hour's draw still has the predictive distribution of that hour, but a
    sample that starts in the upper tail stays there, like a real patient's latent value.
    ``rho = 0`` gives independent draws. The vitals, which are fed back, get the serial
    correlation of their one-step forecast errors (:attr:`~organsim.twin.draw_correlation.DrawCorrelation.serial`,
    slightly negative: an hour drawn in the upper tail is followed by one drawn a little below
    the median, the reversion the forecasts miss).

    With a Cholesky factor ``L`` of a correlation matrix ``R`` (:class:`~organsim.twin.draw_correlation.DrawCorrelation`),
    the starting scores and the innovations ``e_h`` are ``randn @ L.T``: correlated across variables
    within an hour as ``R`` says, each still standard normal (``R`` has a unit diagonal), so every
    variable's draw keeps its predictive distribution and its ``rho``. Two variables with the same
    ``rho`` have score correlation ``R_ij`` at every hour; a persistent lab (``rho = 1``) and a vital
    (``rho = 0``) are correlated only at the first hour. Without ``L`` the random stream is the
    independent one, number for number.

    Parameters
    ----------
    persistence
        ``(V,)`` correlation ``rho`` of each variable, in ``[-1, 1]``.
    n
        Rows simulated together.
    generator
        The rollout's random generator.
    cholesky
        ``(V, V)`` lower-triangular factor of the within-hour correlation of the scores, on the
        device of ``persistence``; None draws the variables independently.
    previous
        ``(n, V)`` normal scores of the hour before the first one (the :attr:`score` a former
        rollout of the same rows ended with): the first hour then continues their AR(1) processes,
        ``z_1 = rho z_0 + sqrt(1 - rho^2) e_1``, instead of starting fresh ones; a NaN starts that
        row's variable fresh, at the hour's own score ``z_1 = e_1``, so a fresh variable keeps its
        within-hour correlation ``R`` with every other fresh one and ``sqrt(1 - rho^2) R`` with a
        continued one. None starts every process fresh.
    held
        ``(n, V)`` bool, with ``previous``: True where the former score is held, unchanged, for every
        hour (``rho = 1`` for that row's variable alone; the synthetic-cohort generator holds a lab's
        stay-level score until the lab is first charted, :mod:`organsim.synth.levels`). None holds none.
    redraw_key
        Integers that, with the hour and the round, seed each redraw round's own generator
        (:meth:`redraw`): the hourly draws then come from ``generator`` alone, one ``(n, V)`` block
        per hour whatever the error corrector flagged, so two rollouts of the same rows and seed
        under different treatments share the random numbers of every hour (common random numbers:
        their difference is the treatments', not the noise's). None draws redraws from
        ``generator`` too, as before.
    spread
        ``(V,)`` (or ``(n, V)``, one per row) positive factors ``s`` of a sampling temperature on the quantile scale: a
        variable's draw inverts its predictive distribution at ``Phi(s z + m)`` instead of
        ``Phi(z)``, so ``s < 1`` moves every hour's draw toward its predictive median (``s = 0``
        would give the median) and ``s > 1`` away from it. Only the uniform numbers change: the
        scores :attr:`score` (the state a next rollout continues), their AR(1) processes and their
        within-hour correlation are those without a spread, and so are the random numbers. None
        (the default) is ``s = 1`` everywhere, number for number.
    shift
        ``(V,)`` (or ``(n, V)``, one per row) finite shifts ``m`` of the scores, in standard deviations: ``m > 0`` draws every
        hour above its predictive median more often than below (at ``Phi(s z + m)``), a location
        knob on the same quantile scale. None (the default) is ``m = 0``, number for number.
    """

    def __init__(
        self, persistence: torch.Tensor, n: int, generator: torch.Generator, cholesky: torch.Tensor | None = None,
        previous: torch.Tensor | None = None, redraw_key: Sequence[int] | None = None, spread: torch.Tensor | None = None,
        shift: torch.Tensor | None = None, held: torch.Tensor | None = None,
    ) -> None:
        n_variables = len(persistence)
        if cholesky is not None and tuple(cholesky.shape) != (n_variables, n_variables):
            raise ValueError(f"the Cholesky factor must be ({n_variables}, {n_variables}), got {tuple(cholesky.shape)}")
        if previous is not None and tuple(previous.shape) != (n, n_variables):
            raise ValueError(f"the previous scores must be ({n}, {n_variables}), got {tuple(previous.shape)}")
        if previous is not None and bool(torch.isinf(previous).any()):
            raise ValueError("the previous scores must be finite (or NaN: start fresh)")
        if held is not None and (previous is None or tuple(held.shape) != (n, n_variables)
                                 or bool((held & torch.isnan(previous)).any())):
            raise ValueError(f"held must be ({n}, {n_variables}) bool, given with previous scores, and hold only finite ones")
        if spread is not None and (tuple(spread.shape) not in ((n_variables,), (n, n_variables)) or not bool((spread > 0).all())
                                   or not bool(torch.isfinite(spread).all())):
            raise ValueError(f"the spread must be ({n_variables},) or ({n}, {n_variables}) finite factors above 0, got {spread.tolist()}")
        if shift is not None and (tuple(shift.shape) not in ((n_variables,), (n, n_variables)) or not bool(torch.isfinite(shift).all())):
            raise ValueError(f"the shift must be ({n_variables},) or ({n}, {n_variables}) finite numbers, got {shift.tolist()}")
        self.persistence = persistence
        self.spread = None if spread is None else spread.to(device=persistence.device, dtype=persistence.dtype)
        self.shift = None if shift is None else shift.to(device=persistence.device, dtype=persistence.dtype)
        self.generator = generator
        self.cholesky = cholesky
        self.redraw_key = None if redraw_key is None else tuple(int(k) for k in redraw_key)
        self.hour = 0  # hours drawn so far (:meth:`next` calls)
        self._redraws = 0  # redraw rounds of the current hour
        self.innovation = torch.sqrt(1 - persistence**2)
        self.score = self._normal((n, n_variables))
        self.started = False
        self._fresh: torch.Tensor | None = None  # (n, V) bool: processes the first hour starts afresh among continued ones
        self.held = None if held is None else held.to(device=persistence.device, dtype=torch.bool)
        if previous is not None:
            previous = previous.to(device=persistence.device, dtype=persistence.dtype)
            self._fresh = torch.isnan(previous)
            self.score = torch.where(self._fresh, self.score, previous)
            self.started = True

    def _normal(self, shape: tuple[int, int], generator: torch.Generator | None = None) -> torch.Tensor:
        """``shape`` standard normal scores from ``generator`` (default :attr:`generator`), correlated
        across the last axis by :attr:`cholesky` when given."""
        noise = torch.randn(shape, generator=generator or self.generator, device=self.persistence.device)
        return noise if self.cholesky is None else noise @ self.cholesky.T

    def next(self) -> torch.Tensor:
        """``(n, V)`` uniform numbers of the next hour."""
        if self.started:
            previous_score = self.score
            innovation = self._normal(tuple(self.score.shape))
            self.score = self.persistence * self.score + self.innovation * innovation
            if self._fresh is not None:
                # not the AR(1) step of a fresh score: that is standard normal too, but two variables with
                # different rho would lose their within-hour correlation (rho_a = -0.2, rho_b = 1 gives -0.2 R)
                self.score = torch.where(self._fresh, innovation, self.score)
                self._fresh = None
            if self.held is not None:
                self.score = torch.where(self.held, previous_score, self.score)
        self.started = True
        self.hour += 1
        self._redraws = 0
        return self._uniform(self.score)

    def _uniform(self, scores: torch.Tensor) -> torch.Tensor:
        """``Phi(s z + m)``: the uniform numbers the draws invert at, of ``(n, V)`` normal scores ``z``
        (``s``: :attr:`spread`, 1 without one; ``m``: :attr:`shift`, 0 without one)."""
        scaled = scores if self.spread is None else self.spread * scores
        return torch.special.ndtr(scaled if self.shift is None else scaled + self.shift)

    def _redraw_generator(self) -> torch.Generator:
        """The generator of the current hour's next redraw round: :attr:`generator` without a
        :attr:`redraw_key`, else one seeded by (key, hour, round), so that the redraws of one hour
        leave the random numbers of every later hour as they were."""
        if self.redraw_key is None:
            return self.generator
        self._redraws += 1
        seed = int(np.random.SeedSequence([*self.redraw_key, self.hour, self._redraws]).generate_state(1, dtype=np.uint64)[0])
        return torch.Generator(device=self.persistence.device).manual_seed(seed)

    def redraw(self, scores: torch.Tensor, flagged: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform numbers for redrawing the ``flagged`` values of an hour whose normal scores are ``scores``.

        Random numbers come from the round's generator (see ``redraw_key``). Without a
        correlation: independent uniforms, ``torch.rand`` (the twin's redraws before draw
        correlations). With one: the flagged scores
        are drawn from their normal distribution given the kept scores of the same row,
        ``z_F | z_K ~ N(R_FK R_KK^-1 z_K, R_FF - R_FK R_KK^-1 R_KF)``, by conditioning a fresh draw
        ``w = randn @ L.T`` on them: ``z_F = w_F + R_FK R_KK^-1 (z_K - w_K)`` (one solve per
        pattern of flagged variables). A redrawn systolic pressure thus keeps its correlation with
        the diastolic and mean pressures and the heart rate of its hour, and a redraw of every
        variable of a row is a fresh draw of the hour. The persistent scores (:meth:`next`) are
        not changed: the redraw concerns this hour only.

        Parameters
        ----------
        scores
            ``(n, V)`` normal scores of the hour's current values (:attr:`score` after :meth:`next`,
            with earlier redraws applied), on the device of :attr:`persistence`.
        flagged
            ``(n, V)`` bool: the values to redraw.

        Returns
        -------
        uniform
            ``(n, V)`` uniform numbers (meaningful where ``flagged``; with :attr:`spread` or
            :attr:`shift`, ``Phi(s z + m)`` of the redrawn scores ``z``).
        scores
            ``(n, V)`` the hour's normal scores with the flagged ones redrawn (``scores`` unchanged
            without a correlation).
        """
        generator = self._redraw_generator()
        if self.cholesky is None:
            uniform = torch.rand(tuple(scores.shape), generator=generator, device=scores.device)
            if self.spread is not None or self.shift is not None:  # the redraw's score, scaled like the hourly ones
                uniform = self._uniform(torch.special.ndtri(uniform))
            return uniform, scores
        fresh = self._normal(tuple(scores.shape), generator)  # (n, V) ~ N(0, R) per row
        correlation = self.cholesky @ self.cholesky.T
        redrawn = scores.clone()
        patterns, rows_of = np.unique(np.asarray(flagged, dtype=bool), axis=0, return_inverse=True)
        for index, pattern in enumerate(patterns):
            if not pattern.any():
                continue
            rows = torch.as_tensor(np.flatnonzero(rows_of.reshape(-1) == index), device=scores.device)
            drawn = torch.as_tensor(pattern, device=scores.device)
            sample = fresh[rows]
            if not drawn.all():
                kept = ~drawn
                # (|K|, |F|) R_KK^-1 R_KF: the regression of the flagged scores on the kept ones
                weights = torch.linalg.solve(correlation[kept][:, kept], correlation[kept][:, drawn])
                sample[:, drawn] = sample[:, drawn] + (scores[rows][:, kept] - sample[:, kept]) @ weights
            redrawn[rows[:, None], torch.nonzero(drawn)[:, 0][None, :]] = sample[:, drawn]
        return self._uniform(redrawn), redrawn


class PatientTwin:
    """The coordinated twin: organ agents, a reference-selection policy and the error corrector.

    Parameters
    ----------
    agents
        Trained agents.
    policy
        The learned reference-selection policy, or None (``references="policy"`` then means ``"all"``).
    corrector
        The error-correction agent (its ``max_resamples`` bounds the redraws), or None
        (``correct=True`` then is a ValueError).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    batch_size
        Rows (problems x samples) simulated together.
    catalog
        Treatment defaults and ranges (default: :func:`load_catalog`).
    realism_critic
        The POLAR realism critic (:mod:`organsim.twin.realism`), or None.
    band_calibration
        The conformal calibration of its sampled bands (:mod:`organsim.twin.calibration`), or None.
    draw_correlation
        The correlation of one hour's draws across variables (:mod:`organsim.twin.draw_correlation`,
        over the agents' variables), or None: the variables of an hour are drawn independently.
    draw_persistence
        Hour-to-hour correlation, in ``[0, 1]``, of the normal scores of the draws of the variables
        that are not fed back (labs; :attr:`AgentRuntime.feedback`), see :class:`PersistentDraws`.
        0 draws every hour independently; 1 keeps each sample's quantile for the whole rollout.
        The variables fed back get the draw correlation's :attr:`~DrawCorrelation.serial`
        correlation (0 without a draw correlation).
    """

    def __init__(
        self,
        agents: TrainedAgents,
        *,
        policy: ReferencePolicy | None = None,
        corrector: Corrector | None = None,
        device: str = "auto",
        batch_size: int = 512,
        catalog: Catalog | None = None,
        realism_critic: RealismCritic | None = None,
        band_calibration: BandCalibration | None = None,
        draw_correlation: DrawCorrelation | None = None,
        draw_persistence: float = DEFAULT_DRAW_PERSISTENCE,
    ) -> None:
        if policy is not None and tuple(policy.config.systems) != tuple(agents.config.systems):
            raise ValueError(f"the reference policy's systems {policy.config.systems} differ from the agents' {agents.config.systems}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= draw_persistence <= 1:
            raise ValueError(f"draw_persistence must lie in [0, 1], got {draw_persistence}")
        if draw_correlation is not None and draw_correlation.variables != tuple(agents.config.variables):
            raise ValueError(f"the draw correlation's variables {draw_correlation.variables} differ from the agents' {agents.config.variables}")
        self.agents = agents
        self.runtime = AgentRuntime(agents, device=device)
        self.device = self.runtime.device
        self.policy = None if policy is None else policy.to(self.device).eval()
        self.corrector = corrector
        self.batch_size = batch_size
        self.catalog = catalog or load_catalog()
        self.realism_critic = realism_critic
        self.band_calibration = band_calibration
        self.draw_persistence = draw_persistence
        self.draw_correlation = draw_correlation
        # (V, V) lower Cholesky factor of the within-hour correlation of the draws' normal scores, or None (independent)
        self._draw_cholesky = None if draw_correlation is None else torch.tensor(draw_correlation.cholesky(), dtype=torch.float32,
                                                                                device=self.device)
        # (V,) hour-to-hour correlation of each variable's draws: persistent for the variables not fed back, the fitted
        # serial correlation of the one-step scores for those fed back
        serial = np.zeros(len(agents.config.variables)) if draw_correlation is None else draw_correlation.serial
        self._persistence = torch.tensor(np.where(self.runtime.feedback, serial, draw_persistence), dtype=torch.float32,
                                         device=self.device)
        self._treatment_defaults = {t.code: t.default for t in self.catalog.treatments}

    @classmethod
    def load(
        cls, model_dir: str | Path, *, device: str = "auto", corrector: Corrector | None = None, catalog: Catalog | None = None, **options: Any
    ) -> PatientTwin:
        """The twin of a model directory: the agents (``organsim train``), the reference policy and the
        realism critic when ``organsim coordinate`` saved them there, the band calibration and the
        draw correlation when ``organsim calibrate`` saved them, and the error corrector (default:
        built from the catalog).

        ``options`` go to the constructor (``batch_size``; ``draw_correlation`` replaces the saved one,
        None drawing independently).
        """
        agents = TrainedAgents.load(model_dir)
        policy = ReferencePolicy.load(model_dir) if has_reference_policy(model_dir) else None
        critic = RealismCritic.load(model_dir) if has_realism_critic(model_dir) else None
        calibration = BandCalibration.load(model_dir) if has_band_calibration(model_dir) else None
        if "draw_correlation" not in options:
            options["draw_correlation"] = DrawCorrelation.load(model_dir) if has_draw_correlation(model_dir) else None
        catalog = catalog or load_catalog()
        corrector = corrector or ErrorCorrector.from_catalog(catalog)
        return cls(agents, policy=policy, corrector=corrector, device=device, catalog=catalog, realism_critic=critic,
                   band_calibration=calibration, **options)

    # ------------------------------------------------------------------ description
    @property
    def variables(self) -> tuple[str, ...]:
        """The model's variable codes (the agents' outputs)."""
        return self.agents.config.variables

    @property
    def systems(self) -> tuple[str, ...]:
        """The organ systems, one agent each."""
        return self.agents.config.systems

    @property
    def serial_correlations(self) -> np.ndarray:
        """``(V_model,)`` float32 hour-to-hour correlation ``rho`` of each variable's draw scores in a
        rollout (:class:`PersistentDraws`): ``draw_persistence`` for the variables not fed back, the
        draw correlation's :attr:`~organsim.twin.draw_correlation.DrawCorrelation.serial` (or 0) for those fed back."""
        return self._persistence.cpu().numpy().copy()

    @property
    def coordinated(self) -> bool:
        """A learned reference-selection policy is loaded."""
        return self.policy is not None

    # ------------------------------------------------------------------ state summaries and realism
    def summarise(self, carried: np.ndarray, hours_since: np.ndarray, hours: np.ndarray) -> np.ndarray:
        """``(n, F)`` state summaries (:func:`~organsim.twin.summary.state_summary`) from model-order arrays."""
        config = self.agents.config
        return state_summary(
            carried, hours_since, hours, normaliser=self.agents.normaliser, variables=config.variables,
            variable_systems=config.variable_systems, systems=self.systems, since_cap_hours=config.since_cap_hours,
        )

    def context_summary(self, batch: ForecastBatch) -> np.ndarray:
        """``(B, F)`` state summary of each problem at its last context hour ``t``."""
        carried, hours_since = carry_forward(batch.values[:, :, self.runtime.model_columns(batch.variables)])
        return self.summarise(carried[:, -(TREND_HOURS + 1) :], hours_since[:, -1], batch.start_hours.astype(np.int64))

    def realism_inputs(self, batch: ForecastBatch, truth: np.ndarray, simulated: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The critic's ``(context, reference, real, simulated)`` of every (sample, problem), rows sample-major.

        Parameters
        ----------
        batch
            The problems (B >= 2: a problem's reference is the real stretch of the next one).
        truth
            ``(B, >= REALISM_HOURS, V_batch)`` the real hours after each context.
        simulated
            ``(n_samples, B, >= REALISM_HOURS, V_batch)`` the twin's simulation of them.
        """
        if self.realism_critic is None:
            raise ValueError("this twin has no realism critic: train one with `organsim coordinate --realism-weight`")
        if batch.size < 2:
            raise ValueError("the realism critic compares a problem with another one's real stretch: give at least two problems")
        hours = self.realism_critic.config.hours
        if truth.shape[1] < hours or simulated.shape[2] < hours:
            raise ValueError(f"the realism critic reads {hours}-hour stretches; got {truth.shape[1]} real and {simulated.shape[2]} simulated hours")
        codes = self.realism_critic.config.variables
        columns = [batch.variables.index(c) for c in codes]
        last, _ = carry_forward(batch.values[:, :, columns])
        last = last[:, -1]  # (B, V_f)
        real = truth[:, :hours, columns]
        observed = ~np.isnan(real)
        read = {"normaliser": self.agents.normaliser, "variables": codes}
        real_features = stretch_features(real, observed, last, **read)
        reference = np.roll(real_features, -1, axis=0)
        simulated_features = np.concatenate([stretch_features(s[:, :hours, columns], observed, last, **read) for s in simulated])
        n_samples = simulated.shape[0]
        context = np.tile(self.context_summary(batch), (n_samples, 1))
        return tuple(torch.from_numpy(x) for x in (context, np.tile(reference, (n_samples, 1)), np.tile(real_features, (n_samples, 1)), simulated_features))

    def realism_score(self, batch: ForecastBatch, truth: np.ndarray, rollout: Rollout) -> float:
        """How real the rollout's first :data:`~organsim.twin.realism.REALISM_HOURS` hours look to the critic.

        The mean over samples and problems of ``sigmoid(r(p, ref, simulated) - r(p, ref, real))``:
        0.5 = the critic cannot tell the simulations from the real stretches, near 0 = it always can.
        ``truth`` is ``(B, >= REALISM_HOURS, V)`` (:func:`~organsim.data.windows.forecast_targets`).
        """
        return self.realism_critic.score(*self.realism_inputs(batch, truth, rollout.values))

    # ------------------------------------------------------------------ rollouts
    def reference_chooser(self, references: str | np.ndarray) -> ReferenceChooser:
        """The per-hour reference sets of a setting: ``"policy"``, ``"none"``, ``"all"`` or an ``(S, S)`` bool array."""
        n_systems = len(self.systems)
        if isinstance(references, str):
            if references == "policy" and self.policy is not None:
                policy = self.policy

                def learned(step: int, summary: np.ndarray) -> torch.Tensor:
                    return policy.to_matrix(policy.decide(torch.from_numpy(summary).to(self.device)))

                return learned
            if references not in (*REFERENCE_MODES, "policy"):
                raise ValueError(f"references must be 'policy', {', '.join(map(repr, REFERENCE_MODES))} or an (S, S) bool array, got {references!r}")
            matrix = torch.full((n_systems, n_systems), references != "none", dtype=torch.bool)
        else:
            matrix = torch.as_tensor(np.asarray(references, dtype=bool))
            if matrix.shape != (n_systems, n_systems):
                raise ValueError(f"a reference matrix must be ({n_systems}, {n_systems}), got {tuple(matrix.shape)}")
        matrix = matrix & ~torch.eye(n_systems, dtype=torch.bool)
        fixed = matrix.to(self.device)
        return lambda step, summary: fixed.expand(summary.shape[0], -1, -1)

    def _draw_knob(self, name: str, knob: np.ndarray | None, rows: int | None = None) -> torch.Tensor | None:
        """A ``(V_model,)`` draw knob of :meth:`rollout` (or ``(rows, V_model)``, one per problem, where
        ``rows`` is given) as a float32 tensor on the twin's device, or None; a ValueError naming
        ``name`` for any other shape."""
        if knob is None:
            return None
        shapes = [(len(self.variables),)] + ([] if rows is None else [(rows, len(self.variables))])
        if np.shape(knob) not in shapes:
            allowed = " or ".join(["(V_model,)", *([] if rows is None else ["(B, V_model)"])])
            raise ValueError(f"{name} must be {allowed} = {' or '.join(map(str, shapes))}, got {np.shape(knob)}")
        return torch.as_tensor(np.asarray(knob, dtype=np.float32), device=self.device)

    @staticmethod
    def _knob_rows(knob: torch.Tensor | None, rows: np.ndarray) -> torch.Tensor | None:
        """A draw knob for the simulated ``rows`` (problem indices): as it is when ``(V_model,)``, its
        rows of the problems when ``(B, V_model)``."""
        return knob if knob is None or knob.ndim == 1 else knob[torch.as_tensor(rows, device=knob.device)]

    def rollout(
        self,
        batch: ForecastBatch,
        horizon: int,
        *,
        n_samples: int = 1,
        seed: int = 0,
        references: str | np.ndarray = "policy",
        treatment_policy: TreatmentDecider | None = None,
        correct: bool = True,
        hide_treatments: bool = False,
        mean: bool = False,
        use_cache: bool = True,
        draws: np.ndarray | None = None,
        draw_spread: np.ndarray | None = None,
        draw_serial: np.ndarray | None = None,
        draw_shift: np.ndarray | None = None,
        hold_draws: np.ndarray | None = None,
    ) -> Rollout:
        """Simulate ``horizon`` hours after each problem's context, ``n_samples`` times.

        Parameters
        ----------
        batch
            The problems (:func:`~organsim.data.windows.forecast_batch`); its planned treatments
            are used unless ``treatment_policy`` is given.
        horizon
            Hours to simulate (``batch.horizon >= horizon``).
        n_samples
            Futures per problem.
        seed
            The same seed gives the same rollout. Rollouts of the same batch with the same seed
            share their random numbers hour by hour, whatever treatments they simulate and however
            often the error corrector redraws (``redraw_key`` of :class:`PersistentDraws`): sample
            ``j`` of two treatment strategies is the same patient with the same noise, so their
            difference is the strategies' effect with less Monte Carlo error.
        references
            ``"policy"`` (the learned selection; ``"all"`` when none is loaded), ``"none"``,
            ``"all"``, or an ``(S, S)`` bool array (``[s, r]``: agent ``s`` consults system ``r``).
        treatment_policy
            ``(state: ObservedState, hour) -> {treatment code: (n,) array}``, deciding each
            simulated hour's treatments from the simulated state (see
            :mod:`organsim.twin.bedside`); None uses the batch's planned treatments.
        correct
            Run the error-correction agent after each simulated hour.
        hide_treatments
            Treatment-blind: the agents see default (no) treatments in the context and every
            simulated hour.
        mean
            Feed back predictive means instead of draws (point forecasts; flagged outputs are
            then projected without redrawing).
        use_cache
            Step with the key/value cache (default); False re-encodes the whole window every hour
            (slow: the reference the cache is checked against).
        draws
            ``(n_samples, B, V_model)`` normal scores a former rollout of the same problems and
            samples ended with (:attr:`Rollout.draws`): every row's draws continue its processes
            (:class:`PersistentDraws` ``previous``), so rolling out ``h1`` then ``h2`` hours keeps the
            persistence of one ``h1 + h2``-hour rollout; a NaN starts that process fresh. None (the
            default) starts every one fresh.
        draw_spread
            ``(V_model,)`` positive spread factors ``s`` of the draws, or ``(B, V_model)``, one per
            problem (the synthetic-cohort generator's volatility of each stay), in the twin's variable order
            (:attr:`variables`): each draw inverts its predictive distribution at ``Phi(s z)``, so
            ``s < 1`` narrows a variable's draws toward the predictive median on the quantile scale
            while keeping its serial and within-hour correlation (``spread`` of
            :class:`PersistentDraws`; the synthetic-cohort generator fits it,
            :mod:`organsim.synth.spread`). None (the default) draws with ``s = 1``, bit for bit as
            without the option; ignored with ``mean=True``.
        draw_serial
            ``(V_model,)`` hour-to-hour correlations ``rho`` in ``[-1, 1]`` of the draws' normal
            scores (:class:`PersistentDraws`), replacing the twin's own
            (:attr:`serial_correlations`) in this rollout. None (the default) uses the twin's.
        draw_shift
            ``(V_model,)`` shifts ``m`` of the draws' normal scores, or ``(B, V_model)``, one per
            problem (the synthetic-cohort generator's reversion to each stay's own level): each draw inverts at
            ``Phi(s z + m)`` (``shift`` of :class:`PersistentDraws`), so ``m > 0`` draws a variable
            above its predictive median more often (the synthetic-cohort generator fits it to the
            level a stay drifts to, :mod:`organsim.synth.spread`). None (the default) is ``m = 0``,
            bit for bit; ignored with ``mean=True``.
        hold_draws
            ``(n_samples, B, V_model)`` bool, with ``draws``: True where that score of ``draws`` is
            held, unchanged, for every hour of this rollout instead of following its AR(1) process
            (``held`` of :class:`PersistentDraws`; the synthetic-cohort generator holds the
            stay-level score of a lab it has not charted yet). None (the default) holds none.

        Returns
        -------
        Rollout
        """
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if correct and self.corrector is None:
            raise ValueError("this twin has no error corrector: give one to PatientTwin, or roll out with correct=False")
        chooser = self.reference_chooser(references)
        spread, shift = self._draw_knob("draw_spread", draw_spread, rows=batch.size), self._draw_knob("draw_shift", draw_shift, rows=batch.size)
        persistence = self._persistence
        if draw_serial is not None:
            if np.shape(draw_serial) != (len(self.variables),) or not np.all(np.abs(np.asarray(draw_serial)) <= 1):
                raise ValueError(f"draw_serial must be (V_model,) = ({len(self.variables)},) correlations in [-1, 1], "
                                 f"got {np.asarray(draw_serial).tolist()}")
            persistence = torch.as_tensor(np.asarray(draw_serial, dtype=np.float32), device=self.device)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        n_variables, n_systems = len(batch.variables), len(self.systems)
        expected = (n_samples, batch.size, len(self.variables))
        if draws is not None and tuple(np.shape(draws)) != expected:
            raise ValueError(f"draws must be (n_samples, B, V_model) = {expected}, got {tuple(np.shape(draws))}")
        if hold_draws is not None and (draws is None or tuple(np.shape(hold_draws)) != expected):
            raise ValueError(f"hold_draws must be (n_samples, B, V_model) = {expected} bool and come with draws")
        final_draws = np.empty(expected, dtype=np.float32)
        values = np.empty((n_samples, batch.size, horizon, n_variables), dtype=np.float32)
        treatments = np.empty((n_samples, batch.size, horizon, len(batch.treatment_codes)), dtype=np.float32)
        consulted = np.empty((n_samples, batch.size, horizon, n_systems, n_systems), dtype=bool)
        records: list[dict[str, Any]] = []
        before: Counter = Counter()
        after: Counter = Counter()
        for chunk, index in enumerate(measured_length_chunks(batch, max(1, self.batch_size // n_samples))):
            rows = np.repeat(index, n_samples)  # problem-major: row i * n_samples + j is sample j of problem index[i]
            previous = held = None
            if draws is not None:
                previous = torch.as_tensor(np.asarray(draws, dtype=np.float32)[:, index].transpose(1, 0, 2).reshape(len(rows), -1))
            if hold_draws is not None:
                held = torch.as_tensor(np.asarray(hold_draws, dtype=bool)[:, index].transpose(1, 0, 2).reshape(len(rows), -1))
            part = self.simulate_rows(
                batch.select(rows), horizon, chooser=chooser, generator=generator, mean=mean,
                treatment_policy=treatment_policy, correct=correct, hide_treatments=hide_treatments, use_cache=use_cache,
                previous_draws=previous, redraw_key=(seed, chunk), draw_persistence=persistence,
                draw_spread=self._knob_rows(spread, rows), draw_shift=self._knob_rows(shift, rows),
                held_draws=held,
            )
            shape = (len(index), n_samples, horizon)
            final_draws[:, index] = part.draws.reshape(len(index), n_samples, -1).transpose(1, 0, 2)
            values[:, index] = self.runtime.to_batch_layout(part.values, batch.variables).reshape(*shape, n_variables).transpose(1, 0, 2, 3)
            treatments[:, index] = part.treatments.reshape(*shape, -1).transpose(1, 0, 2, 3)
            consulted[:, index] = part.consulted.reshape(*shape, n_systems, n_systems).transpose(1, 0, 2, 3, 4)
            for record in part.records:
                row = int(record["row"])
                records.append({
                    "sample": row % n_samples, "problem": int(index[row // n_samples]), "step": int(record["step"]),
                    "variable": str(record["variable"]), "rule": str(record["rule"]),
                    "before": float(record["before"]), "after": float(record["after"]),
                })
            before.update(part.violations_before)
            after.update(part.violations_after)
        corrections = pl.DataFrame(records, schema=CORRECTION_COLUMNS).sort("sample", "problem", "step", "variable", "rule")
        return Rollout(
            values=values, treatments=treatments, consulted=consulted, corrections=corrections,
            violations_before=dict(before), violations_after=dict(after),
            variables=batch.variables, treatment_codes=batch.treatment_codes, systems=self.systems,
            stay_ids=batch.stay_ids, start_hours=batch.start_hours, draws=final_draws,
        )

    def simulate_rows(
        self,
        rows: ForecastBatch,
        horizon: int,
        *,
        chooser: ReferenceChooser,
        generator: torch.Generator,
        mean: bool = False,
        treatment_policy: TreatmentDecider | None = None,
        correct: bool = True,
        hide_treatments: bool = False,
        use_cache: bool = True,
        previous_draws: torch.Tensor | None = None,
        redraw_key: Sequence[int] | None = None,
        draw_spread: torch.Tensor | None = None,
        draw_persistence: torch.Tensor | None = None,
        draw_shift: torch.Tensor | None = None,
        held_draws: torch.Tensor | None = None,
    ) -> SimulatedRows:
        """The hour-by-hour loop of :meth:`rollout` over ``n`` rows simulated together (one future each).

        ``chooser(step, summary)`` gives the reference sets of each simulated hour from the
        ``(n, F)`` state summary (the training of the reference policy passes its own, which
        samples sets and records them). Values come back in model variable order.
        ``previous_draws`` ``(n, V_model)`` continues the rows' draw processes and ``redraw_key``
        seeds the error corrector's redraws apart from them, ``draw_spread`` and ``draw_shift``
        ``(V_model,)`` or ``(n, V_model)`` scale and shift the draws' normal scores
        (:class:`PersistentDraws` ``spread`` and ``shift``) and ``draw_persistence`` ``(V_model,)``
        replaces their hour-to-hour correlations (default: :attr:`serial_correlations`);
        ``held_draws`` ``(n, V_model)`` bool holds those of ``previous_draws`` for every hour
        (:class:`PersistentDraws` ``held``).
        """
        config = self.agents.config
        runtime = self.runtime
        stepper = AgentStepper(runtime, rows, horizon, use_cache=use_cache)
        n, n_systems = rows.size, len(self.systems)
        model_treatments = [rows.treatment_codes.index(c) for c in config.treatment_codes]
        columns = runtime.model_columns(rows.variables)
        if hide_treatments:
            stepper.treatments[:] = np.array([self._treatment_defaults[c] for c in config.treatment_codes], dtype=np.float32)
        plan = np.array(rows.treatments[:, rows.context_hours : rows.context_hours + horizon], dtype=np.float32)  # (n, H, T)
        record = BedsideRecord(rows, self.catalog) if treatment_policy is not None else None

        def decide(step: int) -> None:
            plan[:, step] = record.decide(treatment_policy)
            if not hide_treatments:
                stepper.set_treatments(step, plan[:, step, model_treatments])

        if record is not None:
            decide(0)
        carried, _ = carry_forward(stepper.values)
        recent = list(carried[:, -(TREND_HOURS + 1) :].transpose(1, 0, 2))  # last values of the latest hours, (n, V) each
        previous = stepper.state.values.copy()  # the last hour's values (carried), what the first hour is checked against
        values = np.empty((n, horizon, len(config.variables)), dtype=np.float32)
        persistence = self._persistence if draw_persistence is None else draw_persistence
        draws = PersistentDraws(persistence, n, generator, self._draw_cholesky, previous=previous_draws, redraw_key=redraw_key,
                                spread=draw_spread, shift=draw_shift, held=held_draws)
        consulted = np.empty((n, horizon, n_systems, n_systems), dtype=bool)
        records: list[dict[str, Any]] = []
        before: Counter = Counter()
        after: Counter = Counter()
        for step in range(horizon):
            summary = self.summarise(np.stack(recent[-(TREND_HOURS + 1) :], axis=1), stepper.state.hours_since, stepper.start_hours + step)
            references = chooser(step, summary)  # (n, S, S)
            consulted[:, step] = (references & ~torch.eye(n_systems, dtype=torch.bool, device=references.device)).cpu().numpy()
            dist = stepper.predict(references)
            hour = self._draw(dist, draws.next(), mean)
            if correct:
                hour, hour_records, hour_before, hour_after = self._correct(previous, hour, dist, draws, mean)
                records.extend({**r, "step": step + 1} for r in hour_records)
                before.update(hour_before)
                after.update(hour_after)
            values[:, step] = hour
            previous = hour
            if step + 1 == horizon:
                break
            if record is not None:
                measured = np.full((n, len(rows.variables)), np.nan)
                measured[:, columns] = np.where(runtime.feedback[None, :], hour, np.nan)
                record.append(measured, plan[:, step])
                decide(step + 1)
            stepper.feed(hour)
            recent.append(stepper.state.values)
        return SimulatedRows(values=values, treatments=plan, consulted=consulted, records=records, violations_before=before,
                             violations_after=after, draws=draws.score.float().cpu().numpy())

    @staticmethod
    def _draw(dist: BinnedDistribution, uniform: torch.Tensor, mean: bool) -> np.ndarray:
        """``(n, V)`` float32: the predictive means, or one draw per variable.

        A draw inverts each variable's cumulative distribution at the ``(n, V)`` uniform numbers
        (one ``searchsorted``; ``torch.multinomial`` over ``n * V`` rows costs far more per hour).
        """
        if mean:
            return dist.mean().float().cpu().numpy()
        cdf = dist.probs.cumsum(-1)  # (n, V, K)
        uniform = uniform.to(cdf.dtype)[..., None] * cdf[..., -1:]
        bins = torch.searchsorted(cdf, uniform, right=True).clamp_max(cdf.shape[-1] - 1)  # a bin with probability > 0
        return torch.gather(dist.centers.expand_as(cdf), -1, bins)[..., 0].float().cpu().numpy()

    def _correct(
        self, previous: np.ndarray, hour: np.ndarray, dist: BinnedDistribution, draws: PersistentDraws, mean: bool
    ) -> tuple[np.ndarray, list[dict[str, Any]], Mapping[str, int], Mapping[str, int]]:
        """Redraw flagged outputs (up to the corrector's ``max_resamples`` times; not for means), then project what is still violated.

        A redraw is correlated with the hour's kept values as its first draw was (:meth:`PersistentDraws.redraw`).
        """
        variables = self.variables
        records: list[dict[str, Any]] = []
        scores = draws.score  # (n, V) normal scores of the hour's values
        for _ in range(0 if mean else self.corrector.max_resamples):
            flagged = np.asarray(self.corrector.violating(previous, hour, variables), dtype=bool)
            if not flagged.any():
                break
            fresh, scores = draws.redraw(scores, flagged)
            redrawn = np.where(flagged, self._draw(dist, fresh, mean=False), hour)
            for row, column in zip(*np.nonzero(flagged & (redrawn != hour)), strict=True):
                records.append({"row": int(row), "variable": variables[column], "rule": RESAMPLED_RULE,
                                "before": float(hour[row, column]), "after": float(redrawn[row, column])})
            hour = redrawn
        corrected, projected, violations_before, violations_after = self.corrector.correct(previous, hour, variables)
        return np.asarray(corrected, dtype=np.float32), records + list(projected), violations_before, violations_after
