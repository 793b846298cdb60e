"""A straightforward per-stay, row-by-row reference of organsim.scores, for tests only.

Written from the publications and the documented missing-value rule with plain Python loops and
if/elif point tables; it imports nothing from organsim.scores, so agreement with the vectorised code
is evidence, not a tautology. Slow by design: use it on a few hundred stays.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import polars as pl

from organsim.catalog import Catalog

WINDOWS = {"vital": 4, "bedside": 8, "lab": 24}
ROOM_AIR = 0.21
SCORE_WINDOW = 24


def sig6(value: float | None) -> float | None:
    """The value as read at six significant digits (None for missing or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(f"{float(value):.6g}")


def r6(value: float) -> float:
    return round(value, 6)


def _max(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


# ------------------------------------------------------------------------------ point tables
def sofa_respiration(ratio: float | None, ventilated: bool) -> int | None:
    if ratio is None:
        return None
    points = 4 if ratio < 100 else 3 if ratio < 200 else 2 if ratio < 300 else 1 if ratio < 400 else 0
    return points if ventilated else min(points, 2)


def sofa_coagulation(platelets: float | None) -> int | None:
    if platelets is None:
        return None
    return 4 if platelets < 20 else 3 if platelets < 50 else 2 if platelets < 100 else 1 if platelets < 150 else 0


def sofa_liver(bilirubin: float | None) -> int | None:
    if bilirubin is None:
        return None
    return 4 if bilirubin >= 12 else 3 if bilirubin >= 6 else 2 if bilirubin >= 2 else 1 if bilirubin >= 1.2 else 0


def sofa_cardiovascular(map_: float | None, norepinephrine: float) -> int | None:
    if norepinephrine > 0.1:
        return 4
    if norepinephrine > 0:
        return 3
    if map_ is None:
        return None
    return 1 if map_ < 70 else 0


def sofa_cns(gcs: float | None) -> int | None:
    if gcs is None:
        return None
    return 4 if gcs < 6 else 3 if gcs < 10 else 2 if gcs < 13 else 1 if gcs < 15 else 0


def sofa_creatinine(creatinine: float | None) -> int | None:
    if creatinine is None:
        return None
    return 4 if creatinine >= 5 else 3 if creatinine >= 3.5 else 2 if creatinine >= 2 else 1 if creatinine >= 1.2 else 0


def sofa_urine(ml_per_day: float | None) -> int | None:
    if ml_per_day is None:
        return None
    return 4 if ml_per_day < 200 else 3 if ml_per_day < 500 else 0


def apache_temperature(x: float | None) -> int | None:
    if x is None:
        return None
    if x >= 41:
        return 4
    if x >= 39:
        return 3
    if x >= 38.5:
        return 1
    if x >= 36:
        return 0
    if x >= 34:
        return 1
    if x >= 32:
        return 2
    if x >= 30:
        return 3
    return 4


def apache_map(x: float | None) -> int | None:
    if x is None:
        return None
    if x >= 160:
        return 4
    if x >= 130:
        return 3
    if x >= 110:
        return 2
    if x >= 70:
        return 0
    if x >= 50:
        return 2
    return 4


def apache_heart_rate(x: float | None) -> int | None:
    if x is None:
        return None
    if x >= 180:
        return 4
    if x >= 140:
        return 3
    if x >= 110:
        return 2
    if x >= 70:
        return 0
    if x >= 55:
        return 2
    if x >= 40:
        return 3
    return 4


def apache_respiratory_rate(x: float | None) -> int | None:
    if x is None:
        return None
    if x >= 50:
        return 4
    if x >= 35:
        return 3
    if x >= 25:
        return 1
    if x >= 12:
        return 0
    if x >= 10:
        return 1
    if x >= 6:
        return 2
    return 4


def apache_oxygenation(pao2: float | None, fio2: float | None, paco2: float | None) -> int | None:
    if pao2 is None:
        return None
    fio2 = ROOM_AIR if fio2 is None else fio2
    if fio2 >= 0.5:
        gradient = r6(fio2 * 713 - (40.0 if paco2 is None else paco2) / 0.8 - pao2)
        return 4 if gradient >= 500 else 3 if gradient >= 350 else 2 if gradient >= 200 else 0
    if pao2 > 70:
        return 0
    if pao2 >= 61:
        return 1
    if pao2 >= 55:
        return 3
    return 4


def apache_ph(x: float | None) -> int | None:
    if x is None:
        return None
    if x >= 7.7:
        return 4
    if x >= 7.6:
        return 3
    if x >= 7.5:
        return 1
    if x >= 7.33:
        return 0
    if x >= 7.25:
        return 2
    if x >= 7.15:
        return 3
    return 4


def apache_hco3(x: float | None) -> int | None:
    if x is None:
        return None
    if x >= 52:
        return 4
    if x >= 41:
        return 3
    if x >= 32:
        return 1
    if x >= 22:
        return 0
    if x >= 18:
        return 2
    if x >= 15:
        return 3
    return 4


def apache_sodium(x: float | None) -> int | None:
    if x is None:
        return None
    if x >= 180:
        return 4
    if x >= 160:
        return 3
    if x >= 155:
        return 2
    if x >= 150:
        return 1
    if x >= 130:
        return 0
    if x >= 120:
        return 2
    if x >= 111:
        return 3
    return 4


def apache_potassium(x: float | None) -> int | None:
    if x is None:
        return None
    if x >= 7:
        return 4
    if x >= 6:
        return 3
    if x >= 5.5:
        return 1
    if x >= 3.5:
        return 0
    if x >= 3:
        return 1
    if x >= 2.5:
        return 2
    return 4


def apache_creatinine(x: float | None, acute_renal_failure: bool) -> int | None:
    if x is None:
        return None
    points = 4 if x >= 3.5 else 3 if x >= 2 else 2 if x >= 1.5 else 0 if x >= 0.6 else 2
    return 2 * points if acute_renal_failure else points


def apache_hematocrit(x: float | None) -> int | None:
    if x is None:
        return None
    return 4 if x >= 60 else 2 if x >= 50 else 1 if x >= 46 else 0 if x >= 30 else 2 if x >= 20 else 4


def apache_wbc(x: float | None) -> int | None:
    if x is None:
        return None
    return 4 if x >= 40 else 2 if x >= 20 else 1 if x >= 15 else 0 if x >= 3 else 2 if x >= 1 else 4


def apache_gcs(x: float | None) -> int | None:
    return None if x is None else min(max(15 - round(x), 0), 12)


def apache_age(age: float | None) -> int | None:
    if age is None:
        return None
    return 6 if age >= 75 else 5 if age >= 65 else 3 if age >= 55 else 2 if age >= 45 else 0


def news2_respiratory_rate(x: float | None) -> int | None:
    if x is None:
        return None
    return 3 if x >= 25 else 2 if x >= 21 else 0 if x >= 12 else 1 if x >= 9 else 3


def news2_spo2(x: float | None, on_oxygen: bool, scale: int) -> int | None:
    if x is None:
        return None
    if scale == 1:
        return 0 if x >= 96 else 1 if x >= 94 else 2 if x >= 92 else 3
    if on_oxygen and x >= 93:
        return 3 if x >= 97 else 2 if x >= 95 else 1
    return 3 if x < 84 else 2 if x < 86 else 1 if x < 88 else 0


def news2_sbp(x: float | None) -> int | None:
    if x is None:
        return None
    return 3 if x >= 220 else 0 if x >= 111 else 1 if x >= 101 else 2 if x >= 91 else 3


def news2_pulse(x: float | None) -> int | None:
    if x is None:
        return None
    return 3 if x >= 131 else 2 if x >= 111 else 1 if x >= 91 else 0 if x >= 51 else 1 if x >= 41 else 3


def news2_temperature(x: float | None) -> int | None:
    if x is None:
        return None
    return 2 if x >= 39.1 else 1 if x >= 38.1 else 0 if x >= 36.1 else 1 if x >= 35.1 else 3


# ------------------------------------------------------------------------------ carrying forward
class Stay:
    """One stay's rows in hour order with carried-forward values and their ages."""

    def __init__(self, rows: list[dict], catalog: Catalog, variables: Iterable[str]) -> None:
        self.rows = sorted(rows, key=lambda r: r["hour"])
        self.hours = [r["hour"] for r in self.rows]
        self.value: dict[str, list[float | None]] = {}
        self.age: dict[str, list[int | None]] = {}
        for code in variables:
            window = WINDOWS[catalog.variable(code).kind]
            last_hour, last_value = None, None
            values, ages = [], []
            for row in self.rows:
                measured = sig6(row.get(code))
                if measured is not None:
                    last_hour, last_value = row["hour"], measured
                if last_hour is not None and row["hour"] - last_hour <= window:
                    values.append(last_value)
                    ages.append(row["hour"] - last_hour)
                else:
                    values.append(None)
                    ages.append(None)
            self.value[code], self.age[code] = values, ages

    def raw(self, code: str) -> list[float | None]:
        return [sig6(row.get(code)) for row in self.rows]


def _group(frame: pl.DataFrame) -> dict[int, list[dict]]:
    stays: dict[int, list[dict]] = defaultdict(list)
    for row in frame.iter_rows(named=True):
        stays[row["stay_id"]].append(row)
    return stays


def _treatment_lookup(treatments: pl.DataFrame | None) -> dict[tuple[int, int], dict]:
    if treatments is None:
        return {}
    return {(row["stay_id"], row["hour"]): row for row in treatments.iter_rows(named=True)}


def _count(components: list[tuple[int | None, int | None]]) -> tuple[int, int]:
    """(n_carried, n_missing) of (points, age) pairs."""
    missing = sum(p is None for p, _ in components)
    carried = sum(p is not None and a is not None and a > 0 for p, a in components)
    return carried, missing


def _worst_in_window(hours: list[int], points: list[int], index: int) -> int:
    return max(p for h, p in zip(hours, points, strict=True) if hours[index] - SCORE_WINDOW < h <= hours[index])


def _age_max(*ages: int | None) -> int | None:
    present = [a for a in ages if a is not None]
    return max(present) if present else None


# ------------------------------------------------------------------------------ scores
def reference_sofa(hourly: pl.DataFrame, treatments: pl.DataFrame | None, catalog: Catalog) -> pl.DataFrame:
    names = ["sofa_respiration", "sofa_coagulation", "sofa_liver", "sofa_cardiovascular", "sofa_cns", "sofa_renal"]
    variables = ["pao2", "fio2", "spo2", "platelets", "bilirubin_total", "map", "gcs", "creatinine"]
    given = _treatment_lookup(treatments)
    out = []
    for stay_id, rows in sorted(_group(hourly).items()):
        stay = Stay(rows, catalog, variables)
        urine = stay.raw("urine_output")
        per_component: dict[str, list[int]] = {n: [] for n in names}
        results = []
        for i, hour in enumerate(stay.hours):
            v = {c: stay.value[c][i] for c in variables}
            a = {c: stay.age[c][i] for c in variables}
            treatment = given.get((stay_id, hour), {})
            norepinephrine = sig6(treatment.get("norepinephrine")) or 0.0
            ventilated = (sig6(treatment.get("mechanical_ventilation")) or 0.0) > 0
            fio2 = v["fio2"] if v["fio2"] is not None else ROOM_AIR
            if v["pao2"] is not None:
                ratio, ratio_age = r6(v["pao2"] / fio2), _age_max(a["pao2"], a["fio2"])
            elif v["spo2"] is not None and v["spo2"] <= 97:
                ratio, ratio_age = r6((v["spo2"] / fio2 - 64) / 0.84), _age_max(a["spo2"], a["fio2"])
            else:
                ratio, ratio_age = None, None
            window = [(h, u) for h, u in zip(stay.hours, urine, strict=True) if hour - SCORE_WINDOW < h <= hour and u is not None]
            urine_day = r6(sum(u for _, u in window) / len(window) * 24) if window else None
            urine_age = hour - window[-1][0] if window else None
            creatinine_points, urine_points = sofa_creatinine(v["creatinine"]), sofa_urine(urine_day)
            if urine_points is None or (creatinine_points is not None and creatinine_points >= urine_points):
                renal_age = a["creatinine"]
            else:
                renal_age = urine_age
            components = [
                (sofa_respiration(ratio, ventilated), ratio_age),
                (sofa_coagulation(v["platelets"]), a["platelets"]),
                (sofa_liver(v["bilirubin_total"]), a["bilirubin_total"]),
                (sofa_cardiovascular(v["map"], norepinephrine), 0 if norepinephrine > 0 else a["map"]),
                (sofa_cns(v["gcs"]), a["gcs"]),
                (_max(creatinine_points, urine_points), renal_age),
            ]
            carried, missing = _count(components)
            points = [p or 0 for p, _ in components]
            for name, p in zip(names, points, strict=True):
                per_component[name].append(p)
            results.append({"stay_id": stay_id, "hour": hour, **dict(zip(names, points, strict=True)),
                            "sofa": sum(points), "sofa_n_carried": carried, "sofa_n_missing": missing})
        for i, row in enumerate(results):
            total = sum(_worst_in_window(stay.hours, per_component[n], i) for n in names)
            row["sofa_24h"] = total
            row["sofa_stratum"] = "0-5" if total <= 5 else "6-10" if total <= 10 else "11+"
        out.extend(results)
    return pl.DataFrame(out)


def reference_apache_ii(hourly: pl.DataFrame, stays: pl.DataFrame, catalog: Catalog,
                        context: dict[int, dict] | None = None) -> pl.DataFrame:
    names = ["apache_ii_temperature", "apache_ii_map", "apache_ii_heart_rate", "apache_ii_respiratory_rate",
             "apache_ii_oxygenation", "apache_ii_acid_base", "apache_ii_sodium", "apache_ii_potassium",
             "apache_ii_creatinine", "apache_ii_hematocrit", "apache_ii_wbc", "apache_ii_gcs"]
    variables = ["temperature", "map", "hr", "resp_rate", "pao2", "fio2", "paco2", "ph", "hco3", "sodium",
                 "potassium", "creatinine", "hematocrit", "wbc", "gcs"]
    ages = {row["stay_id"]: row["age"] for row in stays.iter_rows(named=True)}
    context = context or {}
    chronic_points = {"nonoperative": 5, "emergency_postoperative": 5, "elective_postoperative": 2}
    out = []
    for stay_id, rows in sorted(_group(hourly).items()):
        stay = Stay(rows, catalog, variables)
        known = context.get(stay_id, {})
        chronic = chronic_points[known["admission_type"]] if known.get("chronic_organ_insufficiency") else 0
        renal_failure = bool(known.get("acute_renal_failure"))
        age_points = apache_age(sig6(ages.get(stay_id)))
        per_component: dict[str, list[int]] = {n: [] for n in names}
        results = []
        for i, hour in enumerate(stay.hours):
            v = {c: stay.value[c][i] for c in variables}
            a = {c: stay.age[c][i] for c in variables}
            fio2_known = v["fio2"] is not None
            gradient_used = fio2_known and v["fio2"] >= 0.5
            oxygenation_age = _age_max(a["pao2"], a["fio2"], a["paco2"] if gradient_used else None)
            if v["ph"] is not None:
                acid_base, acid_base_age = apache_ph(v["ph"]), a["ph"]
            else:
                acid_base, acid_base_age = apache_hco3(v["hco3"]), a["hco3"]
            components = [
                (apache_temperature(v["temperature"]), a["temperature"]),
                (apache_map(v["map"]), a["map"]),
                (apache_heart_rate(v["hr"]), a["hr"]),
                (apache_respiratory_rate(v["resp_rate"]), a["resp_rate"]),
                (apache_oxygenation(v["pao2"], v["fio2"], v["paco2"]), oxygenation_age),
                (acid_base, acid_base_age),
                (apache_sodium(v["sodium"]), a["sodium"]),
                (apache_potassium(v["potassium"]), a["potassium"]),
                (apache_creatinine(v["creatinine"], renal_failure), a["creatinine"]),
                (apache_hematocrit(v["hematocrit"]), a["hematocrit"]),
                (apache_wbc(v["wbc"]), a["wbc"]),
                (apache_gcs(v["gcs"]), a["gcs"]),
            ]
            carried, missing = _count([*components, (age_points, 0)])
            points = [p or 0 for p, _ in components]
            for name, p in zip(names, points, strict=True):
                per_component[name].append(p)
            results.append({"stay_id": stay_id, "hour": hour, **dict(zip(names, points, strict=True)),
                            "apache_ii_age_points": age_points or 0, "apache_ii_chronic_points": chronic,
                            "apache_ii_aps": sum(points), "apache_ii": sum(points) + (age_points or 0) + chronic,
                            "apache_ii_n_carried": carried, "apache_ii_n_missing": missing})
        for i, row in enumerate(results):
            worst = sum(_worst_in_window(stay.hours, per_component[n], i) for n in names)
            row["apache_ii_24h"] = worst + (age_points or 0) + chronic
        out.extend(results)
    return pl.DataFrame(out)


def reference_news2(hourly: pl.DataFrame, treatments: pl.DataFrame | None, catalog: Catalog,
                    scale: int = 1) -> pl.DataFrame:
    variables = ["resp_rate", "spo2", "fio2", "sbp", "hr", "gcs", "temperature"]
    names = ["news2_respiratory_rate", "news2_spo2", "news2_supplemental_oxygen", "news2_systolic_bp",
             "news2_pulse", "news2_consciousness", "news2_temperature"]
    given = _treatment_lookup(treatments)
    out = []
    for stay_id, rows in sorted(_group(hourly).items()):
        stay = Stay(rows, catalog, variables)
        for i, hour in enumerate(stay.hours):
            v = {c: stay.value[c][i] for c in variables}
            a = {c: stay.age[c][i] for c in variables}
            ventilated = (sig6(given.get((stay_id, hour), {}).get("mechanical_ventilation")) or 0.0) > 0
            on_oxygen = ventilated or (v["fio2"] is not None and v["fio2"] > ROOM_AIR)
            if on_oxygen:
                oxygen = (2, 0 if ventilated else a["fio2"])
            elif v["fio2"] is not None:
                oxygen = (0, a["fio2"])
            else:
                oxygen = (None, None)
            consciousness = None if v["gcs"] is None else (3 if v["gcs"] < 15 else 0)
            components = [
                (news2_respiratory_rate(v["resp_rate"]), a["resp_rate"]),
                (news2_spo2(v["spo2"], on_oxygen, scale), a["spo2"]),
                oxygen,
                (news2_sbp(v["sbp"]), a["sbp"]),
                (news2_pulse(v["hr"]), a["hr"]),
                (consciousness, a["gcs"]),
                (news2_temperature(v["temperature"]), a["temperature"]),
            ]
            carried, missing = _count(components)
            points = [p or 0 for p, _ in components]
            total = sum(points)
            risk = "high" if total >= 7 else "medium" if total >= 5 else "low-medium" if max(points) == 3 else "low"
            out.append({"stay_id": stay_id, "hour": hour, **dict(zip(names, points, strict=True)), "news2": total,
                        "news2_n_carried": carried, "news2_n_missing": missing, "news2_risk": risk})
    return pl.DataFrame(out)


def reference_qsofa(hourly: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    variables = ["resp_rate", "sbp", "gcs"]
    out = []
    for stay_id, rows in sorted(_group(hourly).items()):
        stay = Stay(rows, catalog, variables)
        for i, hour in enumerate(stay.hours):
            v = {c: stay.value[c][i] for c in variables}
            a = {c: stay.age[c][i] for c in variables}
            components = [
                (None if v["resp_rate"] is None else int(v["resp_rate"] >= 22), a["resp_rate"]),
                (None if v["sbp"] is None else int(v["sbp"] <= 100), a["sbp"]),
                (None if v["gcs"] is None else int(v["gcs"] < 15), a["gcs"]),
            ]
            carried, missing = _count(components)
            points = [p or 0 for p, _ in components]
            out.append({"stay_id": stay_id, "hour": hour, "qsofa_respiratory_rate": points[0],
                        "qsofa_systolic_bp": points[1], "qsofa_mentation": points[2], "qsofa": sum(points),
                        "qsofa_n_carried": carried, "qsofa_n_missing": missing, "qsofa_positive": sum(points) >= 2})
    return pl.DataFrame(out)


def reference_sirs(hourly: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    variables = ["temperature", "hr", "resp_rate", "paco2", "wbc"]
    out = []
    for stay_id, rows in sorted(_group(hourly).items()):
        stay = Stay(rows, catalog, variables)
        for i, hour in enumerate(stay.hours):
            v = {c: stay.value[c][i] for c in variables}
            a = {c: stay.age[c][i] for c in variables}
            rate = None if v["resp_rate"] is None else int(v["resp_rate"] > 20)
            paco2 = None if v["paco2"] is None else int(v["paco2"] < 32)
            respiratory_age = a["resp_rate"] if paco2 is None or (rate is not None and rate >= paco2) else a["paco2"]
            temperature = None if v["temperature"] is None else int(v["temperature"] > 38 or v["temperature"] < 36)
            wbc = None if v["wbc"] is None else int(v["wbc"] > 12 or v["wbc"] < 4)
            components = [
                (temperature, a["temperature"]),
                (None if v["hr"] is None else int(v["hr"] > 90), a["hr"]),
                (_max(rate, paco2), respiratory_age),
                (wbc, a["wbc"]),
            ]
            carried, missing = _count(components)
            points = [p or 0 for p, _ in components]
            out.append({"stay_id": stay_id, "hour": hour, "sirs_temperature": points[0], "sirs_heart_rate": points[1],
                        "sirs_respiratory": points[2], "sirs_wbc": points[3], "sirs": sum(points),
                        "sirs_n_carried": carried, "sirs_n_missing": missing, "sirs_positive": sum(points) >= 2})
    return pl.DataFrame(out)


# ------------------------------------------------------------------------------ events and sepsis
def reference_events(hourly: pl.DataFrame, catalog: Catalog) -> list[dict]:
    """Episodes as dicts with the columns of organsim.scores.EVENT_SCHEMA."""
    gap = catalog.event_merge_gap_hours
    episodes = []
    for stay_id, rows in sorted(_group(hourly).items()):
        codes = sorted({e.variable for e in catalog.events}
                       | {c for e in catalog.events if e.or_ratio for c in (e.or_ratio.numerator, e.or_ratio.denominator)})
        stay = Stay(rows, catalog, codes)
        for event in catalog.events:
            code = event.variable
            hourly_state = []  # (hour, on, variable, value, measured, severe)
            raw = stay.raw(code)
            for i, hour in enumerate(stay.hours):
                value, age = stay.value[code][i], stay.age[code][i]
                if event.kdigo is not None:
                    rule = event.kdigo
                    short = [r for h, r in zip(stay.hours, raw, strict=True)
                             if r is not None and hour - rule.absolute_window_hours <= h <= hour]
                    long = [r for h, r in zip(stay.hours, raw, strict=True)
                            if r is not None and hour - rule.relative_window_hours <= h <= hour]
                    on = value is not None and (
                        (bool(short) and r6(value - min(short)) >= rule.absolute_rise_mg_dl)
                        or (bool(long) and r6(value / min(long)) >= rule.relative_rise))
                    hourly_state.append((hour, on, code, value, age == 0, False))
                    continue
                below = event.op == "<"
                primary = value is not None and (value < event.threshold if below else value > event.threshold)
                severe = value is not None and event.severe is not None and (
                    value < event.severe if below else value > event.severe)
                if primary:
                    hourly_state.append((hour, True, code, value, age == 0, severe))
                    continue
                if event.or_ratio is not None:
                    ratio_rule = event.or_ratio
                    numerator = stay.value[ratio_rule.numerator][i]
                    denominator = stay.value[ratio_rule.denominator][i]
                    if denominator is None:
                        low, high = catalog.variable(ratio_rule.denominator).normal
                        denominator = (low + high) / 2
                    if numerator is not None:
                        ratio = r6(numerator / denominator)
                        fired = ratio < ratio_rule.threshold if ratio_rule.op == "<" else ratio > ratio_rule.threshold
                        if fired:
                            name = f"{ratio_rule.numerator}/{ratio_rule.denominator}"
                            measured = stay.age[ratio_rule.numerator][i] == 0
                            hourly_state.append((hour, True, name, ratio, measured, severe))
                            continue
                hourly_state.append((hour, False, None, None, False, severe))
            current: list[tuple] = []
            groups = []
            for state in hourly_state:
                if not state[1]:
                    continue
                if current and state[0] - current[-1][0] - 1 > gap:
                    groups.append(current)
                    current = []
                current.append(state)
            if current:
                groups.append(current)
            lower_is_worse = event.kdigo is None and event.op == "<"
            for group in groups:
                trigger = group[0][2]
                of_trigger = [s for s in group if s[2] == trigger]
                peak = min(of_trigger, key=lambda s: s[3]) if lower_is_worse else max(of_trigger, key=lambda s: s[3])
                peak_hour = next(s[0] for s in of_trigger if s[3] == peak[3])
                measured_hours = [s[0] for s in group if s[4]]
                offset = measured_hours[-1] if measured_hours else group[0][0]
                severity = None if event.severe is None else ("severe" if any(s[5] for s in group) else "moderate")
                episodes.append({
                    "stay_id": stay_id, "event": event.code, "variable": trigger, "onset_hour": group[0][0],
                    "offset_hour": offset, "peak_hour": peak_hour, "trigger_value": group[0][3],
                    "peak_value": peak[3], "severity": severity, "duration_hours": offset - group[0][0] + 1,
                    "n_measured_hours": len(measured_hours),
                })
    return sorted(episodes, key=lambda e: (e["stay_id"], e["onset_hour"], e["event"]))


def reference_sepsis_onset(sofa_rows: pl.DataFrame, treatments: pl.DataFrame) -> dict[int, tuple[int, int, int] | None]:
    """Per stay: (suspicion_hour, sofa_rise_hour, onset_hour) by brute force over all pairs, or None."""
    antibiotics: dict[int, list[int]] = defaultdict(list)
    for row in treatments.iter_rows(named=True):
        if (row["antibiotic"] or 0) > 0:
            antibiotics[row["stay_id"]].append(row["hour"])
    out: dict[int, tuple[int, int, int] | None] = {}
    for stay_id, rows in sorted(_group(sofa_rows).items()):
        rows = sorted(rows, key=lambda r: r["hour"])
        best = None
        for row in rows:
            t = row["hour"]
            lowest = min(r["sofa"] for r in rows if t - SCORE_WINDOW < r["hour"] <= t)
            if row["sofa"] - lowest < 2:
                continue
            for a in sorted(antibiotics.get(stay_id, [])):
                if a - 48 <= t <= a + 24:
                    candidate = (a, t, min(a, t))
                    if best is None or candidate[2] < best[2] or (candidate[2] == best[2] and t < best[1]):
                        best = candidate
                    break
        out[stay_id] = best
    return out
