"""Published point tables of the clinical scores, as data.

Each table is an ordered list of rules ``(op, threshold, points)``: the first rule that holds for a
value gives its points, and a value no rule matches gets ``otherwise``. The rules are written in the
order and with the inequalities of the publication, so a table can be checked line by line against
its source:

- SOFA: Vincent JL et al., Intensive Care Med 22:707-710 (1996), table 1.
- APACHE II: Knaus WA et al., Crit Care Med 13(10):818-829 (1985), figure 1.
- NEWS2: Royal College of Physicians, National Early Warning Score (NEWS) 2, London (2017), chart 1.
- qSOFA: Singer M et al., JAMA 315(8):801-810 (2016), box 3 (Sepsis-3).
- SIRS: Bone RC et al., Chest 101(6):1644-1655 (1992) (ACCP/SCCM consensus).
- SpO2/FiO2 surrogate: Rice TW et al., Chest 132(2):410-417 (2007): S/F = 64 + 0.84 x P/F.

Boundary rule. The publications give integer (or one-decimal) ranges such as "140-179" and
"110-139". A measured value between two published ranges (HR 139.5) belongs to the range whose
published lower limit it has passed, i.e. every range is taken as [its lower limit, the next
range's lower limit): HR 139.5 scores as 110-139. Where the publication uses a strict inequality at a
boundary (APACHE II PaO2 "> 70"; SOFA "< 400"), the strict inequality is kept as written. Every
value is compared at six significant digits (see :mod:`organsim.scores.imputation`), so a float32
39.1 equals the published 39.1.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import polars as pl

Op = Literal["<", "<=", ">", ">="]

_OPS: dict[str, Callable[[pl.Expr, float], pl.Expr]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class PointRule:
    """``points`` when ``value <op> threshold`` (and no earlier rule of the table matched)."""

    op: Op
    threshold: float
    points: int


@dataclass(frozen=True)
class PointTable:
    """One published point table: ordered rules, first match wins, ``otherwise`` when none matches.

    Attributes
    ----------
    name
        What the table scores, e.g. ``"APACHE II heart rate"``.
    unit
        Unit of the value the rules compare (the catalog unit of the variable).
    rules
        The rules, in the publication's order.
    otherwise
        Points of a value that matches no rule (the remaining band of the table).
    """

    name: str
    unit: str
    rules: tuple[PointRule, ...]
    otherwise: int

    def expr(self, value: pl.Expr) -> pl.Expr:
        """Points of ``value`` as an Int8 polars expression; null where ``value`` is null."""
        chain = pl.when(value.is_null()).then(None)
        for rule in self.rules:
            chain = chain.when(_OPS[rule.op](value, rule.threshold)).then(rule.points)
        return chain.otherwise(self.otherwise).cast(pl.Int8)


def _table(name: str, unit: str, rules: list[tuple[Op, float, int]], otherwise: int) -> PointTable:
    return PointTable(name, unit, tuple(PointRule(op, float(t), p) for op, t, p in rules), otherwise)


# ---------------------------------------------------------------------------------------- SOFA
# Vincent 1996, table 1. Respiration: PaO2/FiO2 in mmHg; 3 and 4 points only "with respiratory
# support" (the caller caps the points at 2 without mechanical ventilation).
SOFA_RESPIRATION = _table(
    "SOFA respiration (PaO2/FiO2)", "mmHg",
    [("<", 100, 4), ("<", 200, 3), ("<", 300, 2), ("<", 400, 1)], otherwise=0,
)
SOFA_RESPIRATION_WITHOUT_SUPPORT_MAX = 2
SOFA_COAGULATION = _table(
    "SOFA coagulation (platelets)", "10^3/uL",
    [("<", 20, 4), ("<", 50, 3), ("<", 100, 2), ("<", 150, 1)], otherwise=0,
)
SOFA_LIVER = _table(
    "SOFA liver (bilirubin)", "mg/dL",
    [(">=", 12.0, 4), (">=", 6.0, 3), (">=", 2.0, 2), (">=", 1.2, 1)], otherwise=0,
)
# Cardiovascular: hypotension (MAP < 70 mmHg) gives 1; any catecholamine in norepinephrine
# equivalents gives 3 (<= 0.1 ug/kg/min) or 4 (> 0.1). The published 2 points (dopamine <= 5 or any
# dobutamine) cannot be told apart in norepinephrine equivalents and is not reachable.
SOFA_CARDIOVASCULAR_MAP = _table("SOFA cardiovascular (MAP)", "mmHg", [("<", 70, 1)], otherwise=0)
SOFA_CARDIOVASCULAR_NOREPINEPHRINE = _table(
    "SOFA cardiovascular (norepinephrine equivalents)", "ug/kg/min",
    [(">", 0.1, 4), (">", 0.0, 3)], otherwise=0,
)
SOFA_CNS = _table(
    "SOFA central nervous system (GCS)", "points",
    [("<", 6, 4), ("<", 10, 3), ("<", 13, 2), ("<", 15, 1)], otherwise=0,
)
SOFA_RENAL_CREATININE = _table(
    "SOFA renal (creatinine)", "mg/dL",
    [(">=", 5.0, 4), (">=", 3.5, 3), (">=", 2.0, 2), (">=", 1.2, 1)], otherwise=0,
)
SOFA_RENAL_URINE = _table(
    "SOFA renal (urine output)", "mL/day", [("<", 200, 4), ("<", 500, 3)], otherwise=0,
)
SOFA_STRATA: tuple[tuple[str, int, int | None], ...] = (("0-5", 0, 5), ("6-10", 6, 10), ("11+", 11, None))
"""SOFA strata for stratified evaluation: (label, lowest total, highest total or None)."""

# ---------------------------------------------------------------------------------- APACHE II
# Knaus 1985, figure 1 (acute physiology score), age points and chronic health points.
APACHE_II_TEMPERATURE = _table(
    "APACHE II temperature", "degC",
    [(">=", 41, 4), (">=", 39, 3), (">=", 38.5, 1), (">=", 36, 0), (">=", 34, 1), (">=", 32, 2), (">=", 30, 3)],
    otherwise=4,
)
APACHE_II_MAP = _table(
    "APACHE II mean arterial pressure", "mmHg",
    [(">=", 160, 4), (">=", 130, 3), (">=", 110, 2), (">=", 70, 0), (">=", 50, 2)], otherwise=4,
)
APACHE_II_HEART_RATE = _table(
    "APACHE II heart rate", "beats/min",
    [(">=", 180, 4), (">=", 140, 3), (">=", 110, 2), (">=", 70, 0), (">=", 55, 2), (">=", 40, 3)],
    otherwise=4,
)
APACHE_II_RESPIRATORY_RATE = _table(
    "APACHE II respiratory rate", "breaths/min",
    [(">=", 50, 4), (">=", 35, 3), (">=", 25, 1), (">=", 12, 0), (">=", 10, 1), (">=", 6, 2)], otherwise=4,
)
APACHE_II_AA_GRADIENT = _table(
    "APACHE II A-a O2 gradient (FiO2 >= 0.5)", "mmHg",
    [(">=", 500, 4), (">=", 350, 3), (">=", 200, 2)], otherwise=0,
)
APACHE_II_PAO2 = _table(
    "APACHE II PaO2 (FiO2 < 0.5)", "mmHg", [(">", 70, 0), (">=", 61, 1), (">=", 55, 3)], otherwise=4,
)
APACHE_II_FIO2_FOR_AA_GRADIENT = 0.5
"""FiO2 (fraction) from which oxygenation is scored by the A-a gradient instead of PaO2."""
APACHE_II_PH = _table(
    "APACHE II arterial pH", "pH",
    [(">=", 7.7, 4), (">=", 7.6, 3), (">=", 7.5, 1), (">=", 7.33, 0), (">=", 7.25, 2), (">=", 7.15, 3)],
    otherwise=4,
)
APACHE_II_HCO3 = _table(
    "APACHE II serum HCO3 (no arterial blood gas)", "mmol/L",
    [(">=", 52, 4), (">=", 41, 3), (">=", 32, 1), (">=", 22, 0), (">=", 18, 2), (">=", 15, 3)], otherwise=4,
)
APACHE_II_SODIUM = _table(
    "APACHE II serum sodium", "mmol/L",
    [(">=", 180, 4), (">=", 160, 3), (">=", 155, 2), (">=", 150, 1), (">=", 130, 0), (">=", 120, 2), (">=", 111, 3)],
    otherwise=4,
)
APACHE_II_POTASSIUM = _table(
    "APACHE II serum potassium", "mmol/L",
    [(">=", 7, 4), (">=", 6, 3), (">=", 5.5, 1), (">=", 3.5, 0), (">=", 3, 1), (">=", 2.5, 2)], otherwise=4,
)
APACHE_II_CREATININE = _table(
    "APACHE II serum creatinine (points doubled in acute renal failure)", "mg/dL",
    [(">=", 3.5, 4), (">=", 2, 3), (">=", 1.5, 2), (">=", 0.6, 0)], otherwise=2,
)
APACHE_II_HEMATOCRIT = _table(
    "APACHE II hematocrit", "%",
    [(">=", 60, 4), (">=", 50, 2), (">=", 46, 1), (">=", 30, 0), (">=", 20, 2)], otherwise=4,
)
APACHE_II_WBC = _table(
    "APACHE II white blood count", "10^3/uL",
    [(">=", 40, 4), (">=", 20, 2), (">=", 15, 1), (">=", 3, 0), (">=", 1, 2)], otherwise=4,
)
APACHE_II_GCS_MAX = 15
"""APACHE II neurological points are ``15 - GCS``."""
APACHE_II_AGE = _table(
    "APACHE II age points", "years", [(">=", 75, 6), (">=", 65, 5), (">=", 55, 3), (">=", 45, 2)], otherwise=0,
)
APACHE_II_CHRONIC_HEALTH_POINTS: dict[str, int] = {
    "nonoperative": 5,
    "emergency_postoperative": 5,
    "elective_postoperative": 2,
}
"""Chronic health points by admission type, for a history of severe organ insufficiency or
immunocompromise (Knaus 1985); 0 without such a history."""

# --------------------------------------------------------------------------------------- NEWS2
# RCP 2017, chart 1.
NEWS2_RESPIRATORY_RATE = _table(
    "NEWS2 respiration rate", "breaths/min",
    [(">=", 25, 3), (">=", 21, 2), (">=", 12, 0), (">=", 9, 1)], otherwise=3,
)
NEWS2_SPO2_SCALE_1 = _table(
    "NEWS2 SpO2 scale 1", "%", [(">=", 96, 0), (">=", 94, 1), (">=", 92, 2)], otherwise=3,
)
# Scale 2 (hypercapnic respiratory failure, target 88-92 %): below 93 % (or on air) the low table;
# at 93 % or more on oxygen, the high table.
NEWS2_SPO2_SCALE_2_LOW = _table(
    "NEWS2 SpO2 scale 2 (< 93 %, or on air)", "%", [("<", 84, 3), ("<", 86, 2), ("<", 88, 1)], otherwise=0,
)
NEWS2_SPO2_SCALE_2_ON_OXYGEN = _table(
    "NEWS2 SpO2 scale 2 (>= 93 % on oxygen)", "%", [(">=", 97, 3), (">=", 95, 2), (">=", 93, 1)], otherwise=0,
)
NEWS2_SCALE_2_HIGH_FROM = 93.0
"""SpO2 (%) from which scale 2 scores by the on-oxygen table."""
NEWS2_SUPPLEMENTAL_OXYGEN_POINTS = 2
NEWS2_SYSTOLIC_BP = _table(
    "NEWS2 systolic blood pressure", "mmHg",
    [(">=", 220, 3), (">=", 111, 0), (">=", 101, 1), (">=", 91, 2)], otherwise=3,
)
NEWS2_PULSE = _table(
    "NEWS2 pulse", "beats/min",
    [(">=", 131, 3), (">=", 111, 2), (">=", 91, 1), (">=", 51, 0), (">=", 41, 1)], otherwise=3,
)
NEWS2_TEMPERATURE = _table(
    "NEWS2 temperature", "degC",
    [(">=", 39.1, 2), (">=", 38.1, 1), (">=", 36.1, 0), (">=", 35.1, 1)], otherwise=3,
)
# Consciousness: alert 0; new confusion, or responding only to voice or pain, or unresponsive 3. A
# GCS below 15 is read as "not alert".
NEWS2_CONSCIOUSNESS = _table("NEWS2 consciousness (from GCS)", "points", [("<", 15, 3)], otherwise=0)
ROOM_AIR_FIO2 = 0.21
"""FiO2 (fraction) of room air. NEWS2 reads a higher FiO2, or mechanical ventilation, as
supplemental oxygen; SOFA, APACHE II and the hypoxaemia event take a missing FiO2 as room air."""

# ---------------------------------------------------------------------------- qSOFA and SIRS
# Singer 2016: respiratory rate >= 22/min, systolic BP <= 100 mmHg, altered mentation (GCS < 15).
QSOFA_RESPIRATORY_RATE = _table("qSOFA respiratory rate", "breaths/min", [(">=", 22, 1)], otherwise=0)
QSOFA_SYSTOLIC_BP = _table("qSOFA systolic blood pressure", "mmHg", [("<=", 100, 1)], otherwise=0)
QSOFA_MENTATION = _table("qSOFA altered mentation (GCS)", "points", [("<", 15, 1)], otherwise=0)
# Bone 1992: temperature > 38 or < 36 degC; heart rate > 90/min; respiratory rate > 20/min or
# PaCO2 < 32 mmHg; WBC > 12 or < 4 x10^3/uL (band forms are not recorded).
SIRS_TEMPERATURE = _table("SIRS temperature", "degC", [(">", 38, 1), ("<", 36, 1)], otherwise=0)
SIRS_HEART_RATE = _table("SIRS heart rate", "beats/min", [(">", 90, 1)], otherwise=0)
SIRS_RESPIRATORY_RATE = _table("SIRS respiratory rate", "breaths/min", [(">", 20, 1)], otherwise=0)
SIRS_PACO2 = _table("SIRS PaCO2", "mmHg", [("<", 32, 1)], otherwise=0)
SIRS_WBC = _table("SIRS white blood count", "10^3/uL", [(">", 12, 1), ("<", 4, 1)], otherwise=0)

# ------------------------------------------------------------------ SpO2/FiO2 surrogate (Rice 2007)
RICE_INTERCEPT = 64.0
RICE_SLOPE = 0.84
RICE_MAX_SPO2 = 97.0
"""Rice 2007 derived S/F = 64 + 0.84 x P/F on SpO2 <= 97 %; above it the oxygen dissociation curve is
flat and SpO2 says little about PaO2, so no surrogate is formed there."""
