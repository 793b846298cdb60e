"""Strategies a clinician writes in the dashboard: a form of doses, thresholds and timing, or YAML.

:func:`form_strategy` turns the what-if page's form into a strategy of the same schema as the
library's (``pipelines/strategies/``); :func:`yaml_strategy` reads an edited YAML text. Both check
the result against the catalog and raise :class:`~organsim.counterfactual.StrategyError` naming
the field (and, for YAML, the line) of every problem, which the page shows inline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from organsim.catalog import Catalog
from organsim.counterfactual import Strategy, StrategyError, parse_strategy

FORM_FILE = "<strategy form>"
EDITOR_FILE = "<strategy editor>"


@dataclass(frozen=True)
class NorepinephrineForm:
    """Titrate norepinephrine (ug/kg/min) on MAP (mmHg): start at ``start_dose`` when MAP <
    ``map_below``, raise by ``step`` per hour while it stays below (up to ``maximum``), lower by
    ``step`` while MAP > ``wean_above``."""

    map_below: float = 65.0
    wean_above: float = 75.0
    start_dose: float = 0.05
    step: float = 0.05
    maximum: float = 1.0


@dataclass(frozen=True)
class FluidForm:
    """A ``bolus_ml`` fluid bolus (mL in the hour) in every hour with MAP < ``map_below`` mmHg or
    lactate >= ``lactate_at_least`` mmol/L, at most ``cap_ml_24h`` mL per 24 h, and
    ``maintenance_ml_h`` mL/h otherwise."""

    bolus_ml: float = 500.0
    map_below: float = 65.0
    lactate_at_least: float = 4.0
    cap_ml_24h: float = 3000.0
    maintenance_ml_h: float = 0.0


@dataclass(frozen=True)
class AntibioticForm:
    """The first antibiotic dose ``first_hour`` hours after the decision hour (0: in the decision
    hour), then every ``every_hours`` hours (None: one dose)."""

    first_hour: int = 0
    every_hours: int | None = 8


def strategy_mapping(
    name: str,
    description: str,
    *,
    others: str = "usual_care",
    norepinephrine: NorepinephrineForm | None = None,
    fluids: FluidForm | None = None,
    antibiotic: AntibioticForm | None = None,
) -> dict[str, Any]:
    """The strategy's fields as a mapping of the library's YAML schema; a treatment left as None
    follows ``others``."""
    treatments: dict[str, Any] = {}
    if norepinephrine is not None:
        treatments["norepinephrine"] = {"rules": [{
            "kind": "titrate", "when": [f"map < {norepinephrine.map_below:g}"], "wean_when": [f"map > {norepinephrine.wean_above:g}"],
            "start_dose": norepinephrine.start_dose, "step": norepinephrine.step, "maximum": norepinephrine.maximum}]}
    if fluids is not None:
        treatments["iv_fluid_ml"] = {"otherwise": fluids.maintenance_ml_h, "rules": [{
            "kind": "threshold", "when_any": [f"map < {fluids.map_below:g}", f"lactate >= {fluids.lactate_at_least:g}"],
            "dose": fluids.bolus_ml, "cap": {"total": fluids.cap_ml_24h, "window_hours": 24}}]}
    if antibiotic is not None:
        rule: dict[str, Any] = {"kind": "schedule", "at_hours": [antibiotic.first_hour], "dose": 1}
        if antibiotic.every_hours is not None:
            rule["every_hours"] = antibiotic.every_hours
        treatments["antibiotic"] = {"rules": [rule]}
    return {"name": name, "description": description, "others": others, "treatments": treatments}


def form_strategy(name: str, description: str, *, catalog: Catalog, **plans: Any) -> Strategy:
    """:func:`strategy_mapping` checked into a :class:`Strategy` (``plans``: ``others``,
    ``norepinephrine``, ``fluids``, ``antibiotic``)."""
    data = strategy_mapping(name, description, **plans)
    if not data["treatments"]:
        raise StrategyError([("treatments", None, "choose at least one treatment for the strategy to decide")], file=FORM_FILE)
    return parse_strategy(data, file=FORM_FILE, catalog=catalog)


def yaml_strategy(text: str, *, catalog: Catalog) -> Strategy:
    """The strategy written in ``text`` (the library's YAML schema)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise StrategyError([("", line, f"this is not valid YAML: {problem}")], file=EDITOR_FILE) from None
    return parse_strategy(data, file=EDITOR_FILE, text=text, catalog=catalog)

