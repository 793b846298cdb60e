"""Where the dashboard's inputs are: the cohort, the trained model and a synthetic-cohort report.

Precedence: command-line options after ``--`` (``streamlit run dashboards/app.py -- --cohort DIR
--model DIR --report DIR``), then the environment (``ORGANSIM_COHORT``, ``ORGANSIM_MODEL``,
``ORGANSIM_REPORT``), then the outputs of ``make demo`` (``demo_out/split``, ``demo_out/calibrate``
(the agents with their reference policy and calibrated bands), ``demo_out/report_synthetic``; ``ORGANSIM_DEMO_OUT`` moves that directory).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository holding ``dashboards/`` (``demo_out/`` lies there by default)."""
ENVIRONMENT = {"cohort": "ORGANSIM_COHORT", "model": "ORGANSIM_MODEL", "report": "ORGANSIM_REPORT"}
DEMO_STAGES = {"cohort": "split", "model": "calibrate", "report": "report_synthetic"}
"""Input -> the ``make demo`` stage directory that provides it by default."""


@dataclass(frozen=True)
class Sources:
    """The dashboard's inputs; a path is None when neither given nor found in the demo outputs.

    Attributes
    ----------
    cohort
        A canonical cohort directory (``cohort.json``, ``stays.parquet``, ...).
    model
        A model directory written by ``organsim train``.
    report
        A directory written by ``organsim report-synthetic`` (``metrics.json``, ``report.html``).
    origin
        Input -> where its path came from (``"--cohort"``, ``"ORGANSIM_COHORT"``, ``"demo"``).
    """

    cohort: Path | None
    model: Path | None
    report: Path | None
    origin: Mapping[str, str]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamlit run dashboards/app.py --", add_help=False)
    for name in ENVIRONMENT:
        parser.add_argument(f"--{name}", type=Path, default=None)
    return parser


def resolve_sources(argv: Sequence[str], environ: Mapping[str, str]) -> Sources:
    """The inputs from ``argv`` (the script's arguments; unknown ones are ignored), ``environ``
    and the demo outputs, in that order (module docstring)."""
    options, _ = _parser().parse_known_args(list(argv))
    demo_out = Path(environ.get("ORGANSIM_DEMO_OUT", REPO_ROOT / "demo_out"))
    paths: dict[str, Path | None] = {}
    origin: dict[str, str] = {}
    for name, variable in ENVIRONMENT.items():
        given = getattr(options, name)
        if given is not None:
            paths[name], origin[name] = given, f"--{name}"
        elif environ.get(variable):
            paths[name], origin[name] = Path(environ[variable]), variable
        elif (demo_out / DEMO_STAGES[name]).is_dir():
            paths[name], origin[name] = demo_out / DEMO_STAGES[name], "demo"
        else:
            paths[name] = None
    return Sources(cohort=paths["cohort"], model=paths["model"], report=paths["report"], origin=origin)


def current_sources() -> Sources:
    """:func:`resolve_sources` of this process (``sys.argv`` after the script name, ``os.environ``)."""
    return resolve_sources(sys.argv[1:], os.environ)
