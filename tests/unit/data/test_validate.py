"""Shared loader checks: row location, numeric parsing, plausible ranges, key checks, the report."""

from __future__ import annotations

import polars as pl
import pytest

from organsim.data.validate import (
    IngestReport,
    RowLocator,
    check_unique,
    null_out_of_range,
    parse_numeric,
)
from organsim.utils import DataError


def test_row_locator_maps_back_to_files() -> None:
    locator = RowLocator.from_counts(["a.psv", "b.psv", "c.psv"], [3, 1, 2])
    assert [locator.locate(i) for i in range(6)] == [
        ("a.psv", 1), ("a.psv", 2), ("a.psv", 3), ("b.psv", 1), ("c.psv", 1), ("c.psv", 2)]
    joined = locator.concat(RowLocator.single("d.csv"), offset=6)
    assert joined.locate(8) == ("d.csv", 3)


def test_parse_numeric() -> None:
    frame = pl.DataFrame({"a": ["1", " 2.5 ", None, "NaN", "-1e2"], "b": [1, 2, 3, 4, 5]})
    parsed = parse_numeric(frame, ["a", "b"], RowLocator.single("f.csv"))
    assert parsed["a"].to_list() == [1.0, 2.5, None, None, -100.0]
    assert parsed["b"].dtype == pl.Float64
    bad = pl.DataFrame({"a": ["1", "2", "x"], "b": ["1", "y", "3"]})
    with pytest.raises(DataError, match=r"file f.csv, row 2, column 'b': not a number: 'y'"):
        parse_numeric(bad, ["a", "b"], RowLocator.single("f.csv"))


def test_null_out_of_range_compares_in_float32() -> None:
    frame = pl.DataFrame({"fio2": [0.21, 0.2, 1.0, 1.01, None, float("nan"), float("inf")], "other": [1.0] * 7})
    cleaned, counts = null_out_of_range(frame, {"fio2": (0.21, 1.0), "absent": (0, 1)})
    assert counts == {"fio2": {"below": 1, "above": 2}}
    assert cleaned["fio2"].is_not_null().to_list() == [True, False, True, False, False, False, False]
    assert cleaned["fio2"].dtype == pl.Float32 and cleaned["other"].dtype == pl.Float64
    again, counts = null_out_of_range(cleaned, {"fio2": (0.21, 1.0)})  # a Float32 round trip changes nothing
    assert counts == {"fio2": {"below": 0, "above": 0}} and again.equals(cleaned)


def test_check_unique_names_the_repeat() -> None:
    frame = pl.DataFrame({"stay_id": [1, 1, 2, 1], "hour": [1, 2, 1, 2]})
    with pytest.raises(DataError, match=r"row 4, column 'hour': duplicate \(stay_id, hour\) = \(1, 2\)"):
        check_unique(frame, ["stay_id", "hour"], RowLocator.single("h.csv"))


def test_report_accumulates() -> None:
    report = IngestReport(source="x")
    report.add_out_of_range({"hr": {"below": 1, "above": 0}, "map": {"below": 0, "above": 0}})
    report.add_out_of_range({"hr": {"below": 2, "above": 3}})
    report.add("converted", "fio2_percent_to_fraction", 4)
    report.add("dropped", "nothing", 0)
    out = report.to_dict()
    assert out["out_of_range"] == {"hr": {"below": 3, "above": 3}}
    assert out["total_out_of_range"] == 6
    assert out["converted"] == {"fio2_percent_to_fraction": 4} and out["dropped"] == {}
