"""Make the scores test helpers (tests/unit/scores: frame builders and the loop reference) importable."""

from __future__ import annotations

import sys
from pathlib import Path

UNIT_SCORES = Path(__file__).resolve().parents[2] / "unit" / "scores"
if str(UNIT_SCORES) not in sys.path:
    sys.path.insert(0, str(UNIT_SCORES))
