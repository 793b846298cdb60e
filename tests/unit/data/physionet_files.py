"""Write small PhysioNet 2019 challenge files for the loader tests."""

from __future__ import annotations

import math

PSV_COLUMNS = ["HR", "O2Sat", "FiO2", "Calcium", "Age", "Gender", "Unit1", "Unit2", "HospAdmTime", "ICULOS",
               "SepsisLabel"]


def psv_text(rows: list[dict[str, float]], columns: list[str] = PSV_COLUMNS) -> str:
    """A challenge file: ``|``-separated, NaN for missing; each row a {column: value} dict."""

    def cell(value: float | str | None) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "NaN"
        return str(value)

    lines = ["|".join(columns)] + ["|".join(cell(row.get(c)) for c in columns) for row in rows]
    return "\n".join(lines) + "\n"


def stay_rows(hours: range, *, age: float = 60, gender: int = 1, unit1: float | None = 1, unit2: float | None = 0,
              hosp: float = -5.5, positive_from: int | None = None, **series: list) -> list[dict]:
    """Rows of one stay: statics repeated, ``series`` gives per-hour values (lists as long as ``hours``)."""
    rows = []
    for i, hour in enumerate(hours):
        row = {"Age": age, "Gender": gender, "Unit1": unit1, "Unit2": unit2, "HospAdmTime": hosp, "ICULOS": hour,
               "SepsisLabel": int(positive_from is not None and hour >= positive_from)}
        row.update({name: values[i] for name, values in series.items()})
        rows.append(row)
    return rows
