"""A synthetic stay's lab levels: the correlated quantiles its labs are first charted at.

The labs of one real stay share the patient's state. In the PhysioNet 2019 train split the ranks of
the stays' mean creatinine and phosphate correlate at 0.41, BUN and creatinine at 0.72, haemoglobin
and haematocrit at 0.97. The twin draws a lab a stay has not charted yet from its predictive
distribution given what is charted (mostly vitals: labs come in panels, so the first creatinine and
the first phosphate are usually charted in the same hour, neither in the context of the other), and
its within-hour draw correlation is that of one-step forecast errors
(:mod:`organsim.twin.draw_correlation`), fitted mostly on hours that follow a charted value: in a
1,000-stay synthetic cohort (``bench/synthesize.py`` settings) the three pairs came out at 0.24, 0.59
and 0.80 (0.06, 0.57 and 0.78 before fresh draws kept that correlation), and the labs' values alone
told synthetic from real stays at AUROC 0.84.

:class:`StayLevels` is a Gaussian copula of the stay's first charted value of each lab:

1. per training stay, the first charted value of every lab (catalog kind ``lab``);
2. their normal scores: ``Phi^-1`` of mid-ranks over the stays that chart the lab;
3. the Pearson correlation of the scores over the stays that chart both labs, where at least
   ``min_pairs`` do, else 0 (:func:`organsim.twin.draw_correlation.pairwise_complete_correlation`), made
   positive definite (:func:`organsim.twin.draw_correlation.nearest_correlation`).

:meth:`StayLevels.sample` draws each new stay's scores: the labs already charted in the stay's first
hours (drawn by the initial-state copula) give their scores under the first values' distribution,
and the others are drawn from the normal distribution given them,
``z_U | z_K ~ N(R_UK R_KK^-1 z_K, R_UU - R_UK R_KK^-1 R_KU)``. The generator
(:mod:`organsim.synth.generate`) holds a lab's score in the twin's draws until the lab is first
charted (``hold_draws`` of :meth:`organsim.twin.PatientTwin.rollout`): the first charted value is
the twin's predictive distribution inverted at the stay's level, so it still follows the stay's
simulated vitals, and the levels of its labs are correlated as the training stays' are. In the
1,000-stay cohort the three pairs came to 0.33, 0.64 and 0.90, the mean absolute difference from
the real correlations over 231 lab pairs went from 0.085 to 0.058, and the labs' values alone were
told from real at 0.825 and 0.804 (two seeds; 0.839 and 0.829 before); in the 4,200-stay benchmark
at 0.876 instead of 0.898.

The copula conditions on the first hours' labs only. Conditioned on their vitals too, it got some
pairs' signs wrong (SpO2-lactate +0.15 against -0.11 real): the twin's predictive distribution
already reads the vitals, and a stay's first vitals are not its level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from organsim.data import Cohort
from organsim.twin.draw_correlation import nearest_correlation, pairwise_complete_correlation

MIN_PAIRS = 100
"""Fewest training stays charting both labs for their correlation to be estimated (else 0)."""
MIN_VARIANCE = 1e-6
"""Floor of a conditional variance (the correlation is positive definite, so only rounding reaches it)."""


def first_charted(hourly: pl.DataFrame, variables: list[str]) -> np.ndarray:
    """``(stays, len(variables))`` float64: each stay's first charted value of each variable (NaN: never charted)."""
    firsts = hourly.sort("stay_id", "hour").group_by("stay_id", maintain_order=True).agg(
        [pl.col(v).drop_nulls().first().cast(pl.Float64) for v in variables])
    return firsts.select(variables).to_numpy().astype(np.float64)


@dataclass(frozen=True)
class StayLevels:
    """The copula of the stays' first charted labs (module docstring); build with :meth:`fit`.

    Attributes
    ----------
    variables
        The labs, in column order.
    sorted_values
        Per lab, the sorted first charted values of the training stays (the marginal the scores of
        a stay's own first values are read under).
    correlation
        ``(L, L)`` positive-definite correlation of the labs' scores.
    n_pairs
        ``(L, L)`` training stays charting both labs.
    """

    variables: tuple[str, ...]
    sorted_values: tuple[np.ndarray, ...]
    correlation: np.ndarray
    n_pairs: np.ndarray

    @classmethod
    def fit(cls, train: Cohort, *, min_pairs: int = MIN_PAIRS) -> StayLevels:
        """Fit on the stays of ``train`` (the train split): every catalog lab it charts at all."""
        labs = [v.code for v in train.catalog.variables if v.kind == "lab" and v.code in train.hourly.columns]
        firsts = first_charted(train.hourly, labs)
        charted = np.isfinite(firsts).any(axis=0)
        labs, firsts = [v for v, c in zip(labs, charted, strict=True) if c], firsts[:, charted]
        scores = np.full(firsts.shape, np.nan)
        for column in range(firsts.shape[1]):
            observed = np.isfinite(firsts[:, column])
            ranks = stats.rankdata(firsts[observed, column], method="average")
            scores[observed, column] = stats.norm.ppf(ranks / (observed.sum() + 1))
        correlation, n_pairs = pairwise_complete_correlation(scores, min_pairs=min_pairs)
        return cls(variables=tuple(labs), sorted_values=tuple(np.sort(c[np.isfinite(c)]) for c in firsts.T),
                   correlation=nearest_correlation(correlation), n_pairs=n_pairs)

    def scores_of(self, values: np.ndarray) -> np.ndarray:
        """``(n, L)`` normal scores of first charted values ``(n, L)`` under the training stays' (NaN stays NaN)."""
        scores = np.full(values.shape, np.nan)
        for column, reference in enumerate(self.sorted_values):
            observed = np.isfinite(values[:, column])
            below = np.searchsorted(reference, values[observed, column], side="left")
            at_or_below = np.searchsorted(reference, values[observed, column], side="right")
            mid_rank = (below + at_or_below + 1) / 2  # ties averaged, as the fit's ranks
            scores[observed, column] = stats.norm.ppf(np.clip(mid_rank, 0.5, len(reference) + 0.5) / (len(reference) + 1))
        return scores

    def sample(self, charted: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``(n, L)`` level scores of ``n`` new stays whose first charted values so far are ``charted``
        ``(n, L)`` (NaN: not charted yet): those charted keep their scores (:meth:`scores_of`), the
        others are drawn given them (module docstring)."""
        known = self.scores_of(np.asarray(charted, dtype=np.float64))
        drawn = known.copy()
        noise = rng.standard_normal(known.shape)
        r = self.correlation
        patterns, rows_of = np.unique(np.isfinite(known), axis=0, return_inverse=True)
        for index, pattern in enumerate(patterns):
            rows = np.flatnonzero(rows_of.reshape(-1) == index)
            free, given = np.flatnonzero(~pattern), np.flatnonzero(pattern)
            if not len(free):
                continue
            if len(given):
                weights = np.linalg.solve(r[np.ix_(given, given)], r[np.ix_(given, free)])  # (K, U)
                mean = known[np.ix_(rows, given)] @ weights
                covariance = r[np.ix_(free, free)] - r[np.ix_(free, given)] @ weights
            else:
                mean, covariance = np.zeros((len(rows), len(free))), r[np.ix_(free, free)]
            covariance = (covariance + covariance.T) / 2 + MIN_VARIANCE * np.eye(len(free))
            drawn[np.ix_(rows, free)] = mean + noise[np.ix_(rows, free)] @ np.linalg.cholesky(covariance).T
        return drawn

    def strongest(self, count: int) -> list[tuple[str, str, float, int]]:
        """Up to ``count`` lab pairs with the largest absolute correlation: ``(a, b, r, stays)``, strongest first."""
        rows, columns = np.triu_indices(len(self.variables), k=1)
        order = np.argsort(-np.abs(self.correlation[rows, columns]), kind="stable")[:count]
        return [(self.variables[rows[i]], self.variables[columns[i]], round(float(self.correlation[rows[i], columns[i]]), 3),
                 int(self.n_pairs[rows[i], columns[i]])) for i in order]

    def summary(self) -> dict[str, Any]:
        """The labs and the strongest pairs, for a generation record."""
        return {"labs": list(self.variables), "strongest": [list(p) for p in self.strongest(5)]}
