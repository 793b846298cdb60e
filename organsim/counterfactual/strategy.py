"""Treatment strategies as data: the schema, its checks, and loading from YAML files or the library.

A strategy says, hour by hour from the decision hour on, what each treatment it governs should be;
the treatments it does not govern follow ``others`` (``usual_care``: the simulator's own behaviour
policy, the engine's clinician for the oracle; ``observed``: the treatments recorded in the cohort;
``none``: nothing). Hours are counted from the decision hour: hour 0 is the first hour the strategy
decides (ICU hour ``decision_hour``), whose treatment runs during that hour.

Each governed treatment has a plan: a list of rules and the value ``otherwise`` given in hours
where no rule is active (default 0, nothing). Three kinds of rule:

``threshold``
    Give ``dose`` in every hour of the rule's window (``from_hour`` .. ``until_hour``, exclusive)
    where all ``when`` conditions and, if given, at least one ``when_any`` condition hold. An
    optional ``cap`` limits the total over a trailing window (``total`` in the treatment's unit per
    hour summed over ``window_hours``, per kg of body weight with ``per_kg``); the dose is cut to
    what the cap leaves.
``titrate``
    Over its whole window: start at ``start_dose`` when ``when`` holds and nothing runs, raise by
    ``step`` (up to ``maximum``) while ``when`` holds, lower by ``step`` while ``wean_when`` holds,
    stop below ``stop_below``, otherwise keep the previous hour's value. For a 0/1 treatment
    (ventilation) ``when`` switches it on and ``wean_when`` off.
``schedule``
    Give ``dose`` at the hours ``at_hours``, repeated every ``every_hours`` if given, before
    ``until_hour``.

Conditions read the state the way a bedside team sees it: ``"map < 65"`` compares the latest
observed value (carried forward at most ``max_age_hours``: by default 4 h for vital signs, 8 h for
bedside observations, 24 h for labs, as the scores do); a value never measured or too old makes the
condition false. ``"<treatment>.previous"``, ``"<treatment>.total"`` and
``"<treatment>.total_per_kg"`` read the previous hour's treatment and the total given since
admission. A condition is a string ``"<quantity> <op> <number>"`` (op one of ``< <= > >=``) or a
mapping ``{quantity, op, value, max_age_hours}``.

Checks (every one names the file, the line and the key): unknown keys, unknown variables and
treatments, doses that are negative, outside the catalog's plausible range or not 0/1 for a binary
treatment, a maximum or cap below the dose, a titration step that is not positive, conditions that
can never hold, and two rules of one treatment that could both be active in the same hour (their
time windows meet and their conditions can hold together), which would make the dose ambiguous.

>>> strategy = load_strategy("early_norepinephrine")          # from pipelines/strategies/
>>> strategy.governed
('norepinephrine',)
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from organsim.catalog import Catalog, load_catalog
from organsim.scores import DEFAULT_CARRY_FORWARD_HOURS
from organsim.utils.errors import DataError

MAX_STRATEGY_HOURS = 24 * 14
"""Rules are checked for overlap over this many hours after the decision hour (two weeks)."""
TREATMENT_QUANTITIES = ("previous", "total", "total_per_kg")
"""Suffixes of the treatment quantities a condition may read (``norepinephrine.previous``)."""
OPERATORS = ("<", "<=", ">", ">=")
Others = Literal["usual_care", "observed", "none"]
"""What decides the treatments a strategy does not govern."""

_CONDITION = re.compile(r"^\s*([a-z][a-z0-9_]*(?:\.[a-z_]+)?)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


class StrategyError(DataError):
    """A strategy file or object is invalid; ``file``, ``row`` (the YAML line) and ``column`` (the
    key path, e.g. ``treatments.iv_fluid_ml.rules[1].dose``) locate the first problem, and the
    message lists every problem found."""

    def __init__(self, problems: list[tuple[str, int | None, str]], *, file: str | Path | None = None) -> None:
        self.problems = problems
        key, line, _ = problems[0]
        lines = [f"{k or '<top level>'}{f' (line {n})' if n is not None else ''}: {m}" for k, n, m in problems]
        message = "invalid strategy:\n  " + "\n  ".join(lines) if len(problems) > 1 else f"invalid strategy: {problems[0][2]}"
        super().__init__(message, file=file, row=line, column=key or None)


class _Problems(ValueError):
    """Raised inside the Strategy validator: problems located by key path (carried through pydantic)."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{_key_path(p)}: {m}" for p, m in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------------------------------- conditions
class Condition(_Strict):
    """One comparison on the state: ``quantity op value`` (see the module docstring)."""

    quantity: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z_]+)?$")
    op: Literal["<", "<=", ">", ">="]
    value: float
    max_age_hours: int | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _parse_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            match = _CONDITION.match(data)
            if match is None:
                raise ValueError(f"condition {data!r} is not '<quantity> <op> <number>' with op one of {' '.join(OPERATORS)}")
            return {"quantity": match.group(1), "op": match.group(2), "value": float(match.group(3))}
        return data

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @property
    def treatment(self) -> str | None:
        """The treatment code of a treatment quantity (``norepinephrine.previous``), else None."""
        return self.quantity.split(".")[0] if "." in self.quantity else None

    def interval(self) -> tuple[float, bool, float, bool]:
        """``(low, low_closed, high, high_closed)``: the values for which the condition holds."""
        if self.op == "<":
            return (-math.inf, False, self.value, False)
        if self.op == "<=":
            return (-math.inf, False, self.value, True)
        if self.op == ">":
            return (self.value, False, math.inf, False)
        return (self.value, True, math.inf, False)

    def __str__(self) -> str:
        age = f" (within {self.max_age_hours} h)" if self.max_age_hours is not None else ""
        return f"{self.quantity} {self.op} {self.value:g}{age}"


Conditions = tuple[Condition, ...]


def _intersect(a: tuple[float, bool, float, bool], b: tuple[float, bool, float, bool]) -> tuple[float, bool, float, bool]:
    low, low_closed = max((a[0], a[1]), (b[0], b[1]), key=lambda x: (x[0], not x[1]))
    high, high_closed = min((a[2], a[3]), (b[2], b[3]), key=lambda x: (x[0], x[1]))
    return low, low_closed, high, high_closed


def _empty(interval: tuple[float, bool, float, bool]) -> bool:
    low, low_closed, high, high_closed = interval
    return low > high or (low == high and not (low_closed and high_closed))


def _satisfiable(conditions: Iterable[Condition]) -> bool:
    """Whether a conjunction of conditions can hold (each quantity's intervals meet)."""
    by_quantity: dict[str, tuple[float, bool, float, bool]] = {}
    for condition in conditions:
        interval = condition.interval()
        if condition.quantity in by_quantity:
            interval = _intersect(by_quantity[condition.quantity], interval)
        if _empty(interval):
            return False
        by_quantity[condition.quantity] = interval
    return True


def _clauses(when: Conditions, when_any: Conditions) -> list[Conditions]:
    """The condition as a disjunction of conjunctions: ``when`` and one of ``when_any``."""
    return [when + (extra,) for extra in when_any] if when_any else [when]


# ---------------------------------------------------------------------------------------- rules
class Cap(_Strict):
    """At most ``total`` (the treatment's unit per hour, summed; per kg with ``per_kg``) over the
    trailing ``window_hours`` hours, this hour included."""

    total: float = Field(gt=0)
    window_hours: int = Field(gt=0)
    per_kg: bool = False


class ThresholdRule(_Strict):
    """Give ``dose`` in the hours of the window where the conditions hold."""

    kind: Literal["threshold"]
    when: Conditions = ()
    when_any: Conditions = ()
    dose: float = Field(ge=0)
    cap: Cap | None = None
    from_hour: int = Field(default=0, ge=0)
    until_hour: int | None = Field(default=None, gt=0)

    def clauses(self) -> list[Conditions]:
        """When the rule is active, as a disjunction of conjunctions."""
        return _clauses(self.when, self.when_any)


class TitrationRule(_Strict):
    """Start, titrate up, wean and stop a treatment over the rule's window."""

    kind: Literal["titrate"]
    when: Conditions = ()
    when_any: Conditions = ()
    wean_when: Conditions = ()
    wean_when_any: Conditions = ()
    start_dose: float = Field(ge=0)
    step: float | None = None
    maximum: float | None = Field(default=None, ge=0)
    stop_below: float = Field(default=0.0, ge=0)
    from_hour: int = Field(default=0, ge=0)
    until_hour: int | None = Field(default=None, gt=0)

    def clauses(self) -> list[Conditions]:
        """A titration rule is active in every hour of its window (it holds the level otherwise)."""
        return [()]

    def raise_clauses(self) -> list[Conditions]:
        return _clauses(self.when, self.when_any)

    def wean_clauses(self) -> list[Conditions]:
        return _clauses(self.wean_when, self.wean_when_any) if (self.wean_when or self.wean_when_any) else []


class ScheduleRule(_Strict):
    """Give ``dose`` at fixed hours after the decision hour, optionally repeated."""

    kind: Literal["schedule"]
    at_hours: tuple[int, ...] = Field(min_length=1)
    every_hours: int | None = Field(default=None, gt=0)
    until_hour: int | None = Field(default=None, gt=0)
    dose: float = Field(ge=0)

    @field_validator("at_hours")
    @classmethod
    def _ascending(cls, hours: tuple[int, ...]) -> tuple[int, ...]:
        if any(h < 0 for h in hours) or list(hours) != sorted(set(hours)):
            raise ValueError(f"at_hours {list(hours)} must be distinct, ascending hours >= 0")
        return hours

    @model_validator(mode="after")
    def _pattern_fits(self) -> ScheduleRule:
        if self.every_hours is not None and self.at_hours[-1] - self.at_hours[0] >= self.every_hours:
            raise ValueError(f"at_hours {list(self.at_hours)} span {self.at_hours[-1] - self.at_hours[0]} h, "
                             f"which does not fit in one repeat of every_hours={self.every_hours}")
        return self

    @property
    def from_hour(self) -> int:
        return self.at_hours[0]

    def hours(self, limit: int = MAX_STRATEGY_HOURS) -> set[int]:
        """The hours (after the decision hour, below ``limit`` and ``until_hour``) a dose is given."""
        end = min(limit, self.until_hour) if self.until_hour is not None else limit
        if self.every_hours is None:
            return {h for h in self.at_hours if h < end}
        return {h + k for h in self.at_hours for k in range(0, end, self.every_hours) if h + k < end}

    def clauses(self) -> list[Conditions]:
        return [()]


Rule = Annotated[ThresholdRule | TitrationRule | ScheduleRule, Field(discriminator="kind")]


def _active_hours(rule: ThresholdRule | TitrationRule | ScheduleRule) -> set[int] | tuple[int, int]:
    if isinstance(rule, ScheduleRule):
        return rule.hours()
    return (rule.from_hour, rule.until_hour if rule.until_hour is not None else MAX_STRATEGY_HOURS)


def _hours_meet(a: ThresholdRule | TitrationRule | ScheduleRule, b: ThresholdRule | TitrationRule | ScheduleRule) -> bool:
    ha, hb = _active_hours(a), _active_hours(b)
    if isinstance(ha, set) and isinstance(hb, set):
        return bool(ha & hb)
    if isinstance(ha, set):
        ha, hb = hb, ha
    low, high = ha  # type: ignore[misc]
    if isinstance(hb, set):
        return any(low <= h < high for h in hb)
    return max(low, hb[0]) < min(high, hb[1])


class TreatmentPlan(_Strict):
    """The rules of one governed treatment and the value given where none is active."""

    otherwise: float = Field(default=0.0, ge=0)
    rules: tuple[Rule, ...] = ()


# ---------------------------------------------------------------------------------------- strategy
class Strategy(_Strict):
    """A treatment strategy (see the module docstring); build one with :func:`parse_strategy` or
    :func:`load_strategy`, which turn every problem into a :class:`StrategyError`.

    Attributes
    ----------
    name
        Identifier (``[a-z0-9_]``), used in output tables.
    description
        One line for humans.
    reference
        The clinical source the strategy follows.
    others
        What decides the treatments this strategy does not govern (:data:`Others`).
    max_age_hours
        Per-variable freshness overriding the default for conditions without their own.
    treatments
        Treatment code -> :class:`TreatmentPlan`.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    reference: str | None = None
    others: Others = "usual_care"
    max_age_hours: dict[str, int] = Field(default_factory=dict)
    treatments: dict[str, TreatmentPlan] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_against_catalog(self, info: ValidationInfo) -> Strategy:
        catalog = (info.context or {}).get("catalog") or load_catalog()
        problems = check_strategy(self, catalog)
        if problems:
            raise _Problems(problems)
        return self

    @property
    def governed(self) -> tuple[str, ...]:
        """The treatment codes this strategy decides itself."""
        return tuple(self.treatments)

    def freshness(self, catalog: Catalog) -> dict[str, int]:
        """Default carry-forward window (hours) of each catalog variable for this strategy's conditions."""
        windows = {v.code: DEFAULT_CARRY_FORWARD_HOURS[v.kind] for v in catalog.variables}
        windows.update(self.max_age_hours)
        return windows


def check_strategy(strategy: Strategy, catalog: Catalog) -> list[tuple[tuple[str | int, ...], str]]:
    """Every problem of ``strategy`` against ``catalog``, as ``(key path, message)`` pairs."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    variables = set(catalog.variable_codes)
    treatments = set(catalog.treatment_codes)
    for code in strategy.max_age_hours:
        if code not in variables:
            problems.append((("max_age_hours", code), f"unknown variable {code!r}; known: {', '.join(catalog.variable_codes)}"))
        elif strategy.max_age_hours[code] < 0:
            problems.append((("max_age_hours", code), "must be >= 0 hours"))
    for code, plan in strategy.treatments.items():
        where: tuple[str | int, ...] = ("treatments", code)
        if code not in treatments:
            problems.append((where, f"unknown treatment {code!r}; known: {', '.join(catalog.treatment_codes)}"))
            continue
        treatment = catalog.treatment(code)
        problems += _check_value(where + ("otherwise",), plan.otherwise, treatment)
        for i, rule in enumerate(plan.rules):
            problems += _check_rule(where + ("rules", i), rule, treatment, variables, treatments, catalog)
        problems += _check_overlaps(where, plan)
    return problems


def _check_value(where: tuple[str | int, ...], value: float, treatment: Any) -> list[tuple[tuple[str | int, ...], str]]:
    low, high = treatment.plausible
    if treatment.kind == "binary" and value not in (0.0, 1.0):
        return [(where, f"{treatment.code} is given (1) or not (0); got {value:g}")]
    if not low <= value <= high:
        return [(where, f"{value:g} {treatment.unit} lies outside {treatment.code}'s plausible range {low:g}..{high:g}")]
    return []


def _check_conditions(where: tuple[str | int, ...], conditions: Conditions, variables: set[str], treatments: set[str],
                      catalog: Catalog) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for j, condition in enumerate(conditions):
        treatment = condition.treatment
        if treatment is None:
            if condition.quantity not in variables:
                problems.append((where + (j,), f"unknown state variable {condition.quantity!r}; known: "
                                 f"{', '.join(catalog.variable_codes)} (or <treatment>.{'|'.join(TREATMENT_QUANTITIES)})"))
            continue
        suffix = condition.quantity.split(".", 1)[1]
        if treatment not in treatments:
            problems.append((where + (j,), f"unknown treatment {treatment!r} in {condition.quantity!r}; known: "
                             f"{', '.join(catalog.treatment_codes)}"))
        elif suffix not in TREATMENT_QUANTITIES:
            problems.append((where + (j,), f"{condition.quantity!r}: a treatment quantity is "
                             f"{' | '.join(f'{treatment}.{s}' for s in TREATMENT_QUANTITIES)}"))
        elif condition.max_age_hours is not None:
            problems.append((where + (j, "max_age_hours"), "only a variable's value has an age; a treatment quantity has none"))
    return problems


def _check_rule(where: tuple[str | int, ...], rule: ThresholdRule | TitrationRule | ScheduleRule, treatment: Any,
                variables: set[str], treatments: set[str], catalog: Catalog) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if rule.until_hour is not None and rule.until_hour <= rule.from_hour:
        problems.append((where + ("until_hour",), f"until_hour {rule.until_hour} must be after the rule's first hour, {rule.from_hour}"))
    if isinstance(rule, ScheduleRule):
        return problems + _check_value(where + ("dose",), rule.dose, treatment)
    groups = [("when", rule.when), ("when_any", rule.when_any)]
    if isinstance(rule, TitrationRule):
        groups += [("wean_when", rule.wean_when), ("wean_when_any", rule.wean_when_any)]
    for key, conditions in groups:
        problems += _check_conditions(where + (key,), conditions, variables, treatments, catalog)
    if isinstance(rule, ThresholdRule):
        problems += _check_value(where + ("dose",), rule.dose, treatment)
        if not any(_satisfiable(clause) for clause in rule.clauses()):
            problems.append((where + ("when",), "these conditions can never hold together"))
        if rule.cap is not None:
            if treatment.kind == "binary":
                problems.append((where + ("cap",), f"a cap limits a dose; {treatment.code} is 0/1"))
            elif not rule.cap.per_kg and rule.cap.total < rule.dose:
                problems.append((where + ("cap", "total"), f"the cap ({rule.cap.total:g}) is below the dose ({rule.dose:g})"))
        return problems
    # titration
    if not rule.when and not rule.when_any:
        problems.append((where + ("when",), "a titration rule needs a 'when' (or 'when_any') condition to start and raise the dose"))
    if treatment.kind == "binary":
        if rule.start_dose != 1.0:
            problems.append((where + ("start_dose",), f"{treatment.code} is 0/1: start_dose must be 1"))
        for key in ("step", "maximum"):
            if getattr(rule, key) is not None:
                problems.append((where + (key,), f"{treatment.code} is 0/1: a titration of it has no {key}"))
        if rule.stop_below:
            problems.append((where + ("stop_below",), f"{treatment.code} is 0/1: a titration of it has no stop_below"))
    else:
        problems += _check_value(where + ("start_dose",), rule.start_dose, treatment)
        if rule.start_dose <= 0:
            problems.append((where + ("start_dose",), "start_dose must be above 0"))
        if rule.step is None:
            problems.append((where + ("step",), "a titration of a dose needs a step"))
        elif rule.step <= 0:
            problems.append((where + ("step",), f"step must be positive (it raises the dose while 'when' holds and lowers "
                             f"it while 'wean_when' holds); got {rule.step:g}"))
        if rule.maximum is None:
            problems.append((where + ("maximum",), "a titration of a dose needs a maximum"))
        else:
            problems += _check_value(where + ("maximum",), rule.maximum, treatment)
            if rule.maximum < rule.start_dose:
                problems.append((where + ("maximum",), f"maximum {rule.maximum:g} is below start_dose {rule.start_dose:g}"))
        if rule.stop_below >= rule.start_dose:
            problems.append((where + ("stop_below",), f"stop_below {rule.stop_below:g} must be below start_dose {rule.start_dose:g}"))
    raising, weaning = rule.raise_clauses(), rule.wean_clauses()
    if raising and not any(_satisfiable(c) for c in raising):
        problems.append((where + ("when",), "these conditions can never hold together"))
    clash = [(a, b) for a in raising for b in weaning if _satisfiable(a + b)]
    if clash:
        a, b = clash[0]
        problems.append((where + ("wean_when",), "'when' and 'wean_when' can hold in the same hour "
                         f"({' and '.join(map(str, a)) or 'always'} / {' and '.join(map(str, b)) or 'always'}); "
                         "make them exclusive (e.g. map < 65 / map > 75)"))
    return problems


def _check_overlaps(where: tuple[str | int, ...], plan: TreatmentPlan) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for i, first in enumerate(plan.rules):
        for j in range(i + 1, len(plan.rules)):
            second = plan.rules[j]
            if not _hours_meet(first, second):
                continue
            both = [(a, b) for a in first.clauses() for b in second.clauses() if _satisfiable(a + b)]
            if both:
                a, b = both[0]
                condition = " and ".join(str(c) for c in a + b) or "any state"
                problems.append((where + ("rules", j), f"overlaps rules[{i}]: both can be active in the same hour "
                                 f"(their hours meet and {condition} can hold); separate their hours or make their "
                                 "conditions exclusive"))
    return problems


# ---------------------------------------------------------------------------------------- loading
def _key_path(path: Iterable[str | int]) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _line_map(text: str) -> dict[tuple[str | int, ...], int]:
    """YAML key path -> 1-based line of its value (keys of mappings, indices of sequences)."""
    lines: dict[tuple[str | int, ...], int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = path + (str(key.value),)
                walk(value, child)
                lines[child] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                walk(value, path + (i,))

    if root is not None:
        walk(root, ())
    return lines


def _data_path(loc: Iterable[str | int], data: Any) -> tuple[str | int, ...]:
    """pydantic's error location without the union tags it inserts (``rules.0.threshold.dose``)."""
    path: list[str | int] = []
    node = data
    for key in loc:
        if isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
            path.append(key)
        elif isinstance(node, dict) and key in node:
            node = node[key]
            path.append(key)
        elif isinstance(node, dict) and node.get("kind") == key:
            continue  # discriminated-union tag
        else:
            path.append(key)
            node = None
    return tuple(path)


def _locate(path: tuple[str | int, ...], lines: Mapping[tuple[str | int, ...], int]) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def parse_strategy(
    data: Mapping[str, Any],
    *,
    file: str | Path | None = None,
    text: str | None = None,
    catalog: Catalog | None = None,
) -> Strategy:
    """Validate a strategy given as a mapping (a parsed YAML document or a Python dict).

    Parameters
    ----------
    data
        The strategy's fields (see :class:`Strategy`).
    file, text
        Where ``data`` came from, to locate problems (``text`` gives line numbers).
    catalog
        The catalog the strategy is checked against (default :func:`load_catalog`).

    Raises
    ------
    StrategyError
        Listing every problem with its key path (and line, when ``text`` is given).
    """
    catalog = catalog or load_catalog()
    if not isinstance(data, Mapping):
        raise StrategyError([("", 1, f"a strategy is a mapping of fields, got {type(data).__name__}")], file=file)
    lines = _line_map(text) if text is not None else {}
    try:
        return Strategy.model_validate(dict(data), context={"catalog": catalog})
    except ValidationError as exc:
        problems: list[tuple[str, int | None, str]] = []
        for error in exc.errors():
            base = _data_path(error["loc"], data)
            original = (error.get("ctx") or {}).get("error")
            if isinstance(original, _Problems):
                for path, message in original.problems:
                    full = base + path
                    problems.append((_key_path(full), _locate(full, lines), message))
            else:
                message = error["msg"].removeprefix("Value error, ")
                if error["type"] == "extra_forbidden":
                    message = f"unknown key {str(base[-1])!r}"
                problems.append((_key_path(base), _locate(base, lines), message))
        raise StrategyError(problems, file=file) from None


def strategy_library_dir() -> Path:
    """The strategy library: ``$ORGANSIM_STRATEGIES`` when set, else the repository's pipelines/strategies/."""
    env = os.environ.get("ORGANSIM_STRATEGIES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "pipelines" / "strategies"


def library_names() -> tuple[str, ...]:
    """The names of the library's strategies (its ``*.yaml`` files), sorted."""
    directory = strategy_library_dir()
    return tuple(sorted(p.stem for p in directory.glob("*.yaml"))) if directory.is_dir() else ()


def read_strategy_file(path: str | Path, *, catalog: Catalog | None = None) -> Strategy:
    """Read and validate one strategy YAML file; :class:`StrategyError` locates every problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"strategy file {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise StrategyError([("", mark.line + 1 if mark else None, f"not valid YAML: {exc}")], file=path) from None
    return parse_strategy(data, file=path, text=text, catalog=catalog)


def load_strategy(name_or_path: str | Path, *, catalog: Catalog | None = None) -> Strategy:
    """A strategy from a YAML file path, or by name from the library (:func:`library_names`)."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        return read_strategy_file(candidate, catalog=catalog)
    name = str(name_or_path)
    path = strategy_library_dir() / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown strategy {name!r}: not a file, and not in the library {strategy_library_dir()} "
                       f"(known: {', '.join(library_names()) or 'none'})")
    strategy = read_strategy_file(path, catalog=catalog)
    if strategy.name != name:
        raise StrategyError([("name", _locate(("name",), _line_map(path.read_text(encoding="utf-8"))),
                              f"a library strategy is named after its file: expected {name!r}, got {strategy.name!r}")],
                            file=path)
    return strategy


@dataclass(frozen=True)
class LibraryEntry:
    """One strategy of the library, or the problem that keeps it from loading."""

    name: str
    path: Path
    strategy: Strategy | None
    error: str | None


def read_library(*, catalog: Catalog | None = None) -> list[LibraryEntry]:
    """Every strategy of the library, each loaded or with its error."""
    entries = []
    for name in library_names():
        path = strategy_library_dir() / f"{name}.yaml"
        try:
            entries.append(LibraryEntry(name, path, load_strategy(name, catalog=catalog), None))
        except StrategyError as exc:
            entries.append(LibraryEntry(name, path, None, str(exc)))
    return entries
