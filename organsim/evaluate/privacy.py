"""Privacy of a synthetic cohort: is it closer to its training patients than unseen patients are?

Every stay becomes one vector (:class:`~organsim.data.summaries.StayEmbedding`): its
:func:`~organsim.data.summaries.stay_summaries` (per variable mean, std, min, max, first, last,
measured fraction, mean absolute hourly change; stay length; statics), standardised with the
real-train means and standard deviations (columns constant or empty in real-train are dropped),
not-measured entries set to 0 (the real-train mean). The embedding lives in the data layer because
the generator's realism screen measures the same distances for its closeness floor
(:mod:`organsim.synth.screening`).

- Distance to closest record (:func:`distance_to_closest_record`): the Euclidean distance of each
  synthetic stay to its nearest real-train stay, against the same distance for each real-test
  stay (the holdout baseline: patients the generator never saw). A synthetic cohort that copies
  or lightly perturbs its training patients has a smaller median than the holdout.
- Membership inference (:func:`membership_inference`): an attacker with the synthetic cohort
  scores each real stay by minus its distance to the nearest synthetic stay and guesses that
  close stays were training members. The AUROC of that score separating real-train (members) from
  real-test (non-members) is 0.5 when the synthetic data leak nothing about membership.

Nearest neighbours: ``sklearn.neighbors.NearestNeighbors`` (exact, Euclidean).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from organsim.data.cohort import Cohort
from organsim.data.summaries import StayEmbedding, nearest_distances

EXACT_COPY_DISTANCE = 1e-6
"""A synthetic stay this close (in standardised units) to a real-train stay counts as a copy."""
BOOTSTRAP_RESAMPLES = 500


def _quantiles(values: np.ndarray) -> dict[str, float]:
    q = np.quantile(values, [0.05, 0.25, 0.5, 0.75])
    return {"p05": float(q[0]), "p25": float(q[1]), "median": float(q[2]), "p75": float(q[3]), "mean": float(values.mean())}


@dataclass
class DistanceToClosestRecord:
    """Distances (standardised units) to the nearest real-train stay.

    Attributes
    ----------
    synthetic
        ``(S,)`` one per synthetic stay.
    holdout
        ``(H,)`` one per real-test stay.
    """

    synthetic: np.ndarray
    holdout: np.ndarray

    def median_ratio_interval(self, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float] | None:
        """95 % bootstrap interval of median(synthetic) / median(holdout), both resampled with replacement.

        It shows whether a ratio just below 1 is sampling noise: for a second real sample of the
        same patients it covers 1. None when a resampled holdout median is 0.
        """
        rng = np.random.default_rng(seed)
        synthetic = np.median(rng.choice(self.synthetic, (resamples, len(self.synthetic))), axis=1)
        holdout = np.median(rng.choice(self.holdout, (resamples, len(self.holdout))), axis=1)
        if np.any(holdout <= 0):
            return None
        low, high = np.quantile(synthetic / holdout, [0.025, 0.975])
        return float(low), float(high)

    def summary(self, seed: int = 0) -> dict[str, Any]:
        """Quantiles of both, their median ratio (with its :meth:`median_ratio_interval`, seeded),
        the share of synthetic stays closer than the holdout's 5th percentile (about 0.05 when
        synthetic stays are as far as unseen patients), exact copies, and
        ``synthetic_not_closer_at_median`` (median synthetic >= median holdout)."""
        synthetic, holdout = _quantiles(self.synthetic), _quantiles(self.holdout)
        interval = self.median_ratio_interval(seed=seed)
        return {
            "synthetic_to_train": synthetic,
            "holdout_to_train": holdout,
            "median_ratio": synthetic["median"] / holdout["median"] if holdout["median"] > 0 else None,
            "median_ratio_interval_95": list(interval) if interval else None,
            "share_closer_than_holdout_p05": float(np.mean(self.synthetic < holdout["p05"])),
            "exact_copies": int(np.sum(self.synthetic < EXACT_COPY_DISTANCE)),
            "synthetic_not_closer_at_median": bool(synthetic["median"] >= holdout["median"]),
        }


def distance_to_closest_record(real_train: np.ndarray, synthetic: np.ndarray, real_test: np.ndarray
                               ) -> DistanceToClosestRecord:
    """Nearest-real-train distances of synthetic and of real-test stays (see the module docstring),
    from their embedded vectors (:meth:`StayEmbedding.transform`)."""
    return DistanceToClosestRecord(nearest_distances(synthetic, real_train), nearest_distances(real_test, real_train))


@dataclass
class MembershipInference:
    """The distance attack's scores (minus the distance to the nearest synthetic stay).

    Attributes
    ----------
    members
        ``(M,)`` scores of real-train stays.
    non_members
        ``(N,)`` scores of real-test stays.
    """

    members: np.ndarray
    non_members: np.ndarray

    @property
    def auroc(self) -> float:
        labels = np.r_[np.ones(len(self.members)), np.zeros(len(self.non_members))]
        return float(roc_auc_score(labels, np.r_[self.members, self.non_members]))

    def summary(self) -> dict[str, Any]:
        return {"auroc": self.auroc, "members": int(len(self.members)), "non_members": int(len(self.non_members))}


def membership_inference(real_train: np.ndarray, synthetic: np.ndarray, real_test: np.ndarray) -> MembershipInference:
    """Score real-train and real-test stays by closeness to the synthetic cohort (see the module
    docstring), from their embedded vectors (:meth:`StayEmbedding.transform`)."""
    return MembershipInference(-nearest_distances(real_train, synthetic), -nearest_distances(real_test, synthetic))


def privacy_metrics(real_train: Cohort, synthetic: Cohort, real_test: Cohort, variables: Sequence[str], *, seed: int = 0
                    ) -> tuple[dict[str, Any], DistanceToClosestRecord, MembershipInference]:
    """Both measures with one embedding fitted on ``real_train``: (JSON summary, DCR, attack); ``seed``
    seeds the bootstrap interval."""
    embedding = StayEmbedding.fit(real_train, variables)
    train, records, test = (embedding.transform(cohort) for cohort in (real_train, synthetic, real_test))
    dcr = distance_to_closest_record(train, records, test)
    attack = membership_inference(train, records, test)
    summary = {"features": len(embedding.columns), "distance_to_closest_record": dcr.summary(seed),
               "membership_inference": attack.summary()}
    return summary, dcr, attack

