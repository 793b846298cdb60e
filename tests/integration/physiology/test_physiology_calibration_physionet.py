"""The generated cohort's marginals match PhysioNet 2019 within the stated tolerances (real data needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from organsim.data import read_physionet2019
from organsim.physiology import EngineConfig, PhysiologyEngine
from organsim.physiology.calibration import (
    CALIBRATION_PATIENTS,
    CALIBRATION_SEED,
    compare_to_reference,
)

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_generated_marginals_match_physionet_2019(physionet_archive: Path) -> None:
    reference = read_physionet2019(physionet_archive)
    generated = PhysiologyEngine(EngineConfig(seed=CALIBRATION_SEED, n_patients=CALIBRATION_PATIENTS)).generate()
    report = compare_to_reference(generated, reference)
    tested = [row for row in report.rows if row.tested]
    assert len(tested) > 250  # 32 PhysioNet variables x 2 groups x 4 statistics + 9 published ranges x 3, less small samples
    failures = "\n".join(
        f"{r.variable} {r.group} {r.statistic}: generated {r.generated:.4g} vs {r.reference:.4g} (tolerance {r.tolerance:.3g})"
        for r in report.failures()
    )
    assert report.passed, f"outside tolerance:\n{failures}"
