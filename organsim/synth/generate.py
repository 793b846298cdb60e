"""Synthetic cohorts: new stays drawn from generative models, rolled forward by the coordinated twin.

A synthetic stay is made in four steps (:meth:`CohortSynthesizer.generate`):

1. its statics, length, sepsis status and the values of its first ``initial_hours`` hours are drawn
   from the :class:`~organsim.synth.initial.InitialStateModel` (a Gaussian copula fitted on the
   training cohort's train split), conditioned on the sepsis status; its charting style is drawn
   and the :class:`~organsim.synth.observation.ObservationModel` charts those first hours as it
   charts the rest (the copula's own measured indicators kept each variable's share but split
   panels, and ignored the style: on PhysioNet 2019 a stay that charts any of FiO2, pH and PaCO2
   in its first two hours charts all three in 84 % of the training stays, 25 % of the copula's draws,
   75 % now; and 6 % of the stays charted FiO2 in their first hours with a style that never
   charts it again);
2. the twin (anything with :class:`Simulator`'s ``rollout``, i.e. :class:`organsim.twin.PatientTwin`)
   rolls the stay forward from those hours in segments of ``segment_hours`` (default 1), each
   segment reading the last ``context_hours`` charted hours; where the training cohort records
   treatments, a behaviour policy fitted on it (:class:`organsim.twin.behaviour.BehaviourPolicy`)
   decides every simulated hour's treatments from the simulated state;
3. values the twin puts outside the catalog's plausible ranges are clipped onto them (counted in
   :attr:`SynthesisResult.values_clipped`; a loader would null them), each hour's SBP, DBP and MAP
   are made consistent with one another as they are in the training hours
   (:class:`~organsim.synth.consistency.PressureConsistency`; the first hours too), then the
   :class:`~organsim.synth.observation.ObservationModel` charts the simulated hours (a value
   the care team would not have measured becomes null), and the next segment reads only what was
   charted, as the twin learned from charted records;
4. labels are read off the charted physiology (:mod:`organsim.synth.labels`): Sepsis-3 onset, the
   PhysioNet-style hourly SepsisLabel, critical events. Where the training cohort has no treatments
   (its onsets come from labels, as PhysioNet's do), a septic stay then ends the drawn
   ``onset_to_end`` hours after its onset, as the training stays do (the challenge cut its stays
   a few hours after onset): the onset read off can come up to 6 h before the drawn suspicion
   hour, and without the cut those stays would carry that many more labelled hours than real ones.

The septic share: ``round(septic_fraction * patients)`` stays are drawn as septic, the rest as not.
A stay's final label is what step 4 reads, so a stay drawn as septic whose physiology does not meet
Sepsis-3 is not septic (and, where antibiotics are simulated, a stay drawn as not septic can be).
Stays are generated in rounds: each round draws candidates for what is still missing of each
label (septic candidates over-drawn by the inverse of the acceptance seen so far), keeps the
candidates whose final label is still wanted, in the order drawn, until both shares are full or
``max_rounds`` is reached (then the cohort is smaller, and :class:`SynthesisResult` says so).

The draws of the variables the twin feeds back (the vital signs) continue from one segment to the
next: a twin's rollout returns the normal scores of the last hour's draws
(:attr:`organsim.twin.Rollout.draws`), the generator keeps those of the fed-back variables per stay
and hands them to the stay's next rollout call, so the vitals keep their serial correlation across
segments as within one rollout (a simulator whose rollouts return no ``draws`` is called without
them). The other variables (labs, temperature) start fresh draws every call: within one rollout
they keep their quantile because they are not fed back, but here each charted value becomes the
next segment's context, and a kept quantile then ratchets (a draw above the median of a
distribution centred near the last value, every hour): on PhysioNet 2019 (4,200 stays) keeping
them halved temperature's median per-stay hour-to-hour change (0.10 degC, real 0.17) and raised
the detection AUROC from 0.967 to 0.991 (top features temperature_last, glucose_last).
A lab the stay has not charted yet is the exception: its score is the stay's level, drawn once per
stay from the copula of the training stays' first charted labs given the labs its first hours
chart (:mod:`organsim.synth.levels`), and held (``hold_draws``) until the lab is first charted, so
the levels of a stay's labs are correlated as real stays' are.

The twin's free-running draws vary too much within a stay (the one-step distributions are too
wide once it feeds back its own hours). With ``spread_pilot_stays > 0`` the generator first fits a
draw spread and shift per vital sign and frequently charted lab (glucose on PhysioNet), and a serial
correlation per fed-back vital, to the train split's median per-stay SD, mean absolute hourly
change and drift (stay mean minus first value), and for the labs charted less often (potassium,
creatinine, ...) one serial correlation of their draws from one charted value to the next, to their
step ratio (how far their charted values wander), by short pilot generations (:mod:`organsim.synth.spread`,
:meth:`CohortSynthesizer.fit_draw_spread`) and rolls every stay out with them; the fitted knobs and
what the pilots measured are in :attr:`SynthesisResult.draw_spread`. The spread variables the twin
does not feed back (glucose and temperature on PhysioNet) also get a reversion toward the stay's
own mean (``draw_reversion``: each hour's draw shifted by ``-kappa (x - mean) / sigma`` on the score
scale), ``kappa`` fitted by a first pilot to how fast real values return to their stay's level.

While the stays are simulated, the drift control (``drift_control``, :mod:`organsim.synth.drift`)
steers each batch of stays drawn as not septic along the course of the training stays that were
not: after every hour, the batch's mean gap between each stay's target (the mean change from the
first charted value of training stays of its length and first-value band at that hour) and its own
change, in units of the variable's typical change, leans the next hour's draws of the stays of that
first-value band (a shift of their scores). Septic stays run their own course, the one that tells
of sepsis. With the control, the pilots fit no constant shift.

With ``screen_pool > 1`` the rounds generate that many times the stays asked for, of each label,
and the realism screen (:mod:`organsim.synth.screening`) keeps the asked number of each: the stays a
classifier of the train split's stays against this pool finds most real-looking are kept most
often (discriminator rejection sampling). The kept stays are renumbered ``1 .. N`` in the order
generated; :attr:`SynthesisResult.screen` records the pool and the classifier's AUROC.

Determinism: every random draw comes from a generator seeded by (seed, round, batch, segment), so
the same models, seed and settings give the same cohort, whatever else runs on the machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import polars as pl

from organsim.catalog import Catalog
from organsim.data import Cohort
from organsim.data.windows import ForecastBatch
from organsim.physiology import ObservedState
from organsim.synth.consistency import PRESSURES, PressureConsistency
from organsim.synth.dequantize import BinSpreader, sorted_training_changes, sorted_training_values
from organsim.synth.drift import GAIN, MAX_CORRECTION, DriftProfile
from organsim.synth.initial import InitialStateModel
from organsim.synth.labels import event_counts, sepsis_onsets
from organsim.synth.levels import StayLevels
from organsim.synth.observation import ObservationModel, ObservationState
from organsim.synth.screening import RealismScreen
from organsim.synth.spread import (
    CHARTED_SHARE,
    MIN_STAYS,
    STATISTICS,
    DrawSpread,
    charted_steps,
    charted_variables,
    fit_draw_spread,
    reversion_kappa,
    reversion_slopes,
    spread_variables,
    stay_variability,
    volatility_correlation,
)
from organsim.twin.behaviour import BehaviourPolicy, BehaviourPolicyConfig

SOURCE = "synthetic"
TreatmentPolicy = Callable[[ObservedState, int], dict[str, np.ndarray]]
ProgressCallback = Callable[[int, int], None]
MAX_REVERSION_SHIFT = 1.0
"""Largest reversion shift (``draw_reversion``), in standard deviations of a draw's score."""
DRIFT_MIN_STAYS = 10
"""Stays of a batch's level band with a charted value of a steered variable for the drift control to
read its course (else that band does not lean)."""
PILOT_ROUND = 10_000
"""The round index that keys the pilot generations' random numbers (apart from the cohort's rounds)."""


class RolloutResult(Protocol):
    """What the generator reads of a rollout (:class:`organsim.twin.Rollout`); also its ``draws``
    ``(n_samples, B, V_model)`` where it has them."""

    values: np.ndarray
    treatments: np.ndarray


class Simulator(Protocol):
    """A twin that rolls forecast problems forward (:class:`organsim.twin.PatientTwin`)."""

    def rollout(
        self,
        batch: ForecastBatch,
        horizon: int,
        *,
        n_samples: int = 1,
        seed: int = 0,
        treatment_policy: TreatmentPolicy | None = None,
    ) -> RolloutResult:
        """``values`` ``(n_samples, B, horizon, V_batch)`` and ``treatments`` ``(n_samples, B, horizon, T)``.

        A simulator whose results carry ``draws`` also takes ``draws=`` (the former call's, the
        rows of this batch) to continue each row's draw processes.
        """
        ...


@dataclass(frozen=True)
class SynthesisConfig:
    """Settings of one synthetic cohort.

    Attributes
    ----------
    patients
        Stays to generate.
    max_hours
        Longest stay in hours; each stay's length is drawn from the training stays' lengths and
        cut here.
    seed
        Seed of every draw.
    septic_fraction
        Share of septic stays; None keeps the training cohort's share.
    segment_hours
        Hours simulated per rollout call. Within a call the twin feeds back only the variables it
        treats as charted every hour (the vital signs), so a lab or temperature drawn in one hour
        is forgotten in the next; with 1 (the default) every hour is simulated from the charted
        record so far, as the twin was trained. On PhysioNet 2019 (300 stays) 24-hour segments
        gave temperature a median hour-to-hour change of 0.50 degC against 0.17 in the real stays,
        1-hour segments 0.18, at about twice the run time.
    context_hours
        Charted hours a segment reads; ``context_hours + segment_hours`` must fit the twin's
        trained window.
    batch_size
        Stays per rollout call.
    max_rounds
        Most generation rounds (module docstring).
    spread_pilot_stays
        Stays per pilot generation of the draw-spread fit (:meth:`CohortSynthesizer.fit_draw_spread`),
        at most a quarter of ``patients`` (and at least :data:`~organsim.synth.spread.MIN_STAYS`);
        0 (the default) fits none and draws as the twin does, unless ``draw_spread`` is given;
        ``organsim synthesize`` fits with 256 (its ``--spread-pilot-stays``).
    spread_pilot_hours
        Longest pilot stay in hours (at most ``max_hours``).
    spread_newton_steps
        Newton steps of the fit after the pilots that measure the knobs' effects (the reversion's,
        where there is one to fit, and four more), each step measured by one more pilot.
    draw_spread, draw_serial, draw_shift
        Fitted knobs to use instead of fitting them (:attr:`~organsim.synth.spread.DrawSpread.spread`,
        :attr:`~organsim.synth.spread.DrawSpread.serial`, :attr:`~organsim.synth.spread.DrawSpread.shift`:
        variable -> ``s``; fed-back variable -> ``rho`` from hour to hour, lab -> ``rho`` from one
        charted value to the next; variable -> ``m``;
        :meth:`~organsim.synth.spread.DrawSpread.config_knobs`),
        e.g. fitted once for every shard of a sharded generation; None: fit or draw as the twin does.
    draw_reversion
        Variable -> ``kappa`` >= 0: each hour's draw of the variable is shifted toward the stay's own
        level, by ``-kappa (x - mean) / sigma`` standard deviations of its score, with ``x`` its last
        charted value, ``mean`` the mean of its charted values so far and ``sigma`` the root mean
        square of the training changes between its consecutive charted values (a reversion the
        twin's free-running draws lack: :meth:`CohortSynthesizer.fit_draw_spread` measures it).
        None: no reversion.
    screen_pool
        Stays generated per stay kept, >= 1: with more than 1 the generator makes that many times the
        stays asked for (of each sepsis status) and keeps those a classifier finds hardest to tell
        from the training stays (:mod:`organsim.synth.screening`); 1 (the default) keeps every stay.
    volatility
        Standard deviation ``tau`` >= 0 of each stay's volatility on the log scale: every stay draws one
        factor ``exp(tau u)``, ``u`` standard normal, that multiplies the draw spread of the variables
        the twin feeds back (the vital signs), so some stays run smoother and some more volatile
        than the twin's own draws. Its median is 1, so the fitted spreads keep their meaning. Alone
        it blurs how a real stay's volatility goes with its level; with a screen
        (``screen_pool``) the widened pool gives the screen smoother and more volatile stays to
        choose from: on PhysioNet 2019, 0.25 took detection against the held-out stays from 0.706 to
        0.692 at pool 8 (``bench/results/synthesize_physionet.json``) and gained nothing at pool 3.
        0 (the default): every stay draws at the same spread.
    """

    patients: int
    max_hours: int
    seed: int = 0
    septic_fraction: float | None = None
    segment_hours: int = 1
    context_hours: int = 48
    batch_size: int = 512
    max_rounds: int = 6
    spread_pilot_stays: int = 0
    spread_pilot_hours: int = 48
    spread_newton_steps: int = 1
    draw_spread: dict[str, float] | None = None
    draw_serial: dict[str, float] | None = None
    draw_shift: dict[str, float] | None = None
    draw_reversion: dict[str, float] | None = None
    drift_control: float = GAIN
    screen_pool: float = 1.0
    volatility: float = 0.0

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise ValueError(f"patients must be >= 1, got {self.patients}")
        if self.max_hours < 2:
            raise ValueError(f"max_hours must be >= 2 (a first hour and one simulated hour), got {self.max_hours}")
        if self.septic_fraction is not None and not 0 <= self.septic_fraction <= 1:
            raise ValueError(f"septic_fraction must lie in [0, 1], got {self.septic_fraction}")
        if self.segment_hours < 1 or self.context_hours < 1 or self.batch_size < 1 or self.max_rounds < 1:
            raise ValueError("segment_hours, context_hours, batch_size and max_rounds must be >= 1")
        if self.spread_pilot_stays < 0:
            raise ValueError(f"spread_pilot_stays must be >= 0 (0: no draw-spread fit), got {self.spread_pilot_stays}")
        if self.spread_pilot_hours < 2 or self.spread_newton_steps < 1:
            raise ValueError(f"spread_pilot_hours must be >= 2 and spread_newton_steps >= 1, got "
                             f"{self.spread_pilot_hours} and {self.spread_newton_steps}")
        if self.draw_spread is not None and not all(0 < s < float("inf") for s in self.draw_spread.values()):
            raise ValueError(f"every draw_spread factor must be a finite number above 0, got {self.draw_spread}")
        if self.draw_serial is not None and not all(-1 <= r <= 1 for r in self.draw_serial.values()):
            raise ValueError(f"every draw_serial correlation must lie in [-1, 1], got {self.draw_serial}")
        if self.draw_shift is not None and not all(np.isfinite(m) for m in self.draw_shift.values()):
            raise ValueError(f"every draw_shift must be a finite number, got {self.draw_shift}")
        if self.draw_reversion is not None and not all(np.isfinite(k) and k >= 0 for k in self.draw_reversion.values()):
            raise ValueError(f"every draw_reversion must be a finite number >= 0, got {self.draw_reversion}")
        if not (np.isfinite(self.drift_control) and self.drift_control >= 0):
            raise ValueError(f"drift_control must be a finite number >= 0 (0: none), got {self.drift_control}")
        if not (np.isfinite(self.screen_pool) and self.screen_pool >= 1):
            raise ValueError(f"screen_pool must be a finite number >= 1 (1: no screen), got {self.screen_pool}")
        if not (np.isfinite(self.volatility) and self.volatility >= 0):
            raise ValueError(f"volatility must be a finite number >= 0 (0: none), got {self.volatility}")

    @property
    def given_knobs(self) -> bool:
        """True when the config carries fitted draw knobs (``draw_spread`` and the like) to use as they are."""
        return any(k is not None for k in (self.draw_spread, self.draw_serial, self.draw_shift, self.draw_reversion))

    @property
    def pilot_stays(self) -> int:
        """Stays per pilot generation: ``spread_pilot_stays``, at most a quarter of ``patients``, at least
        :data:`~organsim.synth.spread.MIN_STAYS` (0 when no fit is asked for)."""
        if self.spread_pilot_stays == 0:
            return 0
        return min(self.spread_pilot_stays, max(MIN_STAYS, -(-self.patients // 4)))


@dataclass
class SynthesisResult:
    """A generated cohort and how it was made.

    Attributes
    ----------
    cohort
        The synthetic cohort (source ``"synthetic"``; provenance records the settings).
    septic_target
        Septic stays asked for.
    candidates
        Stays simulated, by the sepsis status they were drawn with (``septic``, ``not_septic``).
    accepted
        Of those, the ones whose read-off label matched their draw.
    rounds
        Generation rounds run.
    events
        Critical-event episodes per event code in the cohort.
    values_clipped
        Simulated values (all candidates, before charting) clipped onto the catalog's plausible range.
    draw_spread
        The draw knobs the stays were rolled out with, or None (the twin's own): ``spread`` (variable ->
        ``s``), ``serial`` (fed-back variable -> ``rho``), with a fit also its targets and pilots
        (:meth:`~organsim.synth.spread.DrawSpread.summary`), and ``cohort_ratios``: per fitted
        variable the cohort's median per-stay SD and mean absolute change over the train split's
        (whole stays).
    screen
        The realism screen's record (:meth:`~organsim.synth.screening.RealismScreen.select`), or None
        when every generated stay was kept.
    """

    cohort: Cohort
    septic_target: int
    candidates: dict[str, int] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)
    rounds: int = 0
    events: dict[str, int] = field(default_factory=dict)
    values_clipped: int = 0
    draw_spread: dict[str, Any] | None = None
    screen: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        stays = self.cohort.stays
        return {
            "stays": stays.height,
            "hours": self.cohort.hourly.height,
            "septic_stays": int(stays["sepsis"].sum()),
            "septic_target": self.septic_target,
            "candidates": self.candidates,
            "accepted": self.accepted,
            "rounds": self.rounds,
            "events": self.events,
            "values_clipped": self.values_clipped,
            "draw_spread": self.draw_spread,
            "screen": self.screen,
        }


def _generator(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


def _knob_keywords(spread: np.ndarray, serial: np.ndarray, shift: np.ndarray, charted: np.ndarray) -> dict[str, np.ndarray]:
    """The ``knobs`` of :meth:`CohortSynthesizer._simulate_batch` from ``(V_model,)`` knob vectors (``s``,
    ``rho``, ``m``) and ``charted`` (bool: labs whose scores continue from one charted value to the
    next): a shift and ``charted`` only where some variable has one, so knobs without them roll out
    number for number as before they existed."""
    knobs = {"draw_spread": spread, "draw_serial": serial}
    if np.any(shift != 0):
        knobs["draw_shift"] = shift
    if np.any(charted):
        knobs["charted_serial"] = charted
    return knobs


def _seed(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def _first_charted(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``(n, len(columns))`` float64: each stay's earliest charted value of each of ``columns`` among the
    hours of ``values`` ``(n, hours, V)`` (NaN: none charted)."""
    first = np.full((len(values), len(columns)), np.nan)
    for hour in reversed(range(values.shape[1])):  # the earliest charted hour's value wins
        charted = values[:, hour, columns]
        first = np.where(np.isfinite(charted), charted, first)
    return first


def _drift_correction(
    profile: DriftProfile, last: np.ndarray, active: np.ndarray, hour: int, first: np.ndarray, bands: np.ndarray,
    sigma: np.ndarray, gain: float,
) -> np.ndarray:
    """A batch's ``(levels, Vd)`` shift correction after its hour ``hour`` (from each stay's first row),
    whose last charted values of the steered variables (``profile``'s) are ``last`` ``(a, Vd)`` for
    the ``active`` stays (NaN: none yet): per level band of the first value, ``gain`` times the mean
    over its stays of (target - (last - first)) / ``sigma``, within
    :data:`~organsim.synth.drift.MAX_CORRECTION`; 0 where fewer than :data:`DRIFT_MIN_STAYS` stays
    have a value (no reading, no lean: a kept lean would add up hour after hour). ``first`` ``(n, Vd)``
    is updated in place where a stay has charted a variable for the first time; ``bands`` ``(n,)`` are
    the stays' length bands."""
    first[active] = np.where(np.isnan(first[active]), last, first[active])
    levels = profile.level_of(first[active])
    gap = profile.target(bands[active], levels, hour) - (last - first[active])  # (a, Vd)
    counted = np.isfinite(gap)
    correction = np.zeros((profile.level_edges.shape[0] - 1, len(profile.variables)))
    for level in range(correction.shape[0]):
        rows = counted & (levels == level)
        total, count = np.where(rows, gap, 0.0).sum(axis=0), rows.sum(axis=0)
        correction[level] = np.where(count >= DRIFT_MIN_STAYS, np.clip(gain * total / np.maximum(count, 1) / sigma,
                                                                       -MAX_CORRECTION, MAX_CORRECTION), 0.0)
    return correction


PLANNED_ONSET = (pl.col("first_hour") + pl.col("n_hours") - 1 - pl.col("onset_to_end")).alias("hour")
"""The ICU hour a drawn septic stay's sepsis comes on, as drawn: its last hour less its
``onset_to_end``. It is the suspicion hour its label is read around (:mod:`organsim.synth.labels`)
and the onset its charting leads up to (:class:`~organsim.synth.observation.ObservationState`)."""


def _planned_onsets(drawn: pl.DataFrame) -> np.ndarray:
    """``(n,)`` each drawn stay's :data:`PLANNED_ONSET`, NaN for a stay drawn as not septic."""
    return drawn.select(pl.when(pl.col("sepsis")).then(PLANNED_ONSET).cast(pl.Float64)).to_series().fill_null(np.nan).to_numpy()


@dataclass
class _Simulated:
    """Simulated stays before labelling (temporary ids ``0 .. n-1`` of the candidate frame)."""

    candidates: pl.DataFrame
    hourly: pl.DataFrame
    treatments: pl.DataFrame | None
    clipped: int


@dataclass
class CohortSynthesizer:
    """The generative models of a synthetic cohort, fitted on a training cohort's train split.

    Build with :meth:`fit`; make cohorts with :meth:`generate`.

    Attributes
    ----------
    initial
        Statics, length, sepsis and first hours (:class:`InitialStateModel`).
    observation
        Which simulated values are charted (:class:`ObservationModel`).
    behaviour
        Treatment policy fitted on the training cohort, or None when it records no treatments.
    pressure
        MAP-SBP-DBP consistency learned from the training cohort, or None when the catalog lacks
        one of the three.
    training_values, training_changes
        Per variable, the sorted measured training values and changes between consecutive
        measurements (the twin's bins are spread over them, :class:`~organsim.synth.dequantize.BinSpreader`).
    catalog
        The catalog of the training cohort.
    training
        Where the models were fitted (source, stays, septic share), for provenance.
    spread_targets
        The train split's ``stay_id``, ``hour`` and the variables whose draw spread can be fitted (the
        catalog's vital signs and variables charted in at least
        :data:`~organsim.synth.spread.CHARTED_SHARE` of the training hours), the targets of the
        draw-spread fit; None: no fit.
    levels
        The correlated levels a stay's labs are first charted at (:mod:`organsim.synth.levels`), or
        None: a lab not charted yet is drawn afresh every hour.
    """

    initial: InitialStateModel
    observation: ObservationModel
    behaviour: BehaviourPolicy | None
    catalog: Catalog
    pressure: PressureConsistency | None = None
    training_values: dict[str, np.ndarray] = field(default_factory=dict)
    training_changes: dict[str, np.ndarray] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    spread_targets: pl.DataFrame | None = None
    levels: StayLevels | None = None
    drift: DriftProfile | None = None
    screen: RealismScreen | None = None

    @property
    def treatments_recorded(self) -> bool:
        return self.behaviour is not None

    @classmethod
    def fit(cls, train: Cohort, *, initial_hours: int = 2, seed: int = 0) -> CohortSynthesizer:
        """Fit every model on ``train`` (the train split of the twin's training cohort).

        ``initial_hours`` is how many first hours the copula draws before the twin takes over.
        """
        variables = train.catalog.variable_codes
        initial = InitialStateModel(variables=variables, initial_hours=initial_hours).fit(train)
        observation = ObservationModel.for_catalog(variables, train.catalog).fit(train)
        pressure = PressureConsistency.for_variables(variables)
        if pressure is not None:
            pressure.fit(train)
        behaviour = None
        if train.meta.get("treatments_recorded") and train.treatments.height:
            behaviour = BehaviourPolicy(BehaviourPolicyConfig(seed=seed), catalog=train.catalog).fit(train)
        training = {
            "source": train.meta.get("source"),
            "stays": train.stays.height,
            "septic_fraction": initial.septic_fraction_,
            "treatments_recorded": behaviour is not None,
            "initial_hours": initial_hours,
        }
        charted_share = dict(zip(observation.variables, observation.rate_, strict=True))
        targets = [v for v in variables if train.catalog.variable(v).kind == "vital" or charted_share[v] >= CHARTED_SHARE]
        return cls(initial=initial, observation=observation, behaviour=behaviour, catalog=train.catalog, pressure=pressure,
                   training_values=sorted_training_values(train, variables),
                   training_changes=sorted_training_changes(train, variables), training=training,
                   spread_targets=train.hourly.select("stay_id", "hour", *targets),
                   levels=StayLevels.fit(train),
                   drift=DriftProfile.fit(train.hourly, train.stays.filter(~pl.col("sepsis")).select("stay_id", "n_hours"), targets),
                   screen=RealismScreen.fit(train))

    # ------------------------------------------------------------------ simulation
    def _simulate_batch(
        self, simulator: Simulator, drawn: pl.DataFrame, config: SynthesisConfig, keys: tuple[int, ...],
        spreader: BinSpreader | None, knobs: dict[str, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Roll one batch of drawn stays forward: ``(n, L, V)`` charted values, ``(n, L, T)`` treatments
        and the number of simulated values clipped onto the plausible ranges.

        ``knobs``: the rollout keywords ``draw_spread``, ``draw_serial`` and ``draw_shift`` when fitted
        (else empty), and ``charted_serial`` ``(V_model,)`` bool: labs whose draws continue, at their
        ``draw_serial`` correlation, the score of the stay's last charted value (instead of a fresh
        draw every call), so one charted potassium is followed by one drawn on the other side of its
        predictive median more often than not, as the real values revert to a stay's own level.

        ``L`` is the longest stay of the batch; hours past a stay's end are NaN / defaults.
        """
        catalog = self.catalog
        variables = catalog.variable_codes
        treatment_codes = catalog.treatment_codes
        static_codes = tuple(s.code for s in catalog.statics)
        plausible = np.array([catalog.variable(v).plausible for v in variables], dtype=np.float32)  # (V, 2)
        clipped = 0
        n = drawn.height
        first_hour = drawn["first_hour"].to_numpy().astype(np.int64)
        n_hours = drawn["n_hours"].to_numpy().astype(np.int64)
        length = int(n_hours.max())
        k = self.initial.initial_hours
        rng = _generator(*keys)
        values = np.full((n, length, len(variables)), np.nan, dtype=np.float32)
        initial = self.initial.initial_values(drawn)  # (n, k, V)
        pressure_residuals = self.pressure.start(n, rng) if self.pressure else None
        for hour in range(k):
            if self.pressure:
                initial[:, hour], pressure_residuals = self.pressure.apply(initial[:, hour], pressure_residuals, rng)
        hours = first_hour[:, None] + np.arange(length)[None, :]  # (n, L) ICU hours
        observed = ObservationState.opening(
            self.observation.draw_styles(n, rng, drawn["sepsis"].to_numpy(), n_hours=n_hours), first_hour, _planned_onsets(drawn))
        values[:, :k] = self.observation.mask(initial, hours[:, :k], observed, rng)  # drawn hours, charted as the rest
        defaults = np.array([catalog.treatment(c).default for c in treatment_codes], dtype=np.float32)
        treatments = np.tile(defaults, (n, length, 1))
        static = drawn.select([pl.col(c).cast(pl.Float32) for c in static_codes]).to_numpy().astype(np.float32)
        draw_scores: np.ndarray | None = None  # (n, V_model) last draws' normal scores per stay, once the twin returns them
        fed_back = self._fed_back(simulator)  # (V_model,) bool: the twin's variables whose draws continue
        rollout_knobs = dict(knobs)
        charted_serial = rollout_knobs.pop("charted_serial", None)  # (V_model,) bool
        stay_spread = self._stay_spread(simulator, rollout_knobs.get("draw_spread"), config.volatility, n, keys)  # (n, V_model)
        model_columns = None if charted_serial is None else np.array(
            [catalog.variable_codes.index(v) for v in simulator.agents.config.variables])  # catalog column of each model variable
        levels = self._stay_levels(simulator, values[:, :k], rng)
        if levels is not None:  # every stay's lab levels, held in its draws until the lab is charted
            level_model, level_catalog, level_scores = levels
            uncharted = ~np.isfinite(values[:, :k, level_catalog]).any(axis=1)  # (n, L)
            draw_scores = np.full((n, len(fed_back)), np.nan, dtype=np.float32)
        reversion = self._reversion(simulator, config)
        if reversion is not None:  # the charted values' sum and count so far, per stay and reverting variable
            reverting_catalog, reverting_model, rates = reversion
            charted_sum = np.nansum(values[:, :k, reverting_catalog], axis=1)
            charted_count = np.isfinite(values[:, :k, reverting_catalog]).sum(axis=1)
        drift = self._drift_control(simulator, config)
        if drift is not None:  # each stay's band and first charted values; the batch's correction of the shift
            drift_catalog, drift_model, profile, drift_sigma = drift
            steered = ~drawn["sepsis"].to_numpy().astype(bool)  # septic stays run their own course (the one that tells of sepsis)
            bands = profile.band_of(n_hours)
            drift_first = _first_charted(values[:, :k], drift_catalog)
            correction = np.zeros((profile.level_edges.shape[0] - 1, len(drift_catalog)))  # per level band and variable
        if reversion is not None or drift is not None:
            base_shift = rollout_knobs.get("draw_shift", np.zeros(len(simulator.agents.config.variables), dtype=np.float32))
        done = k
        segment = 0
        while done < length:
            active = np.flatnonzero(n_hours > done)
            horizon = int(min(config.segment_hours, n_hours[active].max() - done))
            context = min(config.context_hours, done)
            batch = ForecastBatch(
                stay_ids=active.astype(np.int64),
                start_hours=(first_hour[active] + done - 1).astype(np.int32),
                values=values[active, done - context : done],
                treatments=treatments[active, done - context : done + horizon],
                static=static[active],
                variables=variables,
                treatment_codes=treatment_codes,
                static_codes=static_codes,
            )
            policy = self.behaviour.treatment_policy(seed=_seed(*keys, segment, 1)) if self.behaviour else None
            continued = {} if draw_scores is None else {"draws": draw_scores[active][None]}
            if levels is not None:
                scores, held = draw_scores[active], np.zeros((len(active), len(fed_back)), dtype=bool)
                held[:, level_model] = uncharted[active]
                scores[:, level_model] = np.where(uncharted[active], level_scores[active], scores[:, level_model])
                continued = {"draws": scores[None], "hold_draws": held[None]}
            if stay_spread is not None:
                continued["draw_spread"] = stay_spread[active]
            if reversion is not None or drift is not None:
                shift = np.tile(np.asarray(base_shift, dtype=np.float32), (len(active), 1))
                if reversion is not None:
                    deviation = observed.last_value[active][:, reverting_catalog] - charted_sum[active] / np.maximum(charted_count[active], 1)
                    deviation = np.where((charted_count[active] >= 2) & np.isfinite(deviation), deviation, 0.0)
                    shift[:, reverting_model] += np.clip(-rates * deviation, -MAX_REVERSION_SHIFT, MAX_REVERSION_SHIFT)
                if drift is not None:  # a steered stay's correction is its level band's, once it has charted the variable
                    first = drift_first[active]
                    leaning = np.take_along_axis(correction, profile.level_of(first), axis=0)
                    shift[:, drift_model] += np.where(np.isfinite(first) & steered[active, None], leaning, 0.0).astype(np.float32)
                continued["draw_shift"] = shift
            rollout = simulator.rollout(batch, horizon, n_samples=1, seed=_seed(*keys, segment, 0), treatment_policy=policy,
                                        **{**rollout_knobs, **continued})
            returned = getattr(rollout, "draws", None)
            if returned is not None and fed_back is not None:
                if draw_scores is None:
                    draw_scores = np.full((n, returned.shape[-1]), np.nan, dtype=np.float32)
                kept = draw_scores[active] if charted_serial is not None else np.nan  # a lab keeps its last charting's score
                draw_scores[active] = np.where(fed_back, returned[0], kept)  # NaN: a fresh draw next call
            simulated = np.asarray(rollout.values[0], dtype=np.float32)  # (a, horizon, V)
            state = observed.select(active)
            if spreader:
                simulated = spreader.spread_segment(simulated, state.last_value, rng)
            clipped += int(((simulated < plausible[:, 0]) | (simulated > plausible[:, 1])).sum())
            simulated = np.clip(simulated, plausible[:, 0], plausible[:, 1])
            if self.pressure:
                for step in range(horizon):
                    simulated[:, step], pressure_residuals[active] = self.pressure.apply(
                        simulated[:, step], pressure_residuals[active], rng)
            charted = self.observation.mask(simulated, hours[active, done : done + horizon], state, rng)
            if charted_serial is not None and returned is not None:
                # a lab charted in the segment's last hour: its score is where its next draw continues from
                recorded = charted_serial & np.isfinite(charted[:, -1][:, model_columns])  # (a, V_model)
                draw_scores[active] = np.where(recorded, returned[0], draw_scores[active])
            if levels is not None:
                uncharted[active] &= ~np.isfinite(charted[:, :, level_catalog]).any(axis=1)
            if drift is not None:  # the batch's lean for the next hours, from where its stays' last charted values are
                on_course = steered[active]
                correction = _drift_correction(profile, state.last_value[on_course][:, drift_catalog], active[on_course], done + horizon - 1,
                                               drift_first, bands, drift_sigma, config.drift_control)
            if reversion is not None:
                charted_sum[active] += np.nansum(charted[:, :, reverting_catalog], axis=1)
                charted_count[active] += np.isfinite(charted[:, :, reverting_catalog]).sum(axis=1)
            observed.last_hour[active], observed.last_value[active] = state.last_hour, state.last_value
            values[active, done : done + horizon] = charted
            treatments[active, done : done + horizon] = np.asarray(rollout.treatments[0], dtype=np.float32)
            done += horizon
            segment += 1
        return values, treatments, clipped

    def _stay_spread(
        self, simulator: Simulator, spread: np.ndarray | None, volatility: float, n: int, keys: tuple[int, ...]
    ) -> np.ndarray | None:
        """``(n, V_model)`` the draw spread of each of a batch's ``n`` stays: ``spread`` (the fitted
        ``(V_model,)``, 1 without one) times each stay's factors ``exp(volatility u)`` on the variables
        the twin feeds back (``SynthesisConfig.volatility``), ``u`` standard normal and correlated
        across them as the train split's volatilities are (:func:`~organsim.synth.spread.volatility_correlation`),
        from its own stream of ``keys`` so the other draws keep their random numbers; None without a
        volatility or a twin with agents."""
        fed_back = self._fed_back(simulator)
        if volatility <= 0 or fed_back is None:
            return None
        base = np.ones(len(fed_back), dtype=np.float32) if spread is None else np.asarray(spread, dtype=np.float32)
        columns = np.flatnonzero(fed_back)
        names = [simulator.agents.config.variables[c] for c in columns]
        known = [v for v in names if self.spread_targets is not None and v in self.spread_targets.columns]
        correlation = np.eye(len(names))
        if known:
            at = [names.index(v) for v in known]
            correlation[np.ix_(at, at)] = volatility_correlation(self.spread_targets, known)
        u = _generator(*keys, 7).multivariate_normal(np.zeros(len(names)), correlation, size=n, method="eigh")  # (n, V_fed)
        stay_spread = np.tile(base, (n, 1))
        stay_spread[:, columns] *= np.exp(volatility * u)
        return stay_spread.astype(np.float32)

    def _reversion(self, simulator: Simulator, config: SynthesisConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``config.draw_reversion``'s variables as catalog columns, model columns and ``kappa / sigma``
        (``sigma``: the root mean square of the training changes between charted values); None without."""
        fed_back = self._fed_back(simulator)
        given = {v: k for v, k in (config.draw_reversion or {}).items() if k > 0}
        if not given or fed_back is None:
            return None
        model_variables = list(simulator.agents.config.variables)  # every name is one of them (_draw_knobs checks)
        names = sorted(given, key=model_variables.index)
        sigma = self._change_scale(names)
        return (np.array([self.catalog.variable_codes.index(v) for v in names]), np.array([model_variables.index(v) for v in names]),
                (np.array([given[v] for v in names]) / sigma).astype(np.float32))

    def _drift_control(
        self, simulator: Simulator, config: SynthesisConfig
    ) -> tuple[np.ndarray, np.ndarray, DriftProfile, np.ndarray] | None:
        """The variables ``config.drift_control`` steers (:mod:`organsim.synth.drift`): every variable of
        :attr:`drift` the twin models, but MAP where :attr:`pressure` rewrites it from SBP and DBP, as
        catalog columns, model columns, their profile (:meth:`DriftProfile.select`) and ``sigma`` (the
        root mean square of the training changes between charted values); None without a control."""
        if config.drift_control <= 0 or self.drift is None or self._fed_back(simulator) is None:
            return None
        model_variables = list(simulator.agents.config.variables)
        derived = {PRESSURES[2]} if self.pressure is not None else set()
        names = [v for v in self.drift.variables if v in model_variables and v not in derived and len(self.training_changes.get(v, ()))]
        if not names:
            return None
        return (np.array([self.catalog.variable_codes.index(v) for v in names]), np.array([model_variables.index(v) for v in names]),
                self.drift.select(names), self._change_scale(names))

    def _change_scale(self, variables: list[str]) -> np.ndarray:
        """``(len(variables),)`` each variable's typical change: the root mean square of its training
        changes between consecutive charted values, 1 where there are none or all are 0 (the unit the
        reversion and the drift control measure a gap in)."""
        scale = np.array([np.sqrt(np.mean(self.training_changes[v] ** 2)) if len(self.training_changes.get(v, ())) else 1.0
                          for v in variables])
        return np.where(scale > 0, scale, 1.0)

    def _stay_levels(
        self, simulator: Simulator, initial: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The lab levels of a batch of stays whose first hours are ``initial`` ``(n, k, V)``
        (:mod:`organsim.synth.levels`): the twin's model column and the catalog column of each lab it
        draws without feeding it back, and their ``(n, L)`` level scores, drawn given the labs the first
        hours chart. None without :attr:`levels` or for a simulator without organ agents."""
        fed_back = self._fed_back(simulator)
        if self.levels is None or fed_back is None:
            return None
        model_variables = list(simulator.agents.config.variables)
        labs = [v for v in self.levels.variables if v in model_variables and not fed_back[model_variables.index(v)]]
        if not labs:
            return None
        first = _first_charted(initial, np.array([self.catalog.variable_codes.index(v) for v in self.levels.variables]))
        scores = self.levels.sample(first, rng)[:, [self.levels.variables.index(v) for v in labs]]
        return (np.array([model_variables.index(v) for v in labs]), np.array([self.catalog.variable_codes.index(v) for v in labs]),
                scores.astype(np.float32))

    @staticmethod
    def _fed_back(simulator: Simulator) -> np.ndarray | None:
        """``(V_model,)`` bool: which of ``simulator``'s model variables (``simulator.agents``, as
        :class:`organsim.twin.PatientTwin` carries them) it feeds back; None without agents."""
        agents = getattr(simulator, "agents", None)
        return None if agents is None else agents.config.fed_back

    def _simulate(
        self, simulator: Simulator, drawn: pl.DataFrame, config: SynthesisConfig, round_index: int,
        progress: Callable[[int], None], spreader: BinSpreader | None, knobs: dict[str, np.ndarray],
    ) -> _Simulated:
        """Simulate every drawn stay (batches of similar length) into hourly and treatment frames."""
        catalog = self.catalog
        order = np.argsort(drawn["n_hours"].to_numpy(), kind="stable")
        hourly_parts, treatment_parts = [], []
        clipped = 0
        for batch_index, start in enumerate(range(0, drawn.height, config.batch_size)):
            index = order[start : start + config.batch_size]
            part = drawn[index]
            values, treatments, batch_clipped = self._simulate_batch(
                simulator, part, config, (config.seed, round_index, batch_index), spreader, knobs)
            clipped += batch_clipped
            n_hours = part["n_hours"].to_numpy()
            inside = np.arange(values.shape[1])[None, :] < n_hours[:, None]  # (n, L)
            rows, steps = np.nonzero(inside)
            keys = {
                "stay_id": index[rows].astype(np.int64),
                "hour": (part["first_hour"].to_numpy()[rows] + steps).astype(np.int32),
            }
            hourly_parts.append(pl.DataFrame(
                {**keys, **{v: values[rows, steps, i] for i, v in enumerate(catalog.variable_codes)}},
                nan_to_null=True))
            treatment_parts.append(pl.DataFrame(
                {**keys, **{t: treatments[rows, steps, i] for i, t in enumerate(catalog.treatment_codes)}}))
            progress(len(index))
        hourly = pl.concat(hourly_parts).sort("stay_id", "hour")
        recorded = pl.concat(treatment_parts).sort("stay_id", "hour") if self.treatments_recorded else None
        return _Simulated(candidates=drawn, hourly=hourly, treatments=recorded, clipped=clipped)

    def _label(self, simulated: _Simulated) -> pl.DataFrame:
        """``(stay_id, onset_hour)`` of every simulated stay (module docstring of :mod:`organsim.synth.labels`)."""
        drawn = simulated.candidates.with_row_index("stay_id").with_columns(pl.col("stay_id").cast(pl.Int64))
        suspicion = drawn.filter(pl.col("sepsis")).select("stay_id", PLANNED_ONSET)
        return sepsis_onsets(simulated.hourly, treatments=simulated.treatments, suspicion=suspicion, catalog=self.catalog)

    def bin_spreader(self, simulator: Simulator) -> BinSpreader | None:
        """The :class:`BinSpreader` of ``simulator``'s organ agents (``simulator.agents``, as
        :class:`organsim.twin.PatientTwin` carries them); None for a simulator without binned agents."""
        agents = getattr(simulator, "agents", None)
        if agents is None:
            return None
        return BinSpreader.fit(agents.tokenizer, agents.changes, self.training_values, self.training_changes,
                               self.catalog.variable_codes, feedback=agents.config.feedback_variables)

    def _septic_fraction(self, config: SynthesisConfig) -> float:
        """The septic share asked for: ``config``'s, else the training cohort's."""
        return self.initial.septic_fraction_ if config.septic_fraction is None else config.septic_fraction

    # ------------------------------------------------------------------ draw spread
    def fit_draw_spread(
        self, simulator: Simulator, config: SynthesisConfig, *, progress: ProgressCallback | None = None
    ) -> DrawSpread | None:
        """Fit the draw knobs by pilot generations (:mod:`organsim.synth.spread`): the spread and shift of
        the vital signs and frequently charted labs, the fed-back vitals' serial correlations, and the
        serial correlation between charted values of the labs charted less often
        (:func:`~organsim.synth.spread.charted_variables`). Where some of those variables are not fed
        back (no serial correlation damps their wander), a first pilot at the twin's own knobs
        measures how fast they return to their stay's level
        (:func:`~organsim.synth.spread.reversion_slopes`), and those slower than the train split's get
        a reversion (:func:`~organsim.synth.spread.reversion_kappa`, ``draw_reversion``) that every
        later pilot and the cohort use: on PhysioNet 2019 glucose and temperature returned at -0.13
        and -0.08 (real -0.27, -0.18).

        ``config.pilot_stays`` stays are drawn once (seeded by ``config.seed``, in the septic share
        of ``config``) with lengths cut at ``spread_pilot_hours`` and simulated as the cohort's are,
        every pilot with the same random numbers; the targets are the train split's medians over
        its stays' first ``spread_pilot_hours`` hours. MAP is left out where :attr:`pressure` derives
        it from SBP and DBP (its spread follows theirs and the residual's).

        Parameters
        ----------
        simulator
            The twin (it needs ``agents`` and ``serial_correlations``, as :class:`organsim.twin.PatientTwin` has).
        config
            The cohort's settings (seed, septic share, rollout settings, pilot size).
        progress
            ``progress(done, total)`` in pilot generations.

        Returns
        -------
        DrawSpread or None
            None when ``config`` asks for no pilots, the simulator has no knobs, the synthesizer has
            no spread targets or none of them is charted in enough training stays.
        """
        fed_back = self._fed_back(simulator)
        own_serial = getattr(simulator, "serial_correlations", None)
        if config.pilot_stays == 0 or fed_back is None or own_serial is None or self.spread_targets is None:
            return None
        pilot_hours = min(config.spread_pilot_hours, config.max_hours)
        candidates = [c for c in self.spread_targets.columns if c not in ("stay_id", "hour")]
        real = stay_variability(self.spread_targets, candidates, first_hours=pilot_hours)
        real_labs = charted_steps(self.spread_targets, candidates, first_hours=pilot_hours)
        model_variables = tuple(simulator.agents.config.variables)
        # MAP is rewritten from each hour's SBP and DBP (PressureConsistency): its own draw never reaches the cohort
        derived = {PRESSURES[2]} if self.pressure is not None else set()
        charted_share = dict(zip(self.observation.variables, self.observation.rate_, strict=True))
        variables = tuple(v for v in spread_variables(self.catalog, model_variables, real, charted_share) if v not in derived)
        labs = charted_variables(self.catalog, model_variables, real_labs, charted_share, fed_back)
        if not variables and not labs:
            return None
        n = config.pilot_stays
        septic = np.arange(n) < int(round(self._septic_fraction(config) * n))
        drawn = self.initial.sample(septic, _generator(config.seed, PILOT_ROUND, 999), max_hours=pilot_hours, charted=False)
        pilot_config = replace(config, max_hours=pilot_hours)
        spreader = self.bin_spreader(simulator)

        charted = np.isin(np.array(model_variables), np.array(labs, dtype=object))  # (V_model,) labs continued between chartings

        # the variables the twin does not feed back have no serial correlation to damp their wander (a fed-back
        # vital's rho is fitted below; a reversion as well made heart rate return too fast, -0.37 against -0.25
        # real): a first pilot, at the twin's own knobs, measures how slowly each returns to its stay's level, and
        # the others fit the spread, serial correlation and shift with that reversion in place
        unfed = [v for v in variables if not fed_back[model_variables.index(v)]]
        first = 1 if unfed else 0
        fit_shift = config.drift_control == 0  # the drift control steers where the stays go: no shift to fit beside it
        total = first + (4 if fit_shift else 3) + config.spread_newton_steps
        kappa: dict[str, float] = {}
        if unfed:
            own = self._simulate(simulator, drawn, pilot_config, PILOT_ROUND, lambda done: None, spreader, {})
            kappa = reversion_kappa(reversion_slopes(own.hourly, unfed),
                                    reversion_slopes(self.spread_targets, unfed, first_hours=pilot_hours), unfed)
            if progress:
                progress(1, total)
        pilot_config = replace(pilot_config, draw_reversion=kappa or None)

        def pilot(spread: np.ndarray, serial: np.ndarray, shift: np.ndarray) -> dict[str, dict[str, float]]:
            simulated = self._simulate(simulator, drawn, pilot_config, PILOT_ROUND, lambda done: None, spreader,
                                       _knob_keywords(spread, serial, shift, charted))
            return {**stay_variability(simulated.hourly, variables), **charted_steps(simulated.hourly, labs)}

        fitted = fit_draw_spread(pilot, {**{v: real[v] for v in variables}, **{v: real_labs[v] for v in labs}}, variables,
                                 model_variables, fed_back, own_serial, charted=labs, newton_steps=config.spread_newton_steps,
                                 pilot_stays=n, pilot_hours=pilot_hours, fit_shift=fit_shift,
                                 progress=None if progress is None else lambda done, _: progress(done + first, total))
        return replace(fitted, reversion=kappa)

    def _draw_knobs(self, simulator: Simulator, config: SynthesisConfig) -> tuple[DrawSpread | None, dict[str, np.ndarray]]:
        """The cohort's draw knobs: ``config``'s when given, else fitted when ``config`` asks for pilots;
        and the rollout keywords that carry them (empty without knobs)."""
        if config.given_knobs:
            agents = getattr(simulator, "agents", None)
            own_serial = getattr(simulator, "serial_correlations", None)
            if agents is None or own_serial is None:
                raise ValueError("draw knobs (draw_spread and the like) need a twin with organ agents (organsim.twin.PatientTwin)")
            given = {**(config.draw_spread or {}), **(config.draw_serial or {}), **(config.draw_shift or {}), **(config.draw_reversion or {})}
            unknown = sorted(set(given) - set(agents.config.variables))
            if unknown:
                raise ValueError(f"the draw knobs name variables the twin does not model: {', '.join(unknown)}")
            spread = DrawSpread(spread=dict(config.draw_spread or {}), serial=dict(config.draw_serial or {}),
                                shift=dict(config.draw_shift or {}), reversion=dict(config.draw_reversion or {}))
        else:
            spread = self.fit_draw_spread(simulator, config)
        if spread is None:
            return None, {}
        return spread, self._rollout_knobs(simulator, spread)

    @staticmethod
    def _rollout_knobs(simulator: Simulator, spread: DrawSpread) -> dict[str, np.ndarray]:
        """The ``knobs`` of :meth:`_simulate_batch` that carry ``spread``'s knobs (:func:`_knob_keywords`)."""
        model_variables = simulator.agents.config.variables
        # a serial correlation of a variable the twin does not feed back is one between its charted values
        charted = np.isin(np.array(model_variables), np.array(list(spread.serial), dtype=object)) & ~CohortSynthesizer._fed_back(simulator)
        return _knob_keywords(spread.spread_vector(model_variables), spread.serial_vector(model_variables, simulator.serial_correlations),
                              spread.shift_vector(model_variables), charted)

    def _spread_record(self, spread: DrawSpread, cohort: Cohort) -> dict[str, Any]:
        """:attr:`SynthesisResult.draw_spread`: the knobs (and fit) with the cohort's ratios to the train split
        (``cohort_ratios``: a spread variable's SD and change ratios and drifts, a lab's step ratio)."""
        record = spread.summary()
        if self.spread_targets is not None:
            targets = set(self.spread_targets.columns)
            variables = sorted(set(spread.spread) & targets)
            labs = sorted((set(spread.serial) - set(spread.spread)) & targets)
            real = stay_variability(self.spread_targets, variables)
            synthetic = stay_variability(cohort.hourly, list(real))
            ratios: dict[str, dict[str, Any]] = {
                v: {**{statistic: round(synthetic[v][statistic] / real[v][statistic], 4) for statistic in STATISTICS},
                    "drift": {"synthetic": round(synthetic[v]["drift"], 4), "real": round(real[v]["drift"], 4)}}
                for v in real if v in synthetic and all(real[v][statistic] > 0 for statistic in STATISTICS)}
            real_steps, synthetic_steps = charted_steps(self.spread_targets, labs), charted_steps(cohort.hourly, labs)
            ratios.update({v: {"step_ratio": round(synthetic_steps[v]["step_ratio"] / real_steps[v]["step_ratio"], 4)}
                           for v in real_steps if v in synthetic_steps})
            record["cohort_ratios"] = ratios
        return record

    # ------------------------------------------------------------------ public
    def generate(
        self, simulator: Simulator, config: SynthesisConfig, *, progress: ProgressCallback | None = None
    ) -> SynthesisResult:
        """Generate ``config.patients`` synthetic stays (module docstring).

        Parameters
        ----------
        simulator
            The twin that rolls stays forward.
        config
            Size, length, seed, septic share, rollout settings and the draw-spread fit (module docstring).
        progress
            Optional ``progress(done, total)`` callback in simulated stays (``total`` grows when a
            round adds candidates).

        Returns
        -------
        SynthesisResult
            The cohort (stays ``1 .. N`` in the order kept) and the generation's bookkeeping.
        """
        fraction = self._septic_fraction(config)
        spreader = self.bin_spreader(simulator)
        spread, knobs = self._draw_knobs(simulator, config)
        if spread is not None and spread.reversion:  # the generator applies it (draw_reversion), not the twin
            config = replace(config, draw_reversion=spread.reversion)
        septic_target = int(round(fraction * config.patients))
        asked = {True: septic_target, False: config.patients - septic_target}
        screened = config.screen_pool > 1 and self.screen is not None
        wanted = {label: int(np.ceil(n * config.screen_pool)) if screened else n for label, n in asked.items()}
        kept: dict[bool, list[tuple[int, int, int | None]]] = {True: [], False: []}  # (round, position, onset)
        rounds_simulated: list[_Simulated] = []
        candidates = {"septic": 0, "not_septic": 0}
        accepted = {"septic": 0, "not_septic": 0}
        tally = {"simulated": 0, "planned": 0}
        rounds = 0
        for round_index in range(config.max_rounds):
            missing = {label: wanted[label] - len(kept[label]) for label in (True, False)}
            if missing[True] <= 0 and missing[False] <= 0:
                break
            rounds += 1
            acceptance = accepted["septic"] / candidates["septic"] if candidates["septic"] else 0.8
            n_septic = int(np.ceil(max(missing[True], 0) / max(acceptance, 0.05))) if missing[True] > 0 else 0
            n_not = max(missing[False], 0)
            septic = np.concatenate([np.ones(n_septic, dtype=bool), np.zeros(n_not, dtype=bool)])
            drawn = self.initial.sample(septic, _generator(config.seed, round_index, 999), max_hours=config.max_hours, charted=False)
            tally["planned"] += drawn.height

            def advance(done: int) -> None:
                tally["simulated"] += done
                if progress:
                    progress(tally["simulated"], tally["planned"])

            simulated = self._simulate(simulator, drawn, config, round_index, advance, spreader, knobs)
            rounds_simulated.append(simulated)
            onsets = self._label(simulated).sort("stay_id")["onset_hour"].to_list()
            for position, (drawn_septic, onset) in enumerate(zip(septic.tolist(), onsets, strict=True)):
                name = "septic" if drawn_septic else "not_septic"
                candidates[name] += 1
                label = onset is not None
                accepted[name] += int(label == drawn_septic)
                if len(kept[label]) < wanted[label]:
                    kept[label].append((round_index, position, onset))
        chosen = sorted(kept[True] + kept[False])
        screen_record = None
        if screened:
            pool = self._assemble(rounds_simulated, chosen, config)
            kept_ids, screen_record = self.screen.select(pool, asked, config.seed)
            screen_record["pool"] = config.screen_pool
            chosen = [chosen[i - 1] for i in kept_ids]  # the pool's stays are numbered 1 .. N in chosen's order
        cohort = self._assemble(rounds_simulated, chosen, config)
        events = event_counts(cohort.hourly, catalog=self.catalog)
        events["sepsis3"] = int(cohort.stays["sepsis"].sum())
        cohort.meta["provenance"]["events"] = events
        if screen_record is not None:
            cohort.meta["provenance"]["screen"] = screen_record
        spread_record = None
        if spread is not None:
            spread_record = self._spread_record(spread, cohort)
            cohort.meta["provenance"]["draw_spread"] = {"spread": spread.spread, "serial": spread.serial, "shift": spread.shift,
                                                        "reversion": spread.reversion}
        return SynthesisResult(cohort=cohort, septic_target=septic_target, candidates=candidates, accepted=accepted,
                               rounds=rounds, events=events, values_clipped=sum(r.clipped for r in rounds_simulated),
                               draw_spread=spread_record, screen=screen_record)

    def _assemble(
        self, rounds: list[_Simulated], chosen: list[tuple[int, int, int | None]], config: SynthesisConfig
    ) -> Cohort:
        """The ``chosen`` (round, position, onset) stays as one cohort, renumbered ``1 .. N`` in that order."""
        stays_parts, hourly_parts, treatment_parts = [], [], []
        for round_index, simulated in enumerate(rounds):
            picked = [(position, onset) for r, position, onset in chosen if r == round_index]
            if not picked:
                continue
            offset = sum(1 for r, _, _ in chosen if r < round_index)
            mapping = pl.DataFrame(
                {"old_id": [p for p, _ in picked], "stay_id": np.arange(offset + 1, offset + len(picked) + 1),
                 "sepsis_onset_hour": [o for _, o in picked]},
                schema={"old_id": pl.Int64, "stay_id": pl.Int64, "sepsis_onset_hour": pl.Int32})
            drawn = simulated.candidates.with_row_index("old_id").with_columns(pl.col("old_id").cast(pl.Int64))
            stays_parts.append(mapping.join(drawn, on="old_id", how="left", maintain_order="left").select(
                "stay_id", "age", "sex", "weight", "unit", "hosp_adm_hours",
                pl.col("sepsis_onset_hour").is_not_null().alias("sepsis"), "sepsis_onset_hour", "death"))
            hourly = simulated.hourly.rename({"stay_id": "old_id"}).join(
                mapping.select("old_id", "stay_id", "sepsis_onset_hour"), on="old_id", how="inner")
            if not self.treatments_recorded:
                # label-only training data (PhysioNet) end septic stays a drawn number of hours after onset
                ends = drawn.select("old_id", "onset_to_end")
                hourly = hourly.join(ends, on="old_id", how="left").filter(
                    pl.col("sepsis_onset_hour").is_null()
                    | (pl.col("hour") <= pl.col("sepsis_onset_hour") + pl.col("onset_to_end"))).drop("onset_to_end")
            hourly_parts.append(hourly.drop("old_id", "sepsis_onset_hour"))
            if simulated.treatments is not None:
                treatment_parts.append(simulated.treatments.rename({"stay_id": "old_id"}).join(
                    mapping.select("old_id", "stay_id"), on="old_id", how="inner").drop("old_id"))
        provenance = {
            "generator": "organsim.synth",
            "settings": asdict(config),
            "training": self.training,
            "synthetic": True,
        }
        return Cohort.from_frames(
            pl.concat(stays_parts), pl.concat(hourly_parts),
            pl.concat(treatment_parts) if treatment_parts else None,
            source=SOURCE, provenance=provenance, treatments_recorded=self.treatments_recorded, catalog=self.catalog)
