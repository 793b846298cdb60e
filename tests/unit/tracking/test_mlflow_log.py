"""MLflow metric names: organsim's report check names become names MLflow accepts."""

from __future__ import annotations

from mlflow.utils.validation import validate_param_and_metric_name

from organsim.tracking.mlflow_log import metric_key


def test_metric_key_keeps_allowed_names_and_replaces_the_rest() -> None:
    assert metric_key("twin.mean_nmse_1h") == "twin.mean_nmse_1h"
    assert metric_key("ab/cd: e-f g") == "ab/cd: e-f g"
    assert metric_key("sepsis_6h AUROC drop, logistic (LR)") == "sepsis_6h AUROC drop_ logistic _LR_"
    for name in ("sepsis_6h AUROC drop, logistic", "DCR median ratio (synthetic / holdout)", "p95%"):
        assert validate_param_and_metric_name(metric_key(name))
