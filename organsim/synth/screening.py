"""The realism screen: a pool of generated stays thinned toward the real stays (discriminator
rejection sampling).

The twin's stays differ from real ones in many small ways at once (a little too smooth here, a
lab too correlated there), and no single fix moves a classifier that reads them all. The screen
reads them all too. The generator makes ``pool`` times the stays it needs; a classifier (LightGBM)
learns to tell the training split's real stays from the pool by their stay summaries
(:func:`organsim.data.summaries.stay_summaries`, with the stay's sepsis status); its odds give each
pool stay a density ratio ``r = p_real(x) / p_pool(x)`` (Bayes: the odds of "real" times the pool's
size over the real cohort's). Keeping each stay with probability ``min(1, r / M)`` turns the pool's
distribution into the real one where the pool covers it (Azadi et al. 2019, *Discriminator
rejection sampling*): stays that look real are kept, stays that look generated mostly dropped.

- Each pool stay's ratio comes from a classifier that did not see it (:data:`FOLDS`-fold cross-
  fitting), so a stay is not kept for its own noise.
- ``M`` is chosen so that the kept count is exactly what is asked (the inclusion probabilities
  ``min(1, r / M)`` sum to it), and the stays are drawn by systematic sampling with those
  probabilities (Madow 1949) over a random order: exactly ``n`` stays, each with its probability.
- The generator screens septic and non-septic stays apart, so the septic share stays as asked.

The screen is not a copy: it chooses among stays the twin generated, by how their summaries look,
and never moves a value. The synthetic report's privacy checks (distance to closest record,
membership inference) still measure whether the kept stays lie closer to training patients than
unseen patients do.

Written by hand (about 30 lines): the cross-fitting loop and the exact-size sampling; no library
offers rejection sampling with a fixed sample size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from organsim.data import Cohort
from organsim.data.summaries import stay_summaries

FOLDS = 5
"""Cross-fitting folds: each pool stay's ratio comes from a classifier fitted on the other folds."""
TREES = 200
"""Boosting rounds of the screen's classifier."""
MIN_LEAF = 40
"""Fewest stays in a leaf of the screen's trees: the classifier learns how generated stays look, not
how one training stay looks."""


def screen_features(cohort: Cohort, variables: Sequence[str]) -> pl.DataFrame:
    """The screen's view of each stay: :func:`stay_summaries` and the sepsis status, without ``stay_id``."""
    summaries = stay_summaries(cohort, variables)
    sepsis = cohort.stays.select("stay_id", pl.col("sepsis").cast(pl.Float64))
    return summaries.join(sepsis, on="stay_id", how="left", maintain_order="left").drop("stay_id")


def _classifier(seed: int) -> lgb.LGBMClassifier:
    return lgb.LGBMClassifier(
        n_estimators=TREES, learning_rate=0.05, num_leaves=31, min_child_samples=MIN_LEAF, subsample=0.8,
        subsample_freq=1, colsample_bytree=0.8, random_state=seed, deterministic=True, force_row_wise=True,
        n_jobs=1, verbose=-1,
    )


@dataclass(frozen=True)
class RealismRatios:
    """The cross-fitted density ratios of a pool of stays against real stays.

    Attributes
    ----------
    ratio
        Per pool stay (in the pool's order), ``p_real(x) / p_pool(x)`` as the classifier estimates it.
    auroc
        Cross-fitted AUROC of the classifier telling the pool from the real stays (0.5: it cannot).
    """

    ratio: np.ndarray
    auroc: float


def realism_ratios(real: pl.DataFrame, pool: pl.DataFrame, *, seed: int = 0) -> RealismRatios:
    """Density ratios of the ``pool`` stays against the ``real`` stays (:func:`screen_features` rows,
    same columns), each from a classifier fitted on the other :data:`FOLDS` folds."""
    if real.columns != pool.columns:
        raise ValueError("the real and pool features must have the same columns")
    if min(real.height, pool.height) < FOLDS:
        raise ValueError(f"the screen needs at least {FOLDS} real and {FOLDS} pool stays, got {real.height} and {pool.height}")
    features = np.vstack([real.to_numpy().astype(np.float64), pool.to_numpy().astype(np.float64)])
    labels = np.concatenate([np.ones(real.height, dtype=int), np.zeros(pool.height, dtype=int)])
    real_probability = np.zeros(len(labels))
    for fold, (fit_rows, held_rows) in enumerate(StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(features, labels)):
        model = _classifier(seed + fold).fit(features[fit_rows], labels[fit_rows])
        real_probability[held_rows] = model.predict_proba(features[held_rows])[:, 1]
    p = np.clip(real_probability[real.height:], 1e-6, 1 - 1e-6)
    ratio = p / (1 - p) * (pool.height / real.height)
    return RealismRatios(ratio=ratio, auroc=float(roc_auc_score(labels, real_probability)))


def inclusion_probabilities(ratio: np.ndarray, n: int) -> np.ndarray:
    """``min(1, ratio / M)`` with ``M`` such that the probabilities sum to ``n`` (1 everywhere when ``n``
    is the pool's size or more)."""
    ratio = np.asarray(ratio, dtype=np.float64)
    if n >= len(ratio):
        return np.ones(len(ratio))
    if n <= 0:
        return np.zeros(len(ratio))
    probability = np.zeros(len(ratio))
    capped = np.zeros(len(ratio), dtype=bool)
    while True:  # cap the largest at 1 and share the rest of n out in proportion, until none exceeds 1
        rest = ratio[~capped]
        probability[~capped] = (n - capped.sum()) * rest / rest.sum()
        over = ~capped & (probability >= 1)
        if not over.any():
            break
        capped |= over
        probability[capped] = 1.0
    return probability


def systematic_sample(probability: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions drawn with the given inclusion probabilities (summing to a whole number ``n``):
    systematic sampling over a random order, exactly ``n`` positions, sorted."""
    n = int(round(probability.sum()))
    order = rng.permutation(len(probability))
    cumulative = np.cumsum(probability[order])
    cumulative[-1] = n  # rounding
    picks = np.searchsorted(cumulative, rng.uniform() + np.arange(n), side="right")
    return np.sort(order[picks])


@dataclass
class RealismScreen:
    """The training stays' summaries, against which a generated pool is screened.

    Build with :meth:`fit` on the train split; :meth:`select` thins a pool.

    Attributes
    ----------
    variables
        The variables summarised (those the training stays measure at all).
    reference
        :func:`screen_features` of the training stays.
    """

    variables: list[str]
    reference: pl.DataFrame

    @classmethod
    def fit(cls, train: Cohort) -> RealismScreen:
        variables = [v for v in train.catalog.variable_codes
                     if v in train.hourly.columns and train.hourly[v].null_count() < train.hourly.height]
        return cls(variables=variables, reference=screen_features(train, variables))

    def select(self, pool: Cohort, wanted: dict[bool, int], seed: int) -> tuple[list[int], dict[str, float | int]]:
        """The ``stay_id``s kept of ``pool``: ``wanted[status]`` stays of each sepsis status (all of a
        status when the pool holds fewer), each kept with probability ``min(1, r / M)``.

        Returns the kept ids (sorted) and a record: the pool's size, the classifier's cross-fitted
        AUROC, and the kept share and effective pool share (``(sum r)^2 / sum r^2`` over the pool's
        size: the share of the pool the ratios leave in play).
        """
        ratios = realism_ratios(self.reference, screen_features(pool, self.variables), seed=seed)
        septic = pool.stays["sepsis"].to_numpy()
        ids = pool.stays["stay_id"].to_numpy()
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        kept: list[int] = []
        for status in (True, False):
            rows = np.flatnonzero(septic == status)
            probability = inclusion_probabilities(ratios.ratio[rows], wanted.get(status, 0))
            kept += ids[rows[systematic_sample(probability, rng)]].tolist()
        r = ratios.ratio
        record = {"pool_stays": pool.stays.height, "kept": len(kept), "auroc": round(ratios.auroc, 4),
                  "effective_share": round(float(r.sum() ** 2 / (r ** 2).sum() / len(r)), 4)}
        return sorted(kept), record
