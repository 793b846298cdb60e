"""The physiology engine: generates cohorts and answers counterfactual questions about them exactly.

A run simulates ``pre_icu_hours`` hours before ICU admission (the infection and the admitting
insult evolve untreated) and then ``hours`` ICU hours. In ICU hour ``h`` (1-based, as PhysioNet's
``ICULOS``):

1. the treatment policy sees the observations of hours ``1 .. h-1`` (:class:`ObservedState`) and
   decides the treatments of hour ``h`` (for a counterfactual, hours before ``from_hour`` replay the
   factual treatments instead);
2. the bedside team sets FiO2 (:meth:`Model.titrate_fio2`) and the model is integrated over the
   hour (:mod:`organsim.physiology.model`);
3. the true values at the end of the hour are read out (kept inside the catalog's plausible range,
   which the extreme states of dying patients could otherwise leave), death is checked (the stay
   ends with its death hour), and the observation model charts what is measured
   (:mod:`organsim.physiology.observation`).

Treatments are stored as float32 (the cohort's dtype) and the engine applies exactly those values,
so replaying a cohort's treatments table reproduces the run bit for bit. All randomness is
pre-drawn per (seed, stay_id) (:mod:`organsim.physiology.noise`) and every operation is elementwise
over patients, so a stay's trajectory does not depend on which other stays share its batch.

``counterfactual(stay_id, strategy, from_hour)`` returns, for one generated stay, the **true**
trajectory (noise-free measurement of the latent state: every variable at every hour) under the
strategy, plus the observed trajectory the same stay would have charted (same measurement errors
and timing draws). The counterfactual of :class:`ClinicianPolicy` is the factual run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import xarray as xr

from organsim.catalog import Catalog, load_catalog
from organsim.data import Cohort
from organsim.physiology.labels import rolling_24h_urine, sepsis_onset, sofa_score
from organsim.physiology.model import (
    LATENT_KEYS,
    HourInputs,
    Model,
    ModelConstants,
    State,
    insult_inputs,
)
from organsim.physiology.noise import NoiseBank
from organsim.physiology.observation import MeasurementContext, ObservationModel
from organsim.physiology.patients import PatientParameters, sample_patients
from organsim.physiology.policies import (
    ClinicianConfig,
    ClinicianPolicy,
    ObservedState,
    TreatmentPolicy,
)
from organsim.utils.errors import DataError

ENGINE_VERSION = "1.0.0"
"""Bumped whenever a change alters generated values; a cohort from another version cannot be re-run."""

SOURCE = "engine"
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class EngineConfig:
    """Everything that determines a generated cohort (stored in ``cohort.json`` as provenance).

    Attributes
    ----------
    seed
        Non-negative cohort seed; with ``stay_id`` it seeds every random stream of a stay.
    n_patients
        Stays generated, with ids ``1 .. n_patients``.
    hours
        ICU hours simulated per stay (a stay ends earlier at death).
    septic_fraction
        Probability that a patient has a sepsis-causing infection; the Sepsis-3 label follows from
        the simulated course (a few infected patients never meet it). PhysioNet 2019 has 5.7 %
        septic stays; the default is higher so that models see enough sepsis.
    community_onset_fraction
        Among infected patients, the fraction infected before ICU admission.
    pre_icu_hours
        Hours simulated before admission (must cover the earliest infection start, 30 h).
    substeps_per_hour
        Euler steps per hour.
    constants
        Population constants of the model.
    clinician
        The behaviour policy's settings.
    """

    seed: int = 0
    n_patients: int = 1000
    hours: int = 72
    septic_fraction: float = 0.35
    community_onset_fraction: float = 0.7
    pre_icu_hours: int = 36
    substeps_per_hour: int = 6
    constants: ModelConstants = field(default_factory=ModelConstants)
    clinician: ClinicianConfig = field(default_factory=ClinicianConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.n_patients < 1:
            raise ValueError(f"n_patients must be at least 1, got {self.n_patients}")
        if self.hours < 1:
            raise ValueError(f"hours must be at least 1, got {self.hours}")
        if not 0.0 <= self.septic_fraction <= 1.0:
            raise ValueError(f"septic_fraction must lie in [0, 1], got {self.septic_fraction}")
        if not 0.0 <= self.community_onset_fraction <= 1.0:
            raise ValueError(f"community_onset_fraction must lie in [0, 1], got {self.community_onset_fraction}")
        if self.pre_icu_hours < 31:
            raise ValueError(f"pre_icu_hours must be at least 31 (infections start up to 30 h before admission), got {self.pre_icu_hours}")
        if not 4 <= self.substeps_per_hour <= 120:
            raise ValueError(f"substeps_per_hour must lie in [4, 120], got {self.substeps_per_hour}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (floats survive a JSON round trip exactly), with the engine version."""
        out = asdict(self)
        out["engine_version"] = ENGINE_VERSION
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineConfig:
        """Inverse of :meth:`to_dict`; unknown keys or another engine version are errors."""
        data = dict(data)
        version = data.pop("engine_version", None)
        if version != ENGINE_VERSION:
            raise ValueError(
                f"the cohort was generated by engine version {version!r}, this is {ENGINE_VERSION!r}: "
                "its stays cannot be re-run exactly; regenerate it with this version"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown engine setting(s) {unknown}; known: {sorted(known)}")
        constants = ModelConstants(**data.pop("constants", {}))
        clinician = ClinicianConfig(**data.pop("clinician", {}))
        return cls(constants=constants, clinician=clinician, **data)


@dataclass(frozen=True)
class Trajectory:
    """Simulated ICU hours of ``n`` stays; hour axis = ICU hours ``1 .. H``; rows after a death are NaN.

    Attributes
    ----------
    stay_ids
        ``(n,)``.
    variables, treatment_codes
        Catalog codes of the last axes of ``true``/``observed`` and ``treatments``.
    true
        ``(n, H, V)`` true values (latent state read out without measurement error), float64.
    observed
        ``(n, H, V)`` charted values (measurement error, rounding, gaps), NaN = not measured.
    treatments
        ``(n, H, T)`` treatments given each hour (float32 values held as float64); 0 after death.
    sofa
        ``(n, H)`` SOFA of the true state (NaN after death).
    latent
        Name -> ``(n, H)``: ``pathogen``, ``inflammation``, ``tissue_damage``, ``hypoxia`` (0-1) and
        ``gcs_unsedated``.
    n_hours
        ``(n,)`` hours the stay lasted (its death hour, or ``H``).
    death_hour
        ``(n,)`` ICU hour of death, NaN for survivors (within the simulated stay).
    sepsis_onset_hour
        ``(n,)`` ICU hour of Sepsis-3 onset, NaN when not septic.
    """

    stay_ids: np.ndarray
    variables: tuple[str, ...]
    treatment_codes: tuple[str, ...]
    true: np.ndarray
    observed: np.ndarray
    treatments: np.ndarray
    sofa: np.ndarray
    latent: dict[str, np.ndarray]
    n_hours: np.ndarray
    death_hour: np.ndarray
    sepsis_onset_hour: np.ndarray

    @property
    def hours(self) -> np.ndarray:
        """``(H,)`` ICU hour indices ``1 .. H``."""
        return np.arange(1, self.true.shape[1] + 1)

    def select(self, stay_ids: Sequence[int]) -> Trajectory:
        """The trajectories of ``stay_ids`` (in that order); KeyError for unknown ids."""
        position = {int(s): i for i, s in enumerate(self.stay_ids)}
        missing = [int(s) for s in stay_ids if int(s) not in position]
        if missing:
            raise KeyError(f"stay ids not in the trajectory: {missing[:10]}")
        rows = np.array([position[int(s)] for s in stay_ids], dtype=int)
        return Trajectory(
            stay_ids=self.stay_ids[rows],
            variables=self.variables,
            treatment_codes=self.treatment_codes,
            true=self.true[rows],
            observed=self.observed[rows],
            treatments=self.treatments[rows],
            sofa=self.sofa[rows],
            latent={k: v[rows] for k, v in self.latent.items()},
            n_hours=self.n_hours[rows],
            death_hour=self.death_hour[rows],
            sepsis_onset_hour=self.sepsis_onset_hour[rows],
        )

    def frame(self, kind: str = "true") -> pl.DataFrame:
        """Long table: ``stay_id``, ``hour``, the treatments, ``sofa`` and every variable (``kind`` =
        ``"true"`` or ``"observed"``; null = not measured), one row per hour of each stay."""
        if kind not in ("true", "observed"):
            raise ValueError(f"kind must be 'true' or 'observed', got {kind!r}")
        values = self.true if kind == "true" else self.observed
        n, n_h, _ = values.shape
        keep = (np.arange(1, n_h + 1)[None, :] <= self.n_hours[:, None]).reshape(-1)
        columns: dict[str, Any] = {
            "stay_id": np.repeat(self.stay_ids.astype(np.int64), n_h)[keep],
            "hour": np.tile(np.arange(1, n_h + 1, dtype=np.int32), n)[keep],
        }
        for j, code in enumerate(self.treatment_codes):
            columns[code] = self.treatments[:, :, j].reshape(-1)[keep].astype(np.float32)
        columns["sofa"] = self.sofa.reshape(-1)[keep].astype(np.float32)
        for j, code in enumerate(self.variables):
            columns[code] = values[:, :, j].reshape(-1)[keep]
        frame = pl.DataFrame(columns)
        return frame.with_columns(pl.col(list(self.variables)).fill_nan(None))

    def to_xarray(self, kind: str = "true") -> xr.DataArray:
        """``(stay, hour, variable)`` view of the true or observed values (NaN = missing/after death)."""
        if kind not in ("true", "observed"):
            raise ValueError(f"kind must be 'true' or 'observed', got {kind!r}")
        return xr.DataArray(
            self.true if kind == "true" else self.observed,
            dims=("stay", "hour", "variable"),
            coords={"stay": self.stay_ids, "hour": self.hours, "variable": list(self.variables)},
            name=kind,
        )


class PhysiologyEngine:
    """Generates cohorts and re-runs their stays under other treatment strategies.

    Parameters
    ----------
    config
        Cohort settings (default :class:`EngineConfig`).
    catalog
        Variable catalog (default :func:`organsim.catalog.load_catalog`).
    stay_ids
        The stays this engine knows (default ``1 .. config.n_patients``).
    factual_treatments
        ``(len(stay_ids), hours, T)`` recorded factual treatments to replay in counterfactuals
        (set by :meth:`from_cohort`); without them the factual treatments are re-simulated.

    Examples
    --------
    >>> from organsim.physiology import NoTreatmentPolicy
    >>> engine = PhysiologyEngine(EngineConfig(n_patients=50, hours=24, seed=3))
    >>> cohort = engine.generate()
    >>> untreated = engine.counterfactual(7, NoTreatmentPolicy(), from_hour=4)
    >>> untreated.treatments[0, 3:].sum()
    np.float64(0.0)
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        catalog: Catalog | None = None,
        stay_ids: Sequence[int] | None = None,
        factual_treatments: np.ndarray | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.catalog = catalog or load_catalog()
        self.variables = tuple(self.catalog.variable_codes)
        self.treatment_codes = tuple(self.catalog.treatment_codes)
        self.observation = ObservationModel(self.catalog)
        ids = np.arange(1, self.config.n_patients + 1) if stay_ids is None else np.asarray(stay_ids, dtype=np.int64)
        self.stay_ids = ids.astype(np.int64)
        self._position = {int(s): i for i, s in enumerate(self.stay_ids)}
        if factual_treatments is not None and factual_treatments.shape != (len(ids), self.config.hours, len(self.treatment_codes)):
            raise ValueError(
                f"factual_treatments has shape {factual_treatments.shape}, expected "
                f"{(len(ids), self.config.hours, len(self.treatment_codes))}"
            )
        self._factual_treatments = factual_treatments
        self._defaults = np.array([self.catalog.treatment(c).default for c in self.treatment_codes])
        self._plausible_low = np.array([self.catalog.variable(c).plausible[0] for c in self.variables])
        self._plausible_high = np.array([self.catalog.variable(c).plausible[1] for c in self.variables])

    # ------------------------------------------------------------------ construction from a cohort
    @classmethod
    def from_cohort(cls, cohort: Cohort | str | Path, *, catalog: Catalog | None = None) -> PhysiologyEngine:
        """Rebuild the engine that generated ``cohort`` (a :class:`Cohort` or its directory).

        The engine settings come from ``cohort.meta["provenance"]["engine"]``; the recorded
        treatments are kept for replay. Raises :class:`DataError` for a cohort the engine did not
        generate or one from another engine version.
        """
        where = None
        if not isinstance(cohort, Cohort):
            where = Path(cohort) / "cohort.json"
            cohort = Cohort.load(cohort, catalog=catalog)
        settings = cohort.meta.get("provenance", {}).get("engine")
        if settings is None:
            raise DataError(
                f"no provenance.engine in the cohort header: it was not generated by organsim.physiology "
                f"(source {cohort.meta.get('source')!r}), so its stays cannot be re-run",
                file=where,
            )
        try:
            config = EngineConfig.from_dict(settings)
        except (TypeError, ValueError) as exc:
            raise DataError(f"provenance.engine is not usable: {exc}", file=where) from exc
        stay_ids = cohort.stays["stay_id"].to_numpy()
        engine_catalog = catalog or cohort.catalog
        codes = list(engine_catalog.treatment_codes)
        recorded = np.zeros((len(stay_ids), config.hours, len(codes)))
        if cohort.treatments.height:
            position = {int(s): i for i, s in enumerate(stay_ids)}
            rows = np.array([position[int(s)] for s in cohort.treatments["stay_id"].to_numpy()])
            hours = cohort.treatments["hour"].to_numpy().astype(int)
            if hours.min() < 1 or hours.max() > config.hours:
                raise DataError(f"treatment hours must lie in 1..{config.hours}", file=where, column="hour")
            recorded[rows, hours - 1, :] = cohort.treatments.select(codes).to_numpy().astype(np.float64)
        return cls(config, catalog=engine_catalog, stay_ids=stay_ids, factual_treatments=recorded)

    # ------------------------------------------------------------------ public runs
    def generate(self, *, progress: ProgressCallback | None = None, chunk_size: int = 1000) -> Cohort:
        """Simulate every stay under the clinician policy and return the canonical cohort.

        Parameters
        ----------
        progress
            Optional ``progress(done, total)`` callback, called after every simulated ICU hour of
            every chunk (units: stay-hours).
        chunk_size
            Stays simulated together (memory ~ 1 MB per stay at 72 h); results do not depend on it.
        """
        parts = []
        total = len(self.stay_ids) * self.config.hours
        done = 0
        for start in range(0, len(self.stay_ids), chunk_size):
            ids = self.stay_ids[start : start + chunk_size]
            offset = done

            def chunk_progress(hour: int, _: int, offset: int = offset, size: int = len(ids)) -> None:
                if progress is not None:
                    progress(offset + hour * size, total)

            parts.append(self._run(ids, ClinicianPolicy(self.config.clinician), progress=chunk_progress))
            done += len(ids) * self.config.hours
        return self._cohort(parts)

    def factual(self, stay_ids: Sequence[int] | None = None) -> Trajectory:
        """The factual (clinician-treated) trajectories of ``stay_ids`` (default: all stays)."""
        ids = self._checked_ids(stay_ids)
        return self._run(ids, ClinicianPolicy(self.config.clinician))

    def counterfactual(self, stay_id: int, strategy: TreatmentPolicy, from_hour: int) -> Trajectory:
        """The true trajectory of generated stay ``stay_id`` had ``strategy`` decided from ``from_hour`` on.

        Hours before ``from_hour`` replay the factual treatments; the patient has the same
        parameters, process noise and measurement draws as in the factual run. Use
        ``.true`` (or ``.frame("true")``) for the ground truth and ``.observed`` for what would
        have been charted.
        """
        return self.counterfactuals([stay_id], strategy, from_hour)

    def counterfactuals(
        self, stay_ids: Sequence[int], strategy: TreatmentPolicy, from_hour: int, *, noise_draw: Sequence[int] | None = None
    ) -> Trajectory:
        """:meth:`counterfactual` for several stays at once (vectorised; same results as one by one).

        ``noise_draw`` (non-negative integers) redraws all hourly noise from ``from_hour`` on
        (:meth:`~organsim.physiology.noise.NoiseBank.refreshed`): not the stay's true future but
        another one its true physiology could have taken; the same ``noise_draw`` gives the same
        one under any strategy. None (default): the stay's own noise, the truth."""
        if not isinstance(from_hour, int | np.integer) or not 1 <= from_hour <= self.config.hours:
            raise ValueError(f"from_hour must be an integer ICU hour in 1..{self.config.hours}, got {from_hour!r}")
        if not callable(strategy):
            raise TypeError(f"strategy must be a TreatmentPolicy (callable (state, hour) -> dict), got {type(strategy).__name__}")
        ids = self._checked_ids(stay_ids)
        replay = None
        if from_hour > 1:
            if self._factual_treatments is not None:
                replay = self._factual_treatments[[self._position[int(s)] for s in ids]]
            else:
                replay = self._run(ids, ClinicianPolicy(self.config.clinician)).treatments
        return self._run(ids, strategy, from_hour=int(from_hour), replay=replay, noise_draw=noise_draw)

    def patients(self, stay_ids: Sequence[int] | None = None) -> PatientParameters:
        """The sampled parameters of ``stay_ids`` (default: all stays)."""
        return self._patients(self._checked_ids(stay_ids))

    # ------------------------------------------------------------------ internals
    def _checked_ids(self, stay_ids: Sequence[int] | None) -> np.ndarray:
        if stay_ids is None:
            return self.stay_ids
        ids = np.asarray([int(s) for s in stay_ids], dtype=np.int64)
        unknown = [int(s) for s in ids if int(s) not in self._position]
        if unknown:
            raise KeyError(
                f"stay id(s) {unknown[:10]} were not generated by this engine "
                f"(it knows {len(self.stay_ids)} stays, ids {int(self.stay_ids.min())}..{int(self.stay_ids.max())})"
            )
        return ids

    def _patients(self, ids: np.ndarray) -> PatientParameters:
        cfg = self.config
        return sample_patients(
            ids, seed=cfg.seed, septic_fraction=cfg.septic_fraction,
            community_onset_fraction=cfg.community_onset_fraction, hours=cfg.hours,
        )

    def _checked_treatments(self, decided: dict[str, np.ndarray], n: int, hour: int) -> np.ndarray:
        """Policy output -> ``(n, T)`` float32-exact values; errors name the code and the problem."""
        out = np.tile(self._defaults, (n, 1))
        for code, value in decided.items():
            if code not in self.treatment_codes:
                raise ValueError(f"the policy returned unknown treatment {code!r} at hour {hour}; known: {list(self.treatment_codes)}")
            value = np.asarray(value, dtype=np.float64)
            if value.shape != (n,):
                raise ValueError(f"the policy returned {code!r} with shape {value.shape} at hour {hour}; expected ({n},)")
            treatment = self.catalog.treatment(code)
            low, high = treatment.plausible
            bad = ~np.isfinite(value) | (value < low) | (value > high)
            if treatment.kind == "binary":
                bad |= (value != 0.0) & (value != 1.0)
            if bad.any():
                first = int(np.argmax(bad))
                raise ValueError(
                    f"the policy gave {code}={float(value[first]):g} at hour {hour} (row {first}); "
                    f"allowed: {'0 or 1' if treatment.kind == 'binary' else f'{low}..{high} {treatment.unit}'}"
                )
            out[:, self.treatment_codes.index(code)] = value
        return out.astype(np.float32).astype(np.float64)

    def _run(
        self,
        ids: np.ndarray,
        policy: TreatmentPolicy,
        *,
        from_hour: int = 1,
        replay: np.ndarray | None = None,
        progress: ProgressCallback | None = None,
        noise_draw: Sequence[int] | None = None,
    ) -> Trajectory:
        """Simulate ``ids`` (see the module docstring); ``replay[:, h-1]`` is used for hours < ``from_hour``."""
        cfg = self.config
        n, n_hours, n_pre = len(ids), cfg.hours, cfg.pre_icu_hours
        n_vars, n_treat = len(self.variables), len(self.treatment_codes)
        params = self._patients(ids)
        model = Model(params, cfg.constants)
        noise = NoiseBank.draw(
            ids, seed=cfg.seed, total_hours=n_pre + n_hours, hours=n_hours,
            n_variables=n_vars, n_observation_uniforms=self.observation.n_uniforms,
        )
        if noise_draw is not None:
            noise = noise.refreshed(ids, seed=cfg.seed, from_hour=from_hour, pre_icu_hours=n_pre, draw=noise_draw)
        code = {c: j for j, c in enumerate(self.treatment_codes)}
        fluid_j, ne_j, abx_j, vent_j = (code["iv_fluid_ml"], code["norepinephrine"], code["antibiotic"], code["mechanical_ventilation"])
        x = model.initial_state()
        # SOFA inputs over every engine hour (pre-ICU and ICU)
        total = n_pre + n_hours
        sofa_inputs = {k: np.empty((n, total)) for k in ("pao2", "fio2", "platelets", "bilirubin_total", "map", "gcs_unsedated", "creatinine", "urine_output")}
        sofa_ne = np.zeros((n, total))
        sofa_vent = np.zeros((n, total))
        zeros = np.zeros(n)

        hours_ventilated = np.zeros(n)

        def hour_inputs(engine_hour: int, treatments: np.ndarray | None) -> HourInputs:
            start = float(engine_hour - 1)
            newly = params.infected & (params.infection_hour >= start) & (params.infection_hour < start + 1.0)
            x[State.PATHOGEN] = np.where(newly, params.pathogen_initial, x[State.PATHOGEN])
            insults = insult_inputs(params, start)
            u = HourInputs(
                fluid_l_per_h=zeros if treatments is None else treatments[:, fluid_j] / 1000.0,
                norepinephrine=zeros if treatments is None else treatments[:, ne_j],
                ventilated=zeros if treatments is None else treatments[:, vent_j],
                fio2=zeros,
                process=noise.process[:, engine_hour - 1 + n_pre],
                **insults,
            )
            hours_ventilated[:] = np.where(u.ventilated > 0.5, hours_ventilated + 1.0, 0.0)
            u.fio2 = model.titrate_fio2(x, u, hours_ventilated)
            return u

        def record_sofa(column: int, values: dict[str, np.ndarray], u: HourInputs) -> None:
            for key, store in sofa_inputs.items():
                store[:, column] = values[key]
            sofa_ne[:, column] = u.norepinephrine
            sofa_vent[:, column] = u.ventilated

        for engine_hour in range(1 - n_pre, 1):
            u = hour_inputs(engine_hour, None)
            urine = model.advance_hour(x, u, zeros, cfg.substeps_per_hour)
            record_sofa(engine_hour - 1 + n_pre, model.readout(x, u, urine), u)

        true = np.full((n, n_hours, n_vars), np.nan)
        observed = np.full((n, n_hours, n_vars), np.nan)
        treatments = np.zeros((n, n_hours, n_treat))
        latent = {k: np.full((n, n_hours), np.nan) for k in LATENT_KEYS}
        carried = np.full((n, n_hours, n_vars), np.nan)
        carried_hour = np.full((n, n_hours, n_vars), np.nan)
        last_value = np.full((n, n_vars), np.nan)  # rebound each hour to the latest carried row
        last_hour = np.full((n, n_vars), np.nan)
        alive = np.ones(n, dtype=bool)
        death_hour = np.full(n, np.nan)
        first_antibiotic = np.full(n, np.nan)
        ever_ne = np.zeros(n)
        at_admission = np.tile(self._defaults, (n, 1))
        at_admission[:, vent_j] = params.ventilated_at_admission.astype(float)
        lactate_j, spo2_j, bili_j = (self.variables.index(c) for c in ("lactate", "spo2", "bilirubin_total"))
        for hour in range(1, n_hours + 1):
            if hour < from_hour:
                decided = replay[:, hour - 1].copy()
            else:
                state = ObservedState(
                    stay_ids=ids,
                    variables=self.variables,
                    treatment_codes=self.treatment_codes,
                    history=_readonly(observed[:, : hour - 1]),
                    carried=_readonly(carried[:, : hour - 1]),
                    carried_hour=_readonly(carried_hour[:, : hour - 1]),
                    treatments=_readonly(treatments[:, : hour - 1]),
                    at_admission=_readonly(at_admission),
                    age=params.age,
                    sex=params.sex.astype(float),
                    weight=params.weight,
                    alive=alive.copy(),
                    random=_readonly(noise.policy),
                    random_stay=_readonly(noise.policy_stay),
                )
                decided = self._checked_treatments(policy(state, hour), n, hour)
            decided[~alive] = self._defaults
            treatments[:, hour - 1] = decided
            u = hour_inputs(hour, decided)
            urine = model.advance_hour(x, u, decided[:, abx_j], cfg.substeps_per_hour)
            values = model.readout(x, u, urine)
            record_sofa(hour - 1 + n_pre, values, u)
            row = np.clip(np.stack([values[c] for c in self.variables], axis=1), self._plausible_low, self._plausible_high)
            true[:, hour - 1] = np.where(alive[:, None], row, np.nan)
            for key in LATENT_KEYS:
                latent[key][:, hour - 1] = np.where(alive, values[key], np.nan)
            first_antibiotic = np.where(np.isnan(first_antibiotic) & (decided[:, abx_j] > 0.5), hour, first_antibiotic)
            ever_ne = np.maximum(ever_ne, decided[:, ne_j])
            context = MeasurementContext(
                ventilated=decided[:, vent_j],
                on_norepinephrine=decided[:, ne_j],
                ever_norepinephrine=ever_ne,
                recognised_hours=hour - first_antibiotic,
                last_lactate=last_value[:, lactate_j],
                last_lactate_age=hour - last_hour[:, lactate_j],
                last_spo2=last_value[:, spo2_j],
                cardiac=params.cardiac,
                diabetic=params.diabetic,
                liver_disease=params.liver_disease,
                heparin=params.heparin,
                bilirubin_raised=last_value[:, bili_j] > 2.0,
            )
            measured = self.observation.measured(hour, context, noise.observation[:, hour - 1], noise.observation_stay)
            measured &= alive[:, None]
            chart = self.observation.record(row, measured, noise.measurement[:, hour - 1])
            observed[:, hour - 1] = chart
            carried[:, hour - 1] = np.where(measured, chart, last_value)
            carried_hour[:, hour - 1] = np.where(measured, float(hour), last_hour)
            last_value, last_hour = carried[:, hour - 1], carried_hour[:, hour - 1]
            died = alive & (values["tissue_damage"] >= params.lethal_damage)
            death_hour[died] = hour
            alive &= ~died
            if progress is not None:
                progress(hour, n_hours)

        stay_hours = np.where(np.isnan(death_hour), n_hours, death_hour).astype(np.int32)
        urine_24h = rolling_24h_urine(sofa_inputs["urine_output"])
        sofa_all = sofa_score(
            sofa_inputs["pao2"], sofa_inputs["fio2"], sofa_vent, sofa_inputs["platelets"], sofa_inputs["bilirubin_total"],
            sofa_inputs["map"], sofa_ne, sofa_inputs["gcs_unsedated"], sofa_inputs["creatinine"], urine_24h,
        )
        onset = sepsis_onset(sofa_all, params.infection_hour, first_hour=1 - n_pre, n_hours=stay_hours)
        icu_sofa = sofa_all[:, n_pre:].astype(np.float64)
        after_end = np.arange(1, n_hours + 1)[None, :] > stay_hours[:, None]
        icu_sofa[after_end] = np.nan
        return Trajectory(
            stay_ids=ids.copy(),
            variables=self.variables,
            treatment_codes=self.treatment_codes,
            true=true,
            observed=observed,
            treatments=treatments,
            sofa=icu_sofa,
            latent=latent,
            n_hours=stay_hours,
            death_hour=death_hour,
            sepsis_onset_hour=onset,
        )

    def _cohort(self, parts: list[Trajectory]) -> Cohort:
        """Assemble the canonical cohort from the factual trajectories of all chunks."""
        stays, hourly, treatments = [], [], []
        for traj in parts:
            params = self._patients(traj.stay_ids)
            stays.append(pl.DataFrame({
                "stay_id": traj.stay_ids.astype(np.int64),
                "age": params.age.astype(np.float32),
                "sex": params.sex.astype(np.int8),
                "weight": params.weight.astype(np.float32),
                "unit": params.unit.astype(str),
                "hosp_adm_hours": params.hosp_adm_hours.astype(np.float32),
                "sepsis": np.isfinite(traj.sepsis_onset_hour),
                "sepsis_onset_hour": pl.Series(np.where(np.isfinite(traj.sepsis_onset_hour), traj.sepsis_onset_hour, np.nan)).fill_nan(None).cast(pl.Int32),
                "death": np.isfinite(traj.death_hour),
            }))
            observed = traj.frame("observed")
            hourly.append(observed.select(["stay_id", "hour", *traj.variables]))
            treatments.append(observed.select(["stay_id", "hour", *traj.treatment_codes]))
        stays_frame = pl.concat(stays)
        provenance = {
            "engine": self.config.to_dict(),
            "generator": "organsim.physiology.PhysiologyEngine",
            "outcomes": {
                "septic_stays": int(stays_frame["sepsis"].sum()),
                "deaths": int(stays_frame["death"].sum()),
            },
            "labels": "sepsis_onset_hour: Sepsis-3 on the latent truth (organsim.physiology.labels); "
                      "death: tissue damage reached the patient's lethal threshold within the stay",
        }
        return Cohort.from_frames(
            stays_frame, pl.concat(hourly), pl.concat(treatments), source=SOURCE, provenance=provenance, catalog=self.catalog,
        )


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view
