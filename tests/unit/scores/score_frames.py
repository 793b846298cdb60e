"""Small frame builders and a seeded synthetic cohort for the scores tests."""

from __future__ import annotations

import numpy as np
import polars as pl

from organsim.catalog import Catalog
from organsim.data import Cohort


def one_row_per_stay(**columns: list[float | None]) -> pl.DataFrame:
    """Hourly frame with stay i at hour 1 holding the i-th value of every column (Float32 like a cohort)."""
    n = len(next(iter(columns.values())))
    return pl.DataFrame(
        {"stay_id": list(range(1, n + 1)), "hour": [1] * n, **columns},
        schema={"stay_id": pl.Int64, "hour": pl.Int32, **dict.fromkeys(columns, pl.Float32)},
    )


def one_stay(**columns: list[float | None]) -> pl.DataFrame:
    """Hourly frame of stay 1 with hours 1..n (Float32 values)."""
    n = len(next(iter(columns.values())))
    return pl.DataFrame(
        {"stay_id": [1] * n, "hour": list(range(1, n + 1)), **columns},
        schema={"stay_id": pl.Int64, "hour": pl.Int32, **dict.fromkeys(columns, pl.Float32)},
    )


def treatment_rows(rows: list[tuple[int, int, dict[str, float]]]) -> pl.DataFrame:
    """Treatments frame from (stay_id, hour, {treatment: value}) rows."""
    codes = sorted({c for _, _, given in rows for c in given})
    return pl.DataFrame(
        [{"stay_id": s, "hour": h, **{c: given.get(c, 0.0) for c in codes}} for s, h, given in rows],
        schema={"stay_id": pl.Int64, "hour": pl.Int32, **dict.fromkeys(codes, pl.Float32)},
    )


# value ranges that cross every score threshold, and the thresholds themselves (drawn often so
# boundary behaviour is exercised)
RANGES: dict[str, tuple[float, float, int]] = {  # low, high, decimals
    "hr": (30, 190, 0), "sbp": (60, 230, 0), "dbp": (30, 120, 0), "map": (40, 170, 0),
    "resp_rate": (3, 55, 0), "spo2": (75, 100, 0), "pao2": (40, 420, 0), "paco2": (20, 80, 0),
    "fio2": (0.21, 1.0, 2), "creatinine": (0.3, 7, 1), "urine_output": (0, 120, 0),
    "bilirubin_total": (0.2, 15, 1), "temperature": (28, 42.5, 1), "wbc": (0.5, 45, 1), "gcs": (3, 15, 0),
    "hematocrit": (15, 65, 1), "platelets": (10, 400, 0), "lactate": (0.5, 8, 1), "ph": (6.95, 7.75, 2),
    "hco3": (10, 55, 0), "sodium": (105, 185, 0), "potassium": (2.2, 7.5, 1),
}
EDGES: dict[str, list[float]] = {
    "hr": [39, 40, 41, 50, 51, 54, 55, 69, 70, 90, 91, 109, 110, 111, 130, 131, 139, 140, 179, 180],
    "sbp": [90, 91, 100, 101, 110, 111, 219, 220],
    "map": [49, 50, 64, 65, 69, 70, 109, 110, 129, 130, 159, 160],
    "resp_rate": [5, 6, 8, 9, 11, 12, 20, 21, 22, 24, 25, 34, 35, 49, 50],
    "spo2": [83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98],
    "pao2": [54, 55, 60, 61, 70, 71],
    "paco2": [31.9, 32, 40],
    "fio2": [0.21, 0.3, 0.49, 0.5, 1.0],
    "creatinine": [0.5, 0.6, 1.1, 1.2, 1.4, 1.5, 1.9, 2.0, 3.4, 3.5, 4.9, 5.0],
    "bilirubin_total": [1.1, 1.2, 1.9, 2.0, 5.9, 6.0, 11.9, 12.0],
    "temperature": [29.9, 30, 31.9, 32, 33.9, 34, 35, 35.1, 35.9, 36, 36.1, 38, 38.1, 38.4, 38.5, 38.9, 39,
                    39.1, 40.9, 41],
    "wbc": [0.9, 1, 2.9, 3, 3.9, 4, 12, 12.1, 14.9, 15, 19.9, 20, 39.9, 40],
    "gcs": [3, 5, 6, 9, 10, 12, 13, 14, 15],
    "hematocrit": [19.9, 20, 29.9, 30, 45.9, 46, 49.9, 50, 59.9, 60],
    "platelets": [19, 20, 49, 50, 99, 100, 149, 150],
    "lactate": [2.0, 2.1, 4.0, 4.1],
    "ph": [7.14, 7.15, 7.19, 7.2, 7.24, 7.25, 7.29, 7.3, 7.32, 7.33, 7.49, 7.5, 7.59, 7.6, 7.69, 7.7],
    "hco3": [14.9, 15, 17.9, 18, 21.9, 22, 31.9, 32, 40.9, 41, 51.9, 52],
    "sodium": [110, 111, 119, 120, 129, 130, 149, 150, 154, 155, 159, 160, 179, 180],
    "potassium": [2.4, 2.5, 2.9, 3.0, 3.4, 3.5, 5.4, 5.5, 5.9, 6.0, 6.9, 7.0],
}
MEASURED_PROBABILITY = {"vital": 0.7, "bedside": 0.3, "lab": 0.12}
AGE_EDGES = [44, 45, 54, 55, 64, 65, 74, 75]


def synthetic_cohort(catalog: Catalog, *, n_stays: int = 60, seed: int = 0) -> Cohort:
    """A seeded cohort whose values cross every score threshold, with gaps in the hours and
    treatments (vasopressor runs at 0.05/0.1/0.2 ug/kg/min, ventilation runs, sparse antibiotics)."""
    rng = np.random.default_rng(seed)
    hourly_rows, treatment_rows_, stays = [], [], []
    for stay_id in range(1, n_stays + 1):
        first = int(rng.integers(1, 4))
        hours = [h for h in range(first, first + int(rng.integers(20, 70))) if rng.random() > 0.05]
        vasopressor = ventilated = 0.0
        for hour in hours:
            row: dict[str, float | int | None] = {"stay_id": stay_id, "hour": hour}
            for code, (low, high, decimals) in RANGES.items():
                if rng.random() > MEASURED_PROBABILITY[catalog.variable(code).kind]:
                    continue
                if code in EDGES and rng.random() < 0.35:
                    row[code] = float(rng.choice(EDGES[code]))
                else:
                    row[code] = round(float(rng.uniform(low, high)), decimals)
            hourly_rows.append(row)
            if rng.random() < 0.1:
                vasopressor = float(rng.choice([0.0, 0.05, 0.1, 0.2]))
            if rng.random() < 0.08:
                ventilated = float(rng.random() < 0.5)
            treatment_rows_.append({"stay_id": stay_id, "hour": hour, "norepinephrine": vasopressor,
                                    "mechanical_ventilation": ventilated,
                                    "antibiotic": float(rng.random() < 0.04), "iv_fluid_ml": 0.0})
        age = float(rng.choice(AGE_EDGES)) if rng.random() < 0.4 else (None if rng.random() < 0.1 else
                                                                        round(float(rng.uniform(18, 95)), 0))
        onset = int(rng.choice(hours)) if rng.random() < 0.3 else None
        stays.append({"stay_id": stay_id, "age": age, "sepsis_onset_hour": onset})
    hourly = pl.DataFrame(hourly_rows, infer_schema_length=None)
    return Cohort.from_frames(
        pl.DataFrame(stays, schema={"stay_id": pl.Int64, "age": pl.Float32, "sepsis_onset_hour": pl.Int32}),
        hourly,
        pl.DataFrame(treatment_rows_),
        source="table",
        provenance={"generator": "tests/unit/scores/score_frames.py", "seed": seed},
        catalog=catalog,
    )
