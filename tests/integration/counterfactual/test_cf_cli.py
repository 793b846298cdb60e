"""``organsim strategies list`` and ``organsim strategies validate``."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from organsim.cli import app
from organsim.counterfactual import library_names, strategy_library_dir

RUNNER = CliRunner()


def _flat(output: str) -> str:
    return " ".join(output.split())  # rich wraps long lines at the terminal width


def test_list_shows_every_library_strategy() -> None:
    result = RUNNER.invoke(app, ["strategies", "list"])
    assert result.exit_code == 0, result.output
    assert f"{len(library_names())} valid strategies" in _flat(result.output)
    assert "liberal_fluids" in result.output and "observed" in result.output


def test_validate_reports_each_file_and_locates_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndescription: x\ntreatments:\n  antibiotic:\n    rules:\n      - kind: schedule\n        at_hours: [0]\n"
                   "        dose: 3\n")
    good = strategy_library_dir() / "antibiotics_1h.yaml"
    result = RUNNER.invoke(app, ["strategies", "validate", str(good), str(bad), str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    flat = _flat(result.output)
    assert "valid: " in flat and "antibiotics_1h: governs antibiotic: 1 rule" in flat
    assert f"file {bad}, row 8, column 'treatments.antibiotic.rules[0].dose'" in flat and "given (1) or not (0); got 3" in flat
    assert "missing.yaml not found" in flat and "1 of 3 files valid" in flat
    assert RUNNER.invoke(app, ["strategies", "validate", str(good)]).exit_code == 0
