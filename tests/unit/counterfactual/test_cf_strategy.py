"""Strategy schema: the library loads, and every kind of invalid strategy is located by file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from organsim.counterfactual import (
    ScheduleRule,
    StrategyError,
    ThresholdRule,
    TitrationRule,
    library_names,
    load_strategy,
    parse_strategy,
    read_library,
    read_strategy_file,
)

LIBRARY = (
    "antibiotics_1h", "antibiotics_6h", "early_norepinephrine", "late_norepinephrine", "liberal_fluids",
    "observed_care", "restrictive_fluids", "restrictive_fluids_early_norepinephrine",
)


def test_the_library_holds_the_argued_strategies_and_all_are_valid() -> None:
    assert set(LIBRARY) <= set(library_names())
    entries = read_library()
    assert [e.error for e in entries] == [None] * len(entries)
    by_name = {e.name: e.strategy for e in entries}
    assert by_name["observed_care"].others == "observed" and by_name["observed_care"].governed == ()
    assert by_name["restrictive_fluids_early_norepinephrine"].governed == ("iv_fluid_ml", "norepinephrine")
    late = by_name["late_norepinephrine"].treatments["norepinephrine"].rules[0]
    assert isinstance(late, TitrationRule) and late.from_hour == 6 and late.step == 0.05
    for entry in entries:  # each documents its clinical source
        assert entry.strategy.reference and entry.path.read_text().startswith("# ")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "strategy.yaml"
    path.write_text(text)
    return path


HEADER = "name: test\ndescription: a test\n"


@pytest.mark.parametrize(
    ("body", "line", "key", "message"),
    [
        ("treatments:\n  iv_fluid_ml:\n    rules:\n      - kind: threshold\n        when: ['mapp < 65']\n        dose: 500\n",
         7, "treatments.iv_fluid_ml.rules[0].when[0]", "unknown state variable 'mapp'"),
        ("treatments:\n  dialysis:\n    rules: []\n", 4, "treatments.dialysis", "unknown treatment 'dialysis'"),
        ("treatments:\n  iv_fluid_ml:\n    rules:\n      - kind: threshold\n        dose: -250\n",
         7, "treatments.iv_fluid_ml.rules[0].dose", "greater than or equal to 0"),
        ("treatments:\n  norepinephrine:\n    rules:\n      - kind: titrate\n        when: ['map < 65']\n"
         "        start_dose: 0.2\n        step: 0.05\n        maximum: 0.1\n",
         10, "treatments.norepinephrine.rules[0].maximum", "maximum 0.1 is below start_dose 0.2"),
        ("treatments:\n  norepinephrine:\n    rules:\n      - kind: titrate\n        when: ['map < 65']\n"
         "        start_dose: 0.05\n        step: -0.05\n        maximum: 1\n",
         9, "treatments.norepinephrine.rules[0].step", "step must be positive"),
        ("treatments:\n  iv_fluid_ml:\n    rules:\n      - kind: threshold\n        when: ['map < 70']\n        dose: 500\n"
         "      - kind: threshold\n        when: ['map >= 60']\n        dose: 100\n",
         9, "treatments.iv_fluid_ml.rules[1]", "overlaps rules[0]"),
        ("treatments:\n  iv_fluid_ml:\n    rules:\n      - kind: schedule\n        at_hours: [0]\n        every_hours: 4\n"
         "        dose: 500\n      - kind: schedule\n        at_hours: [8]\n        dose: 250\n",
         10, "treatments.iv_fluid_ml.rules[1]", "overlaps rules[0]"),
        ("treatments:\n  antibiotic:\n    rules:\n      - kind: schedule\n        at_hours: [0]\n        dose: 2\n",
         8, "treatments.antibiotic.rules[0].dose", "given (1) or not (0)"),
        ("treatments:\n  iv_fluid_ml:\n    rules:\n      - kind: threshold\n        dose: 500\n        cap: {total: 250, window_hours: 6}\n",
         8, "treatments.iv_fluid_ml.rules[0].cap.total", "the cap (250) is below the dose (500)"),
        ("treatments:\n  norepinephrine:\n    rules:\n      - kind: titrate\n        when: ['map < 65']\n"
         "        wean_when: ['map < 80']\n        start_dose: 0.05\n        step: 0.05\n        maximum: 1\n",
         8, "treatments.norepinephrine.rules[0].wean_when", "can hold in the same hour"),
        ("treatments:\n  iv_fluid_ml:\n    rules:\n      - kind: threshold\n        when: ['map < 60', 'map > 70']\n        dose: 500\n",
         7, "treatments.iv_fluid_ml.rules[0].when", "can never hold"),
        ("treatments:\n  iv_fluid_ml:\n    rules:\n      - kind: threshold\n        dose: 500\n        colour: red\n",
         8, "treatments.iv_fluid_ml.rules[0].colour", "unknown key 'colour'"),
        ("treatments:\n  iv_fluid_ml:\n    rules:\n      - kind: threshold\n        when: ['map << 65']\n        dose: 500\n",
         7, "treatments.iv_fluid_ml.rules[0].when[0]", "is not '<quantity> <op> <number>'"),
        ("treatments:\n  iv_fluid_ml:\n    rules:\n      - kind: threshold\n        when: ['norepinephrine.rate > 0']\n        dose: 500\n",
         7, "treatments.iv_fluid_ml.rules[0].when[0]", "a treatment quantity is"),
        ("treatments:\n  iv_fluid_ml:\n    otherwise: 9000\n", 5, "treatments.iv_fluid_ml.otherwise", "outside iv_fluid_ml's plausible range"),
        ("max_age_hours: {mapp: 2}\n", 3, "max_age_hours.mapp", "unknown variable 'mapp'"),
    ],
    ids=["unknown-variable", "unknown-treatment", "negative-dose", "maximum-below-dose", "step-sign", "overlapping-conditions",
         "overlapping-schedules", "binary-dose", "cap-below-dose", "raise-and-wean-overlap", "never-holds", "unknown-key",
         "bad-condition", "bad-treatment-quantity", "implausible-otherwise", "unknown-freshness-variable"],
)
def test_invalid_strategies_name_file_line_and_key(tmp_path: Path, body: str, line: int, key: str, message: str) -> None:
    path = _write(tmp_path, HEADER + body)
    with pytest.raises(StrategyError) as caught:
        read_strategy_file(path)
    error = caught.value
    located = [(k, n) for k, n, m in error.problems if message in m]
    assert (key, line) in located, error.problems
    assert error.file == str(path) and str(path) in str(error)


def test_exclusive_rules_and_disjoint_windows_are_not_overlaps() -> None:
    strategy = parse_strategy({
        "name": "ok", "description": "exclusive rules",
        "treatments": {
            "iv_fluid_ml": {"otherwise": 50, "rules": [
                {"kind": "schedule", "at_hours": [0, 1], "dose": 1000},
                {"kind": "threshold", "from_hour": 2, "when": ["map < 65"], "dose": 500},
                {"kind": "threshold", "from_hour": 2, "when": ["map >= 65", "lactate >= 4"], "dose": 250},
            ]},
            "antibiotic": {"rules": [
                {"kind": "schedule", "at_hours": [0], "every_hours": 8, "dose": 1},
                {"kind": "schedule", "at_hours": [4], "every_hours": 8, "dose": 1},
            ]},
            "mechanical_ventilation": {"rules": [
                {"kind": "titrate", "when": ["spo2 < 88"], "wean_when": ["spo2 >= 94", "norepinephrine.previous <= 0.1"], "start_dose": 1},
            ]},
        },
    })
    fluid = strategy.treatments["iv_fluid_ml"].rules
    assert isinstance(fluid[0], ScheduleRule) and isinstance(fluid[2], ThresholdRule)
    assert fluid[2].when[1].quantity == "lactate" and fluid[2].when[1].op == ">=" and fluid[2].when[1].value == 4.0
    assert strategy.governed == ("iv_fluid_ml", "antibiotic", "mechanical_ventilation")


def test_python_dicts_get_the_same_checks_without_line_numbers() -> None:
    with pytest.raises(StrategyError) as caught:
        parse_strategy({"name": "py", "description": "d",
                        "treatments": {"mechanical_ventilation": {"rules": [
                            {"kind": "titrate", "when": ["spo2 < 88"], "start_dose": 1, "step": 0.5}]}}})
    assert caught.value.problems == [("treatments.mechanical_ventilation.rules[0].step", None,
                                      "mechanical_ventilation is 0/1: a titration of it has no step")]


def test_library_lookup_by_name_and_its_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_strategy("antibiotics_6h").treatments["antibiotic"].rules[0].at_hours == (5,)
    with pytest.raises(KeyError, match="unknown strategy 'antibiotics_2h'.*known: antibiotics_1h"):
        load_strategy("antibiotics_2h")
    (tmp_path / "early.yaml").write_text("name: late\ndescription: misnamed\n")
    monkeypatch.setenv("ORGANSIM_STRATEGIES", str(tmp_path))
    with pytest.raises(StrategyError, match="named after its file: expected 'early', got 'late'") as caught:
        load_strategy("early")
    assert caught.value.row == 1 and caught.value.column == "name"
    with pytest.raises(StrategyError, match="not valid YAML"):
        read_strategy_file(_write(tmp_path, "name: [unclosed\n"))
