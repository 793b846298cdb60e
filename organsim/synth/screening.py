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
- The ratios are sharpened, ``r ** SHARPNESS`` (:data:`SHARPNESS`): a regularised, cross-fitted
  classifier's odds are shrunk toward 1, so ``r`` itself keeps too many generated-looking stays.
- The stays are screened within strata of sepsis status and stay-length band (quartiles of the
  training stays' lengths, :data:`LENGTH_BANDS`): the septic share stays as asked and the lengths
  keep the training stays' distribution (screened as one, the kept stays' lengths drifted and the
  detection classifier read them).

The screen is not a copy: it chooses among stays the twin generated, by how their summaries look,
and never moves a value. But the stays that look most real are also those nearest a training stay,
so the screen pulls the cohort toward its training patients, the more the larger the pool. A
closeness floor bounds that: no stay is kept that lies nearer its nearest training stay than the
:data:`CLOSENESS_QUANTILE` quantile of the training stays' distances to their nearest *other*
training stay (leave one out: the distance an unseen patient drawn like them has). Distances are
between standardised stay summaries (:class:`~organsim.data.summaries.StayEmbedding`, the report's
privacy embedding, over the variables the screen reads). A status whose pool holds too few stays
beyond the floor keeps its farthest ones. The
synthetic report's privacy checks (distance to closest record, membership inference) still measure
the kept stays against the held-out real stays.

Written by hand (about 60 lines): the cross-fitting loop, the exact-size sampling and the split of
the kept count over the strata; no library we know offers rejection sampling with a fixed sample
size. The classifier is the report's detection classifier
(:func:`organsim.utils.boosting.lightgbm_classifier`) with larger leaves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from organsim.data import Cohort
from organsim.data.summaries import StayEmbedding, nearest_distances, stay_summaries
from organsim.utils.boosting import lightgbm_classifier

FOLDS = 5
"""Cross-fitting folds: each pool stay's ratio comes from a classifier fitted on the other folds."""
TREES = 200
"""Boosting rounds of the screen's classifier."""
MIN_LEAF = 40
"""Fewest stays in a leaf of the screen's trees: the classifier learns how generated stays look, not
how one training stay looks."""
SHARPNESS = 2.0
"""Power the density ratios are raised to before sampling. Measured on PhysioNet 2019 (one pool of
12,600 stays from the tiny twin, 4,200 kept within sepsis and length strata, two sampling seeds;
detection AUROC against the 900 held-out test stays): power 1 0.766 / 0.765, 2 0.740 / 0.735,
3 0.728; the median distance to the closest training stay over the test stays' fell with it,
1.047 / 1.032 / 1.027 (it must stay >= 1)."""
LENGTH_BANDS = 4
"""Quantile bands of the training stays' lengths within which each sepsis status is screened."""
CLOSENESS_QUANTILE = 0.1
"""The closeness floor: a kept stay lies at least as far from its nearest training stay as this
quantile of the training stays' leave-one-out distances. Measured on PhysioNet 2019 (the tiny twin,
a 25,200-stay pool, 4,200 kept with ``r^2``, detection against the 900 held-out test stays, median
distance to the closest training stay over the test stays'): no floor 0.705 and 1.009 (95 %
interval 0.989-1.033); 0.1 0.700 / 0.685 (two sampling seeds) and 1.031 / 1.032 (1.009-1.055);
0.25 0.729 and 1.069. From a 33,600-stay pool, 0.1 gave 0.672 and 1.029 (1.007-1.051): with the
floor a larger pool buys realism without giving up the privacy margin. A small pool pays for it:
from 12,600 stays (pool 3) the floor gave 0.742-0.762 (four screens: whole and in two halves, two
seeds) and 1.051-1.066, against 0.735 / 0.740 and 1.032 without it."""


def screen_features(cohort: Cohort, variables: Sequence[str]) -> pl.DataFrame:
    """The screen's view of each stay: :func:`stay_summaries` and the sepsis status, without ``stay_id``."""
    return _with_sepsis(cohort, stay_summaries(cohort, variables))


def _with_sepsis(cohort: Cohort, summaries: pl.DataFrame) -> pl.DataFrame:
    """:func:`screen_features` from the cohort's :func:`stay_summaries`, when they are at hand."""
    sepsis = cohort.stays.select("stay_id", pl.col("sepsis").cast(pl.Float64))
    return summaries.join(sepsis, on="stay_id", how="left", maintain_order="left").drop("stay_id")


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
        model = lightgbm_classifier(seed + fold, TREES, min_leaf=MIN_LEAF).fit(features[fit_rows], labels[fit_rows])
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
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = rng.permutation(len(probability))
    cumulative = np.cumsum(probability[order])
    cumulative[-1] = n  # rounding
    picks = np.searchsorted(cumulative, rng.uniform() + np.arange(n), side="right")
    return np.sort(order[picks])


def allocate(total: int, shares: np.ndarray, available: np.ndarray) -> np.ndarray:
    """``total`` split over groups in proportion to ``shares`` (largest remainders), no group above its
    ``available`` count: what a group cannot take goes to the others in proportion (to groups without
    a share alike, when only those are left). The counts sum to ``min(total, available.sum())``."""
    shares, available = np.asarray(shares, dtype=np.float64), np.asarray(available, dtype=np.int64)
    counts = np.zeros(len(shares), dtype=np.int64)
    remaining = min(int(total), int(available.sum()))
    while remaining > 0:
        room = available - counts
        weight = np.where(room > 0, shares, 0.0)
        if weight.sum() <= 0:
            weight = (room > 0).astype(np.float64)
        raw = remaining * weight / weight.sum()
        add = np.floor(raw).astype(np.int64)
        add[np.argsort(-(raw - add), kind="stable")[: remaining - add.sum()]] += 1
        add = np.minimum(add, room)
        counts += add
        remaining -= int(add.sum())
    return counts


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
    length_edges
        Inner edges of the :data:`LENGTH_BANDS` quantile bands of the training stays' lengths.
    shares
        ``shares[status][band]``: the share of the training stays of that sepsis status
        (``status`` 1: septic) in each length band.
    embedding
        The standardisation of stay summaries fitted on the training stays.
    train_vectors
        ``(stays, F)`` the training stays' :attr:`embedding` vectors.
    closeness_floor
        The :data:`CLOSENESS_QUANTILE` quantile of the training stays' leave-one-out nearest
        distances: kept stays lie at least this far from every training stay (unless too few do).
    """

    variables: list[str]
    reference: pl.DataFrame
    length_edges: np.ndarray
    shares: np.ndarray
    embedding: StayEmbedding
    train_vectors: np.ndarray
    closeness_floor: float

    @classmethod
    def fit(cls, train: Cohort) -> RealismScreen:
        variables = [v for v in train.catalog.variable_codes
                     if v in train.hourly.columns and train.hourly[v].null_count() < train.hourly.height]
        lengths = train.stays["n_hours"].to_numpy()
        edges = np.quantile(lengths, np.arange(1, LENGTH_BANDS) / LENGTH_BANDS)
        bands = np.searchsorted(edges, lengths, side="right")
        septic = train.stays["sepsis"].to_numpy()
        shares = np.array([np.bincount(bands[septic == status], minlength=LENGTH_BANDS) / max((septic == status).sum(), 1)
                           for status in (False, True)])
        summaries = stay_summaries(train, variables)  # once, for the classifier's reference and the embedding
        embedding = StayEmbedding.from_summaries(summaries, variables)
        vectors = embedding.vectors(summaries)
        floor = float(np.quantile(nearest_distances(vectors, vectors, leave_one_out=True), CLOSENESS_QUANTILE))
        return cls(variables=variables, reference=_with_sepsis(train, summaries), length_edges=edges, shares=shares,
                   embedding=embedding, train_vectors=vectors, closeness_floor=floor)

    def select(self, pool: Cohort, wanted: dict[bool, int], seed: int) -> tuple[list[int], dict[str, float | int]]:
        """The ``stay_id``s kept of ``pool``: ``wanted[status]`` stays of each sepsis status (all of a
        status when the pool holds fewer), shared over the length bands as the training stays of that
        status are, each stay beyond the :attr:`closeness_floor` kept with probability
        ``min(1, r ** SHARPNESS / M)`` within its band.

        Returns the kept ids (sorted) and a record: the pool's size, the classifier's cross-fitted
        AUROC, the effective pool share (``(sum w)^2 / sum w^2`` of the sharpened ratios ``w``
        over the pool's size: the share of the pool the ratios leave in play), the closeness floor
        and the pool stays nearer a training stay than it (``too_close``).
        """
        summaries = stay_summaries(pool, self.variables)  # once, for the classifier and the distances
        ratios = realism_ratios(self.reference, _with_sepsis(pool, summaries), seed=seed)
        weight = ratios.ratio ** SHARPNESS
        septic = pool.stays["sepsis"].to_numpy()
        bands = np.searchsorted(self.length_edges, pool.stays["n_hours"].to_numpy(), side="right")
        ids = pool.stays["stay_id"].to_numpy()
        distance = nearest_distances(self.embedding.vectors(summaries), self.train_vectors)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        kept: list[int] = []
        for status in (True, False):
            in_status = septic == status
            n_status = min(wanted.get(status, 0), int(in_status.sum()))
            # the floor, or lower where fewer stays of the status lie beyond it than are wanted: its farthest
            floor = min(self.closeness_floor, np.sort(distance[in_status])[::-1][n_status - 1]) if n_status else 0.0
            eligible = in_status & (distance >= floor)
            available = np.bincount(bands[eligible], minlength=LENGTH_BANDS)
            for band, n in enumerate(allocate(n_status, self.shares[int(status)], available)):
                rows = np.flatnonzero(eligible & (bands == band))
                kept += ids[rows[systematic_sample(inclusion_probabilities(weight[rows], int(n)), rng)]].tolist()
        record = {"pool_stays": pool.stays.height, "kept": len(kept), "auroc": round(ratios.auroc, 4),
                  "effective_share": round(float(weight.sum() ** 2 / (weight ** 2).sum() / len(weight)), 4),
                  "closeness_floor": round(self.closeness_floor, 4),
                  "too_close": int((distance < self.closeness_floor).sum())}
        return sorted(kept), record
