"""The stay-bootstrap interval of the TSTR AUROC drop."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from organsim.evaluate.utility import TaskData, auroc_drop_interval


def _test_rows(n_stays: int = 120, rows_per_stay: int = 10, seed: int = 0) -> TaskData:
    rng = np.random.default_rng(seed)
    stay_ids = np.repeat(np.arange(n_stays), rows_per_stay)
    labels = np.repeat(rng.random(n_stays) < 0.3, rows_per_stay).astype(np.int8)  # a stay's rows share its label
    return TaskData(np.zeros((len(labels), 1), dtype=np.float32), labels, stay_ids)


def test_identical_classifiers_have_no_drop():
    test = _test_rows()
    scores = np.random.default_rng(1).random(len(test.labels))
    assert auroc_drop_interval(test, scores, scores) == [0.0, 0.0]


def test_interval_brackets_the_drop_and_resamples_stays():
    test = _test_rows()
    rng = np.random.default_rng(2)
    real = test.labels + 0.8 * rng.random(len(test.labels))  # AUROC near 1
    synthetic = test.labels + 3.0 * rng.random(len(test.labels))  # weaker
    low, high = auroc_drop_interval(test, real, synthetic, seed=0)
    drop = roc_auc_score(test.labels, real) - roc_auc_score(test.labels, synthetic)
    assert 0 < low < drop < high
    assert auroc_drop_interval(test, real, synthetic, seed=0) == [low, high]  # seeded


def test_rows_of_a_stay_are_resampled_together():
    """Ten identical rows per stay carry no more information than one: the interval is the same
    (a row-level bootstrap would make it about sqrt(10) times narrower)."""
    one = _test_rows(rows_per_stay=1)
    rng = np.random.default_rng(3)
    real, synthetic = one.labels + rng.random(len(one.labels)), one.labels + 2 * rng.random(len(one.labels))
    ten = TaskData(np.repeat(one.features, 10, axis=0), np.repeat(one.labels, 10), np.repeat(one.stay_ids, 10))
    np.testing.assert_allclose(auroc_drop_interval(ten, np.repeat(real, 10), np.repeat(synthetic, 10), seed=4),
                               auroc_drop_interval(one, real, synthetic, seed=4))
