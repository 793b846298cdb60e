"""Physiological constraints on one simulated ICU hour: what the error-correction agent checks.

Six rules, each checked on a joint state ``values (n, V)`` given the previous hour ``prev (n, V)``
(raw catalog units, NaN = not simulated / not measured: a NaN value never violates a rule and a rule
whose inputs are NaN is not checked):

=============== ====== ==========================================================================
rule            kind   a violation is
=============== ====== ==========================================================================
``range``       hard   one value outside its catalog plausible range (data_schemas/variables.yaml)
``rate_limit``  hard   one value further than ``max_hourly_change`` from the previous hour's value
``map_order``   hard   one hour whose pressures break DBP <= MAP <= SBP (pairs of them when one is NaN)
``map_formula`` band   one hour with \\|MAP - (SBP + 2 DBP) / 3\\| > :data:`MAP_FORMULA_TOLERANCE_MMHG`
``acid_base``   band   one hour with \\|pH - (6.1 + log10(HCO3 / (0.03 PaCO2)))\\| > :data:`ACID_BASE_TOLERANCE_PH`
``spo2_pao2``   band   one hour with \\|SpO2 - S(PaO2)\\| > :data:`SPO2_BAND_PERCENT`, S the
                       Severinghaus oxyhaemoglobin dissociation curve (:func:`severinghaus_saturation`)
=============== ====== ==========================================================================

Hard rules must hold after correction. Band rules are physiological equations that real patients
only approximately obey; each band is the narrowest round tolerance that real PhysioNet 2019 hours
(training set B, 6,000 stays, read with :func:`organsim.data.read_physionet2019`) meet in at least
99 % of the hours where all of its inputs are charted, and a value outside the band is projected
onto it (:mod:`organsim.twin.correction`). :func:`cohort_satisfaction` re-measures every rule on a
cohort; the figures behind the tolerances:

- MAP vs (SBP + 2 DBP) / 3: 192,950 hours with all three pressures; within 15 mmHg 99.12 %, within
  20 mmHg 99.69 % -> 20 mmHg (the formula assumes diastole lasts two thirds of the cycle, which
  tachycardia and stiff arteries break; oscillometric MAP is measured, not computed).
- Henderson-Hasselbalch: 344 hours with pH, HCO3 and PaCO2 in the same hour (93 stays); within
  0.08 pH 98.5 %, within 0.10 pH 99.4 % -> 0.10 pH units (HCO3 charted from a chemistry panel is
  total CO2, about 1-2 mmol/L above blood-gas bicarbonate, and the three are not always drawn at
  the same minute).
- SpO2 vs PaO2: PhysioNet 2019 charts no PaO2, so the band is measured on SpO2 against SaO2, the
  arterial saturation the dissociation curve predicts (Severinghaus' fit errs by < 1 % saturation
  above 30 mmHg): 3,684 hours with both; within 20 % points 98.97 %, within 25 % points 99.19 %
  -> 25 % points (pulse oximetry over-reads in shock and dark skin and under-reads with poor
  perfusion; the hourly SpO2 is an average, SaO2 one sample).

Hard rules on the same data: DBP <= MAP <= SBP holds in 99.81 % of the 195,326 hours with two or
more pressures, the rate limits in 99.82 % of the 183,566 hours with a value and its previous hour
(MAP jumps are the commonest miss; haemoglobin and haematocrit, per pair of consecutive values,
the most frequent: 0.9 % and 0.8 %), and
99.71 % of all 227,481 hours break no hard rule (ranges never: the loader nulls out-of-range values).
The realdata test of tests/unit/twin/test_constraints.py re-measures all of these.

The rate limit compares with the previous value clipped into its plausible range: the corrector keeps
every hour it emits inside the ranges, and cohorts are ingested with out-of-range values nulled, so
this only matters for hand-made input, and it keeps range and rate limit satisfiable together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from organsim.catalog import Catalog

HARD_RULES: tuple[str, ...] = ("range", "rate_limit", "map_order")
"""Rules that must hold after correction."""

BAND_RULES: tuple[str, ...] = ("map_formula", "acid_base", "spo2_pao2")
"""Physiological equations, projected onto a band measured on real data; reported when still off."""

RULES: tuple[str, ...] = HARD_RULES + BAND_RULES
"""Every rule, in the order the corrector applies its projections."""

MAP_FORMULA_TOLERANCE_MMHG = 20.0
"""Largest accepted \\|MAP - (SBP + 2 DBP) / 3\\| in mmHg (met by 99.69 % of real hours)."""

ACID_BASE_TOLERANCE_PH = 0.10
"""Largest accepted \\|pH - Henderson-Hasselbalch pH\\| in pH units (met by 99.4 % of real hours)."""

SPO2_BAND_PERCENT = 25.0
"""Largest accepted \\|SpO2 - S(PaO2)\\| in % saturation (measured as SpO2 - SaO2: 99.19 % of real hours)."""

ROUNDING_SLACK = 1e-5
"""Relative slack (times 1 + \\|reference\\|) below which a check passes: float32 rounding, not physiology."""

HH_PK = 6.1
"""pK' of the bicarbonate buffer in plasma at 37 degC."""

CO2_SOLUBILITY = 0.03
"""Solubility of CO2 in plasma, mmol/L per mmHg."""


def henderson_hasselbalch_ph(hco3: np.ndarray, paco2: np.ndarray) -> np.ndarray:
    """pH = 6.1 + log10(HCO3 / (0.03 PaCO2)).

    Parameters
    ----------
    hco3
        Bicarbonate in mmol/L, any shape.
    paco2
        Arterial CO2 partial pressure in mmHg, broadcastable with ``hco3``.

    Returns
    -------
    np.ndarray
        pH (NaN where an input is NaN or not positive).
    """
    hco3 = np.asarray(hco3, dtype=np.float64)
    paco2 = np.asarray(paco2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = hco3 / (CO2_SOLUBILITY * paco2)
        return np.where(ratio > 0, HH_PK + np.log10(np.where(ratio > 0, ratio, 1.0)), np.nan)


def severinghaus_saturation(
    pao2: np.ndarray, temperature: np.ndarray | float = 37.0, ph: np.ndarray | float = 7.40
) -> np.ndarray:
    """Oxyhaemoglobin saturation from PaO2 (Severinghaus, J Appl Physiol 1979;46:599-602).

    ``S = 100 / (1 + 23400 / (v^3 + 150 v))`` with the virtual PO2
    ``v = PaO2 * 10^(0.024 (37 - T) + 0.40 (pH - 7.40))`` (temperature and Bohr shifts of the curve;
    the same curve the physiology engine uses).

    Parameters
    ----------
    pao2
        Arterial O2 partial pressure in mmHg, any shape.
    temperature
        Body temperature in degC, broadcastable; NaN is taken as 37.
    ph
        Arterial pH, broadcastable; NaN is taken as 7.40.

    Returns
    -------
    np.ndarray
        Saturation in %, float64, NaN where ``pao2`` is NaN.
    """
    pao2 = np.asarray(pao2, dtype=np.float64)
    temperature = np.nan_to_num(np.asarray(temperature, dtype=np.float64), nan=37.0)
    ph = np.nan_to_num(np.asarray(ph, dtype=np.float64), nan=7.40)
    virtual = np.maximum(pao2, 0.0) * 10.0 ** (0.024 * (37.0 - temperature) + 0.40 * (ph - 7.40))
    with np.errstate(divide="ignore"):
        return 100.0 / (1.0 + 23400.0 / (virtual**3 + 150.0 * virtual))


def _exceeds(excess: np.ndarray, reference: np.ndarray | float) -> np.ndarray:
    """``excess > 0`` beyond float32 rounding (NaN is False)."""
    return np.nan_to_num(excess, nan=-np.inf) > ROUNDING_SLACK * (1.0 + np.abs(reference))


@dataclass(frozen=True)
class ConstraintSet:
    """The catalog's ranges and rate limits for a tuple of variables, and the checks of every rule.

    Build with :meth:`from_catalog`; all arrays follow ``variables``.

    Attributes
    ----------
    variables : tuple[str, ...]
        The ``V`` catalog variable codes the state columns hold.
    low, high : np.ndarray
        ``(V,)`` float64 plausible range (hard bounds) in catalog units.
    max_hourly_change : np.ndarray
        ``(V,)`` float64 largest change per hour; ``inf`` where the catalog sets none.
    saturated_low, saturated_high : np.ndarray
        ``(V,)`` float64 the ends of the plausible range where the measurement saturates (the
        catalog's ``saturates``); ``-inf`` / ``inf`` where that end does not.
    """

    variables: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    max_hourly_change: np.ndarray
    saturated_low: np.ndarray
    saturated_high: np.ndarray

    @classmethod
    def from_catalog(cls, catalog: Catalog, variables: Sequence[str]) -> ConstraintSet:
        """Ranges and rate limits of ``variables`` (catalog codes; an unknown code is a ValueError)."""
        variables = tuple(variables)
        known = set(catalog.variable_codes)
        unknown = [code for code in variables if code not in known]
        if unknown:
            raise ValueError(f"unknown variable codes {unknown}; the catalog has {sorted(known)}")
        if len(set(variables)) != len(variables):
            raise ValueError(f"variables {list(variables)} name a code twice")
        spec = [catalog.variable(code) for code in variables]
        return cls(
            variables=variables,
            low=np.array([v.plausible[0] for v in spec], dtype=np.float64),
            high=np.array([v.plausible[1] for v in spec], dtype=np.float64),
            max_hourly_change=np.array(
                [np.inf if v.max_hourly_change is None else v.max_hourly_change for v in spec], dtype=np.float64
            ),
            saturated_low=np.array([v.plausible[0] if "low" in v.saturates else -np.inf for v in spec], dtype=np.float64),
            saturated_high=np.array([v.plausible[1] if "high" in v.saturates else np.inf for v in spec], dtype=np.float64),
        )

    def saturate(self, values: np.ndarray) -> np.ndarray:
        """``values`` ``(n, V)`` (its dtype kept) with every value beyond a saturating end set to that end."""
        return np.clip(values, self.saturated_low, self.saturated_high).astype(values.dtype)

    def column(self, code: str) -> int | None:
        """Index of ``code`` in :attr:`variables`, None when the state does not hold it."""
        return self.variables.index(code) if code in self.variables else None

    def check_shapes(self, prev: np.ndarray, values: np.ndarray) -> None:
        """Raise ValueError unless ``prev`` and ``values`` are both ``(n, V)``."""
        v = len(self.variables)
        if values.ndim != 2 or values.shape[1] != v:
            raise ValueError(f"values must be (n, V={v}) for variables {list(self.variables)}, got {values.shape}")
        if prev.shape != values.shape:
            raise ValueError(f"values_prev {prev.shape} and values_new {values.shape} differ in shape")

    def boxes(self, prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each value may lie: plausible range intersected with the rate window around ``prev``.

        Parameters
        ----------
        prev
            ``(n, V)`` previous hour, NaN = unknown (then only the range applies).

        Returns
        -------
        low, high : np.ndarray
            ``(n, V)`` float64 bounds; never empty (``low <= high``).
        """
        anchor = np.clip(np.asarray(prev, dtype=np.float64), self.low, self.high)
        with np.errstate(invalid="ignore"):
            low = np.fmax(self.low, anchor - self.max_hourly_change)
            high = np.fmin(self.high, anchor + self.max_hourly_change)
        return low, high

    # ---------------------------------------------------------------------------------- checks
    def range_violations(self, values: np.ndarray) -> np.ndarray:
        """``(n, V)`` bool: values outside their plausible range."""
        return _exceeds(self.low - values, self.low) | _exceeds(values - self.high, self.high)

    def rate_violations(self, prev: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``(n, V)`` bool: values that moved further than ``max_hourly_change`` from ``prev``."""
        anchor = np.clip(np.asarray(prev, dtype=np.float64), self.low, self.high)
        return _exceeds(np.abs(values - anchor) - self.max_hourly_change, anchor)

    def pressures(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(dbp, map, sbp)`` columns as ``(n,)`` float64 (NaN where a code is absent); None if < 2 present."""
        columns = [self.column(code) for code in ("dbp", "map", "sbp")]
        if sum(c is not None for c in columns) < 2:
            return None
        nan = np.full(values.shape[0], np.nan)
        return tuple(nan if c is None else values[:, c].astype(np.float64) for c in columns)  # type: ignore[return-value]

    def map_order_violations(self, values: np.ndarray) -> np.ndarray:
        """``(n,)`` bool: DBP > MAP, MAP > SBP or DBP > SBP among the pressures present."""
        pressures = self.pressures(values)
        if pressures is None:
            return np.zeros(values.shape[0], dtype=bool)
        dbp, mean, sbp = pressures
        return _exceeds(dbp - mean, mean) | _exceeds(mean - sbp, sbp) | _exceeds(dbp - sbp, sbp)

    def map_formula_residual(self, values: np.ndarray) -> np.ndarray:
        """``(n,)`` MAP - (SBP + 2 DBP) / 3 in mmHg (NaN unless all three are present)."""
        pressures = self.pressures(values)
        if pressures is None:
            return np.full(values.shape[0], np.nan)
        dbp, mean, sbp = pressures
        return mean - (sbp + 2.0 * dbp) / 3.0

    def acid_base_residual(self, values: np.ndarray) -> np.ndarray:
        """``(n,)`` pH - Henderson-Hasselbalch pH (NaN unless pH, HCO3 and PaCO2 are present)."""
        columns = [self.column(code) for code in ("ph", "hco3", "paco2")]
        if any(c is None for c in columns):
            return np.full(values.shape[0], np.nan)
        ph, hco3, paco2 = (values[:, c].astype(np.float64) for c in columns)
        return ph - henderson_hasselbalch_ph(hco3, paco2)

    def spo2_expected(self, values: np.ndarray) -> np.ndarray:
        """``(n,)`` Severinghaus saturation from PaO2 (and temperature, pH when present); NaN without PaO2 or SpO2."""
        spo2, pao2 = self.column("spo2"), self.column("pao2")
        if spo2 is None or pao2 is None:
            return np.full(values.shape[0], np.nan)
        temperature, ph = self.column("temperature"), self.column("ph")
        expected = severinghaus_saturation(
            values[:, pao2],
            37.0 if temperature is None else values[:, temperature],
            7.40 if ph is None else values[:, ph],
        )
        return np.where(np.isnan(values[:, spo2]), np.nan, expected)

    def band_violations(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """``{rule: (n,) bool}`` for the three band rules."""
        spo2 = self.column("spo2")
        spo2_gap = (
            np.full(values.shape[0], np.nan) if spo2 is None else values[:, spo2] - self.spo2_expected(values)
        )
        return {
            "map_formula": _exceeds(np.abs(self.map_formula_residual(values)) - MAP_FORMULA_TOLERANCE_MMHG,
                                    MAP_FORMULA_TOLERANCE_MMHG),
            "acid_base": _exceeds(np.abs(self.acid_base_residual(values)) - ACID_BASE_TOLERANCE_PH,
                                  ACID_BASE_TOLERANCE_PH),
            "spo2_pao2": _exceeds(np.abs(spo2_gap) - SPO2_BAND_PERCENT, SPO2_BAND_PERCENT),
        }

    def violations(self, prev: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
        """Every rule's violations: ``(n, V)`` bool for range and rate_limit, ``(n,)`` bool for the others."""
        prev = np.asarray(prev)
        values = np.asarray(values)
        self.check_shapes(prev, values)
        return {
            "range": self.range_violations(values),
            "rate_limit": self.rate_violations(prev, values),
            "map_order": self.map_order_violations(values),
            **self.band_violations(values),
        }

    def count(self, prev: np.ndarray, values: np.ndarray) -> dict[str, int]:
        """``{rule: number of violations}`` over all rules (values for range/rate_limit, hours otherwise)."""
        return {rule: int(mask.sum()) for rule, mask in self.violations(prev, values).items()}


def previous_hour(hourly: pl.DataFrame, variables: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each recorded hour beside the same stay's previous hour.

    Parameters
    ----------
    hourly
        A cohort's hourly table (stay_id, hour, one column per variable).
    variables
        The variable codes to take, in this order.

    Returns
    -------
    prev, values : np.ndarray
        ``(n_hours, V)`` float64; ``prev`` is NaN where the stay has no row for hour - 1.
    """
    hourly = hourly.sort("stay_id", "hour")
    values = hourly.select(list(variables)).to_numpy().astype(np.float64)
    stay = hourly["stay_id"].to_numpy()
    hour = hourly["hour"].to_numpy()
    follows = np.zeros(len(hourly), dtype=bool)
    follows[1:] = (stay[1:] == stay[:-1]) & (hour[1:] == hour[:-1] + 1)
    prev = np.full_like(values, np.nan)
    prev[1:] = values[:-1]
    prev[~follows] = np.nan
    return prev, values


def cohort_satisfaction(hourly: pl.DataFrame, catalog: Catalog) -> dict[str, dict[str, float | int]]:
    """How often real (or simulated) hours of a cohort meet each rule.

    Parameters
    ----------
    hourly
        A cohort's hourly table.
    catalog
        The catalog whose ranges and rate limits apply.

    Returns
    -------
    dict
        ``{rule: {"checked_hours": hours where the rule's inputs are present, "violating_hours": hours
        breaking it, "share_met": 1 - violating / checked}}``, plus ``"any_hard"`` over all hours:
        hours that break at least one hard rule.
    """
    variables = tuple(code for code in catalog.variable_codes if code in hourly.columns)
    constraints = ConstraintSet.from_catalog(catalog, variables)
    prev, values = previous_hour(hourly, variables)
    finite, prev_finite = ~np.isnan(values), ~np.isnan(prev)
    violations = constraints.violations(prev, values)
    pressures = constraints.pressures(values)
    present_pressures = (
        np.zeros(len(values), dtype=int) if pressures is None else sum((~np.isnan(p)).astype(int) for p in pressures)
    )
    checked = {
        "range": finite.any(axis=1),
        "rate_limit": (finite & prev_finite & np.isfinite(constraints.max_hourly_change)).any(axis=1),
        "map_order": present_pressures >= 2,
        "map_formula": ~np.isnan(constraints.map_formula_residual(values)),
        "acid_base": ~np.isnan(constraints.acid_base_residual(values)),
        "spo2_pao2": ~np.isnan(constraints.spo2_expected(values)),
    }
    hourly_violation = {rule: mask.any(axis=1) if mask.ndim == 2 else mask for rule, mask in violations.items()}
    report: dict[str, dict[str, float | int]] = {}
    for rule in RULES:
        n_checked = int(checked[rule].sum())
        n_bad = int(hourly_violation[rule].sum())
        report[rule] = {
            "checked_hours": n_checked,
            "violating_hours": n_bad,
            "share_met": 1.0 - n_bad / n_checked if n_checked else float("nan"),
        }
    any_hard = np.logical_or.reduce([hourly_violation[rule] for rule in HARD_RULES])
    report["any_hard"] = {
        "checked_hours": len(values),
        "violating_hours": int(any_hard.sum()),
        "share_met": 1.0 - float(any_hard.mean()) if len(values) else float("nan"),
    }
    return report
