"""``organsim ingest ...`` and ``organsim export-meds`` on small files: summaries, errors, atomic output."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from organsim.cli import app
from organsim.data import Cohort

RUNNER = CliRunner()
HEADER = "HR|Temp|Age|Gender|Unit1|Unit2|HospAdmTime|ICULOS|SepsisLabel"


def _psv(directory: Path) -> Path:
    directory.mkdir()
    (directory / "p1.psv").write_text(f"{HEADER}\n80|37|60|1|1|0|-2|1|0\n81|NaN|60|1|1|0|-2|2|0\n")
    (directory / "p2.psv").write_text(f"{HEADER}\n90|39|70|0|0|1|-1|1|1\n95|39.5|70|0|0|1|-1|2|1\n")
    return directory


def _run(*args: str | Path) -> tuple[int, str]:
    result = RUNNER.invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())  # undo rich's line wrapping


def test_physionet_then_meds_round_trip(tmp_path: Path) -> None:
    code, text = _run("ingest", "physionet2019", _psv(tmp_path / "psv"), "--out", tmp_path / "cohort")
    assert code == 0, text
    assert "stays │ 2" in text and "hours │ 4" in text and "septic stays │ 1" in text and "written to" in text
    code, text = _run("export-meds", tmp_path / "cohort", "--out", tmp_path / "meds")
    assert code == 0, text
    assert "2 stays of 2 subjects, 4 hours, 1 septic; 1 shard(s)" in text
    code, text = _run("ingest", "meds", tmp_path / "meds", "--out", tmp_path / "again")
    assert code == 0, text
    first, again = Cohort.load(tmp_path / "cohort"), Cohort.load(tmp_path / "again")
    assert first.hourly.equals(again.hourly) and first.stays.equals(again.stays)


def test_table_ingest(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("stay_id,hour,hr\n1,1,80\n1,2,500\n")
    (tmp_path / "s.csv").write_text("stay_id,sepsis\n1,true\n")
    code, text = _run("ingest", "table", tmp_path / "h.csv", "--stays", tmp_path / "s.csv", "--out", tmp_path / "c")
    assert code == 0, text
    assert "out of range (nulled) │ 1 (hr 1)" in text and "septic stays │ 1" in text


def _bad_value(d: Path) -> Path:
    (_psv(d) / "p2.psv").write_text(f"{HEADER}\n90|x|70|0|0|1|-1|1|0\n")
    return d


def _repeated_hour(d: Path) -> Path:
    (_psv(d) / "p2.psv").write_text(f"{HEADER}\n90|37|70|0|0|1|-1|1|0\n91|37|70|0|0|1|-1|1|0\n")
    return d


def _empty_file(d: Path) -> Path:
    (_psv(d) / "p2.psv").write_text("")
    return d


def _unknown_table_column(d: Path) -> Path:
    d.mkdir()
    (d / "h.csv").write_text("stay_id,hour,pulse\n1,1,80\n")
    return d / "h.csv"


@pytest.mark.parametrize(
    ("command", "make_src", "where"),
    [
        ("physionet2019", _bad_value, "p2.psv, row 1, column 'Temp': not a number"),
        ("physionet2019", _repeated_hour, "p2.psv, row 2, column 'ICULOS': duplicate"),
        ("physionet2019", _empty_file, "p2.psv, row 0, column 'ICULOS': empty file"),
        ("table", _unknown_table_column, "h.csv, row 0, column 'pulse': unknown column"),
    ],
)
def test_bad_input_writes_nothing(tmp_path: Path, command: str, make_src, where: str) -> None:
    src = make_src(tmp_path / "src")
    code, text = _run("ingest", command, src, "--out", tmp_path / "new")
    assert code == 2 and where in text, text
    assert not (tmp_path / "new").exists()
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "keep.txt").write_text("old cohort")
    code, text = _run("ingest", command, src, "--out", previous, "--overwrite")
    assert code == 2 and where in text, text
    assert [p.name for p in previous.iterdir()] == ["keep.txt"] and (previous / "keep.txt").read_text() == "old cohort"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["previous", "src"]  # no temporary directory left


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    code, text = _run("ingest", "physionet2019", _psv(tmp_path / "psv"), "--out", tmp_path / "out")
    assert code == 2 and "already exists; pass --overwrite" in text
    code, text = _run("ingest", "physionet2019", tmp_path / "psv", "--out", tmp_path / "out", "--overwrite")
    assert code == 0 and Cohort.load(tmp_path / "out").stays.height == 2
