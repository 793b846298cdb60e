"""Smoke test of bench/baselines.py with a tiny budget (engine cohort only)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "baselines.py"


@pytest.mark.slow
def test_the_baselines_benchmark_writes_its_results(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_baselines", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    written = bench.main([
        "--datasets", "engine", "--engine-patients", "40", "--engine-hours", "30", "--gru-epochs", "1",
        "--results-dir", str(tmp_path),
    ])
    assert written == [tmp_path / "baselines_engine.json"]
    record = json.loads(written[0].read_text())
    assert record["dataset"]["stays"] == 40 and record["dataset"]["engine"]["hours"] == 30
    assert set(record["results"]) == {"locf", "ridge", "gru"}
    for name in ("locf", "ridge", "gru"):
        assert set(record["summary"]["mean_nmse"][name]) == {"1", "6", "24"}
    assert record["summary"]["mean_nmse_relative_to_locf"]["locf"] == {"1": 1.0, "6": 1.0, "24": 1.0}
    assert record["models"]["gru"]["epochs_run"] == 1
