"""Helpers of the twin tests (a module of its own: test directories share the module name ``conftest``)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from organsim.catalog import Catalog


class RangeCorrector:
    """A corrector with the twin's interface and one rule: values outside the catalog's plausible range.

    Flags them for redrawing and projects them onto the range (the real one lives in organsim.twin.correction).
    """

    def __init__(self, catalog: Catalog, max_resamples: int = 2) -> None:
        self.catalog = catalog
        self.max_resamples = max_resamples
        self.calls = 0

    def _bounds(self, variables):
        bounds = np.array([self.catalog.variable(v).plausible for v in variables], dtype=np.float64)
        return bounds[:, 0], bounds[:, 1]

    def violating(self, values_prev, values_new, variables):
        low, high = self._bounds(variables)
        return (values_new < low) | (values_new > high)

    def correct(self, values_prev, values_new, variables):
        self.calls += 1
        low, high = self._bounds(variables)
        corrected = np.clip(values_new, low, high)
        rows, columns = np.nonzero(corrected != values_new)
        records = [
            {"row": int(r), "variable": variables[c], "rule": "range", "before": float(values_new[r, c]), "after": float(corrected[r, c])}
            for r, c in zip(rows, columns, strict=True)
        ]
        return corrected, records, Counter(range=len(records)), Counter(range=0)
