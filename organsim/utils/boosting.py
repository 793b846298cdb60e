"""The gradient-boosted trees behind organsim's classifiers (LightGBM): the report's detection and
utility classifiers and the generator's realism screen share these settings."""

from __future__ import annotations

import lightgbm as lgb


def lightgbm_classifier(seed: int, n_estimators: int, *, min_leaf: int = 20, threads: int = 1) -> lgb.LGBMClassifier:
    """Seeded, deterministic gradient-boosted trees: ``n_estimators`` trees of at most 31 leaves of at
    least ``min_leaf`` rows, learning rate 0.05, 80 % of the rows and of the columns per tree.

    One thread by default: LightGBM's OpenMP threads busy-wait, and on cores shared with other
    work two threads ran 16 times slower than one (measured on the 2-core development machine).
    """
    return lgb.LGBMClassifier(
        n_estimators=n_estimators, learning_rate=0.05, num_leaves=31, min_child_samples=min_leaf, subsample=0.8,
        subsample_freq=1, colsample_bytree=0.8, random_state=seed, deterministic=True, force_row_wise=True,
        n_jobs=threads, verbose=-1,
    )
