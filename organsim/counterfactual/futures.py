"""Sampled futures, the simulator interface that produces them, and the engine's oracle behind it.

A what-if run asks a :class:`Simulator` for ``K`` futures of a stay from a decision hour under a
strategy. Anything that can answer is a simulator: the coordinated twin
(:class:`~organsim.counterfactual.twin_simulator.TwinSimulator`), the same twin with treatments
hidden (the treatment-blind baseline), and on engine cohorts the
physiology engine's oracle (:class:`EngineOracle`), which gives the true future: same patient,
same noise, other treatment. :class:`RecordedFuture` is the no-effect reference: the recorded future
whatever the strategy.

Hours are ICU hours (1-based). A future of horizon ``H`` covers hours ``decision_hour ..
decision_hour + H - 1``; a sample's rows end at its death.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import polars as pl

from organsim.catalog import Catalog
from organsim.counterfactual.policy import RecordedTreatments, StrategyPolicy
from organsim.counterfactual.strategy import Strategy
from organsim.data import Cohort
from organsim.physiology import ClinicianPolicy, PhysiologyEngine
from organsim.twin.calibration import BandCalibration


@dataclass(frozen=True)
class Futures:
    """``K`` sampled futures of one stay under one strategy, from its decision hour.

    Attributes
    ----------
    stay_id
        The stay.
    decision_hour
        The first ICU hour the strategy decides.
    horizon
        Hours simulated (``decision_hour .. decision_hour + horizon - 1``).
    strategy
        The strategy's name.
    simulator
        The simulator's name.
    variables, treatment_codes
        The catalog codes of the variable and treatment columns of ``history`` and ``samples``.
    history
        ``(hour, <variables>..., <treatments>...)``: the record of hours ``1 .. decision_hour - 1``
        (null = not measured), what every sample starts from.
    samples
        ``(sample, hour, <variables>..., <treatments>...)``, ``sample`` in ``0 .. K-1``; a sample's
        rows end at its death.
    death_hour
        ``(K,)`` ICU hour of death within the horizon, NaN when alive at its end.
    stay
        The stay's row of the cohort's stays table (age, sex, weight, ...).
    consulted
        ``(sample, hour, system, consulted)``: one row per agent-hour and other system the organ
        agent of ``system`` consulted, for simulators built on organ agents; None otherwise.
    corrections
        ``(sample, hour, variable, rule, before, after)``: every value the twin's error corrector
        changed (``rule`` a constraint, or ``"resampled"``); None for simulators without one.
    adjustments
        ``(sample, hour, treatment, strategy_dose, simulated_dose)``: doses of the strategy in a
        class the behaviour policy's fitting cohort never received, which the twin's overlap
        adjustment showed the agents as the nearest received class's dose
        (:mod:`organsim.counterfactual.twin_simulator`); None without it.
    band_calibration
        The simulator's conformal band calibration (:class:`organsim.twin.calibration.BandCalibration`),
        which :func:`~organsim.counterfactual.outcomes.futures_quantiles` applies; None: raw sample quantiles.
    """

    stay_id: int
    decision_hour: int
    horizon: int
    strategy: str
    simulator: str
    variables: tuple[str, ...]
    treatment_codes: tuple[str, ...]
    history: pl.DataFrame
    samples: pl.DataFrame
    death_hour: np.ndarray
    stay: pl.DataFrame
    consulted: pl.DataFrame | None = None
    corrections: pl.DataFrame | None = None
    adjustments: pl.DataFrame | None = None
    band_calibration: BandCalibration | None = None

    def __post_init__(self) -> None:
        needed = {"sample", "hour", *self.variables, *self.treatment_codes}
        missing = sorted(needed - set(self.samples.columns))
        if missing:
            raise ValueError(f"the samples frame lacks column(s) {missing}")
        missing = sorted((needed - {"sample"}) - set(self.history.columns))
        if missing:
            raise ValueError(f"the history frame lacks column(s) {missing}")
        if self.samples.height and not self.samples["sample"].is_between(0, self.n_samples - 1).all():
            raise ValueError(f"sample indices must lie in 0..{self.n_samples - 1} (one death_hour per sample)")

    @property
    def n_samples(self) -> int:
        return int(len(self.death_hour))

    @property
    def last_hour(self) -> int:
        """The last simulated ICU hour."""
        return self.decision_hour + self.horizon - 1

    def values(self, codes: Sequence[str]) -> np.ndarray:
        """``(K, horizon, len(codes))`` float64 sampled values of ``codes`` (variables or treatments); NaN
        where not simulated (after death) or not measured."""
        out = np.full((self.n_samples, self.horizon, len(codes)), np.nan)
        if self.samples.height:
            rows = self.samples["sample"].to_numpy().astype(np.int64)
            hours = self.samples["hour"].to_numpy().astype(np.int64) - self.decision_hour
            keep = (hours >= 0) & (hours < self.horizon)
            out[rows[keep], hours[keep]] = self.samples.select(codes).to_numpy().astype(np.float64)[keep]
        return out

    def trajectories(self, key_offset: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Each sample as a whole stay, history then future, under ``stay_id = key_offset + sample``.

        Returns
        -------
        hourly, treatments
            Frames in the canonical layout (``stay_id``, ``hour``, codes...), ready for
            :func:`organsim.scores.score_trajectories`.
        """
        columns = [*self.variables, *self.treatment_codes]
        keys = pl.DataFrame({"stay_id": np.arange(self.n_samples, dtype=np.int64) + key_offset})
        history = keys.join(self.history.select("hour", *columns), how="cross")
        future = self.samples.select((pl.col("sample").cast(pl.Int64) + key_offset).alias("stay_id"), "hour", *columns)
        whole = pl.concat([
            frame.select("stay_id", pl.col("hour").cast(pl.Int32), *[pl.col(c).cast(pl.Float32) for c in columns])
            for frame in (history, future)
        ]).sort("stay_id", "hour")
        return whole.select("stay_id", "hour", *self.variables), whole.select("stay_id", "hour", *self.treatment_codes)


@runtime_checkable
class Simulator(Protocol):
    """Anything that samples futures of recorded stays under a strategy (see the module docstring).

    ``simulate`` returns one :class:`Futures` per stay of ``stay_ids``, in that order, each with
    ``n_samples`` samples of ``horizon`` hours from ``decision_hour``; the same ``seed`` gives the
    same futures.
    """

    name: str

    def simulate(
        self,
        cohort: Cohort,
        stay_ids: Sequence[int],
        decision_hour: int,
        strategy: Strategy,
        *,
        horizon: int,
        n_samples: int,
        seed: int,
    ) -> list[Futures]: ...


def _history(cohort: Cohort, stay_id: int, decision_hour: int) -> pl.DataFrame:
    """The record of ``stay_id`` before ``decision_hour``: ``(hour, <variables>, <treatments>)``."""
    catalog = cohort.catalog
    hourly = cohort.hourly.filter((pl.col("stay_id") == stay_id) & (pl.col("hour") < decision_hour))
    treatments = cohort.treatments.filter((pl.col("stay_id") == stay_id) & (pl.col("hour") < decision_hour))
    joined = hourly.join(treatments, on=["stay_id", "hour"], how="full", coalesce=True)
    defaults = [pl.col(c).fill_null(catalog.treatment(c).default) for c in catalog.treatment_codes]
    return joined.with_columns(defaults).sort("hour").select("hour", *catalog.variable_codes, *catalog.treatment_codes)


def _check_request(cohort: Cohort, stay_ids: Sequence[int], decision_hour: int, horizon: int) -> None:
    if decision_hour < 1:
        raise ValueError(f"decision_hour is an ICU hour (1-based), got {decision_hour}")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 hour, got {horizon}")
    known = set(cohort.stays["stay_id"].to_list())
    unknown = [int(s) for s in stay_ids if int(s) not in known]
    if unknown:
        raise KeyError(f"stay id(s) {unknown[:10]} are not in the cohort")


class EngineOracle:
    """The physiology engine's true counterfactual behind the :class:`Simulator` interface.

    For stays of a cohort the engine generated, the strategy decides from the decision hour on
    (the engine's clinician is its usual care, the recorded treatments its observed care); earlier
    hours replay the record, and the patient keeps its parameters, process noise and measurement
    draws. The one future per stay is the truth, so ``n_samples`` must be 1.

    Parameters
    ----------
    engine
        The engine that generated the cohort (:meth:`PhysiologyEngine.from_cohort`).
    kind
        ``"true"``: every variable every hour, without measurement error (the ground truth);
        ``"observed"``: what would have been charted.
    fresh_noise
        Instead of the truth, ``n_samples`` futures whose noise (process, clinician coin flips,
        measurement) is drawn afresh from the decision hour on (sample ``j`` of run ``seed``: the
        same noise under every strategy): the engine's true physiology without knowledge of the
        stay's noise. Scored against the truth, it is the reference a perfect simulator of the
        physiology reaches (name ``engine_fresh_noise_<kind>``).
    """

    def __init__(self, engine: PhysiologyEngine, *, kind: Literal["true", "observed"] = "true", fresh_noise: bool = False) -> None:
        if kind not in ("true", "observed"):
            raise ValueError(f"kind must be 'true' or 'observed', got {kind!r}")
        self.engine = engine
        self.kind = kind
        self.fresh_noise = fresh_noise
        self.name = f"engine_fresh_noise_{kind}" if fresh_noise else f"engine_oracle_{kind}"

    @classmethod
    def from_cohort(cls, cohort: Cohort, *, kind: Literal["true", "observed"] = "true", fresh_noise: bool = False) -> EngineOracle:
        """The oracle of an engine cohort (:class:`~organsim.utils.DataError` for any other cohort)."""
        return cls(PhysiologyEngine.from_cohort(cohort), kind=kind, fresh_noise=fresh_noise)

    def policy(self, cohort: Cohort, strategy: Strategy, decision_hour: int) -> StrategyPolicy:
        """``strategy`` as the engine runs it: the clinician as usual care, the record as observed care."""
        return StrategyPolicy(
            strategy, decision_hour,
            usual_care=ClinicianPolicy(self.engine.config.clinician),
            observed=RecordedTreatments(cohort.treatments, catalog=cohort.catalog),
            catalog=cohort.catalog,
        )

    def simulate(
        self,
        cohort: Cohort,
        stay_ids: Sequence[int],
        decision_hour: int,
        strategy: Strategy,
        *,
        horizon: int,
        n_samples: int = 1,
        seed: int = 0,
    ) -> list[Futures]:
        """The true future of each stay (``seed`` is unused: the oracle is deterministic), or with
        ``fresh_noise`` ``n_samples`` futures of it drawn with ``seed``."""
        _check_request(cohort, stay_ids, decision_hour, horizon)
        if n_samples != 1 and not self.fresh_noise:
            raise ValueError(f"the oracle's future is the truth, one per stay: n_samples must be 1, got {n_samples}")
        if n_samples < 1 or seed < 0:
            raise ValueError(f"n_samples must be >= 1 and seed >= 0, got {n_samples} and {seed}")
        hours = self.engine.config.hours
        if decision_hour + horizon - 1 > hours:
            raise ValueError(f"the engine simulated {hours} ICU hours: decision hour {decision_hour} + horizon {horizon} "
                             f"reaches hour {decision_hour + horizon - 1}; use a horizon of at most {hours - decision_hour + 1}")
        ids = [int(s) for s in stay_ids]
        catalog = cohort.catalog
        last = decision_hour + horizon - 1
        futures, deaths = [], []
        for sample in range(n_samples):
            draw = (seed, sample) if self.fresh_noise else None
            trajectory = self.engine.counterfactuals(ids, self.policy(cohort, strategy, decision_hour), decision_hour, noise_draw=draw)
            for i, stay_id in enumerate(ids):
                if trajectory.n_hours[i] < decision_hour:
                    raise ValueError(f"stay {stay_id} died in hour {int(trajectory.n_hours[i])}, before the decision hour {decision_hour}")
            futures.append(trajectory.frame(self.kind).filter(pl.col("hour").is_between(decision_hour, last))
                           .with_columns(pl.lit(sample, dtype=pl.Int32).alias("sample")))
            deaths.append(np.where(trajectory.death_hour <= last, trajectory.death_hour, np.nan))
        frame = pl.concat(futures)
        out = []
        for i, stay_id in enumerate(ids):
            future = frame.filter(pl.col("stay_id") == stay_id)
            out.append(Futures(
                stay_id=stay_id,
                decision_hour=decision_hour,
                horizon=horizon,
                strategy=strategy.name,
                simulator=self.name,
                variables=tuple(catalog.variable_codes),
                treatment_codes=tuple(catalog.treatment_codes),
                history=_history(cohort, stay_id, decision_hour),
                samples=future.select("sample", "hour", *catalog.variable_codes, *catalog.treatment_codes),
                death_hour=np.array([d[i] for d in deaths], dtype=np.float64),
                stay=cohort.stays.filter(pl.col("stay_id") == stay_id),
            ))
        return out


class RecordedFuture:
    """The no-effect reference: each stay's recorded future, whatever the strategy (one sample).

    It predicts that a treatment strategy changes nothing, so every estimated treatment effect is 0;
    any simulator worth using beats it on the effect metrics. A stay's rows end where its record
    ends; a stay whose record ends with ``death`` within the horizon died in its last hour.
    """

    name = "recorded_future"

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog

    def simulate(
        self,
        cohort: Cohort,
        stay_ids: Sequence[int],
        decision_hour: int,
        strategy: Strategy,
        *,
        horizon: int,
        n_samples: int = 1,
        seed: int = 0,
    ) -> list[Futures]:
        """The record of hours ``decision_hour .. decision_hour + horizon - 1`` of each stay."""
        _check_request(cohort, stay_ids, decision_hour, horizon)
        if n_samples != 1:
            raise ValueError(f"the recorded future is one path per stay: n_samples must be 1, got {n_samples}")
        catalog = self.catalog or cohort.catalog
        last = decision_hour + horizon - 1
        out = []
        for stay_id in (int(s) for s in stay_ids):
            hourly = cohort.hourly.filter((pl.col("stay_id") == stay_id) & pl.col("hour").is_between(decision_hour, last))
            treatments = cohort.treatments.filter((pl.col("stay_id") == stay_id) & pl.col("hour").is_between(decision_hour, last))
            joined = hourly.join(treatments, on=["stay_id", "hour"], how="left", maintain_order="left").with_columns(
                [pl.col(c).fill_null(catalog.treatment(c).default) for c in catalog.treatment_codes])
            stay = cohort.stays.filter(pl.col("stay_id") == stay_id)
            record_end = int(cohort.hourly.filter(pl.col("stay_id") == stay_id)["hour"].max() or 0)
            if record_end < decision_hour:
                raise ValueError(f"the record of stay {stay_id} ends in hour {record_end}, before the decision hour {decision_hour}")
            died = bool(stay["death"][0]) if "death" in stay.columns and stay["death"][0] is not None else False
            out.append(Futures(
                stay_id=stay_id,
                decision_hour=decision_hour,
                horizon=horizon,
                strategy=strategy.name,
                simulator=self.name,
                variables=tuple(catalog.variable_codes),
                treatment_codes=tuple(catalog.treatment_codes),
                history=_history(cohort, stay_id, decision_hour),
                samples=joined.select(pl.lit(0, dtype=pl.Int32).alias("sample"), "hour", *catalog.variable_codes,
                                      *catalog.treatment_codes),
                death_hour=np.array([float(record_end) if died and record_end <= last else np.nan]),
                stay=stay,
            ))
        return out


def run_futures(
    simulator: Simulator,
    cohort: Cohort,
    cases: pl.DataFrame,
    strategies: Sequence[Strategy],
    *,
    horizon: int,
    n_samples: int,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, list[Futures]]:
    """``{strategy name: [Futures per case, in case order]}`` from ``simulator``; ``progress(n)`` is
    called after each batch of ``n`` cases (one batch per strategy and decision hour)."""
    out: dict[str, list[Futures]] = {}
    for strategy in strategies:
        by_case: dict[tuple[int, int], Futures] = {}
        for (decision_hour,), group in cases.group_by("decision_hour", maintain_order=True):
            ids = group["stay_id"].to_list()
            futures = simulator.simulate(cohort, ids, int(decision_hour), strategy, horizon=horizon, n_samples=n_samples, seed=seed)
            by_case.update({(f.stay_id, f.decision_hour): f for f in futures})
            if progress is not None:
                progress(len(ids))
        out[strategy.name] = [by_case[(int(s), int(h))] for s, h in cases.select("stay_id", "decision_hour").iter_rows()]
    return out
