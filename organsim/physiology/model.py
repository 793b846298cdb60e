r"""The mechanistic multi-organ sepsis model: state, equations, hourly integration and read-out.

The model is a set of ordinary differential equations per patient (time in hours) plus algebraic
relations (haemodynamics, blood gases, acid-base) evaluated at every step. It is integrated for all
patients at once with explicit Euler steps of ``1 / substeps_per_hour`` h (6 by default, 10 min);
every rate below has a time constant of 20 min or more, so the step is stable, and states are
clipped to physical ranges after each step. Treatments are constant within an hour; an antibiotic dose is a
bolus at the start of its hour.

Notation: ``p.x`` is a patient parameter (:class:`~organsim.physiology.patients.PatientParameters`),
``c.x`` a model constant (:class:`ModelConstants`), ``z_k`` the hour's process noise on channel ``k``
(:mod:`organsim.physiology.noise`), ``(v)+`` = max(v, 0), ``h(v, k) = v / (v + k)``.

1. Infection and inflammation (reduced model after Kumar et al., J Theor Biol 2004;230:145 and
   Reynolds et al., J Theor Biol 2006;242:220: pathogen, pro- and anti-inflammatory mediators and
   tissue damage with damage-driven positive feedback; antibiotic kill after an effect-compartment
   delay as in Sheiner et al., Clin Pharmacol Ther 1979;25:358)::

     dP/dt  = g P (1 - P / Pmax) - k_host P / ((1 + P / Psat)(1 + a_imm A)) - k_abx s E P
     dI/dt  = (gain (w_P h(P, K_P)) + w_D D + sterile(t)) / (1 + A / A50) - I) / tau_I
     dA/dt  = (I - A) / tau_A
     dD/dt  = k_DI (I - I_thr)+ + k_DH hypoxia - r_D D
     dC_abx/dt = -ln2 / t_half C_abx   (+1 per dose);   dE/dt = (h(C_abx, EC50) - E) / tau_E

   ``P`` pathogen load (1 ~ a load that causes sepsis), ``I`` pro-inflammatory activity, ``A``
   anti-inflammatory activity (immunoparalysis), ``D`` tissue damage; the patient dies when ``D``
   reaches ``p.lethal_damage``. ``sterile(t)`` is the decaying non-infectious insult.
2. Fluids: a two-volume kinetic model (Hahn, Anesthesiology 2010;113:470) with inflammatory
   capillary leak (Marx, Eur J Anaesthesiol 2003;20:429)::

     dV1/dt = fluid + intake - urine - k12 (V1/V1n - (1 - leak) V2/V2n) V1n - bleed V1/(V1+RCV)
     dV2/dt = k12 (V1/V1n - (1 - leak) V2/V2n) V1n - insensible,  leak = leak_max h(I, I_leak)
     dRCV/dt = -bleed RCV / (V1 + RCV)

   so about V1n / (V1n + V2n) ~ 23 % of infused crystalloid stays intravascular; ``intake``
   (enteral feeding, not a recorded treatment) equals the patient's baseline urine and insensible
   loss.
3. Circulation (algebraic; Guyton-style lumped model, Frank-Starling curve, Emax norepinephrine
   response after Beloeil et al., Br J Anaesth 2005;95:782)::

     vasodilation vd = vd_max h(I, I_vd);  e_NE = NE^n / (NE^n + EC50^n)
     preload x = BV/BVn (1 - c_v vd + c_ne e_NE)(1 - peep vent) + 0.025 z_venous
     SV  = SV0 contractility max(1 - md_max h(I, I_md) - mi(t), 0.1) (1 + 0.1 e_NE) (1 + k^2) x^2 / (x^2 + k^2)
     SVR = SVR0 (1 - vd)(1 + Emax (1 - hypo h(I, 1)) e_NE) exp(0.06 z_tone)
     CVP = CVP0 + 14 (x - 1) + 3 vent
     HR  = HR0 + b (MAP0 - MAP) + 9 (T - T0) + 12 h(I, 1) + 10 e_NE + 6 z_hr     (baroreflex)
     MAP = HR SV SVR / 1000 + CVP   (solved jointly with HR in closed form, HR clipped 35-190)
     PP  = PP0 SV / SV0 (1 + 0.15 e_NE);  SBP = MAP + 2 PP / 3;  DBP = MAP - PP / 3

   ``SVR0`` is set so that the baseline state gives ``p.map_baseline``.
4. Oxygen delivery and tissue hypoxia (Shoemaker's supply dependency; microcirculatory shunting
   after Ince, Crit Care 2005;9 Suppl 4:S13)::

     CaO2 = 1.34 Hb SaO2 / 100 + 0.003 PaO2;  DO2 = 10 CO CaO2 / weight  (mL/kg/min)
     VO2 = 3.5 (1 + 0.1 (T - 37)) (1 + 0.15 h(I, 1));  ERcrit = 0.6 (1 - 0.35 h(I, 1))
     hypoxia = clip(1 - (DO2 ERcrit / VO2) / margin, 0, 1),  margin = min(1, 0.97 resting DO2 ERcrit / VO2)

   (a patient already below the critical ratio at rest, e.g. in severe chronic anaemia, is adapted
   to it).

5. Respiration (alveolar gas equation; shunt-like oxygenation; Severinghaus, J Appl Physiol
   1979;46:599 for the dissociation curve and its temperature/pH corrections; Albert-Dell-Winter
   compensation, Ann Intern Med 1967;66:312)::

     dL/dt = (k_LI h(I, 2) + k_LP pneumonia h(P, 1) + k_Lov (V2/V2n - 1.15)+)(1 - L) - r_L L
     shunt = s0 + 0.7 L (1 - 0.3 vent) + 0.06 vent + 0.03 z_ox;  dead space = deadspace0 + 0.25 L
     PaCO2 = vent ? PaCO2_vent - 2 (HCO3_0 - HCO3) + 2 L
                  : PaCO2_0 - (HCO3_0 - HCO3) - 3 h(I, 1) + 30 (L - 0.55)+   (septic hyperventilation)
     PAO2 = 713 FiO2 - PaCO2 / 0.8;  PaO2 = 30 + (PAO2 - 30)(1 - shunt)^3
     SaO2 = 100 / (1 + 23400 / (v^3 + 150 v)),  v = PaO2 10^(0.024 (37 - T) + 0.4 (pH - 7.4))
     RR = RR0 VCO2rel PaCO2_0 / PaCO2 (1 - deadspace0) / (1 - deadspace) + 12 (shunt - 0.15)+  (spontaneous)
     EtCO2 = PaCO2 - 3 - 35 (deadspace0 - 0.3) - 3 L - 4 (1 - CO/CO0)+

   FiO2 is titrated every hour by the bedside team (not a treatment choice): the lowest of
   0.21-0.6 (0.4-1.0 when ventilated) that gives the patient's target SaO2 (88-92 % in COPD,
   90-99 % otherwise), judged on the expected shunt (the hour's fluctuation is not foreseen);
   after intubation it is 1.0 for two hours and is weaned by at most 0.3 per hour.
6. Kidney (creatinine kinetics after Waikar & Bonventre, J Am Soc Nephrol 2009;20:672; urea
   clearance ~ half of GFR)::

     renal flow rf = clip((MAP - 40) / (MAP_auto - 40), 0, 1) min(1, CO / CO0)^0.5
     GFR = GFR0 rf (1 - K);  dK/dt = k_Kisch (1 - rf) + k_KI (I - 1)+ - r_K K
     d(creatinine amount)/dt = G_cr - 0.06 GFR creatinine;  concentration = amount / (10 Vd)
     urine = u0 weight (GFR / GFR0)(1 - 0.5 K) clip(1 + 5 (V1/V1n - 1), 0.2, 4)
     K+ = K0 + 0.6 (1 - GFR/GFR0)+ + 1.5 (7.4 - pH) + 0.4 D + 0.25 z_elec

   ``Vd`` = total body water 0.6 weight plus the fluid excess, so fluids dilute creatinine and BUN.
7. Liver (ischaemic hepatitis and septic cholestasis; Strnad et al., Nat Rev Gastroenterol Hepatol
   2017;14:55; AST/ALT half-lives 17 h and 47 h)::

     dH/dt = k_Hisch (hypoxia - 0.07)+ + k_HI (I - 1)+ - r_H H
     dAST/dt = 2800 n(H) - ln2/17 (AST - AST0);  dALT/dt = 650 n(H) - ln2/47 (ALT - ALT0)
     n(H) = H^2 / (1 + 10 H^2)   (necrosis once injury is marked, saturating)
     dBili/dt = k_B Bili0 - k_B (1 - 0.85 h(I, 2))(1 - 0.9 H) Bili + 1.5 biliary h(P, 0.1)
     ALP = ALP0 (1 + 0.25 ln(max(Bili/Bili0, 1)));  direct = Bili (f0 + 0.1 H)

8. Coagulation (consumptive coagulopathy, Levi & van der Poll, Crit Care Med 2010;38:S26)::

     dC/dt = k_C (I - 1.2)+ (1 - C) + 0.03 hypoxia - r_C C
     d(platelet content)/dt = k_t (Plt0 BVn - Q) - k_cons (h(I, 1) + 2 C) Q;  platelets = Q / BV
     INR = INR0 (1 + 0.9 C + 0.8 H);  PTT = PTT0 (1 + 0.7 C + 0.4 H)
     fibrinogen = Fib0 (1 + 0.0035 CRP)(1 - 0.6 C) V1n / V1

9. Blood and metabolism (Stewart-style chloride effect; Henderson-Hasselbalch; Van Slyke base
   excess)::

     Hct = 100 RCV / BV;  Hb = Hct p.hb_per_hct
     dLac/dt = k_L liver Lac0 (1 + 12 hypoxia + 0.3 h(I, 1) + 0.6 e_NE + 2 sterile) - k_L (1 - 0.6 H)(0.4 + 0.6 rf) liver Lac
     dCl/dt = fluid (115 - Cl) / ECF + 0.02 (GFR/GFR0) (Cl0 - Cl);  sodium likewise with 138
     (the infused crystalloid is mostly a balanced solution)
     acid = 0.4 (Lac - Lac0) + 0.15 (Cl - Cl0) + ((1 - GFR/GFR0)+)^2
     HCO3 = HCO3_0 - acid + R + 0.8 z_elec;  dR/dt = (0.6 acid GFR/GFR0 - R) / 24
     (most of a lactic acid load is buffered outside plasma bicarbonate; ``R`` is bicarbonate the
     kidneys regenerate, so compensation takes a day and outlasts the acidosis)
     pH = 6.1 + log10(HCO3 / (0.0307 PaCO2));  BE = 0.93 (HCO3 - 24.4 + 14.8 (pH - 7.4))
     dGlu/dt = (Glu0 (1 + 0.2 h(I, 1) + 0.2 e_NE) + 12 (24 if diabetic) z_glu - Glu) / 2
     Ca = (Ca0 - h(I, 1)) (V1n/V1)^0.5;  Mg = Mg0 + 0.5 (1 - GFR/GFR0)+
     PO4 = PO4_0 + 2.5 (1 - GFR/GFR0)+ + 1.5 D

10. Immune read-outs (CRP half-life 19 h, Pepys & Hirschfield, J Clin Invest 2003;111:1805;
    procalcitonin half-life 24 h, Meisner, Curr Opin Crit Care 2005;11:473)::

      dF/dt = (fever_gain h(I, 1) - F) / 1.5;  T = T0 + F + 0.3 z_temp - hypothermia(t)
      dWBC/dt = (WBC0 (1 + h(I, 0.8))(1 - 0.5 h((I - 2.2)+, 1)) e^(0.08 z_lab) - WBC) / 6
      dCRP/dt = 8 I - ln2/19 (CRP - CRP0);  dPCT/dt = 2 h(P, 1) + 0.05 I - ln2/24 (PCT - PCT0)
      dTn/dt = 0.15 (h(I, 2) + hypoxia) - ln2/10 Tn;  troponin = Tn0 + Tn + MI curve(t)  (:func:`insult_inputs`)

11. Nervous system (septic encephalopathy, hypoperfusion, uraemia; sedation while ventilated)::

      enceph = 0.9 h(I, 1.5) + 1.5 hypoxia + 0.5 (BUN - 80)+ / 80 + 0.8 (55 - MAP)+ / 20
      GCS_unsedated = clip(GCS0 - 4 enceph, 3, 15);  GCS = clip(GCS_unsedated - vent sedation, 3, 15)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from organsim.physiology.noise import PROCESS_INDEX
from organsim.physiology.patients import PatientParameters

LN2 = float(np.log(2.0))


class State(IntEnum):
    """Row of each state variable in the ``(n_states, n_patients)`` state array."""

    PATHOGEN = 0
    INFLAMMATION = 1
    ANTI_INFLAMMATION = 2
    TISSUE_DAMAGE = 3
    ANTIBIOTIC_LEVEL = 4
    ANTIBIOTIC_EFFECT = 5
    PLASMA_VOLUME = 6  # L
    INTERSTITIAL_VOLUME = 7  # L
    RED_CELL_VOLUME = 8  # L
    LUNG_INJURY = 9
    KIDNEY_INJURY = 10
    LIVER_INJURY = 11
    COAGULOPATHY = 12
    CREATININE_AMOUNT = 13  # mg
    UREA_AMOUNT = 14  # mg of urea nitrogen
    AST = 15
    ALT = 16
    BILIRUBIN = 17
    PLATELET_CONTENT = 18  # 10^3/uL x L of blood
    LACTATE = 19
    CHLORIDE = 20
    SODIUM = 21
    GLUCOSE = 22
    FEVER = 23  # degC above baseline
    WBC = 24
    CRP = 25
    PROCALCITONIN = 26
    TROPONIN_SEPSIS = 27  # ng/mL
    RENAL_BICARBONATE = 28  # mmol/L regenerated by the kidneys


N_STATES = len(State)

FIO2_SPONTANEOUS = (0.21, 0.28, 0.35, 0.40, 0.50, 0.60)
FIO2_VENTILATED = (0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 1.00)


@dataclass(frozen=True)
class ModelConstants:
    """Population-level rates and gains of the model (units: per hour unless stated).

    The equations that use them are in the module docstring; values follow the sources cited
    there where a human value exists and were otherwise tuned so that the marginal distributions
    of a generated cohort match PhysioNet 2019 (see :mod:`organsim.physiology.calibration`).
    """

    # infection and inflammation
    pathogen_capacity: float = 10.0
    pathogen_saturation: float = 1.0
    immunoparalysis: float = 0.5
    antibiotic_kill_rate: float = 0.8
    antibiotic_half_life_h: float = 4.0
    antibiotic_ec50: float = 0.25
    antibiotic_effect_delay_h: float = 1.5
    pathogen_weight: float = 4.0
    pathogen_half: float = 2.0
    damage_weight: float = 1.2
    inflammation_time_h: float = 3.0
    anti_inflammation_time_h: float = 24.0
    anti_inflammation_half: float = 4.0
    damage_inflammation_threshold: float = 0.8
    damage_from_inflammation: float = 0.012
    damage_from_hypoxia: float = 0.06
    damage_repair: float = 0.012
    pathogen_extinction: float = 1e-4
    # fluids
    plasma_ml_per_kg: float = 45.0
    interstitial_ml_per_kg: float = 150.0
    redistribution_rate: float = 2.0
    leak_max: float = 0.45
    leak_half: float = 1.5
    insensible_ml_kg_h: float = 0.5
    # circulation
    vasodilation_max: float = 0.7
    vasodilation_half: float = 1.5
    norepinephrine_ec50: float = 0.15  # ug/kg/min
    norepinephrine_hill: float = 1.3
    norepinephrine_hyporesponse: float = 0.35
    venous_dilation: float = 0.2
    venous_norepinephrine: float = 0.12
    peep_preload_loss: float = 0.06
    starling_half: float = 0.6
    myocardial_depression_max: float = 0.3
    myocardial_depression_half: float = 2.0
    # oxygen transport
    vo2_ml_kg_min: float = 3.5
    critical_extraction: float = 0.6
    microcirculatory_loss: float = 0.45
    # lungs
    lung_injury_inflammation: float = 0.005
    lung_injury_pneumonia: float = 0.045
    lung_injury_overload: float = 0.06
    lung_repair: float = 0.012
    shunt_per_injury: float = 0.7
    peep_recruitment: float = 0.3
    supine_atelectasis: float = 0.06
    fatigue_threshold: float = 0.55
    fatigue_paco2: float = 30.0
    # kidney
    kidney_injury_ischaemia: float = 0.05
    kidney_injury_inflammation: float = 0.004
    kidney_repair: float = 0.01
    # liver
    liver_injury_ischaemia: float = 0.1
    liver_injury_inflammation: float = 0.002
    liver_repair: float = 0.04
    ast_release: float = 2800.0
    alt_release: float = 650.0
    bilirubin_clearance: float = 0.05
    biliary_obstruction: float = 1.5  # mg/dL/h of regurgitated bilirubin in cholangitis
    # coagulation
    coagulopathy_rate: float = 0.02
    coagulopathy_repair: float = 0.02
    platelet_turnover: float = LN2 / 96.0
    platelet_consumption: float = 0.018
    # metabolism
    lactate_clearance: float = 1.0
    chloride_fluid: float = 115.0  # mmol/L of the infused crystalloid mix (mostly balanced solutions)
    sodium_fluid: float = 138.0
    electrolyte_restoring: float = 0.02
    renal_compensation: float = 0.6
    renal_compensation_time_h: float = 24.0
    # immune read-outs
    crp_production: float = 8.0
    pct_production: float = 2.0



@dataclass
class HourInputs:
    """What drives the model during one hour; every array has shape ``(n,)`` unless stated.

    Attributes
    ----------
    fluid_l_per_h
        Intravenous fluid rate, L/h.
    norepinephrine
        ug/kg/min.
    ventilated
        1.0 while mechanically ventilated, else 0.0.
    fio2
        Fraction of inspired oxygen set for the hour.
    sterile_drive
        Non-infectious inflammatory drive at this hour.
    bleeding_l_per_h
        Blood loss, L/h.
    mi_depression
        Fractional contractility loss from an acute coronary syndrome at this hour.
    mi_troponin
        Troponin from the coronary event at this hour, ng/mL.
    hypothermia
        degC below baseline temperature from arrival after surgery (rewarming).
    process
        ``(n, n_channels)`` process noise of the hour.
    """

    fluid_l_per_h: np.ndarray
    norepinephrine: np.ndarray
    ventilated: np.ndarray
    fio2: np.ndarray
    sterile_drive: np.ndarray
    bleeding_l_per_h: np.ndarray
    mi_depression: np.ndarray
    mi_troponin: np.ndarray
    hypothermia: np.ndarray
    process: np.ndarray


def _half(v: np.ndarray, k: float) -> np.ndarray:
    return v / (v + k)


INSULT_START_HOUR = -6.0
"""Engine-clock hour of the sterile insult (surgery, trauma, the reason for admission)."""


def insult_inputs(p: PatientParameters, hour: float) -> dict[str, np.ndarray]:
    """Time courses of the non-infectious insults at engine-clock ``hour`` (0 = ICU admission).

    ``sterile_drive`` = insult exp(-(t - t0) / decay) from t0 = -6 h; ``bleeding_l_per_h`` =
    rate exp(-(t + 2) / 4) from t = -2 h (operating room); ``mi_depression`` = severity
    exp(-(t - t_mi) / 48) and ``mi_troponin`` = peak (s / 12) exp(1 - s / 12), s = t - t_mi >= 0
    (troponin peaks 12 h after the coronary event); ``hypothermia`` = drop exp(-t / 4) from
    t = -2 h (arrival cold from theatre).
    """
    since_insult = hour - INSULT_START_HOUR
    sterile = np.where(since_insult >= 0.0, p.sterile_insult * np.exp(-since_insult / p.sterile_decay_hours), 0.0)
    bleeding = p.bleeding_l_per_h * np.exp(-max(hour + 2.0, 0.0) / 4.0) if hour >= -2.0 else np.zeros(p.n)
    since_mi = np.maximum(hour - p.mi_hour, 0.0)
    started = hour >= p.mi_hour
    mi_depression = np.where(started, p.mi_severity * np.exp(-since_mi / 48.0), 0.0)
    mi_troponin = np.where(started, p.mi_troponin_peak * (since_mi / 12.0) * np.exp(1.0 - since_mi / 12.0), 0.0)
    hypothermia = p.admission_hypothermia * np.exp(-max(hour, 0.0) / 4.0) if hour >= -2.0 else np.zeros(p.n)
    return {
        "sterile_drive": sterile, "bleeding_l_per_h": bleeding, "mi_depression": mi_depression,
        "mi_troponin": mi_troponin, "hypothermia": hypothermia,
    }


class Model:
    """The equations of the module docstring for one batch of patients.

    Parameters
    ----------
    params
        The patients.
    constants
        Population constants.
    """

    def __init__(self, params: PatientParameters, constants: ModelConstants) -> None:
        self.p = params
        self.c = constants
        p, c = params, constants
        self.plasma_normal = c.plasma_ml_per_kg * p.weight / 1000.0
        self.interstitial_normal = c.interstitial_ml_per_kg * p.weight / 1000.0
        self.red_cell_normal = self.plasma_normal * p.hematocrit_baseline / (100.0 - p.hematocrit_baseline)
        self.blood_normal = self.plasma_normal + self.red_cell_normal
        self.water_normal = 0.6 * p.weight
        self.ecf_normal = 0.2 * p.weight
        self.svr_baseline = 1000.0 * (p.map_baseline - p.cvp_baseline) / (p.hr_baseline * p.stroke_volume_ml * p.contractility)
        self.cardiac_output_baseline = p.hr_baseline * p.stroke_volume_ml * p.contractility / 1000.0
        self.autoregulation_map = 65.0 + 0.25 * (p.map_baseline - 85.0)
        self.urine_baseline_l_h = p.urine_ml_kg_h * p.weight / 1000.0
        self.insensible_baseline_l_h = c.insensible_ml_kg_h * p.weight / 1000.0
        self.intake_l_h = self.urine_baseline_l_h + self.insensible_baseline_l_h
        self.creatinine_production = 0.06 * p.gfr_ml_min * p.creatinine_baseline * 10.0  # mg/h
        self.urea_clearance_baseline = 0.5 * 0.06 * p.gfr_ml_min  # L/h
        self.urea_production = self.urea_clearance_baseline * p.bun_baseline * 10.0  # mg/h
        self.platelet_production = c.platelet_turnover * p.platelets_baseline * self.blood_normal
        self.stroke_capacity = p.stroke_volume_ml * p.contractility
        self.hr_set = p.hr_baseline + p.baroreflex_gain * p.map_baseline
        self.pulse_per_stroke = p.pulse_pressure_baseline / p.stroke_volume_ml
        self.urine_baseline_ml_h = p.urine_ml_kg_h * p.weight
        # A patient whose resting oxygen delivery is already below the critical ratio (severe chronic
        # anaemia, low output) is adapted to it: hypoxia counts only below their own resting ratio.
        self.delivery_margin = np.ones(p.n)
        resting = self.algebraic(self.initial_state(), self.resting_inputs(), self.hour_terms(self.resting_inputs()))
        self.delivery_margin = np.minimum(0.97 * resting["delivery_ratio"], 1.0)

    def resting_inputs(self) -> HourInputs:
        """No treatment, no insult, no noise, room air: the pre-morbid steady state's inputs."""
        zeros = np.zeros(self.p.n)
        return HourInputs(
            fluid_l_per_h=zeros, norepinephrine=zeros, ventilated=zeros, fio2=np.full(self.p.n, 0.21),
            sterile_drive=zeros, bleeding_l_per_h=zeros, mi_depression=zeros, mi_troponin=zeros,
            hypothermia=zeros, process=np.zeros((self.p.n, len(PROCESS_INDEX))),
        )

    # ------------------------------------------------------------------ state
    def initial_state(self) -> np.ndarray:
        """The pre-morbid steady state, ``(N_STATES, n)``."""
        p = self.p
        x = np.zeros((N_STATES, p.n))
        x[State.LUNG_INJURY] = p.lung_insult
        x[State.PLASMA_VOLUME] = self.plasma_normal
        x[State.INTERSTITIAL_VOLUME] = self.interstitial_normal
        x[State.RED_CELL_VOLUME] = self.red_cell_normal
        x[State.CREATININE_AMOUNT] = p.creatinine_baseline * 10.0 * self.water_normal
        x[State.UREA_AMOUNT] = p.bun_baseline * 10.0 * self.water_normal
        x[State.AST] = p.ast_baseline
        x[State.ALT] = p.alt_baseline
        x[State.BILIRUBIN] = p.bilirubin_baseline
        x[State.PLATELET_CONTENT] = p.platelets_baseline * self.blood_normal
        x[State.LACTATE] = p.lactate_baseline
        x[State.CHLORIDE] = p.chloride_baseline
        x[State.SODIUM] = p.sodium_baseline
        x[State.GLUCOSE] = p.glucose_baseline
        x[State.WBC] = p.wbc_baseline
        x[State.CRP] = p.crp_baseline
        x[State.PROCALCITONIN] = p.pct_baseline
        return x

    # ------------------------------------------------------------------ algebraic relations
    def hour_terms(self, u: HourInputs) -> dict[str, np.ndarray]:
        """Terms that are constant within an hour (treatment effects, process noise), ``(n,)`` each."""
        p, c = self.p, self.c
        z = u.process
        ne = u.norepinephrine
        ne_pow = ne**c.norepinephrine_hill
        e_ne = ne_pow / (ne_pow + c.norepinephrine_ec50**c.norepinephrine_hill)
        ventilated = u.ventilated > 0.5
        return {
            "ne_effect": e_ne,
            "ventilated": ventilated,
            "venous": (1.0 - c.peep_preload_loss * u.ventilated),
            "venous_noise": 0.025 * z[:, PROCESS_INDEX["venous_return"]],
            "tone_noise": np.exp(0.06 * z[:, PROCESS_INDEX["vascular_tone"]]),
            "temperature_noise": 0.3 * z[:, PROCESS_INDEX["temperature"]] - u.hypothermia,
            "hr_noise": 6.0 * z[:, PROCESS_INDEX["heart_rate"]] + 10.0 * e_ne,
            "electrolyte_noise": z[:, PROCESS_INDEX["electrolytes"]],
            "shunt_noise": 0.03 * z[:, PROCESS_INDEX["oxygenation"]],
            "paco2_noise": 1.5 * z[:, PROCESS_INDEX["respiratory_drive"]],
            "rr_noise": np.exp(0.08 * z[:, PROCESS_INDEX["respiratory_drive"]]),
            "glucose_noise": 12.0 * np.where(p.diabetic, 2.0, 1.0) * z[:, PROCESS_INDEX["glucose"]],
            "wbc_noise": np.exp(0.08 * z[:, PROCESS_INDEX["lab_drift"]]),
            "cvp_peep": p.cvp_baseline + 3.0 * u.ventilated,
            "recruitment": 1.0 - c.peep_recruitment * u.ventilated,
        }

    def algebraic(self, x: np.ndarray, u: HourInputs, t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Haemodynamics, gases, acid-base, perfusion: everything not integrated, as ``(n,)`` arrays.

        ``t`` is :meth:`hour_terms` of ``u``.
        """
        p, c = self.p, self.c
        a: dict[str, np.ndarray] = {}
        inflammation = x[State.INFLAMMATION]
        infl_1 = _half(inflammation, 1.0)
        a["infl_1"] = infl_1
        plasma, red_cells = x[State.PLASMA_VOLUME], x[State.RED_CELL_VOLUME]
        blood = plasma + red_cells
        a["blood_volume"] = blood
        hct = 100.0 * red_cells / blood
        a["hematocrit"] = hct
        hemoglobin = hct * p.hb_per_hct
        a["hemoglobin"] = hemoglobin
        # circulation
        vd = c.vasodilation_max * _half(inflammation, c.vasodilation_half)
        e_ne = t["ne_effect"]
        preload = (blood / self.blood_normal) * (1.0 - c.venous_dilation * vd + c.venous_norepinephrine * e_ne)
        preload = np.maximum(preload * t["venous"] + t["venous_noise"], 0.05)
        k2 = c.starling_half**2
        preload_sq = preload * preload
        starling = (1.0 + k2) * preload_sq / (preload_sq + k2)
        depression = c.myocardial_depression_max * _half(inflammation, c.myocardial_depression_half) + u.mi_depression
        stroke_ml = self.stroke_capacity * np.maximum(1.0 - depression, 0.1) * (1.0 + 0.1 * e_ne) * starling
        emax = p.norepinephrine_emax * (1.0 - c.norepinephrine_hyporesponse * infl_1)
        svr = self.svr_baseline * (1.0 - vd) * (1.0 + emax * e_ne) * t["tone_noise"]
        cvp = np.minimum(np.maximum(t["cvp_peep"] + 14.0 * (preload - 1.0), -2.0), 30.0)
        temperature = p.temperature_baseline + x[State.FEVER] + t["temperature_noise"]
        a["temperature"] = temperature
        hr_drive = (
            self.hr_set + 9.0 * (temperature - p.temperature_baseline) + 12.0 * infl_1 + t["hr_noise"]
        )
        gain = stroke_ml * svr / 1000.0  # mmHg per beat/min
        mean_ap = (hr_drive * gain + cvp) / (1.0 + p.baroreflex_gain * gain)
        hr = hr_drive - p.baroreflex_gain * mean_ap
        hr_clipped = np.minimum(np.maximum(hr, 35.0), 190.0)
        mean_ap = np.where(hr_clipped != hr, hr_clipped * gain + cvp, mean_ap)
        a["hr"] = hr_clipped
        a["map"] = mean_ap
        a["cvp"] = cvp
        cardiac_output = hr_clipped * stroke_ml / 1000.0
        a["cardiac_output"] = cardiac_output
        pulse = self.pulse_per_stroke * stroke_ml * (1.0 + 0.15 * e_ne)
        a["sbp"] = mean_ap + 2.0 * pulse / 3.0
        a["dbp"] = np.maximum(mean_ap - pulse / 3.0, 8.0)
        # kidney perfusion and function
        co_ratio = cardiac_output / self.cardiac_output_baseline
        renal_flow = np.minimum(np.maximum((mean_ap - 40.0) / (self.autoregulation_map - 40.0), 0.0), 1.0)
        renal_flow = renal_flow * np.sqrt(np.minimum(co_ratio, 1.0))
        a["renal_flow"] = renal_flow
        gfr = p.gfr_ml_min * renal_flow * (1.0 - x[State.KIDNEY_INJURY])
        a["gfr"] = gfr
        gfr_loss = np.maximum(1.0 - gfr / p.gfr_ml_min, 0.0)
        a["gfr_loss"] = gfr_loss
        diuresis = np.minimum(np.maximum(1.0 + 5.0 * (plasma / self.plasma_normal - 1.0), 0.2), 4.0)
        a["urine_ml_h"] = self.urine_baseline_ml_h * (gfr / p.gfr_ml_min) * (1.0 - 0.5 * x[State.KIDNEY_INJURY]) * diuresis
        # acid-base (metabolic part)
        acid = 0.4 * (x[State.LACTATE] - p.lactate_baseline) + 0.15 * (x[State.CHLORIDE] - p.chloride_baseline) + gfr_loss * gfr_loss
        a["acid_load"] = acid
        hco3 = p.hco3_baseline - acid + x[State.RENAL_BICARBONATE] + 0.8 * t["electrolyte_noise"]
        hco3 = np.minimum(np.maximum(hco3, 3.0), 50.0)
        a["hco3"] = hco3
        # lungs
        lung = x[State.LUNG_INJURY]
        expected_shunt = p.shunt_baseline + c.shunt_per_injury * lung * t["recruitment"] + c.supine_atelectasis * u.ventilated
        a["expected_shunt"] = np.minimum(np.maximum(expected_shunt, 0.02), 0.85)
        shunt = np.minimum(np.maximum(expected_shunt + t["shunt_noise"], 0.02), 0.85)
        a["shunt"] = shunt
        dead_space = p.dead_space_baseline + 0.25 * lung
        spontaneous_paco2 = (
            p.paco2_baseline - 1.0 * (p.hco3_baseline - hco3) - 3.0 * infl_1
            + c.fatigue_paco2 * np.maximum(lung - c.fatigue_threshold, 0.0)
        )
        ventilated_paco2 = p.ventilator_paco2 - 2.0 * (p.hco3_baseline - hco3) + 2.0 * lung
        paco2 = np.where(t["ventilated"], ventilated_paco2, spontaneous_paco2)
        paco2 = np.minimum(np.maximum(paco2, 18.0), 110.0) + t["paco2_noise"]
        a["paco2"] = paco2
        ph = 6.1 + np.log10(hco3 / (0.0307 * paco2))
        a["ph"] = ph
        a["dead_space"] = dead_space
        pao2, sao2 = self.oxygenation(u.fio2, shunt, paco2, temperature, ph)
        a["pao2"] = pao2
        a["sao2"] = sao2
        # oxygen delivery and tissue hypoxia
        cao2 = 1.34 * hemoglobin * sao2 / 100.0 + 0.003 * pao2
        do2 = 10.0 * cardiac_output * cao2 / p.weight
        vo2 = c.vo2_ml_kg_min * (1.0 + 0.1 * (temperature - 37.0)) * (1.0 + 0.15 * infl_1)
        extraction = c.critical_extraction * (1.0 - c.microcirculatory_loss * infl_1)
        a["delivery_ratio"] = do2 * extraction / vo2
        a["hypoxia"] = np.minimum(np.maximum(1.0 - a["delivery_ratio"] / self.delivery_margin, 0.0), 1.0)
        return a

    def breathing(self, a: dict[str, np.ndarray], t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Respiratory rate and EtCO2 (read-out only; nothing integrated depends on them)."""
        p = self.p
        temperature, paco2, shunt, dead_space = a["temperature"], a["paco2"], a["shunt"], a["dead_space"]
        vco2_rel = (1.0 + 0.1 * (temperature - 37.0)) * (1.0 + 0.05 * a["infl_1"])
        spontaneous_rr = (
            p.resp_rate_baseline * vco2_rel * (p.paco2_baseline / paco2) * ((1.0 - p.dead_space_baseline) / (1.0 - dead_space))
            + 12.0 * np.maximum(shunt - 0.15, 0.0)
        ) * t["rr_noise"]
        ventilated_rr = 14.0 + 24.0 * (dead_space - p.dead_space_baseline) + 0.25 * np.maximum(spontaneous_rr - 14.0, 0.0)
        resp_rate = np.clip(np.where(t["ventilated"], ventilated_rr, spontaneous_rr), 4.0, 60.0)
        low_flow = np.maximum(1.0 - a["cardiac_output"] / self.cardiac_output_baseline, 0.0)
        lung_gradient = 3.0 * (dead_space - p.dead_space_baseline) / 0.25
        etco2 = np.maximum(paco2 - 3.0 - 35.0 * (p.dead_space_baseline - 0.3) - lung_gradient - 4.0 * low_flow, 4.0)
        return {"resp_rate": resp_rate, "etco2": etco2}

    @staticmethod
    def oxygenation(
        fio2: np.ndarray, shunt: np.ndarray, paco2: np.ndarray, temperature: np.ndarray, ph: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """PaO2 (mmHg) and SaO2 (%) from FiO2, shunt, PaCO2, temperature and pH (module docstring, 5)."""
        alveolar = 713.0 * fio2 - paco2 / 0.8
        pao2 = 30.0 + np.maximum(alveolar - 30.0, 0.0) * (1.0 - shunt) ** 3
        virtual = pao2 * 10.0 ** (0.024 * (37.0 - temperature) + 0.4 * (ph - 7.4))
        sao2 = 100.0 / (1.0 + 23400.0 / (virtual**3 + 150.0 * virtual))
        return pao2, sao2

    def titrate_fio2(self, x: np.ndarray, u: HourInputs, hours_ventilated: np.ndarray) -> np.ndarray:
        """The bedside oxygen protocol: the lowest FiO2 level that gives SaO2 >= ``p.spo2_target``
        (module docstring, 5); after intubation FiO2 is 1.0 for two hours and is weaned by at most 0.3
        per hour (``hours_ventilated`` counts the current hour as 1).

        SaO2 rises monotonically with FiO2, so the protocol inverts the chain once: the virtual PO2
        of the target saturation (Severinghaus inverted: the real root of v^3 + 150 v = k), the PaO2
        at this temperature and pH, the alveolar PO2 through this shunt, the FiO2 that gives it;
        then it takes the first level at or above that (the highest level when none suffices).
        """
        a = self.algebraic(x, u, self.hour_terms(u))
        target = self.p.spo2_target
        k = 23400.0 * target / (100.0 - target)
        root = np.sqrt(k * k / 4.0 + 125000.0)
        virtual = np.cbrt(k / 2.0 + root) + np.cbrt(k / 2.0 - root)
        pao2_needed = virtual / 10.0 ** (0.024 * (37.0 - a["temperature"]) + 0.4 * (a["ph"] - 7.4))
        alveolar_needed = 30.0 + np.maximum(pao2_needed - 30.0, 0.0) / (1.0 - a["expected_shunt"]) ** 3
        fio2_needed = (alveolar_needed + a["paco2"] / 0.8) / 713.0
        spontaneous = np.array(FIO2_SPONTANEOUS)
        ventilated = np.array(FIO2_VENTILATED)
        pick_spontaneous = spontaneous[np.minimum(np.searchsorted(spontaneous, fio2_needed), len(spontaneous) - 1)]
        pick_ventilated = ventilated[np.minimum(np.searchsorted(ventilated, fio2_needed), len(ventilated) - 1)]
        weaning = np.maximum(pick_ventilated, 1.0 - 0.3 * np.maximum(hours_ventilated - 2.0, 0.0))
        return np.where(u.ventilated > 0.5, np.minimum(weaning, 1.0), pick_spontaneous)

    # ------------------------------------------------------------------ equations
    def derivatives(self, x: np.ndarray, u: HourInputs, t: dict[str, np.ndarray], a: dict[str, np.ndarray]) -> np.ndarray:
        """``dx/dt``, ``(N_STATES, n)``, per hour; ``t`` = :meth:`hour_terms`, ``a`` = :meth:`algebraic`."""
        p, c = self.p, self.c
        dx = np.empty_like(x)
        pathogen = x[State.PATHOGEN]
        inflammation = x[State.INFLAMMATION]
        anti = x[State.ANTI_INFLAMMATION]
        damage = x[State.TISSUE_DAMAGE]
        hypoxia = a["hypoxia"]
        infl_1 = a["infl_1"]
        infl_2 = _half(inflammation, 2.0)
        # infection and inflammation
        dx[State.PATHOGEN] = (
            p.pathogen_growth * pathogen * (1.0 - pathogen / c.pathogen_capacity)
            - p.host_clearance * pathogen / ((1.0 + pathogen / c.pathogen_saturation) * (1.0 + c.immunoparalysis * anti))
            - c.antibiotic_kill_rate * p.antibiotic_susceptibility * x[State.ANTIBIOTIC_EFFECT] * pathogen
        )
        drive = (
            p.inflammatory_gain * c.pathogen_weight * _half(pathogen, c.pathogen_half)
            + c.damage_weight * damage + u.sterile_drive
        )
        dx[State.INFLAMMATION] = (drive / (1.0 + anti / c.anti_inflammation_half) - inflammation) / c.inflammation_time_h
        dx[State.ANTI_INFLAMMATION] = (inflammation - anti) / c.anti_inflammation_time_h
        dx[State.TISSUE_DAMAGE] = (
            c.damage_from_inflammation * np.maximum(inflammation - c.damage_inflammation_threshold, 0.0)
            + c.damage_from_hypoxia * hypoxia - c.damage_repair * damage
        )
        level = x[State.ANTIBIOTIC_LEVEL]
        dx[State.ANTIBIOTIC_LEVEL] = -LN2 / c.antibiotic_half_life_h * level
        dx[State.ANTIBIOTIC_EFFECT] = (_half(level, c.antibiotic_ec50) - x[State.ANTIBIOTIC_EFFECT]) / c.antibiotic_effect_delay_h
        # fluids
        plasma, interstitial, red_cells = x[State.PLASMA_VOLUME], x[State.INTERSTITIAL_VOLUME], x[State.RED_CELL_VOLUME]
        leak = c.leak_max * _half(inflammation, c.leak_half)
        shift = c.redistribution_rate * (
            plasma / self.plasma_normal - (1.0 - leak) * interstitial / self.interstitial_normal
        ) * self.plasma_normal
        insensible = self.insensible_baseline_l_h * (1.0 + 0.1 * (a["temperature"] - p.temperature_baseline))
        blood = a["blood_volume"]
        urine_l_h = a["urine_ml_h"] / 1000.0
        dx[State.PLASMA_VOLUME] = (
            u.fluid_l_per_h + self.intake_l_h - urine_l_h - shift - u.bleeding_l_per_h * plasma / blood
        )
        dx[State.INTERSTITIAL_VOLUME] = shift - insensible
        dx[State.RED_CELL_VOLUME] = -u.bleeding_l_per_h * red_cells / blood
        # organ injuries
        lung = x[State.LUNG_INJURY]
        overload = np.maximum(interstitial / self.interstitial_normal - 1.15, 0.0)
        dx[State.LUNG_INJURY] = (
            c.lung_injury_inflammation * infl_2 + c.lung_injury_pneumonia * p.pneumonia * _half(pathogen, 1.0)
            + c.lung_injury_overload * overload
        ) * (1.0 - lung) - c.lung_repair * lung
        renal_flow = a["renal_flow"]
        inflamed = np.maximum(inflammation - 1.0, 0.0)
        dx[State.KIDNEY_INJURY] = (
            c.kidney_injury_ischaemia * (1.0 - renal_flow) + c.kidney_injury_inflammation * inflamed
            - c.kidney_repair * x[State.KIDNEY_INJURY]
        )
        liver = x[State.LIVER_INJURY]
        dx[State.LIVER_INJURY] = (
            c.liver_injury_ischaemia * np.maximum(hypoxia - 0.07, 0.0)
            + c.liver_injury_inflammation * inflamed
            - c.liver_repair * liver
        )
        coag = x[State.COAGULOPATHY]
        dx[State.COAGULOPATHY] = (
            c.coagulopathy_rate * np.maximum(inflammation - 1.2, 0.0) * (1.0 - coag) + 0.03 * hypoxia
            - c.coagulopathy_repair * coag
        )
        # kidney clearance
        water = self.water_normal + (plasma - self.plasma_normal) + (interstitial - self.interstitial_normal)
        gfr_l_h = 0.06 * a["gfr"]
        dx[State.CREATININE_AMOUNT] = self.creatinine_production - gfr_l_h * x[State.CREATININE_AMOUNT] / water
        urea_clearance = 0.5 * gfr_l_h * (0.6 + 0.4 * renal_flow)
        dx[State.UREA_AMOUNT] = self.urea_production * (1.0 + 0.5 * infl_1) - urea_clearance * x[State.UREA_AMOUNT] / water
        # liver read-outs
        necrosis = liver * liver / (1.0 + 10.0 * liver * liver)
        dx[State.AST] = c.ast_release * necrosis - LN2 / 17.0 * (x[State.AST] - p.ast_baseline)
        dx[State.ALT] = c.alt_release * necrosis - LN2 / 47.0 * (x[State.ALT] - p.alt_baseline)
        dx[State.BILIRUBIN] = c.bilirubin_clearance * (
            p.bilirubin_baseline - (1.0 - 0.85 * infl_2) * (1.0 - 0.9 * liver) * x[State.BILIRUBIN]
        ) + c.biliary_obstruction * p.biliary * _half(pathogen, 0.1)
        # platelets
        content = x[State.PLATELET_CONTENT]
        dx[State.PLATELET_CONTENT] = (
            self.platelet_production - c.platelet_turnover * content
            - c.platelet_consumption * (infl_1 + 2.0 * coag) * content
        )
        # metabolism
        lactate_production = p.lactate_baseline * c.lactate_clearance * p.liver_clearance * (1.0 + 12.0 * hypoxia + 0.3 * infl_1 + 0.6 * t["ne_effect"] + 2.0 * u.sterile_drive)
        lactate_clearance = c.lactate_clearance * (1.0 - 0.6 * liver) * (0.4 + 0.6 * renal_flow) * p.liver_clearance
        dx[State.LACTATE] = lactate_production - lactate_clearance * x[State.LACTATE]
        ecf = self.ecf_normal + (plasma - self.plasma_normal) + (interstitial - self.interstitial_normal)
        restoring = c.electrolyte_restoring * (a["gfr"] / p.gfr_ml_min)
        dx[State.CHLORIDE] = (
            u.fluid_l_per_h * (c.chloride_fluid - x[State.CHLORIDE]) / ecf
            + restoring * (p.chloride_baseline - x[State.CHLORIDE])
        )
        dx[State.SODIUM] = (
            u.fluid_l_per_h * (c.sodium_fluid - x[State.SODIUM]) / ecf + restoring * (p.sodium_baseline - x[State.SODIUM])
        )
        glucose_target = (
            p.glucose_baseline * (1.0 + 0.2 * infl_1 + 0.2 * t["ne_effect"]) + t["glucose_noise"]
        )
        dx[State.GLUCOSE] = (glucose_target - x[State.GLUCOSE]) / 2.0
        # immune read-outs
        dx[State.FEVER] = (p.fever_gain * infl_1 - x[State.FEVER]) / 1.5
        excess = np.maximum(inflammation - 2.2, 0.0)
        wbc_target = (
            p.wbc_baseline * (1.0 + 1.0 * _half(inflammation, 0.8)) * (1.0 - 0.5 * _half(excess, 1.0))
            * t["wbc_noise"]
        )
        dx[State.WBC] = (wbc_target - x[State.WBC]) / 6.0
        dx[State.CRP] = c.crp_production * inflammation - LN2 / 19.0 * (x[State.CRP] - p.crp_baseline)
        dx[State.PROCALCITONIN] = (
            c.pct_production * _half(pathogen, 1.0) + 0.05 * inflammation
            - LN2 / 24.0 * (x[State.PROCALCITONIN] - p.pct_baseline)
        )
        dx[State.TROPONIN_SEPSIS] = 0.15 * (infl_2 + hypoxia) - LN2 / 10.0 * x[State.TROPONIN_SEPSIS]
        dx[State.RENAL_BICARBONATE] = (
            c.renal_compensation * a["acid_load"] * (1.0 - a["gfr_loss"]) - x[State.RENAL_BICARBONATE]
        ) / c.renal_compensation_time_h
        return dx

    def clip(self, x: np.ndarray) -> None:
        """Keep states physical (in place)."""
        c = self.c
        pathogen = x[State.PATHOGEN]
        np.maximum(pathogen, 0.0, out=pathogen)
        pathogen[pathogen < c.pathogen_extinction] = 0.0
        np.clip(x[State.INFLAMMATION : State.TISSUE_DAMAGE + 1], 0.0, 5.0, out=x[State.INFLAMMATION : State.TISSUE_DAMAGE + 1])
        np.maximum(x[State.ANTIBIOTIC_LEVEL : State.ANTIBIOTIC_EFFECT + 1], 0.0, out=x[State.ANTIBIOTIC_LEVEL : State.ANTIBIOTIC_EFFECT + 1])
        np.maximum(x[State.PLASMA_VOLUME], 0.3 * self.plasma_normal, out=x[State.PLASMA_VOLUME])
        np.maximum(x[State.INTERSTITIAL_VOLUME], 0.3 * self.interstitial_normal, out=x[State.INTERSTITIAL_VOLUME])
        np.maximum(x[State.RED_CELL_VOLUME], 0.25 * self.red_cell_normal, out=x[State.RED_CELL_VOLUME])
        injuries = x[State.LUNG_INJURY : State.COAGULOPATHY + 1]
        np.clip(injuries, 0.0, 0.98, out=injuries)
        np.maximum(x[State.CREATININE_AMOUNT : State.PLATELET_CONTENT + 1], 0.0, out=x[State.CREATININE_AMOUNT : State.PLATELET_CONTENT + 1])
        np.clip(x[State.LACTATE], 0.3, 28.0, out=x[State.LACTATE])
        np.clip(x[State.GLUCOSE], 40.0, 900.0, out=x[State.GLUCOSE])
        np.maximum(x[State.WBC : State.TROPONIN_SEPSIS + 1], 0.0, out=x[State.WBC : State.TROPONIN_SEPSIS + 1])

    def advance_hour(self, x: np.ndarray, u: HourInputs, antibiotic_dose: np.ndarray, substeps: int) -> np.ndarray:
        """Integrate one hour in place and return the urine volume of the hour (mL), ``(n,)``."""
        x[State.ANTIBIOTIC_LEVEL] += antibiotic_dose
        dt = 1.0 / substeps
        urine_ml = np.zeros(self.p.n)
        t = self.hour_terms(u)
        for _ in range(substeps):
            a = self.algebraic(x, u, t)
            dx = self.derivatives(x, u, t, a)
            urine_ml += a["urine_ml_h"] * dt
            x += dt * dx
            self.clip(x)
        return urine_ml

    # ------------------------------------------------------------------ read-out
    def readout(self, x: np.ndarray, u: HourInputs, urine_ml: np.ndarray) -> dict[str, np.ndarray]:
        """True values of every catalog variable plus latent quantities the labels need, ``(n,)`` each.

        Latent keys (not catalog variables): ``gcs_unsedated``, ``pathogen``, ``tissue_damage``,
        ``hypoxia``, ``inflammation``.
        """
        p = self.p
        x = x.copy()  # the returned arrays must not be views of the state, which keeps changing
        t = self.hour_terms(u)
        a = self.algebraic(x, u, t)
        breathing = self.breathing(a, t)
        water = self.water_normal + (x[State.PLASMA_VOLUME] - self.plasma_normal) + (
            x[State.INTERSTITIAL_VOLUME] - self.interstitial_normal
        )
        plasma_ratio = self.plasma_normal / x[State.PLASMA_VOLUME]
        gfr_loss = a["gfr_loss"]
        inflammation = x[State.INFLAMMATION]
        infl_1 = a["infl_1"]
        liver = x[State.LIVER_INJURY]
        coag = x[State.COAGULOPATHY]
        bilirubin = x[State.BILIRUBIN]
        bun = x[State.UREA_AMOUNT] / (10.0 * water)
        enceph = (
            0.9 * _half(inflammation, 1.5) + 1.5 * a["hypoxia"] + 0.5 * np.maximum(bun - 80.0, 0.0) / 80.0
            + 0.8 * np.maximum(55.0 - a["map"], 0.0) / 20.0
        )
        gcs_unsedated = np.clip(p.gcs_baseline - 4.0 * enceph, 3.0, 15.0)
        out = {
            "hr": a["hr"],
            "sbp": a["sbp"],
            "dbp": a["dbp"],
            "map": a["map"],
            "cvp": a["cvp"],
            "troponin_i": p.troponin_baseline + x[State.TROPONIN_SEPSIS] + u.mi_troponin,
            "resp_rate": breathing["resp_rate"],
            "spo2": np.minimum(a["sao2"] + 0.5, 100.0),
            "sao2": a["sao2"],
            "pao2": a["pao2"],
            "paco2": a["paco2"],
            "fio2": u.fio2,
            "etco2": breathing["etco2"],
            "creatinine": x[State.CREATININE_AMOUNT] / (10.0 * water),
            "bun": bun,
            "potassium": (
                p.potassium_baseline + 0.6 * gfr_loss + 1.5 * (7.4 - a["ph"]) + 0.4 * x[State.TISSUE_DAMAGE]
                + 0.25 * t["electrolyte_noise"]
            ),
            "urine_output": urine_ml,
            "bilirubin_total": bilirubin,
            "bilirubin_direct": bilirubin * np.clip(
                p.direct_fraction + 0.1 * liver, 0.05, 0.9
            ),
            "ast": x[State.AST],
            "alt": x[State.ALT],
            "alkaline_phosphatase": p.alp_baseline * (1.0 + 0.25 * np.log(np.maximum(bilirubin / p.bilirubin_baseline, 1.0))),
            "temperature": a["temperature"],
            "wbc": x[State.WBC],
            "crp": x[State.CRP],
            "procalcitonin": x[State.PROCALCITONIN],
            "gcs": np.clip(gcs_unsedated - u.ventilated * p.sedation_depth, 3.0, 15.0),
            "hemoglobin": a["hemoglobin"],
            "hematocrit": a["hematocrit"],
            "platelets": x[State.PLATELET_CONTENT] / a["blood_volume"],
            "ptt": p.ptt_baseline * (1.0 + 0.7 * coag + 0.4 * liver),
            "inr": p.inr_baseline * (1.0 + 0.9 * coag + 0.8 * liver),
            "fibrinogen": p.fibrinogen_baseline * (1.0 + 0.0035 * x[State.CRP]) * (1.0 - 0.6 * coag) * plasma_ratio,
            "glucose": x[State.GLUCOSE],
            "lactate": x[State.LACTATE],
            "ph": a["ph"],
            "hco3": a["hco3"],
            "base_excess": 0.93 * (a["hco3"] - 24.4 + 14.8 * (a["ph"] - 7.4)),
            "sodium": x[State.SODIUM] + 0.8 * t["electrolyte_noise"],
            "chloride": x[State.CHLORIDE],
            "calcium": (p.calcium_baseline - 1.0 * infl_1) * np.sqrt(plasma_ratio),
            "magnesium": p.magnesium_baseline + 0.5 * gfr_loss,
            "phosphate": p.phosphate_baseline + 2.5 * gfr_loss + 1.5 * x[State.TISSUE_DAMAGE],
            # latent
            "gcs_unsedated": gcs_unsedated,
            "pathogen": x[State.PATHOGEN],
            "tissue_damage": x[State.TISSUE_DAMAGE],
            "hypoxia": a["hypoxia"],
            "inflammation": inflammation,
        }
        return out


LATENT_KEYS = ("pathogen", "inflammation", "tissue_damage", "hypoxia", "gcs_unsedated")
"""Read-out keys that are not catalog variables: the latent truth labels and analyses use."""
