"""The ground-truth benchmark: the oracle scores perfectly against itself, the recorded future does not."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from organsim.catalog import SYSTEMS
from organsim.counterfactual import (
    DEFAULT_CONTRASTS,
    EngineOracle,
    RecordedFuture,
    cf_benchmark,
    choose_cases,
    load_strategy,
)
from organsim.data import Cohort


def test_cases_are_alive_at_their_decision_hour_and_reproducible(engine_cohort: Cohort) -> None:
    cases = choose_cases(engine_cohort, n_stays=20, decision_hours=(6, 12), horizon=24, seed=4)
    assert cases.height == 20 and set(cases["decision_hour"].to_list()) <= {6, 12}
    last = dict(engine_cohort.hourly.group_by("stay_id").agg(pl.col("hour").max()).iter_rows())
    assert all(last[s] >= h for s, h in cases.iter_rows())
    septic = set(engine_cohort.stays.filter(engine_cohort.stays["sepsis"])["stay_id"].to_list())
    assert sum(s in septic for s in cases["stay_id"]) == 10
    assert cases.equals(choose_cases(engine_cohort, n_stays=20, decision_hours=(6, 12), horizon=24, seed=4))
    with pytest.raises(ValueError, match="no stay of the cohort"):
        choose_cases(engine_cohort, n_stays=5, decision_hours=(40,), horizon=24)


def test_the_oracle_against_itself_and_the_no_effect_reference(tmp_path: Path, engine_cohort: Cohort, oracle: EngineOracle) -> None:
    contrast = DEFAULT_CONTRASTS[0]
    strategies = [load_strategy(name) for name in contrast]
    done: list[int] = []
    report = cf_benchmark(engine_cohort, [oracle, RecordedFuture()], strategies, contrasts=[contrast], n_stays=6, decision_hours=(6,),
                          horizon=24, out=tmp_path, progress=lambda n, total: done.append(total))
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(report))
    assert done[-1] == 6 * len(strategies) * 3
    perfect = report["simulators"]["engine_oracle_true"]
    assert set(perfect["nrmse"]) == set(SYSTEMS) and list(perfect["nrmse"]["cardiovascular"]) == ["1", "6", "24"]  # 48 > horizon
    assert all(v == 0.0 for system in perfect["nrmse"].values() for v in system.values() if v is not None)
    assert perfect["coverage_90"]["all"] == 1.0
    assert list(perfect["effects"]) == ["liberal_fluids-restrictive_fluids"]
    for metrics in perfect["effects"]["liberal_fluids-restrictive_fluids"].values():
        assert metrics["n"] == 0 or (metrics["mae"] == 0.0 and metrics["sign_accuracy"] in (None, 1.0)
                                     and metrics["three_way_agreement"] == 1.0)
    reference = report["simulators"]["recorded_future"]
    assert reference["nrmse"]["cardiovascular"]["6"] > 0.05
    fluids = reference["effects"]["liberal_fluids-restrictive_fluids"]["sofa_at_24h"]
    assert fluids["n"] == 6 and fluids["mae"] > 0  # the recorded future says "no effect"; liberal fluids do change SOFA
