"""How close a generated cohort is to real ICU data: marginal quantiles and missingness per variable.

For each variable that PhysioNet 2019 records, and separately for septic and non-septic stays, the
5th, 50th and 95th percentiles of the charted values (all hours with a value) and the fraction of
hours with a value are compared with the same statistics of a reference cohort (the PhysioNet 2019
data, read with :func:`organsim.data.read_physionet2019`).

Tolerances (stated once, used by the test and the benchmark)
-------------------------------------------------------------
- median within ``MEDIAN_TOLERANCE`` = 15 % of the reference 5-95 % range;
- 5th and 95th percentiles within ``TAIL_TOLERANCE`` = 25 % of that range;
- fraction of hours measured within ``MEASURED_LOG_ODDS_TOLERANCE`` = 0.5 on the log-odds scale
  (an odds ratio of at most e^0.5 ~ 1.65: 0.88 may become 0.82-0.92, 0.02 may become 0.012-0.032).

Why these: the two PhysioNet 2019 hospitals differ from each other by about this much (e.g. their
median MAP and heart rate differ by ~5 % of the 5-95 % range, lactate and troponin tails by far
more), a simulator should not be held to a tighter match than one real hospital to another, and the
range-relative scale treats skewed variables (AST, troponin) and narrow ones (pH) alike. Tails get
more room than medians because they rest on a few per cent of the values.

Variables PhysioNet lacks (CVP, PaO2, ALT, CRP, procalcitonin, GCS, INR, sodium, urine output) are
compared, pooled over all stays, with published ICU ranges (:data:`PUBLISHED_ICU_RANGES`, each with
its source) under the same tolerances; their measurement rates follow MIMIC-IV charting practice
and are not tested.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from organsim.data import Cohort

MEDIAN_TOLERANCE = 0.15
TAIL_TOLERANCE = 0.25
MEASURED_LOG_ODDS_TOLERANCE = 0.5
QUANTILES = {"q05": 0.05, "q50": 0.5, "q95": 0.95}
GROUPS = ("non_septic", "septic")


@dataclass(frozen=True)
class PublishedRange:
    """5th, 50th and 95th percentiles of a variable in adult ICU patients, and where they come from."""

    q05: float
    q50: float
    q95: float
    source: str


PUBLISHED_ICU_RANGES: dict[str, PublishedRange] = {
    "cvp": PublishedRange(2.0, 10.0, 18.0, "Eskesen et al., Intensive Care Med 2016;42:324 (1148 ICU data sets: mean 9.6, SD ~4.5 mmHg)"),
    "pao2": PublishedRange(65.0, 105.0, 200.0, "de Jonge et al., Crit Care 2008;12:R156 (36,307 ventilated patients: median 99, IQR 80-128 mmHg)"),
    "alt": PublishedRange(10.0, 28.0, 400.0, "MIMIC-IV hosp.labevents itemid 50861, ICU stays (median ~27 IU/L, heavy ischaemic tail)"),
    "crp": PublishedRange(5.0, 90.0, 300.0, "Lobo et al., Chest 2003;123:2043 (ICU admissions: median ~80 mg/L, sepsis 150-250)"),
    "procalcitonin": PublishedRange(0.05, 0.7, 30.0, "Harbarth et al., Am J Respir Crit Care Med 2001;164:396; Meisner 2005 (ICU: 0.1-1 non-infected, 2-50 septic shock)"),
    "gcs": PublishedRange(3.0, 14.0, 15.0, "MIMIC-IV chartevents GCS totals 220739+223900+223901 (sedated ventilated patients chart 3-8)"),
    "inr": PublishedRange(1.0, 1.3, 2.6, "Walsh et al., Crit Care 2010;14:R124 (ICU coagulopathy: INR > 1.5 in ~30 %)"),
    "sodium": PublishedRange(131.0, 139.0, 147.0, "Funk et al., Intensive Care Med 2010;36:304 (151,486 ICU admissions: dysnatraemia in ~25 %)"),
    "urine_output": PublishedRange(10.0, 80.0, 250.0, "MIMIC-IV outputevents hourly urine (median ~1 mL/kg/h; oliguria < 0.5 mL/kg/h in ~20 % of hours)"),
}


@dataclass(frozen=True)
class CalibrationRow:
    """One compared statistic."""

    variable: str
    group: str  # "non_septic", "septic" or "all"
    statistic: str  # "q05", "q50", "q95" or "measured_fraction"
    reference: float
    generated: float
    tolerance: float  # absolute, in the variable's unit (log-odds for measured_fraction)
    difference: float  # generated - reference (log-odds difference for measured_fraction)
    passed: bool
    reference_source: str


@dataclass(frozen=True)
class CalibrationReport:
    """Every compared statistic; ``passed`` when all are within tolerance."""

    rows: tuple[CalibrationRow, ...]

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def failures(self) -> list[CalibrationRow]:
        return [row for row in self.rows if not row.passed]

    def table(self) -> pl.DataFrame:
        return pl.DataFrame([asdict(row) for row in self.rows])

    def to_dict(self) -> dict:
        return {
            "tolerances": {
                "median_fraction_of_reference_5_95_range": MEDIAN_TOLERANCE,
                "tail_fraction_of_reference_5_95_range": TAIL_TOLERANCE,
                "measured_fraction_log_odds": MEASURED_LOG_ODDS_TOLERANCE,
            },
            "passed": self.passed,
            "n_compared": len(self.rows),
            "n_failed": len(self.failures()),
            "rows": [asdict(row) for row in self.rows],
        }


def marginal_statistics(cohort: Cohort, variables: list[str] | None = None) -> pl.DataFrame:
    """Per variable and group (``non_septic``, ``septic``, ``all``): values, measured fraction, quantiles.

    Returns a frame with columns ``variable``, ``group``, ``n_values``, ``measured_fraction``,
    ``q05``, ``q50``, ``q95`` (null quantiles when a group has no value).
    """
    codes = variables or list(cohort.catalog.variable_codes)
    septic = cohort.stays.select("stay_id", "sepsis")
    hourly = cohort.hourly.join(septic, on="stay_id", how="left")
    rows = []
    for group, frame in (
        ("non_septic", hourly.filter(~pl.col("sepsis"))),
        ("septic", hourly.filter(pl.col("sepsis"))),
        ("all", hourly),
    ):
        stats = frame.select(
            [pl.col(c).count().alias(f"{c}/n") for c in codes]
            + [pl.col(c).quantile(q, interpolation="linear").alias(f"{c}/{name}") for c in codes for name, q in QUANTILES.items()]
        ).row(0, named=True)
        for code in codes:
            n_values = int(stats[f"{code}/n"])
            rows.append({
                "variable": code,
                "group": group,
                "n_values": n_values,
                "measured_fraction": n_values / frame.height if frame.height else float("nan"),
                **{name: stats[f"{code}/{name}"] for name in QUANTILES},
            })
    return pl.DataFrame(rows)


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1.0 - 1e-6)
    return float(np.log(p / (1.0 - p)))


def compare_to_reference(generated: Cohort, reference: Cohort, *, source: str = "PhysioNet 2019") -> CalibrationReport:
    """Compare ``generated`` with ``reference`` (variables the reference records) and with
    :data:`PUBLISHED_ICU_RANGES` (the others); see the module docstring for the tolerances."""
    recorded = [c for c in reference.catalog.variable_codes if reference.hourly[c].null_count() < reference.hourly.height]
    ref = marginal_statistics(reference, recorded)
    gen = marginal_statistics(generated, recorded)
    rows: list[CalibrationRow] = []
    for group in GROUPS:
        ref_g = {r["variable"]: r for r in ref.filter(pl.col("group") == group).iter_rows(named=True)}
        gen_g = {r["variable"]: r for r in gen.filter(pl.col("group") == group).iter_rows(named=True)}
        for code in recorded:
            r, g = ref_g[code], gen_g[code]
            if r["q05"] is None:
                continue
            rows.extend(_quantile_rows(code, group, r, g, source))
            difference = _logit(g["measured_fraction"]) - _logit(r["measured_fraction"])
            rows.append(CalibrationRow(
                variable=code, group=group, statistic="measured_fraction", reference=r["measured_fraction"],
                generated=g["measured_fraction"], tolerance=MEASURED_LOG_ODDS_TOLERANCE, difference=difference,
                passed=abs(difference) <= MEASURED_LOG_ODDS_TOLERANCE, reference_source=source,
            ))
    rows.extend(compare_to_published(generated, [c for c in PUBLISHED_ICU_RANGES if c not in recorded]))
    return CalibrationReport(rows=tuple(rows))


def compare_to_published(generated: Cohort, variables: list[str] | None = None) -> list[CalibrationRow]:
    """Pooled quantiles of ``variables`` (default: all of :data:`PUBLISHED_ICU_RANGES`) against the
    published ICU ranges."""
    codes = list(variables) if variables is not None else list(PUBLISHED_ICU_RANGES)
    gen = {r["variable"]: r for r in marginal_statistics(generated, codes).filter(pl.col("group") == "all").iter_rows(named=True)}
    rows: list[CalibrationRow] = []
    for code in codes:
        published = PUBLISHED_ICU_RANGES[code]
        reference = {"q05": published.q05, "q50": published.q50, "q95": published.q95}
        rows.extend(_quantile_rows(code, "all", reference, gen[code], published.source))
    return rows


def _quantile_rows(code: str, group: str, reference: dict, generated: dict, source: str) -> list[CalibrationRow]:
    spread = reference["q95"] - reference["q05"]
    rows = []
    for name in QUANTILES:
        tolerance = (MEDIAN_TOLERANCE if name == "q50" else TAIL_TOLERANCE) * spread
        value = generated[name]
        difference = float("nan") if value is None else value - reference[name]
        rows.append(CalibrationRow(
            variable=code, group=group, statistic=name, reference=float(reference[name]),
            generated=float("nan") if value is None else float(value), tolerance=float(tolerance),
            difference=difference, passed=value is not None and abs(difference) <= tolerance + 1e-9,
            reference_source=source,
        ))
    return rows
