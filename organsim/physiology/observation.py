"""The observation model: which values are measured each ICU hour, with what error, at what resolution.

Measurement timing follows how ICU data are charted, with rates tuned to the PhysioNet 2019 data
(fraction of hours with a value, septic and non-septic stays; see
:mod:`organsim.physiology.calibration`) and, for variables PhysioNet lacks, to MIMIC-IV charting:

- Vital signs are charted hourly with gaps (HR ~88 %, SpO2 and blood pressure ~86 %, respiratory
  rate ~79 % of hours; more often in sicker patients), temperature every 3-4 h, urine output ~75 %
  and GCS ~25-35 % of hours, CVP hourly only with a central line (a per-stay draw, or once on
  norepinephrine), EtCO2 only while ventilated.
- Blood is drawn once on admission and then daily at a per-stay hour ("morning labs"), plus extra
  draws that are likelier in sick patients. A draw yields the basic metabolic panel and blood count
  (each analyte with its own inclusion probability; PhysioNet's hospital B rarely reported chloride
  and serum bicarbonate), liver tests and coagulation for stays whose team orders them (a per-stay
  propensity that rises once the patient is sick), and CRP/procalcitonin once sepsis is suspected.
- Arterial blood gases (pH, PaCO2, PaO2, SaO2, FiO2, base excess and often lactate) are drawn mostly
  while ventilated, on a vasopressor or hypoxaemic; lactate is also repeated after recognition of
  sepsis and while above 2 mmol/L; troponin in coronary patients and in shock; glucose by finger
  stick every 4-6 h (more in diabetics).

"Sick" means ventilated, on norepinephrine or given antibiotics, all known at the bedside.
Measurement error is additive (``sd``) or proportional (``cv``, for analytes with skewed ranges);
values are rounded to the resolution the bedside reports and kept inside the catalog's plausible
range. Every random number comes from the stay's observation and measurement streams
(:mod:`organsim.physiology.noise`), so the same stay under another treatment is measured at the
same moments wherever the decision to measure does not depend on the treatment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from organsim.catalog import Catalog


@dataclass(frozen=True)
class MeasurementSpec:
    """Error model of one variable: additive ``sd`` or proportional ``cv``, and reporting ``resolution``."""

    sd: float = 0.0
    cv: float = 0.0
    resolution: float = 0.1


MEASUREMENT_SPECS: dict[str, MeasurementSpec] = {
    "hr": MeasurementSpec(sd=2.0, resolution=1.0),
    "sbp": MeasurementSpec(sd=4.0, resolution=1.0),
    "dbp": MeasurementSpec(sd=3.0, resolution=1.0),
    "map": MeasurementSpec(sd=3.0, resolution=1.0),
    "cvp": MeasurementSpec(sd=1.5, resolution=1.0),
    "troponin_i": MeasurementSpec(cv=0.08, resolution=0.01),
    "resp_rate": MeasurementSpec(sd=1.5, resolution=1.0),
    "spo2": MeasurementSpec(sd=1.0, resolution=1.0),
    "sao2": MeasurementSpec(sd=0.7, resolution=0.1),
    "pao2": MeasurementSpec(cv=0.05, resolution=1.0),
    "paco2": MeasurementSpec(sd=1.5, resolution=1.0),
    "fio2": MeasurementSpec(resolution=0.01),
    "etco2": MeasurementSpec(sd=1.5, resolution=1.0),
    "creatinine": MeasurementSpec(cv=0.04, resolution=0.01),
    "bun": MeasurementSpec(cv=0.04, resolution=1.0),
    "potassium": MeasurementSpec(sd=0.1, resolution=0.1),
    "urine_output": MeasurementSpec(cv=0.1, resolution=1.0),
    "bilirubin_total": MeasurementSpec(cv=0.05, resolution=0.1),
    "bilirubin_direct": MeasurementSpec(cv=0.05, resolution=0.1),
    "ast": MeasurementSpec(cv=0.06, resolution=1.0),
    "alt": MeasurementSpec(cv=0.06, resolution=1.0),
    "alkaline_phosphatase": MeasurementSpec(cv=0.06, resolution=1.0),
    "temperature": MeasurementSpec(sd=0.15, resolution=0.1),
    "wbc": MeasurementSpec(cv=0.04, resolution=0.1),
    "crp": MeasurementSpec(cv=0.06, resolution=0.1),
    "procalcitonin": MeasurementSpec(cv=0.08, resolution=0.01),
    "gcs": MeasurementSpec(sd=0.7, resolution=1.0),
    "hemoglobin": MeasurementSpec(sd=0.2, resolution=0.1),
    "hematocrit": MeasurementSpec(sd=0.6, resolution=0.1),
    "platelets": MeasurementSpec(cv=0.05, resolution=1.0),
    "ptt": MeasurementSpec(cv=0.04, resolution=0.1),
    "inr": MeasurementSpec(cv=0.04, resolution=0.1),
    "fibrinogen": MeasurementSpec(cv=0.06, resolution=1.0),
    "glucose": MeasurementSpec(cv=0.05, resolution=1.0),
    "lactate": MeasurementSpec(cv=0.06, resolution=0.1),
    "ph": MeasurementSpec(sd=0.01, resolution=0.01),
    "hco3": MeasurementSpec(sd=0.7, resolution=1.0),
    "base_excess": MeasurementSpec(sd=0.8, resolution=1.0),
    "sodium": MeasurementSpec(sd=1.0, resolution=1.0),
    "chloride": MeasurementSpec(sd=1.0, resolution=1.0),
    "calcium": MeasurementSpec(sd=0.15, resolution=0.1),
    "magnesium": MeasurementSpec(sd=0.07, resolution=0.1),
    "phosphate": MeasurementSpec(sd=0.15, resolution=0.1),
}

# Inclusion probability of each analyte in a blood draw (basic metabolic panel and blood count),
# in liver / coagulation / infection-marker orders, and in an arterial blood gas.
DRAW_INCLUSION = {
    "bun": 1.0, "creatinine": 1.0, "potassium": 1.0, "sodium": 1.0, "glucose": 1.0, "chloride": 0.12,
    "hco3": 0.025, "calcium": 0.85, "magnesium": 0.85, "phosphate": 0.55,
    "wbc": 1.0, "hemoglobin": 1.0, "hematocrit": 1.0, "platelets": 1.0,
}
LIVER_INCLUSION = {"ast": 1.0, "alt": 1.0, "alkaline_phosphatase": 1.0, "bilirubin_total": 1.0}
COAGULATION_INCLUSION = {"ptt": 1.0, "inr": 1.0, "fibrinogen": 0.45}
INFECTION_MARKER_INCLUSION = {"crp": 1.0, "procalcitonin": 0.8}
GAS_INCLUSION = {"ph": 1.0, "paco2": 1.0, "pao2": 1.0, "sao2": 0.85, "fio2": 1.0, "base_excess": 0.08, "lactate": 0.25}

# Columns of the per-hour observation uniforms; the per-variable inclusion uniforms follow them.
_HOURLY_EVENTS = (
    "vitals", "blood_pressure", "resp_rate", "temperature", "cvp", "etco2", "urine_output", "gcs",
    "fingerstick", "extra_draw", "gas", "lactate", "troponin", "potassium", "admission_draw", "ptt_check",
)
_EVENT = {name: i for i, name in enumerate(_HOURLY_EVENTS)}
# Columns of the per-stay observation uniforms.
_STAY = {"draw_hour": 0, "liver": 1, "coagulation": 2, "central_line": 4, "markers": 5, "troponin": 6}


@dataclass
class MeasurementContext:
    """What the bedside knows at the end of an ICU hour that changes how much is measured; ``(n,)`` each.

    Attributes
    ----------
    ventilated, on_norepinephrine
        Treatments of the hour.
    ever_norepinephrine
        Norepinephrine given in any hour so far.
    recognised_hours
        Hours since the first antibiotic dose (NaN before any), the bedside's sign of suspected sepsis.
    last_lactate, last_lactate_age
        Latest observed lactate and its age in hours (NaN if never).
    last_spo2
        Latest observed SpO2 (NaN if never).
    cardiac, diabetic, liver_disease, heparin
        Admission context (acute coronary syndrome, diabetes, known liver disease, heparin infusion).
    bilirubin_raised
        The latest observed total bilirubin is above 2 mg/dL.
    """

    ventilated: np.ndarray
    on_norepinephrine: np.ndarray
    ever_norepinephrine: np.ndarray
    recognised_hours: np.ndarray
    last_lactate: np.ndarray
    last_lactate_age: np.ndarray
    last_spo2: np.ndarray
    cardiac: np.ndarray
    diabetic: np.ndarray
    liver_disease: np.ndarray
    heparin: np.ndarray
    bilirubin_raised: np.ndarray


class ObservationModel:
    """Turns the true values of an ICU hour into what the chart shows (module docstring).

    Parameters
    ----------
    catalog
        Gives the variable order and the plausible ranges; every catalog variable needs a
        :data:`MEASUREMENT_SPECS` entry (a ValueError names the one that lacks it).
    """

    def __init__(self, catalog: Catalog) -> None:
        self.variables = tuple(catalog.variable_codes)
        missing = [code for code in self.variables if code not in MEASUREMENT_SPECS]
        if missing:
            raise ValueError(f"no measurement model for catalog variable(s) {missing}; add them to MEASUREMENT_SPECS")
        self.index = {code: i for i, code in enumerate(self.variables)}
        specs = [MEASUREMENT_SPECS[code] for code in self.variables]
        self.sd = np.array([s.sd for s in specs])
        self.cv = np.array([s.cv for s in specs])
        self.resolution = np.array([s.resolution for s in specs])
        self.low = np.array([catalog.variable(code).plausible[0] for code in self.variables])
        self.high = np.array([catalog.variable(code).plausible[1] for code in self.variables])

    @property
    def n_uniforms(self) -> int:
        """Uniforms needed per stay and hour: one per timing event plus one per variable."""
        return len(_HOURLY_EVENTS) + len(self.variables)

    def measured(
        self, hour: int, context: MeasurementContext, uniforms: np.ndarray, stay_uniforms: np.ndarray
    ) -> np.ndarray:
        """``(n, V)`` boolean: which variables are measured in ICU hour ``hour``.

        ``uniforms`` is the ``(n, n_uniforms)`` row of the hour, ``stay_uniforms`` the ``(n, k)``
        per-stay draws.
        """
        n = uniforms.shape[0]
        event = uniforms[:, : len(_HOURLY_EVENTS)]
        include = uniforms[:, len(_HOURLY_EVENTS) :]
        ctx = context
        sick = (ctx.ventilated > 0.5) | (ctx.on_norepinephrine > 0) | np.isfinite(ctx.recognised_hours)
        out = np.zeros((n, len(self.variables)), dtype=bool)

        def mark(code: str, flag: np.ndarray) -> None:
            out[:, self.index[code]] |= flag

        # bedside charting
        vitals = event[:, _EVENT["vitals"]]
        mark("hr", vitals < np.where(sick, 0.91, 0.87))
        mark("spo2", vitals < np.where(sick, 0.90, 0.855))
        pressure = event[:, _EVENT["blood_pressure"]] < np.where(sick, 0.90, 0.85)
        for code in ("sbp", "dbp", "map"):
            mark(code, pressure)
        mark("resp_rate", event[:, _EVENT["resp_rate"]] < 0.785)
        mark("temperature", event[:, _EVENT["temperature"]] < np.where(sick, 0.39, 0.33))
        central_line = (stay_uniforms[:, _STAY["central_line"]] < 0.15) | (ctx.ever_norepinephrine > 0)
        mark("cvp", central_line & (event[:, _EVENT["cvp"]] < 0.6))
        mark("etco2", (ctx.ventilated > 0.5) & (event[:, _EVENT["etco2"]] < 0.85))
        mark("urine_output", event[:, _EVENT["urine_output"]] < 0.75)
        mark("gcs", event[:, _EVENT["gcs"]] < np.where(sick, 0.35, 0.25))
        mark("glucose", event[:, _EVENT["fingerstick"]] < np.where(ctx.diabetic, 0.28, 0.16))

        # blood draws: admission, daily at the stay's hour, extra when sick
        daily = (hour - 1 + np.floor(24.0 * stay_uniforms[:, _STAY["draw_hour"]])) % 24 == 0
        admission = (hour == 1) & (event[:, _EVENT["admission_draw"]] < 0.7) | (hour == 2) & (
            event[:, _EVENT["admission_draw"]] >= 0.7
        )
        extra = event[:, _EVENT["extra_draw"]] < np.where(sick, 0.03, 0.005)
        draw = daily | admission | extra
        for code, p in DRAW_INCLUSION.items():
            mark(code, draw & (include[:, self.index[code]] < p))
        liver_orders = stay_uniforms[:, _STAY["liver"]] < np.where(ctx.liver_disease, 0.7, np.where(sick, 0.4, 0.2))
        for code, p in LIVER_INCLUSION.items():
            mark(code, draw & liver_orders & (include[:, self.index[code]] < p))
        # direct bilirubin is a reflex test: likelier when the total is raised
        direct_rate = np.where(ctx.bilirubin_raised, 0.15, 0.08)
        mark("bilirubin_direct", draw & liver_orders & (include[:, self.index["bilirubin_direct"]] < direct_rate))
        coagulation_orders = stay_uniforms[:, _STAY["coagulation"]] < np.where(ctx.heparin, 0.2, np.where(sick, 0.25, 0.06))
        for code, p in COAGULATION_INCLUSION.items():
            mark(code, draw & coagulation_orders & (include[:, self.index[code]] < p))
        marker_orders = stay_uniforms[:, _STAY["markers"]] < np.where(np.isfinite(ctx.recognised_hours), 0.7, 0.1)
        for code, p in INFECTION_MARKER_INCLUSION.items():
            mark(code, draw & marker_orders & (include[:, self.index[code]] < p))
        mark("potassium", event[:, _EVENT["potassium"]] < np.where(sick, 0.04, 0.02))
        mark("ptt", ctx.heparin & (event[:, _EVENT["ptt_check"]] < 0.015))

        # blood gases, lactate, troponin
        hypoxaemic = ctx.last_spo2 < 90.0
        gas_rate = 0.004 + 0.16 * (ctx.ventilated > 0.5) + 0.08 * (ctx.on_norepinephrine > 0) + 0.15 * hypoxaemic
        gas = event[:, _EVENT["gas"]] < gas_rate
        for code, p in GAS_INCLUSION.items():
            mark(code, gas & (include[:, self.index[code]] < p))
        lactate_rate = (
            0.002 + 0.2 * (ctx.recognised_hours <= 6.0) + 0.15 * ((ctx.last_lactate >= 2.0) & (ctx.last_lactate_age <= 6.0))
        )
        mark("lactate", event[:, _EVENT["lactate"]] < lactate_rate)
        troponin_rate = (
            np.where(ctx.cardiac & (hour <= 24), 0.12, 0.0) + 0.03 * (ctx.on_norepinephrine > 0)
            + np.where((hour <= 2) & (stay_uniforms[:, _STAY["troponin"]] < 0.5), 0.5, 0.0)
        )
        mark("troponin_i", event[:, _EVENT["troponin"]] < troponin_rate)
        return out

    def record(self, true_values: np.ndarray, measured: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """``(n, V)`` observed values: true value plus error, rounded, kept plausible; NaN where not measured.

        ``true_values`` and ``normals`` are ``(n, V)``; ``normals`` are the hour's standard normals.
        """
        noisy = true_values * (1.0 + self.cv * normals) + self.sd * normals
        rounded = np.round(noisy / self.resolution) * self.resolution
        observed = np.clip(rounded, self.low, self.high)
        return np.where(measured, observed, np.nan)
