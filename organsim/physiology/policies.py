"""Treatment policies: the protocol the engine calls every ICU hour, the clinician, and simple strategies.

The protocol
------------
A policy is any object with ``__call__(state: ObservedState, hour: int) -> dict[str, np.ndarray]``:

- ``hour`` is the ICU hour being decided (1-based, like PhysioNet ``ICULOS``); the treatments it
  returns run during that hour and the values of hour ``hour`` are measured at its end.
- ``state`` holds what a bedside team could know before that hour: the observed (noisy, gappy)
  values of hours ``1 .. hour-1``, the treatments actually given in those hours (after replay, these
  may not be the policy's own earlier choices), static data, and per-stay random numbers. It never
  holds the latent truth.
- The result maps catalog treatment codes (``iv_fluid_ml`` mL over the hour, ``norepinephrine``
  ug/kg/min, ``antibiotic`` 0/1 = a dose given this hour, ``mechanical_ventilation`` 0/1) to
  ``(n,)`` arrays. A code left out means its catalog default (nothing given). Unknown codes,
  wrong shapes, values outside the catalog's plausible range or binary values other than 0/1 are
  errors.
- Policies are vectorised over patients and must be pure: the same ``state`` and ``hour`` give the
  same result. Draw any randomness from ``state.random`` (per stay and hour) or
  ``state.random_stay`` (per stay): they are pre-drawn per (seed, stay_id), so a re-run of the
  same patient sees the same numbers, which is what lets the engine's oracle reproduce the factual
  run exactly. Keep no memory between calls; derive it from ``state.treatments``.

The counterfactual layer's strategy objects implement this protocol; the engine never needs to know
more about them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ObservedState:
    """What a policy sees when deciding ICU hour ``h``; ``n`` patients, ``V`` variables, ``T`` treatments.

    Attributes
    ----------
    stay_ids
        ``(n,)`` stay identifiers.
    variables
        The ``V`` catalog variable codes, in catalog order (the last axis of ``history``).
    treatment_codes
        The ``T`` catalog treatment codes (the last axis of ``treatments``).
    history
        ``(n, h - 1, V)`` observed values of ICU hours ``1 .. h-1``; NaN = not measured.
    carried
        ``(n, h - 1, V)`` the latest value measured at or before each hour (NaN = none yet).
    carried_hour
        ``(n, h - 1, V)`` the ICU hour that value was measured in (NaN = none yet).
    treatments
        ``(n, h - 1, T)`` treatments given in hours ``1 .. h-1``.
    at_admission
        ``(n, T)`` treatments running when the patient arrived (e.g. ventilated from theatre).
    age, sex, weight
        ``(n,)`` years, 0 = female / 1 = male, kg.
    alive
        ``(n,)`` False once a patient has died (their treatments are ignored).
    random
        ``(n, hours, k)`` uniforms on [0, 1): row ``h - 1`` belongs to hour ``h``.
    random_stay
        ``(n, k)`` per-stay uniforms on [0, 1).
    """

    stay_ids: np.ndarray
    variables: tuple[str, ...]
    treatment_codes: tuple[str, ...]
    history: np.ndarray
    carried: np.ndarray
    carried_hour: np.ndarray
    treatments: np.ndarray
    at_admission: np.ndarray
    age: np.ndarray
    sex: np.ndarray
    weight: np.ndarray
    alive: np.ndarray
    random: np.ndarray
    random_stay: np.ndarray

    @property
    def n(self) -> int:
        return int(self.stay_ids.shape[0])

    @property
    def hours_seen(self) -> int:
        """Number of ICU hours already observed (``h - 1``)."""
        return int(self.history.shape[1])

    def column(self, code: str) -> int:
        """Index of variable ``code`` on the last axis of ``history``; KeyError naming the known codes."""
        try:
            return self.variables.index(code)
        except ValueError:
            raise KeyError(f"unknown variable {code!r}; known: {', '.join(self.variables)}") from None

    def latest(self, code: str, max_age_hours: float | None = None) -> np.ndarray:
        """``(n,)`` latest observed value of ``code``; NaN when never measured or older than ``max_age_hours``.

        The age of a value measured in hour ``t`` is ``h - t`` when deciding hour ``h`` (1 = last hour).
        """
        if self.hours_seen == 0:
            return np.full(self.n, np.nan)
        j = self.column(code)
        value = self.carried[:, -1, j]
        if max_age_hours is None:
            return value.copy()
        age = (self.hours_seen + 1) - self.carried_hour[:, -1, j]
        return np.where(age <= max_age_hours, value, np.nan)

    def carried_forward(self, code: str, max_age_hours: int, last: int | None = None) -> np.ndarray:
        """``(n, k)`` history of ``code`` over the last ``k = min(last, h - 1)`` hours (all when
        ``last`` is None), each value carried forward while it is less than ``max_age_hours`` old
        (measured in hour ``t``, it fills hours ``t .. t + max_age - 1``); NaN where none is fresh."""
        j = self.column(code)
        first = 0 if last is None else max(self.hours_seen - last, 0)
        hours = np.arange(first + 1, self.hours_seen + 1)
        fresh = hours[None, :] - self.carried_hour[:, first:, j] < max_age_hours
        return np.where(fresh, self.carried[:, first:, j], np.nan)

    def treatment_history(self, code: str) -> np.ndarray:
        """``(n, h - 1)`` treatments ``code`` given in hours ``1 .. h-1``."""
        try:
            j = self.treatment_codes.index(code)
        except ValueError:
            raise KeyError(f"unknown treatment {code!r}; known: {', '.join(self.treatment_codes)}") from None
        return self.treatments[:, :, j]

    def previous_treatment(self, code: str) -> np.ndarray:
        """``(n,)`` treatment ``code`` of the previous hour (what ran at admission, for hour 1)."""
        if self.hours_seen == 0:
            return self.at_admission[:, self.treatment_codes.index(code)].copy()
        return self.treatment_history(code)[:, -1].copy()


@runtime_checkable
class TreatmentPolicy(Protocol):
    """Decides the treatments of one ICU hour for every patient (see the module docstring)."""

    def __call__(self, state: ObservedState, hour: int) -> dict[str, np.ndarray]: ...


class NoTreatmentPolicy:
    """Gives nothing: no fluids, no vasopressor, no antibiotic, no ventilation (even if it ran on arrival)."""

    def __call__(self, state: ObservedState, hour: int) -> dict[str, np.ndarray]:
        return {}

    def __repr__(self) -> str:
        return "NoTreatmentPolicy()"


class ConstantPolicy:
    """The same treatments every hour, e.g. ``ConstantPolicy({"norepinephrine": 0.1})``.

    Parameters
    ----------
    values
        Treatment code -> value given every hour (codes left out: nothing).
    """

    def __init__(self, values: Mapping[str, float]) -> None:
        self.values = dict(values)

    def __call__(self, state: ObservedState, hour: int) -> dict[str, np.ndarray]:
        return {code: np.full(state.n, float(value)) for code, value in self.values.items()}

    def __repr__(self) -> str:
        return f"ConstantPolicy({self.values!r})"


class FixedSchedulePolicy:
    """Treatments by ICU hour, the same for every patient.

    Parameters
    ----------
    schedule
        Treatment code -> {ICU hour: value}; hours not listed get nothing. Example: antibiotics
        every 8 h from hour 3, ``{"antibiotic": {h: 1 for h in range(3, 73, 8)}}``.
    """

    def __init__(self, schedule: Mapping[str, Mapping[int, float]]) -> None:
        self.schedule = {code: {int(h): float(v) for h, v in by_hour.items()} for code, by_hour in schedule.items()}

    def __call__(self, state: ObservedState, hour: int) -> dict[str, np.ndarray]:
        return {code: np.full(state.n, by_hour.get(hour, 0.0)) for code, by_hour in self.schedule.items()}

    def __repr__(self) -> str:
        return f"FixedSchedulePolicy({self.schedule!r})"


class ComposedPolicy:
    """A base policy with some treatments decided by other policies.

    ``ComposedPolicy(ClinicianPolicy(), {"antibiotic": NoTreatmentPolicy()})`` is the clinician who
    never gives antibiotics.

    Parameters
    ----------
    base
        Decides every treatment not in ``overrides``.
    overrides
        Treatment code -> the policy that decides that code (a code it does not return: nothing).
    """

    def __init__(self, base: TreatmentPolicy, overrides: Mapping[str, TreatmentPolicy]) -> None:
        self.base = base
        self.overrides = dict(overrides)

    def __call__(self, state: ObservedState, hour: int) -> dict[str, np.ndarray]:
        decided = {code: value for code, value in self.base(state, hour).items() if code not in self.overrides}
        for code, policy in self.overrides.items():
            value = policy(state, hour).get(code)
            if value is not None:
                decided[code] = value
        return decided

    def __repr__(self) -> str:
        return f"ComposedPolicy({self.base!r}, {self.overrides!r})"


@dataclass(frozen=True)
class ClinicianConfig:
    """The Surviving-Sepsis-like behaviour policy of generated cohorts (Evans et al., Crit Care Med
    2021;49:e1063). Every threshold is applied to observed values (last value carried forward).

    Per-stay variation comes from ``ObservedState.random_stay`` and per-hour coin flips from
    ``ObservedState.random`` (column meanings in :class:`ClinicianPolicy`).
    """

    recognition_rate_min: float = 0.15
    recognition_rate_max: float = 0.6
    """Per-hour chance that a positive sepsis screen leads to the first antibiotic dose; each stay's
    team has a rate between these (mean delay 1.7-6.7 h of positive screen)."""
    antibiotic_interval_8h_fraction: float = 0.6
    """Stays dosed every 8 h; the others every 12 h."""
    missed_dose_probability: float = 0.03
    map_target: float = 65.0
    """mmHg; a quarter of stays are run at 70."""
    bolus_response_probability: float = 0.8
    """Chance per qualifying hour that a bolus is actually given."""
    fluid_cap_ml_per_kg_6h: float = 40.0
    """No further bolus once this much fluid was given in the last 6 h."""
    fluid_before_vasopressor_ml_per_kg: float = 20.0
    """Norepinephrine starts after this much fluid in total, or at once when MAP < 55."""
    intolerance_cvp: float = 15.0
    """No bolus when the last CVP (within 4 h) is above this (mmHg)."""
    lactate_bolus_threshold: float = 4.0
    norepinephrine_max: float = 1.0
    titration_probability: float = 0.85
    intubation_probability: float = 0.7
    """Chance per qualifying hour that a patient meeting intubation criteria is intubated."""
    intubation_norepinephrine: float = 0.15
    """Patients in shock on at least this much norepinephrine (ug/kg/min) are intubated."""
    extubation_probability: float = 0.6
    """Chance per qualifying hour that a ventilated patient meeting readiness criteria is extubated."""



class ClinicianPolicy:
    """The bedside team of generated cohorts: recognises sepsis late and imperfectly and treats what it sees.

    Rules, on observed values carried forward (vitals up to 2-4 h, labs up to 24 h):

    - Sepsis screen (SIRS plus organ dysfunction) on the latest values: temperature >= 38.3 or
      < 36 degC, or WBC > 12 or < 4 x10^3/uL; and MAP < target, or two of RR >= 22, SBP <= 100,
      HR > 100, lactate >= 2, GCS < 15. In each hour with a positive screen the team recognises
      sepsis and gives the first antibiotic dose with a per-stay probability (a geometric delay);
      doses are repeated every 8 or 12 h (now and then one is missed). Recognition is "antibiotics
      started". Non-infected patients with a sterile inflammatory response screen positive too and
      get antibiotics, as in real ICUs.
    - Fluids: a bolus (250, 500 or 1000 mL per stay) in an hour with MAP below target, SBP < 90 or
      lactate >= 4, unless 40 mL/kg were given in the last 6 h or CVP > 15; a maintenance infusion
      (0-100 mL/h per stay) once sepsis is recognised or while on a vasopressor or ventilator.
    - Norepinephrine: started (0.05-0.1 ug/kg/min) when MAP stayed below target for the last two
      observed hours after 20 mL/kg of fluid (at once below 55); titrated up by a per-stay step
      while below target, down when 10 mmHg above; stopped below 0.03.
    - Ventilation: intubation when SpO2 stayed below a per-stay threshold (88-92 %) for two hours,
      or RR >= 30 with SpO2 < 94, or GCS <= 8, or in shock on norepinephrine >= 0.15; extubation
      (a per-hour chance) once SpO2 >= 92, RR <= 28 and norepinephrine <= 0.1 after a minimum time
      (2-8 h after surgery, 12-36 h after intubation in the ICU).

    ``random_stay`` columns: 0 recognition rate, 2 dosing interval, 3 bolus size, 4 maintenance
    rate, 5 norepinephrine start dose, 6 titration step, 7 MAP target, 8 intubation SpO2 threshold,
    9 minimum ventilation hours, 10 fever threshold.
    ``random`` columns: 0 missed dose, 1 bolus given, 2 titration done, 3 intubation, 4 extubation,
    5 recognition.
    """

    def __init__(self, config: ClinicianConfig | None = None) -> None:
        self.config = config or ClinicianConfig()

    def __repr__(self) -> str:
        return f"ClinicianPolicy({self.config!r})"

    def __call__(self, state: ObservedState, hour: int) -> dict[str, np.ndarray]:
        cfg = self.config
        n = state.n
        stay = state.random_stay
        coin = state.random[:, hour - 1]
        seen = state.hours_seen
        map_target = np.where(stay[:, 7] < 0.25, cfg.map_target + 5.0, cfg.map_target)
        last_map = state.latest("map", 2)
        last_sbp = state.latest("sbp", 2)
        last_lactate = state.latest("lactate", 6)
        last_spo2 = state.latest("spo2", 2)
        last_rr = state.latest("resp_rate", 2)
        last_cvp = state.latest("cvp", 4)
        last_gcs = state.latest("gcs", 6)

        # ---------------------------------------------------------------- sepsis recognition
        antibiotics = state.treatment_history("antibiotic") > 0.5
        started = antibiotics.any(axis=1)
        first_dose = np.argmax(antibiotics, axis=1) + 1.0 if seen else np.zeros(n)
        rate = cfg.recognition_rate_min + (cfg.recognition_rate_max - cfg.recognition_rate_min) * stay[:, 0]
        screen = self._screen(state, map_target, fever_threshold=38.3 - 0.5 * stay[:, 10])
        start_now = ~started & screen & (coin[:, 5] < rate)
        interval = np.where(stay[:, 2] < cfg.antibiotic_interval_8h_fraction, 8.0, 12.0)
        repeat_due = started & (np.mod(hour - first_dose, interval) == 0)
        antibiotic = (start_now | (repeat_due & (coin[:, 0] >= cfg.missed_dose_probability))).astype(float)
        recognised = started | start_now

        # ---------------------------------------------------------------- vasopressor
        previous_ne = state.previous_treatment("norepinephrine")
        fluids = state.treatment_history("iv_fluid_ml")
        total_fluid = fluids.sum(axis=1)
        recent_fluid = fluids[:, -6:].sum(axis=1)
        low_map = last_map < map_target
        if seen >= 2:
            map_history = state.carried_forward("map", 2, last=2)
            sustained_low = (map_history[:, -1] < map_target) & (map_history[:, -2] < map_target)
        else:
            sustained_low = np.zeros(n, dtype=bool)
        enough_fluid = total_fluid >= cfg.fluid_before_vasopressor_ml_per_kg * state.weight
        start_dose = 0.05 + 0.05 * stay[:, 5]
        step = 0.03 + 0.05 * stay[:, 6]
        titrate = coin[:, 2] < cfg.titration_probability
        start = (previous_ne == 0) & sustained_low & (enough_fluid | (last_map < 55.0))
        up = (previous_ne > 0) & low_map & titrate
        down = (previous_ne > 0) & (last_map >= map_target + 10.0) & titrate
        norepinephrine = np.where(start, start_dose, previous_ne)
        norepinephrine = np.where(up, np.minimum(previous_ne + step, cfg.norepinephrine_max), norepinephrine)
        norepinephrine = np.where(down, previous_ne - step, norepinephrine)
        norepinephrine = np.where(norepinephrine < 0.03, 0.0, np.round(norepinephrine, 3))

        # ---------------------------------------------------------------- ventilation
        previous_vent = state.previous_treatment("mechanical_ventilation") > 0.5
        spo2_threshold = 88.0 + 4.0 * stay[:, 8]
        if seen >= 2:
            spo2_history = state.carried_forward("spo2", 2, last=2)
            hypoxaemic = (spo2_history[:, -1] < spo2_threshold) & (spo2_history[:, -2] < spo2_threshold)
        else:
            hypoxaemic = np.zeros(n, dtype=bool)
        distressed = (last_rr >= 30.0) & (last_spo2 < 94.0)
        obtunded = last_gcs <= 8.0
        shocked = previous_ne >= cfg.intubation_norepinephrine
        intubate = ~previous_vent & (hypoxaemic | distressed | obtunded | shocked) & (coin[:, 3] < cfg.intubation_probability)
        hours_on = self._hours_ventilated(state)
        intubated_in_icu = self._intubated_in_icu(state)
        minimum_hours = np.where(intubated_in_icu, 12.0 + 24.0 * stay[:, 9], 2.0 + 6.0 * stay[:, 9])
        ready = (
            (hours_on >= minimum_hours) & (last_spo2 >= 92.0) & (last_rr <= 28.0) & (previous_ne <= 0.1)
            & (coin[:, 4] < cfg.extubation_probability)
        )
        ventilation = np.where(previous_vent, ~ready, intubate).astype(float)

        # ---------------------------------------------------------------- fluids
        bolus_ml = np.where(stay[:, 3] < 0.25, 250.0, np.where(stay[:, 3] < 0.8, 500.0, 1000.0))
        hypoperfused = (last_map < map_target) | (last_sbp < 90.0) | (last_lactate >= cfg.lactate_bolus_threshold)
        tolerant = ~(last_cvp > cfg.intolerance_cvp) & (recent_fluid < cfg.fluid_cap_ml_per_kg_6h * state.weight)
        bolus = np.where(hypoperfused & tolerant & (coin[:, 1] < cfg.bolus_response_probability), bolus_ml, 0.0)
        maintenance_ml_h = np.where(stay[:, 4] < 0.3, 0.0, np.round(40.0 + 60.0 * stay[:, 4], -1))
        supported = recognised | (norepinephrine > 0) | (ventilation > 0)
        iv_fluid = bolus + np.where(supported, maintenance_ml_h, 0.0)

        return {
            "iv_fluid_ml": iv_fluid,
            "norepinephrine": norepinephrine,
            "antibiotic": antibiotic,
            "mechanical_ventilation": ventilation,
        }

    @staticmethod
    def _screen(state: ObservedState, map_target: np.ndarray, fever_threshold: np.ndarray) -> np.ndarray:
        """``(n,)`` sepsis screen on the latest observations (vitals up to 2 h old, labs 6-24 h)."""
        temperature = state.latest("temperature", 8)
        wbc = state.latest("wbc", 24)
        inflamed = (temperature >= fever_threshold) | (temperature < 36.0) | (wbc > 12.0) | (wbc < 4.0)
        signs = (
            (state.latest("resp_rate", 2) >= 22.0).astype(int)
            + (state.latest("sbp", 2) <= 100.0)
            + (state.latest("hr", 2) > 100.0)
            + (state.latest("lactate", 6) >= 2.0)
            + (state.latest("gcs", 8) < 15.0)
        )
        return inflamed & ((state.latest("map", 2) < map_target) | (signs >= 2))

    @staticmethod
    def _hours_ventilated(state: ObservedState) -> np.ndarray:
        """``(n,)`` consecutive ventilated hours up to the previous hour (arrival counts as one)."""
        vent = state.treatment_history("mechanical_ventilation") > 0.5
        admitted = state.at_admission[:, state.treatment_codes.index("mechanical_ventilation")] > 0.5
        full = np.concatenate([admitted[:, None], vent], axis=1)
        off = ~full
        # index of the last hour off the ventilator; every hour after it was ventilated
        last_off = np.where(off.any(axis=1), full.shape[1] - 1 - np.argmax(off[:, ::-1], axis=1), -1)
        return (full.shape[1] - 1 - last_off).astype(float)

    @staticmethod
    def _intubated_in_icu(state: ObservedState) -> np.ndarray:
        """``(n,)`` True when the current ventilation started in the ICU (not on arrival from theatre)."""
        vent = state.treatment_history("mechanical_ventilation") > 0.5
        admitted = state.at_admission[:, state.treatment_codes.index("mechanical_ventilation")] > 0.5
        full = np.concatenate([admitted[:, None], vent], axis=1)
        return ~full.all(axis=1) & full[:, -1] if full.shape[1] > 1 else np.zeros(state.n, dtype=bool)


POLICY_NAMES = (
    "clinician",
    "none",
    "no-antibiotics",
    "no-fluids",
    "no-vasopressor",
    "no-ventilation",
    "early-antibiotics",
)
"""Strategies :func:`named_policy` knows (the command line's ``--policy``)."""


def named_policy(name: str, *, from_hour: int, hours: int, config: ClinicianConfig | None = None) -> TreatmentPolicy:
    """A simple strategy by name (richer strategies come from the counterfactual layer).

    ``clinician``: the behaviour policy; ``none``: nothing at all; ``no-<treatment>``: the clinician
    without that treatment; ``early-antibiotics``: the clinician, but antibiotics every 8 h from
    ``from_hour`` to ``hours``.
    """
    clinician = ClinicianPolicy(config)
    withheld = {
        "no-antibiotics": "antibiotic",
        "no-fluids": "iv_fluid_ml",
        "no-vasopressor": "norepinephrine",
        "no-ventilation": "mechanical_ventilation",
    }
    if name == "clinician":
        return clinician
    if name == "none":
        return NoTreatmentPolicy()
    if name in withheld:
        return ComposedPolicy(clinician, {withheld[name]: NoTreatmentPolicy()})
    if name == "early-antibiotics":
        doses = {hour: 1.0 for hour in range(from_hour, hours + 1, 8)}
        return ComposedPolicy(clinician, {"antibiotic": FixedSchedulePolicy({"antibiotic": doses})})
    raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
