"""Typed, frozen catalog objects. Validation happens here, so a typo in the YAML fails at load.

Every model forbids unknown keys (``extra="forbid"``): a misspelt field such as ``plausable`` is an
error, not a silently missing range.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SYSTEMS: tuple[str, ...] = (
    "cardiovascular",
    "respiratory",
    "renal",
    "hepatic",
    "immune",
    "nervous",
    "hematologic",
    "coagulation",
    "metabolic",
)
"""The nine organ systems, in the catalog's canonical order."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_range(name: str, bounds: tuple[float, float] | None) -> None:
    if bounds is not None and bounds[0] > bounds[1]:
        raise ValueError(f"{name} range {list(bounds)} has low > high")


class System(_Frozen):
    """One organ system."""

    code: Literal[SYSTEMS]  # type: ignore[valid-type]
    label: str


class Variable(_Frozen):
    """An hourly physiological variable (one column of hourly.parquet)."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    system: Literal[SYSTEMS]  # type: ignore[valid-type]
    unit: str
    kind: Literal["vital", "lab", "bedside"]
    plausible: tuple[float, float]
    normal: tuple[float, float]
    cutoffs: tuple[float, ...] = ()
    max_hourly_change: float | None = Field(default=None, gt=0)
    saturates: tuple[Literal["low", "high"], ...] = ()
    """Ends of the plausible range where the measurement saturates: every value beyond is recorded
    as the bound itself (a pulse oximeter reads 100 % at most; FiO2 lies between room air and pure
    oxygen), so recorded data pile up there and a simulated value beyond is that bound."""
    physionet: str | None = None
    physionet_scale: float = 1.0
    mimic_iv: tuple[int, ...] = ()
    meds: str | None = None
    description: str

    @model_validator(mode="after")
    def _check(self) -> Variable:
        _check_range(f"variable {self.code!r}: plausible", self.plausible)
        _check_range(f"variable {self.code!r}: normal", self.normal)
        lo, hi = self.plausible
        if not (lo <= self.normal[0] and self.normal[1] <= hi):
            raise ValueError(
                f"variable {self.code!r}: normal range {list(self.normal)} lies outside the "
                f"plausible range {list(self.plausible)}"
            )
        if list(self.cutoffs) != sorted(set(self.cutoffs)):
            raise ValueError(f"variable {self.code!r}: cutoffs {list(self.cutoffs)} must be strictly ascending")
        if any(not lo <= c <= hi for c in self.cutoffs):
            raise ValueError(f"variable {self.code!r}: a cutoff in {list(self.cutoffs)} lies outside plausible {list(self.plausible)}")
        return self

    @property
    def meds_code(self) -> str:
        """The MEDS code of this variable (``meds`` if given, else ``LAB//<code>``/``VITAL//<code>``)."""
        if self.meds:
            return self.meds
        prefix = "LAB" if self.kind == "lab" else "VITAL"
        return f"{prefix}//{self.code}"


class StaticVariable(_Frozen):
    """A per-stay static value (a column of stays.parquet)."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    unit: str
    kind: Literal["static"]
    plausible: tuple[float, float]
    physionet: str | None = None
    mimic_iv: tuple[int, ...] = ()
    description: str

    @model_validator(mode="after")
    def _check(self) -> StaticVariable:
        _check_range(f"static {self.code!r}: plausible", self.plausible)
        return self

    @property
    def meds_code(self) -> str:
        return f"STATIC//{self.code}"


class VasopressorFactor(_Frozen):
    drug: str
    unit: str
    factor: float = Field(gt=0)


class Treatment(_Frozen):
    """An hourly treatment column of treatments.parquet."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    unit: str
    kind: Literal["continuous", "binary"]
    plausible: tuple[float, float]
    default: float
    mimic_iv: tuple[int, ...] = ()
    mimic_iv_category: str | None = None
    norepinephrine_equivalent: dict[int, VasopressorFactor] = Field(default_factory=dict)
    description: str

    @model_validator(mode="after")
    def _check(self) -> Treatment:
        _check_range(f"treatment {self.code!r}: plausible", self.plausible)
        if self.kind == "binary" and tuple(self.plausible) != (0, 1):
            raise ValueError(f"treatment {self.code!r}: a binary treatment has plausible [0, 1]")
        if not self.plausible[0] <= self.default <= self.plausible[1]:
            raise ValueError(f"treatment {self.code!r}: default {self.default} outside plausible")
        return self

    @property
    def meds_code(self) -> str:
        return f"TREATMENT//{self.code}"


class RatioRule(_Frozen):
    numerator: str
    denominator: str
    op: Literal["<", ">"]
    threshold: float


class KdigoRule(_Frozen):
    absolute_rise_mg_dl: float = Field(gt=0)
    absolute_window_hours: int = Field(gt=0)
    relative_rise: float = Field(gt=1)
    relative_window_hours: int = Field(gt=0)


class EventDefinition(_Frozen):
    """A critical event: a threshold rule on one variable (data_schemas/events.yaml)."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    variable: str
    op: Literal["<", ">"] | None = None
    threshold: float | None = None
    severe: float | None = None
    or_ratio: RatioRule | None = None
    kdigo: KdigoRule | None = None

    @model_validator(mode="after")
    def _check(self) -> EventDefinition:
        if self.kdigo is None and (self.op is None or self.threshold is None):
            raise ValueError(f"event {self.code!r}: needs op and threshold (or a kdigo rule)")
        if self.severe is not None and self.threshold is not None:
            worse = self.severe < self.threshold if self.op == "<" else self.severe > self.threshold
            if not worse:
                raise ValueError(f"event {self.code!r}: severe {self.severe} is not beyond threshold {self.threshold}")
        return self


class TableColumn(_Frozen):
    name: str
    dtype: Literal["Int8", "Int32", "Int64", "Float32", "Float64", "Utf8", "Boolean"]
    nullable: bool
    description: str


class VariableColumns(_Frozen):
    from_catalog: Literal["variables", "treatments"]
    dtype: Literal["Float32"]
    nullable: bool


class TableSchema(_Frozen):
    """Column schema of one cohort table (data_schemas/tables/*.yaml)."""

    table: Literal["stays", "hourly", "treatments"]
    primary_key: tuple[str, ...]
    columns: tuple[TableColumn, ...]
    variable_columns: VariableColumns | None = None

    @field_validator("columns")
    @classmethod
    def _unique(cls, columns: tuple[TableColumn, ...]) -> tuple[TableColumn, ...]:
        names = [c.name for c in columns]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate column names {dup}")
        return columns


class Catalog(_Frozen):
    """The whole catalog: systems, variables, statics, treatments, events and table schemas."""

    version: str
    systems: tuple[System, ...]
    variables: tuple[Variable, ...]
    statics: tuple[StaticVariable, ...]
    treatments: tuple[Treatment, ...]
    events: tuple[EventDefinition, ...]
    event_merge_gap_hours: int = Field(ge=0)
    tables: dict[str, TableSchema]

    @model_validator(mode="after")
    def _check(self) -> Catalog:
        if tuple(s.code for s in self.systems) != SYSTEMS:
            raise ValueError(f"systems must be exactly {list(SYSTEMS)} in that order")
        codes = [v.code for v in self.variables] + [s.code for s in self.statics] + [t.code for t in self.treatments]
        dup = sorted({c for c in codes if codes.count(c) > 1})
        if dup:
            raise ValueError(f"codes used more than once: {dup}")
        empty = [s for s in SYSTEMS if not any(v.system == s for v in self.variables)]
        if empty:
            raise ValueError(f"systems without variables: {empty}")
        pn = [v.physionet for v in self.variables if v.physionet] + [s.physionet for s in self.statics if s.physionet]
        dup = sorted({c for c in pn if pn.count(c) > 1})
        if dup:
            raise ValueError(f"PhysioNet columns mapped twice: {dup}")
        known = {v.code for v in self.variables}
        for event in self.events:
            names = [event.variable]
            if event.or_ratio is not None:
                names += [event.or_ratio.numerator, event.or_ratio.denominator]
            missing = [n for n in names if n not in known]
            if missing:
                raise ValueError(f"event {event.code!r} reads unknown variables {missing}")
        if set(self.tables) != {"stays", "hourly", "treatments"}:
            raise ValueError(f"table schemas must be stays, hourly, treatments; got {sorted(self.tables)}")
        return self

    # ---- lookups -------------------------------------------------------------------------------
    @cached_property
    def _by_code(self) -> dict[str, Variable]:
        return {v.code: v for v in self.variables}

    @property
    def variable_codes(self) -> tuple[str, ...]:
        """Codes of the hourly variables, in catalog order (the hourly.parquet column order)."""
        return tuple(v.code for v in self.variables)

    @property
    def treatment_codes(self) -> tuple[str, ...]:
        return tuple(t.code for t in self.treatments)

    @property
    def static_codes(self) -> tuple[str, ...]:
        return tuple(s.code for s in self.statics)

    def variable(self, code: str) -> Variable:
        """The variable with this code; ``KeyError`` naming the known codes otherwise."""
        try:
            return self._by_code[code]
        except KeyError:
            raise KeyError(f"unknown variable {code!r}; known: {', '.join(self.variable_codes)}") from None

    def treatment(self, code: str) -> Treatment:
        for t in self.treatments:
            if t.code == code:
                return t
        raise KeyError(f"unknown treatment {code!r}; known: {', '.join(self.treatment_codes)}")

    def event(self, code: str) -> EventDefinition:
        for e in self.events:
            if e.code == code:
                return e
        raise KeyError(f"unknown event {code!r}; known: {', '.join(e.code for e in self.events)}")

    def variables_of(self, system: str) -> tuple[Variable, ...]:
        """The variables of one organ system, in catalog order."""
        if system not in SYSTEMS:
            raise KeyError(f"unknown system {system!r}; known: {', '.join(SYSTEMS)}")
        return tuple(v for v in self.variables if v.system == system)

    @property
    def system_of(self) -> dict[str, str]:
        """Map variable code -> system code."""
        return {v.code: v.system for v in self.variables}

    @property
    def physionet_columns(self) -> dict[str, str]:
        """Map PhysioNet 2019 column -> catalog code (hourly variables and statics)."""
        out = {v.physionet: v.code for v in self.variables if v.physionet}
        out.update({s.physionet: s.code for s in self.statics if s.physionet})
        return out

    @property
    def meds_codes(self) -> dict[str, str]:
        """Map MEDS code -> catalog code, for variables, statics and treatments."""
        out = {v.meds_code: v.code for v in self.variables}
        out.update({s.meds_code: s.code for s in self.statics})
        out.update({t.meds_code: t.code for t in self.treatments})
        return out
