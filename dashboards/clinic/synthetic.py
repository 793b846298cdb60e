"""Synthetic cohorts in the dashboard: read a report, generate a small cohort, pack its exports.

Two generators: :func:`generate_with_twin` (``organsim.synth``: initial states drawn from a copula
fitted on the training stays, rolled forward by the coordinated twin under the cohort's behaviour
policy, as ``organsim synthesize`` does) and :func:`generate_small_cohort` (organsim's physiology
engine: a mechanistic sepsis model with its own clinician). No real patient is behind any stay of
either.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from organsim.data import Cohort
from organsim.data.export import FORMATS, export_cohort
from organsim.physiology import EngineConfig, PhysiologyEngine
from organsim.synth import CohortSynthesizer, SynthesisConfig
from organsim.twin import PatientTwin
from organsim.utils import DataError

MAX_GENERATED_STAYS = 500
MAX_GENERATED_HOURS = 168
ProgressCallback = Callable[[int, int], None]
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
"""Timestamp of every archive entry, so the same cohort gives the same archive bytes."""
EXPORT_LABELS = {"parquet": "Parquet (canonical cohort)", "csv": "CSV (wide)", "psv": "PhysioNet 2019 (.psv per stay)",
                 "meds": "MEDS"}


@dataclass(frozen=True)
class SyntheticReportFiles:
    """A report written by ``organsim report-synthetic``: ``metrics`` (metrics.json) and ``html``
    (report.html, self-contained)."""

    path: Path
    metrics: dict[str, Any]
    html: str


def read_report(path: str | Path) -> SyntheticReportFiles:
    """The report in directory ``path``; :class:`DataError` naming the file when one is missing or
    unreadable."""
    path = Path(path)
    metrics_path, html_path = path / "metrics.json", path / "report.html"
    for file in (metrics_path, html_path):
        if not file.is_file():
            raise DataError(f"no {file.name} here: give a directory written by `organsim report-synthetic`", file=file)
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", file=metrics_path, row=exc.lineno) from None
    if not isinstance(metrics, dict) or "checks" not in metrics:
        raise DataError("no 'checks' in this metrics document: is it from `organsim report-synthetic`?", file=metrics_path,
                        column="checks")
    return SyntheticReportFiles(path, metrics, html_path.read_text(encoding="utf-8"))


def _check_size(n_patients: int, hours: int) -> None:
    if not 1 <= n_patients <= MAX_GENERATED_STAYS:
        raise ValueError(f"generate between 1 and {MAX_GENERATED_STAYS} stays here (got {n_patients}); "
                         "use `organsim` from the command line for larger cohorts")
    if not 6 <= hours <= MAX_GENERATED_HOURS:
        raise ValueError(f"generate between 6 and {MAX_GENERATED_HOURS} ICU hours per stay (got {hours})")


def generate_small_cohort(n_patients: int, hours: int, seed: int) -> Cohort:
    """``n_patients`` stays of ``hours`` ICU hours from the physiology engine; the same seed gives
    the same cohort."""
    _check_size(n_patients, hours)
    return PhysiologyEngine(EngineConfig(n_patients=n_patients, hours=hours, seed=seed)).generate()


def generate_with_twin(twin: PatientTwin, train: Cohort, n_patients: int, hours: int, seed: int,
                       progress: ProgressCallback | None = None) -> Cohort:
    """``n_patients`` synthetic stays of at most ``hours`` ICU hours rolled forward by ``twin``, their
    initial states, charting and care learnt from ``train`` (the train split of the twin's cohort);
    ``progress(done, total)`` counts simulated stays. The same seed gives the same cohort."""
    _check_size(n_patients, hours)
    synthesizer = CohortSynthesizer.fit(train, seed=seed)
    return synthesizer.generate(twin, SynthesisConfig(patients=n_patients, max_hours=hours, seed=seed), progress=progress).cohort


def export_archive(cohort: Cohort, format: str) -> bytes:
    """``cohort`` exported in ``format`` (one of :data:`organsim.data.export.FORMATS`) as the bytes
    of a zip archive of the export directory (its ``export.json`` included); deterministic."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {FORMATS}")
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="organsim-export-") as scratch:
        root = Path(scratch) / f"synthetic_{format}"
        export_cohort(cohort, root, format)
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(p for p in root.rglob("*") if p.is_file()):
                entry = zipfile.ZipInfo(file.relative_to(root.parent).as_posix(), date_time=ZIP_DATE)
                archive.writestr(entry, file.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
