"""Sampled patients: demographics, chronic disease, the acute insult and per-patient model parameters.

Every patient is drawn from its own random stream ``default_rng([seed, stay_id, STREAM_PATIENTS])``
(see :mod:`organsim.physiology.noise`), so a stay's parameters depend on (seed, stay_id) only: the
first 100 stays of a 2,000-stay cohort are the 100 stays of a 100-stay cohort with the same seed,
and the oracle can rebuild any one patient without the others.

Population (choices and the data they follow)
---------------------------------------------
- Age ~ N(61, 17) clipped to [18, 95]; 54 % male; weight ~ N(80, 19) kg (men +8 kg) clipped to
  [40, 200]: the PhysioNet 2019 cohort has age 5/50/95 % = 30/62/85 and 54 % men.
- Frailty in [0, 1] ~ Beta(2, 5) + 0.004 (age - 60); it lowers host defence, baroreflex gain and
  the lethal tissue-damage threshold.
- Chronic disease flags and their baseline labs (prevalences in the range reported for general
  ICU cohorts, e.g. Vincent et al., Crit Care Med 2006;34:344 (SOAP); they make PhysioNet's tails):
  chronic kidney disease 18 % (creatinine 1.5-3.5 mg/dL), end-stage renal disease 7 % (5-10),
  chronic liver disease 7 % of controls and 12 % of septic patients (bilirubin ~3 mg/dL, AST
  60-660), diabetes 25 % (glucose set point 150-220), COPD 12 % (PaCO2 45-62, SpO2 target 88-92),
  heparin infusion 10 % (PTT 40-100 s), warfarin 8 % (INR 1.8-3.4), acute coronary syndrome 12 %
  (25 % of septic patients: type-2 infarction; troponin peak lognormal, median 14 ng/mL;
  contractility down), neurological disease 12 % (GCS 9-14); haematocrit ~ N(30.5 + 2 if male, 6).
- Septic patients (``septic_fraction``): an infection starts at ``infection_hour`` on the
  engine's clock (ICU admission is hour 0): ``community_onset_fraction`` of them are infected
  6-30 h before admission (present on admission), the rest acquire it in the ICU during the first
  half of the stay. Source: lung 40 % (direct lung injury), biliary 10 % (obstructive
  cholestasis), other 50 %. Initial load lognormal (median 0.2), growth rate lognormal (median
  0.15 /h), host clearance lower with frailty, inflammatory response gain lognormal (median 0.75),
  antibiotic susceptibility 1 for 85 % and 0.25-0.6 (partly resistant) for 15 %.
- Every patient also has a sterile insult (surgery, trauma, pancreatitis, the reason for the ICU
  stay) that drives inflammation without infection and decays over 8-36 h; surgical patients bleed
  for a few hours (30 % of them), arrive cold (up to 1.2 degC) and 20 % of them arrive ventilated;
  6 % of controls have a non-infectious lung injury (aspiration, oedema, contusion) on admission.
- Bedside practice varies per patient: SpO2 target, ventilator CO2 target, sedation depth.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.special import betaincinv

from organsim.physiology.noise import STREAM_PATIENTS, stay_generator

N_PATIENT_NORMALS = 96
N_PATIENT_UNIFORMS = 64
UNITS = ("MICU", "SICU", "other")


class _Draws:
    """Hands out the next column of pre-drawn per-stay normals and uniforms, in a fixed order.

    Adding a parameter at the end never changes the draws of the parameters before it.
    """

    def __init__(self, normals: np.ndarray, uniforms: np.ndarray) -> None:
        self._normals = normals
        self._uniforms = uniforms
        self._next_normal = 0
        self._next_uniform = 0

    def normal(self) -> np.ndarray:
        column = self._normals[:, self._next_normal]
        self._next_normal += 1
        return column

    def uniform(self) -> np.ndarray:
        column = self._uniforms[:, self._next_uniform]
        self._next_uniform += 1
        return column


def _lognormal(z: np.ndarray, median: float, sigma: float) -> np.ndarray:
    return median * np.exp(sigma * z)


@dataclass(frozen=True)
class PatientParameters:
    """Per-patient parameters, each an array of shape ``(n_patients,)``.

    Baselines are the patient's pre-morbid steady state (no infection, no insult, no treatment);
    units are the catalog's unless a field name says otherwise.
    """

    stay_id: np.ndarray
    # demographics and context
    age: np.ndarray  # years
    sex: np.ndarray  # 0 female, 1 male
    weight: np.ndarray  # kg
    unit: np.ndarray  # object array of "MICU" | "SICU" | "other"
    hosp_adm_hours: np.ndarray  # h, negative = hospital admission before the ICU
    frailty: np.ndarray  # 0..1
    surgical: np.ndarray  # bool
    ventilated_at_admission: np.ndarray  # bool
    diabetic: np.ndarray  # bool
    cardiac: np.ndarray  # bool, acute coronary syndrome
    liver_disease: np.ndarray  # bool, chronic
    heparin: np.ndarray  # bool, on a heparin infusion (PTT monitored)
    # infection (septic patients; NaN / 0 otherwise)
    infected: np.ndarray  # bool
    infection_hour: np.ndarray  # engine clock (h; 0 = ICU admission), NaN when never infected
    pathogen_initial: np.ndarray  # normalised pathogen load at infection
    pathogen_growth: np.ndarray  # /h
    host_clearance: np.ndarray  # /h
    antibiotic_susceptibility: np.ndarray  # 0..1 multiplier of the antibiotic kill rate
    pneumonia: np.ndarray  # bool, lung source
    biliary: np.ndarray  # bool, cholangitis (obstructive cholestasis while infected)
    inflammatory_gain: np.ndarray  # scales pathogen -> inflammation
    # sterile insult
    sterile_insult: np.ndarray  # inflammatory drive at admission (dimensionless)
    sterile_decay_hours: np.ndarray  # h
    bleeding_l_per_h: np.ndarray  # red-cell-containing blood loss at admission, L/h
    mi_severity: np.ndarray  # 0..0.7 contractility loss from an acute coronary syndrome
    mi_troponin_peak: np.ndarray  # ng/mL
    mi_hour: np.ndarray  # engine clock hour of the coronary event
    lethal_damage: np.ndarray  # tissue damage at which the patient dies
    # cardiovascular
    hr_baseline: np.ndarray
    map_baseline: np.ndarray
    pulse_pressure_baseline: np.ndarray  # mmHg
    cvp_baseline: np.ndarray
    stroke_volume_ml: np.ndarray
    contractility: np.ndarray  # multiplier, 1 = normal
    baroreflex_gain: np.ndarray  # beats/min per mmHg
    norepinephrine_emax: np.ndarray  # maximal fractional rise of vascular resistance
    # respiratory
    shunt_baseline: np.ndarray  # fraction
    paco2_baseline: np.ndarray
    resp_rate_baseline: np.ndarray
    # renal
    gfr_ml_min: np.ndarray
    creatinine_baseline: np.ndarray
    bun_baseline: np.ndarray
    potassium_baseline: np.ndarray
    urine_ml_kg_h: np.ndarray  # baseline urine flow per kg
    # hepatic
    ast_baseline: np.ndarray
    alt_baseline: np.ndarray
    bilirubin_baseline: np.ndarray
    direct_fraction: np.ndarray  # direct / total bilirubin at baseline
    alp_baseline: np.ndarray
    liver_clearance: np.ndarray  # lactate clearance capacity multiplier
    # coagulation
    platelets_baseline: np.ndarray
    ptt_baseline: np.ndarray
    inr_baseline: np.ndarray
    fibrinogen_baseline: np.ndarray
    # haematology
    hematocrit_baseline: np.ndarray
    hb_per_hct: np.ndarray  # g/dL of haemoglobin per % haematocrit (MCHC / 100)
    # metabolic
    glucose_baseline: np.ndarray
    lactate_baseline: np.ndarray
    hco3_baseline: np.ndarray
    sodium_baseline: np.ndarray
    chloride_baseline: np.ndarray
    calcium_baseline: np.ndarray
    magnesium_baseline: np.ndarray
    phosphate_baseline: np.ndarray
    # immune
    temperature_baseline: np.ndarray
    fever_gain: np.ndarray  # degC at full inflammation (negative = hypothermic response)
    wbc_baseline: np.ndarray
    crp_baseline: np.ndarray
    pct_baseline: np.ndarray
    troponin_baseline: np.ndarray
    # nervous
    gcs_baseline: np.ndarray
    sedation_depth: np.ndarray  # GCS points lost while ventilated and sedated
    # bedside practice
    spo2_target: np.ndarray  # % SaO2 the team titrates FiO2 to (COPD 88-92, others 90-99)
    ventilator_paco2: np.ndarray  # mmHg the ventilator settings aim at
    admission_hypothermia: np.ndarray  # degC below baseline on arrival from theatre, rewarmed over ~4 h
    dead_space_baseline: np.ndarray  # physiological dead-space fraction
    lung_insult: np.ndarray  # non-infectious lung injury at admission (aspiration, oedema, contusion), 0..1

    @property
    def n(self) -> int:
        return int(self.stay_id.shape[0])

    def __post_init__(self) -> None:
        n = self.stay_id.shape[0]
        for f in fields(self):
            value = getattr(self, f.name)
            if value.shape != (n,):
                raise ValueError(f"patient parameter {f.name} has shape {value.shape}, expected ({n},)")


def sample_patients(
    stay_ids: np.ndarray,
    *,
    seed: int,
    septic_fraction: float,
    community_onset_fraction: float,
    hours: int,
) -> PatientParameters:
    """Draw the patients ``stay_ids`` (each from its own (seed, stay_id) stream).

    Parameters
    ----------
    stay_ids
        ``(n,)`` integer stay identifiers.
    seed
        Cohort seed.
    septic_fraction
        Probability that a patient has a sepsis-causing infection (0..1).
    community_onset_fraction
        Among infected patients, the probability that the infection is present on admission.
    hours
        ICU hours simulated; hospital-acquired infections start in the first half of them.

    Returns
    -------
    PatientParameters
    """
    stay_ids = np.asarray(stay_ids, dtype=np.int64)
    n = stay_ids.shape[0]
    normals = np.empty((n, N_PATIENT_NORMALS))
    uniforms = np.empty((n, N_PATIENT_UNIFORMS))
    for i, stay_id in enumerate(stay_ids):
        rng = stay_generator(seed, int(stay_id), STREAM_PATIENTS)
        normals[i] = rng.standard_normal(N_PATIENT_NORMALS)
        uniforms[i] = rng.random(N_PATIENT_UNIFORMS)
    d = _Draws(normals, uniforms)

    # ------------------------------------------------------------------ demographics
    age = np.clip(61.0 + 17.0 * d.normal(), 18.0, 95.0)
    sex = (d.uniform() < 0.54).astype(np.int8)
    weight = np.clip(76.0 + 8.0 * sex + 19.0 * d.normal(), 40.0, 200.0)
    frailty = np.clip(betaincinv(2.0, 5.0, d.uniform()) + 0.004 * (age - 60.0), 0.0, 1.0)
    infected = d.uniform() < septic_fraction
    surgical = (d.uniform() < np.where(infected, 0.25, 0.5))
    unit_draw = d.uniform()
    unit = np.where(unit_draw < 0.3, "other", np.where(surgical, "SICU", "MICU")).astype(object)
    hosp_adm_hours = -np.clip(_lognormal(d.normal(), 9.0, 1.6), 0.0, 2000.0)
    hosp_adm_hours = np.where(d.uniform() < 0.1, 0.0, np.round(hosp_adm_hours, 2))

    # ------------------------------------------------------------------ chronic disease flags
    esrd = d.uniform() < 0.07
    ckd = ~esrd & (d.uniform() < 0.18)
    liver_disease = d.uniform() < np.where(infected, 0.12, 0.07)
    diabetic = d.uniform() < 0.25
    copd = d.uniform() < 0.12
    heparin = d.uniform() < 0.10
    warfarin = ~heparin & (d.uniform() < 0.08)
    cardiac = d.uniform() < np.where(infected, 0.25, 0.12)

    # ------------------------------------------------------------------ infection
    community = d.uniform() < community_onset_fraction
    pre_icu_hours = 6.0 + 24.0 * d.uniform()
    in_icu_hour = 0.5 * hours * d.uniform()
    infection_hour = np.where(infected, np.where(community, -pre_icu_hours, in_icu_hour), np.nan)
    pathogen_initial = np.where(infected, _lognormal(d.normal(), 0.2, 0.4), 0.0)
    pathogen_growth = np.where(infected, _lognormal(d.normal(), 0.15, 0.3), 0.0)
    host_clearance = 0.07 * (1.2 - 0.6 * frailty) * np.exp(0.2 * d.normal())
    resistant = d.uniform() < 0.15
    antibiotic_susceptibility = np.where(resistant, 0.25 + 0.35 * d.uniform(), 1.0)
    source = d.uniform()
    pneumonia = infected & (source < 0.40)
    biliary = infected & (source >= 0.40) & (source < 0.50)
    inflammatory_gain = _lognormal(d.normal(), 0.75, 0.45)

    # ------------------------------------------------------------------ sterile insult
    insult_kind = d.uniform()
    sterile_insult = np.where(
        insult_kind < 0.45, 0.15 * d.uniform(), np.where(insult_kind < 0.9, 0.15 + 0.55 * d.uniform(), 0.7 + 0.8 * d.uniform())
    )
    sterile_insult = sterile_insult * np.where(surgical, 1.3, 1.0)
    sterile_decay_hours = 8.0 + 28.0 * d.uniform()
    bleeds = surgical & (d.uniform() < 0.3)
    bleeding_l_per_h = np.where(bleeds, _lognormal(d.normal(), 0.15, 0.8), 0.0)
    ventilated_at_admission = (surgical & (d.uniform() < 0.2)) | (copd & (d.uniform() < 0.1))
    mi_severity = np.where(cardiac, 0.1 + 0.6 * d.uniform() ** 2, 0.0)
    mi_troponin_peak = np.where(cardiac, _lognormal(d.normal(), 14.0, 1.1), 0.0)
    mi_hour = -24.0 * d.uniform()
    lethal_damage = np.clip((1.1 - 0.5 * frailty) * np.exp(0.12 * d.normal()), 0.45, 1.6)

    # ------------------------------------------------------------------ cardiovascular
    hr_baseline = np.clip(80.0 + 13.0 * d.normal() - 0.1 * (age - 60.0), 45.0, 125.0)
    map_baseline = np.clip(86.0 + 15.0 * d.normal() + 0.1 * (age - 60.0), 62.0, 140.0)
    pulse_pressure_baseline = np.clip(60.0 + 0.5 * (age - 60.0) + 20.0 * d.normal(), 25.0, 140.0)
    cvp_baseline = np.clip(8.0 + 3.0 * d.normal(), 1.0, 18.0)
    stroke_volume_ml = 70.0 * np.sqrt(weight / 75.0) * np.exp(0.12 * d.normal())
    contractility = np.clip(1.0 - 0.2 * frailty + 0.08 * d.normal(), 0.5, 1.3)
    baroreflex_gain = np.clip(0.9 * (1.0 - 0.5 * frailty) * np.exp(0.25 * d.normal()), 0.2, 2.0)
    norepinephrine_emax = np.clip(_lognormal(d.normal(), 1.1, 0.25), 0.4, 2.2)

    # ------------------------------------------------------------------ respiratory
    shunt_baseline = np.clip(0.08 + 0.04 * d.normal() + np.where(copd, 0.08, 0.0) + 0.001 * (age - 60.0), 0.02, 0.35)
    paco2_baseline = np.where(copd, 45.0 + 17.0 * d.uniform(), np.clip(39.0 + 3.0 * d.normal(), 32.0, 46.0))
    resp_rate_baseline = np.clip(16.5 + 2.6 * d.normal(), 10.0, 26.0)

    # ------------------------------------------------------------------ renal
    creatinine_baseline = np.where(
        esrd,
        5.0 + 5.0 * d.uniform(),
        np.where(ckd, 1.5 + 2.0 * d.uniform(), _lognormal(d.normal(), 0.75 + 0.15 * sex, 0.25)),
    )
    gfr_ml_min = np.clip(100.0 * (0.9 / creatinine_baseline) ** 1.1 * (1.0 - 0.005 * (age - 40.0)) * np.sqrt(weight / 75.0), 5.0, 180.0)
    bun_baseline = np.clip(_lognormal(d.normal(), 13.0, 0.35) * creatinine_baseline ** 0.8 / 0.85 ** 0.8, 4.0, 120.0)
    potassium_baseline = np.clip(4.0 + 0.4 * d.normal() + np.where(esrd, 0.5, 0.0), 2.8, 6.0)
    urine_ml_kg_h = np.where(esrd, 0.1, np.clip(_lognormal(d.normal(), 1.0, 0.3), 0.4, 2.5))

    # ------------------------------------------------------------------ hepatic
    ast_baseline = np.where(liver_disease, 60.0 + 600.0 * d.uniform() ** 2, _lognormal(d.normal(), 22.0, 0.45))
    alt_baseline = np.where(liver_disease, 50.0 + 120.0 * d.uniform(), _lognormal(d.normal(), 20.0, 0.5))
    bilirubin_baseline = np.where(liver_disease, _lognormal(d.normal(), 3.0, 0.7), _lognormal(d.normal(), 0.65, 0.45))
    direct_fraction = np.clip(np.where(liver_disease, 0.55, 0.15) + 0.06 * d.normal(), 0.05, 0.8)
    alp_baseline = np.where(liver_disease, 100.0 + 150.0 * d.uniform(), _lognormal(d.normal(), 68.0, 0.35))
    liver_clearance = np.where(liver_disease, 0.5, 1.0) * np.exp(0.15 * d.normal())

    # ------------------------------------------------------------------ coagulation
    platelets_baseline = np.clip(
        _lognormal(d.normal(), 200.0, 0.42) * np.where(liver_disease, 0.5, 1.0), 15.0, 800.0
    )
    ptt_baseline = np.where(heparin, 40.0 + 60.0 * d.uniform(), np.clip(29.0 + 3.5 * d.normal(), 21.0, 42.0))
    inr_baseline = np.where(
        warfarin, 1.8 + 1.6 * d.uniform(), np.clip(1.1 + 0.08 * d.normal() + np.where(liver_disease, 0.4, 0.0), 0.85, 2.5)
    )
    fibrinogen_baseline = np.clip(_lognormal(d.normal(), 250.0, 0.4), 60.0, 900.0)

    # ------------------------------------------------------------------ haematology
    hematocrit_baseline = np.clip(30.5 + 6.0 * d.normal() + 2.0 * sex, 17.0, 52.0)
    hb_per_hct = np.clip(0.335 + 0.01 * d.normal(), 0.3, 0.37)

    # ------------------------------------------------------------------ metabolic
    glucose_baseline = np.where(diabetic, 150.0 + 70.0 * d.uniform(), np.clip(110.0 + 15.0 * d.normal(), 80.0, 150.0))
    lactate_baseline = np.clip(_lognormal(d.normal(), 1.1, 0.25), 0.5, 2.2)
    hco3_baseline = np.clip(23.4 + 0.35 * (paco2_baseline - 40.0) + 3.2 * d.normal() - np.where(esrd | ckd, 2.0, 0.0), 14.0, 38.0)
    sodium_baseline = np.clip(139.0 + 3.5 * d.normal(), 125.0, 152.0)
    chloride_baseline = np.clip(106.0 + 3.5 * d.normal() + 0.5 * (sodium_baseline - 139.0), 92.0, 118.0)
    calcium_baseline = np.clip(8.5 + 0.7 * d.normal(), 6.0, 10.8)
    magnesium_baseline = np.clip(2.0 + 0.28 * d.normal() + np.where(esrd, 0.3, 0.0), 1.1, 3.4)
    phosphate_baseline = np.clip(_lognormal(d.normal(), 3.1, 0.33) + np.where(esrd, 1.8, 0.0), 0.8, 10.0)

    # ------------------------------------------------------------------ immune
    temperature_baseline = np.clip(36.8 + 0.4 * d.normal(), 35.4, 37.8)
    fever_gain = 1.6 + 0.9 * d.normal() - 0.6 * frailty
    wbc_baseline = np.clip(_lognormal(d.normal(), 8.6, 0.4), 1.5, 35.0)
    crp_baseline = _lognormal(d.normal(), 8.0, 0.9)
    pct_baseline = _lognormal(d.normal(), 0.08, 0.5) * np.where(esrd | ckd, 2.5, 1.0)
    troponin_baseline = _lognormal(d.normal(), 0.03, 1.2) * np.where(esrd | ckd, 3.0, 1.0)

    # ------------------------------------------------------------------ nervous
    neuro = d.uniform() < 0.12
    gcs_baseline = np.where(neuro, np.round(9.0 + 5.0 * d.uniform()), 15.0)
    sedation_depth = 3.0 + 7.0 * d.uniform()

    # ------------------------------------------------------------------ bedside practice
    spo2_target = np.where(copd, 88.0 + 4.0 * d.uniform(), 90.0 + 9.0 * d.uniform())
    ventilator_paco2 = np.clip(37.5 + 6.0 * d.normal() + 0.6 * (paco2_baseline - 40.0), 26.0, 65.0)
    admission_hypothermia = np.where(surgical, 1.2 * d.uniform(), 0.0)
    dead_space_baseline = np.clip(0.3 + 0.07 * d.normal() + np.where(copd, 0.1, 0.0), 0.2, 0.6)
    lung_insult = np.where(~infected & (d.uniform() < 0.06), 0.2 + 0.4 * d.uniform(), 0.0)

    return PatientParameters(
        stay_id=stay_ids,
        age=np.round(age),
        sex=sex,
        weight=np.round(weight, 1),
        unit=unit,
        hosp_adm_hours=hosp_adm_hours,
        frailty=frailty,
        surgical=surgical,
        ventilated_at_admission=ventilated_at_admission,
        diabetic=diabetic,
        cardiac=cardiac,
        liver_disease=liver_disease,
        heparin=heparin,
        infected=infected,
        infection_hour=infection_hour,
        pathogen_initial=pathogen_initial,
        pathogen_growth=pathogen_growth,
        host_clearance=host_clearance,
        antibiotic_susceptibility=antibiotic_susceptibility,
        pneumonia=pneumonia,
        biliary=biliary,
        inflammatory_gain=inflammatory_gain,
        sterile_insult=sterile_insult,
        sterile_decay_hours=sterile_decay_hours,
        bleeding_l_per_h=bleeding_l_per_h,
        mi_severity=mi_severity,
        mi_troponin_peak=mi_troponin_peak,
        mi_hour=mi_hour,
        lethal_damage=lethal_damage,
        hr_baseline=hr_baseline,
        map_baseline=map_baseline,
        pulse_pressure_baseline=pulse_pressure_baseline,
        cvp_baseline=cvp_baseline,
        stroke_volume_ml=stroke_volume_ml,
        contractility=contractility,
        baroreflex_gain=baroreflex_gain,
        norepinephrine_emax=norepinephrine_emax,
        shunt_baseline=shunt_baseline,
        paco2_baseline=paco2_baseline,
        resp_rate_baseline=resp_rate_baseline,
        gfr_ml_min=gfr_ml_min,
        creatinine_baseline=creatinine_baseline,
        bun_baseline=bun_baseline,
        potassium_baseline=potassium_baseline,
        urine_ml_kg_h=urine_ml_kg_h,
        ast_baseline=ast_baseline,
        alt_baseline=alt_baseline,
        bilirubin_baseline=bilirubin_baseline,
        direct_fraction=direct_fraction,
        alp_baseline=alp_baseline,
        liver_clearance=liver_clearance,
        platelets_baseline=platelets_baseline,
        ptt_baseline=ptt_baseline,
        inr_baseline=inr_baseline,
        fibrinogen_baseline=fibrinogen_baseline,
        hematocrit_baseline=hematocrit_baseline,
        hb_per_hct=hb_per_hct,
        glucose_baseline=glucose_baseline,
        lactate_baseline=lactate_baseline,
        hco3_baseline=hco3_baseline,
        sodium_baseline=sodium_baseline,
        chloride_baseline=chloride_baseline,
        calcium_baseline=calcium_baseline,
        magnesium_baseline=magnesium_baseline,
        phosphate_baseline=phosphate_baseline,
        temperature_baseline=temperature_baseline,
        fever_gain=fever_gain,
        wbc_baseline=wbc_baseline,
        crp_baseline=crp_baseline,
        pct_baseline=pct_baseline,
        troponin_baseline=troponin_baseline,
        gcs_baseline=gcs_baseline,
        sedation_depth=sedation_depth,
        spo2_target=spo2_target,
        ventilator_paco2=ventilator_paco2,
        admission_hypothermia=admission_hypothermia,
        dead_space_baseline=dead_space_baseline,
        lung_insult=lung_insult,
    )

