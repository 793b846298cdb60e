"""``organsim export`` and ``organsim report-synthetic`` end to end, on engine cohorts and on the real archive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from organsim.cli import app
from organsim.data import Cohort, read_meds, read_physionet2019, read_table
from organsim.data.export import CHALLENGE_VARIABLES

RUNNER = CliRunner()


def _flat(output: str) -> str:
    """The output without table borders and line wraps (rich wraps long lines at the terminal width)."""
    return " ".join(output.replace("│", " ").split())


def _squeezed(text: str) -> str:
    """``text`` without any whitespace: rich breaks long paths inside words."""
    return "".join(text.split())


def _read_back(fmt: str, path: Path) -> Cohort:
    if fmt == "parquet":
        return Cohort.load(path)
    if fmt == "csv":
        return read_table(path / "hourly.csv", path / "stays.csv")
    if fmt == "psv":
        return read_physionet2019(path)
    return read_meds(path)


def _assert_same_values(fmt: str, back: Cohort, cohort: Cohort) -> None:
    if fmt == "psv":  # the challenge's columns, statics and labels
        codes = ["stay_id", "hour", *(cohort.catalog.physionet_columns[c] for c in CHALLENGE_VARIABLES)]
        assert_frame_equal(back.hourly.select(codes), cohort.hourly.select(codes))
        assert_frame_equal(back.sepsis_labels(), cohort.sepsis_labels())
        statics = ["stay_id", "age", "sex", "unit", "hosp_adm_hours", "n_hours", "sepsis"]
        assert_frame_equal(back.stays.select(statics), cohort.stays.select(statics))
        return
    assert_frame_equal(back.hourly, cohort.hourly)
    assert_frame_equal(back.treatments, cohort.treatments)
    assert_frame_equal(back.stays.drop("source"), cohort.stays.drop("source"))


@pytest.mark.slow
def test_export_every_format_and_report(tmp_path: Path) -> None:
    engine = tmp_path / "engine"
    assert RUNNER.invoke(app, ["generate", "--patients", "150", "--hours", "30", "--seed", "5", "--septic-fraction", "0.5",
                               "--out", str(engine)]).exit_code == 0
    cohort = Cohort.load(engine)
    for fmt in ("parquet", "csv", "psv", "meds"):
        out = tmp_path / f"export_{fmt}"
        result = RUNNER.invoke(app, ["export", str(engine), "--format", fmt, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert _squeezed(f"written to {out}") in _squeezed(result.output) and "marked synthetic yes" in _flat(result.output)
        _assert_same_values(fmt, _read_back(fmt, out), cohort)
    assert "variables the challenge has no column for" in _flat(
        RUNNER.invoke(app, ["export", str(engine), "-f", "psv", "-o", str(tmp_path / "export_psv"), "--overwrite"]).output)
    refused = RUNNER.invoke(app, ["export", str(engine), "-f", "csv", "-o", str(tmp_path / "export_csv")])
    assert refused.exit_code == 2 and "already exists" in _flat(refused.output)
    unknown = RUNNER.invoke(app, ["export", str(engine), "-f", "xlsx", "-o", str(tmp_path / "x")])
    assert unknown.exit_code == 2 and "--format must be one of parquet, csv, psv, meds" in _flat(unknown.output)

    real = tmp_path / "real"
    cohort.split((0.6, 0.1, 0.3), seed=0).save(real)  # one split directory serves as real-train and real-test
    synthetic = tmp_path / "synthetic"
    assert RUNNER.invoke(app, ["generate", "--patients", "90", "--hours", "30", "--seed", "6", "--septic-fraction", "0.5",
                               "--out", str(synthetic)]).exit_code == 0
    report = tmp_path / "report"
    args = ["report-synthetic", "--synthetic", str(synthetic), "--real-train", str(real), "--real-test", str(real),
            "--out", str(report), "--seed", "1"]
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert _squeezed(f"Wrote {report / 'metrics.json'}, {report / 'report.html'}.") in _squeezed(result.output)
    assert "detection AUROC" in result.output
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["cohorts"]["real_train"]["stays"] == 90 and metrics["cohorts"]["real_test"]["stays"] == 45
    assert metrics["settings"]["inputs"]["real_test"] == f"{real} (test split)"
    refused = RUNNER.invoke(app, args)
    assert refused.exit_code == 2 and "already exists" in _flat(refused.output)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_archive_survives_every_format(physionet_archive: Path, tmp_path: Path) -> None:
    cohort = read_physionet2019(physionet_archive)
    cohort = cohort.subset(cohort.stay_ids[:500])
    source = tmp_path / "cohort"
    cohort.save(source)
    for fmt in ("parquet", "csv", "psv", "meds"):
        out = tmp_path / fmt
        result = RUNNER.invoke(app, ["export", str(source), "--format", fmt, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert "marked synthetic no" in _flat(result.output)
        back = _read_back(fmt, out)
        _assert_same_values(fmt, back, cohort)
        if fmt == "psv":
            assert_frame_equal(back.hourly, cohort.hourly)  # PhysioNet data fit the challenge layout exactly
            assert_frame_equal(back.stays.drop("source"), cohort.stays.drop("source"))
