"""Make the agent test helpers (tests/unit/agents/agent_cohorts.py) importable."""

from __future__ import annotations

import sys
from pathlib import Path

UNIT_AGENTS = Path(__file__).resolve().parents[2] / "unit" / "agents"
if str(UNIT_AGENTS) not in sys.path:
    sys.path.insert(0, str(UNIT_AGENTS))
