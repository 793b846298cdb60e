"""The synthetic report on small engine cohorts: metrics.json, a self-contained HTML page, determinism.

Building one report on three 80-stay cohorts takes 10-20 s on the 2-core machine (mostly the plots),
hence the ``slow`` marks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from organsim.data import Cohort
from organsim.evaluate.synthetic_report import (
    ReportConfig,
    SyntheticReport,
    build_synthetic_report,
    render_html,
    write_synthetic_report,
)
from organsim.physiology import EngineConfig, PhysiologyEngine

CONFIG = ReportConfig(seed=3, detection_folds=3)


def engine_cohort(seed: int, patients: int = 80) -> Cohort:
    return PhysiologyEngine(EngineConfig(n_patients=patients, hours=24, seed=seed, septic_fraction=0.5)).generate()


@pytest.fixture(scope="module")
def cohorts() -> tuple[Cohort, Cohort, Cohort]:
    """(synthetic, real_train, real_test): three independent engine samples of one population."""
    return engine_cohort(2), engine_cohort(1), engine_cohort(3)


@pytest.fixture(scope="module")
def report(cohorts: tuple[Cohort, Cohort, Cohort]) -> tuple[SyntheticReport, list[str]]:
    steps: list[str] = []
    built = build_synthetic_report(*cohorts, CONFIG, inputs={"synthetic": "<engine seed 2>"}, progress=steps.append)
    return built, steps


@pytest.mark.slow
def test_every_section_is_measured(report: tuple[SyntheticReport, list[str]]) -> None:
    built, steps = report
    metrics = built.metrics
    assert len(steps) == CONFIG.steps
    assert metrics["settings"]["seed"] == 3 and metrics["settings"]["utility_parameters"]["dt_early"] == -12
    variables = metrics["settings"]["variables"]
    assert "map" in variables and "cvp" in variables  # the engine charts variables PhysioNet lacks
    fidelity = metrics["fidelity"]
    assert set(fidelity["distributions"]["synthetic"]["per_variable"]) == set(variables)
    assert 0 <= fidelity["distributions"]["synthetic"]["mean_ks"] < 0.2  # same population
    assert fidelity["correlations"]["synthetic"]["pairs"] > 0
    assert fidelity["sequences"]["synthetic"]["stay_length"]["ks"] is not None
    assert 0.3 < fidelity["detection"]["auroc"] < 0.7 and fidelity["detection"]["reference"] == "real_test"
    # against real-train too, with its holdout baseline: two real samples of one population
    assert 0.3 < fidelity["detection_train"]["auroc"] < 0.7 and 0.3 < fidelity["detection_train"]["holdout_auroc"] < 0.7
    for task in ("sepsis_6h", "hypotension_4h"):
        entry = metrics["utility"][task]
        assert entry["status"] == "ok"
        for name in ("logistic", "lightgbm"):
            scores = entry["classifiers"][name]
            assert scores["auroc_drop"] == pytest.approx(scores["real"]["auroc"] - scores["synthetic"]["auroc"])
            assert 0.5 < scores["synthetic"]["auroc"] <= 1
    sepsis = metrics["utility"]["sepsis_6h"]["classifiers"]["lightgbm"]["real"]
    assert -2 < sepsis["utility"] <= 1 and 0 <= sepsis["threshold"] <= 1
    mortality = metrics["utility"]["mortality_24h"]
    assert mortality["status"] == "ok" or "stays with a positive row" in mortality["reason"]
    privacy = metrics["privacy"]
    assert privacy["distance_to_closest_record"]["exact_copies"] == 0
    assert 0.35 < privacy["membership_inference"]["auroc"] < 0.65
    assert [c["check"] for c in metrics["checks"]] == [
        "sepsis_6h AUROC drop, logistic", "sepsis_6h AUROC drop, lightgbm", "detection AUROC (synthetic vs real-test)",
        "median distance to closest record, synthetic / holdout", "membership-inference AUROC"]
    assert all(isinstance(c["passed"], bool) for c in metrics["checks"])


@pytest.mark.slow
def test_written_report_is_self_contained_and_atomic(report: tuple[SyntheticReport, list[str]], tmp_path: Path) -> None:
    built, _ = report
    out = tmp_path / "report"
    written = write_synthetic_report(built, out)
    assert written == [out / "metrics.json", out / "report.html"]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.html"]
    document = json.loads((out / "metrics.json").read_text())
    assert document["fidelity"]["detection"]["auroc"] == pytest.approx(built.metrics["fidelity"]["detection"]["auroc"], rel=1e-5)
    page = (out / "report.html").read_text()
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', page)) == len(built.figures) >= 7
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "&lt;engine seed 2&gt;" in page  # inputs are escaped
    assert page.count('class="pass"') + page.count('class="fail"') == 5
    with pytest.raises(FileExistsError):
        write_synthetic_report(built, out, overwrite=False)
    assert json.loads((out / "metrics.json").read_text()) == document


@pytest.mark.slow
def test_same_seed_same_metrics(cohorts: tuple[Cohort, Cohort, Cohort], report: tuple[SyntheticReport, list[str]]) -> None:
    again = build_synthetic_report(*cohorts, CONFIG, inputs={"synthetic": "<engine seed 2>"})
    assert again.metrics == report[0].metrics
    assert render_html(again) == render_html(report[0])


def test_config_and_input_errors(cohorts: tuple[Cohort, Cohort, Cohort]) -> None:
    with pytest.raises(ValueError, match="unknown task or classifier"):
        ReportConfig(tasks=("sepsis_6h", "delirium"))
    with pytest.raises(ValueError, match="max_stays must be at least detection_folds"):
        ReportConfig(max_stays=3)
    synthetic, real_train, real_test = cohorts
    empty = synthetic.subset([])
    with pytest.raises(ValueError, match="the synthetic cohort has no hourly rows"):
        build_synthetic_report(empty, real_train, real_test, CONFIG)
