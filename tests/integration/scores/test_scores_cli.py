"""``organsim scores DIR --out FILE``: what it writes, where, and that it refuses to clobber."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal
from score_frames import synthetic_cohort
from typer.testing import CliRunner

from organsim.catalog import Catalog
from organsim.cli import app
from organsim.scores import score_cohort

RUNNER = CliRunner()


def test_writes_hourly_scores_and_sibling_events(tmp_path: Path, catalog: Catalog) -> None:
    cohort = synthetic_cohort(catalog, n_stays=12, seed=3)
    cohort.save(tmp_path / "cohort")
    out = tmp_path / "scores.parquet"
    result = RUNNER.invoke(app, ["scores", str(tmp_path / "cohort"), "--out", str(out), "--chunk-stays", "5"])
    assert result.exit_code == 0, result.output
    printed = result.output.replace("\n", "")  # rich wraps long paths at the terminal width
    assert "events to" in printed and str(tmp_path / "scores_events.parquet") in printed
    expected_hourly, expected_events = score_cohort(cohort)
    assert_frame_equal(pl.read_parquet(out), expected_hourly)
    assert_frame_equal(pl.read_parquet(tmp_path / "scores_events.parquet"), expected_events)

    # existing outputs are kept unless --overwrite; --events names the events file
    before = out.read_bytes()
    result = RUNNER.invoke(app, ["scores", str(tmp_path / "cohort"), "--out", str(out)])
    assert result.exit_code == 2 and "already exists" in " ".join(result.output.split())
    assert out.read_bytes() == before
    events = tmp_path / "elsewhere" / "events.parquet"
    result = RUNNER.invoke(app, ["scores", str(tmp_path / "cohort"), "--out", str(out), "--overwrite",
                                "--events", str(events), "--spo2-scale", "2"])
    assert result.exit_code == 0, result.output
    assert_frame_equal(pl.read_parquet(events), expected_events)
    assert_frame_equal(pl.read_parquet(out), score_cohort(cohort, spo2_scale=2).hourly)


def test_not_a_cohort_is_a_clear_error(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["scores", str(tmp_path / "missing"), "--out", str(tmp_path / "s.parquet")])
    assert result.exit_code == 2
    assert "not a cohort directory" in " ".join(result.output.split())
    assert not (tmp_path / "s.parquet").exists()
