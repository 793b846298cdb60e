"""CohortSynthesizer with a fake twin: sizes, septic share, labels read off the physiology, determinism, exports."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from synth_fakes import FakeTwin

from organsim.data import Cohort, read_meds, read_physionet2019, read_table
from organsim.data.export import export_cohort
from organsim.synth import CohortSynthesizer, SynthesisConfig
from organsim.synth.labels import sepsis_onsets


@pytest.fixture(scope="module")
def untreated_synthesizer(untreated_cohort) -> CohortSynthesizer:
    return CohortSynthesizer.fit(untreated_cohort.subset(split="train"), initial_hours=2)


@pytest.fixture(scope="module")
def untreated_result(untreated_synthesizer, catalog):
    config = SynthesisConfig(patients=30, max_hours=30, seed=7, septic_fraction=0.4, segment_hours=8, context_hours=12)
    return untreated_synthesizer.generate(FakeTwin(catalog), config)


def test_cohort_shape_and_labels(untreated_result, untreated_synthesizer, catalog):
    cohort = untreated_result.cohort
    stays = cohort.stays
    assert stays.height == 30 and stays["stay_id"].to_list() == list(range(1, 31))
    assert cohort.meta["source"] == "synthetic" and cohort.meta["provenance"]["synthetic"] is True
    assert not cohort.meta["treatments_recorded"] and cohort.treatments.height == 0
    assert (stays["n_hours"] <= 30).all() and (stays["n_hours"] >= 3).all()
    assert stays["weight"].null_count() == 30 and stays["unit"].null_count() == 30  # never recorded in training
    # septic share asked for, within one stay
    assert abs(int(stays["sepsis"].sum()) - 12) <= 1
    # every onset is Sepsis-3 on the charted hours: a SOFA rise around the drawn suspicion hour
    septic = stays.filter(pl.col("sepsis"))
    suspicion = septic.join(cohort.hourly.group_by("stay_id").agg(pl.col("hour").max().alias("last")), on="stay_id")
    assert (septic["sepsis_onset_hour"] <= suspicion["last"]).all()
    # a septic stay ends at most as many hours after onset as septic training stays do (cut at onset + drawn hours)
    drawn_ends = next(c for c in untreated_synthesizer.initial.strata_[True].columns if c.name == "onset_to_end")
    after = suspicion.select(pl.col("last") - pl.col("sepsis_onset_hour")).to_series().to_numpy()
    assert (after >= 0).all() and (after <= drawn_ends.sorted_values.max()).all()
    first = cohort.hourly.group_by("stay_id").agg(pl.col("hour").min().alias("first"))
    assert (septic.join(first, on="stay_id").select(pl.col("sepsis_onset_hour") >= pl.col("first") + 6)).to_series().all()
    onsets = sepsis_onsets(cohort.hourly, treatments=None, suspicion=None if septic.height == 0 else
                           septic.select("stay_id", pl.col("sepsis_onset_hour").alias("hour")), catalog=catalog)
    recomputed = onsets.join(septic.select("stay_id", "sepsis_onset_hour"), on="stay_id")
    assert recomputed["onset_hour"].is_not_null().all()  # the rise is still there on the exported hours
    # hourly rows cover each stay's hours without gaps; vital signs mostly charted, labs rarely
    spans = cohort.hourly.group_by("stay_id").agg((pl.col("hour").max() - pl.col("hour").min() + 1).alias("span"), pl.len())
    assert (spans["span"] == spans["len"]).all()
    assert cohort.hourly["hr"].is_not_null().mean() > 0.5 > cohort.hourly["creatinine"].is_not_null().mean()
    summary = untreated_result.summary()
    assert summary["septic_stays"] == int(stays["sepsis"].sum()) and summary["events"]["sepsis3"] == summary["septic_stays"]
    assert summary["candidates"]["septic"] >= summary["septic_stays"]


def test_same_seed_same_cohort(untreated_synthesizer, untreated_result, catalog):
    config = SynthesisConfig(patients=30, max_hours=30, seed=7, septic_fraction=0.4, segment_hours=8, context_hours=12)
    again = untreated_synthesizer.generate(FakeTwin(catalog), config).cohort
    assert again.stays.equals(untreated_result.cohort.stays) and again.hourly.equals(untreated_result.cohort.hourly)
    other = untreated_synthesizer.generate(FakeTwin(catalog), SynthesisConfig(patients=30, max_hours=30, seed=8,
                                                                                segment_hours=8, context_hours=12)).cohort
    assert not other.hourly.equals(untreated_result.cohort.hourly)


def test_values_outside_the_catalog_are_clipped(untreated_synthesizer, catalog):
    config = SynthesisConfig(patients=4, max_hours=12, seed=2, septic_fraction=0.0, segment_hours=8, context_hours=12)
    result = untreated_synthesizer.generate(FakeTwin(catalog, overshoot=True), config)
    assert result.values_clipped > 0 and result.summary()["values_clipped"] == result.values_clipped
    assert result.cohort.hourly["spo2"].max() <= catalog.variable("spo2").plausible[1]


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_extreme_septic_fractions(untreated_synthesizer, catalog, fraction):
    config = SynthesisConfig(patients=6, max_hours=20, seed=1, septic_fraction=fraction, segment_hours=8, context_hours=12)
    stays = untreated_synthesizer.generate(FakeTwin(catalog), config).cohort.stays
    assert stays["sepsis"].mean() == fraction


def test_treated_training_data_gives_a_behaviour_policy(treated_cohort, catalog):
    synthesizer = CohortSynthesizer.fit(treated_cohort.subset(split="train"), initial_hours=2)
    assert synthesizer.treatments_recorded
    twin = FakeTwin(catalog)
    result = synthesizer.generate(twin, SynthesisConfig(patients=8, max_hours=20, seed=0, segment_hours=8, context_hours=12))
    assert twin.policies and all(callable(p) for p in twin.policies)
    cohort = result.cohort
    assert cohort.meta["treatments_recorded"] and cohort.treatments.height == cohort.hourly.height
    assert set(cohort.stays["unit"].drop_nulls().to_list()) <= {"MICU", "SICU", "other"}


def _equal_frames(left: pl.DataFrame, right: pl.DataFrame, columns: list[str]) -> None:
    a = left.select(columns).sort(columns[:2])
    b = right.select(columns).sort(columns[:2])
    np.testing.assert_allclose(a.to_numpy().astype(np.float64), b.to_numpy().astype(np.float64), rtol=0, atol=0)


def test_every_export_reads_back(untreated_result, catalog, tmp_path):
    cohort = untreated_result.cohort
    variables = ["stay_id", "hour", *catalog.variable_codes]
    for format in ("parquet", "csv", "psv", "meds"):
        export_cohort(cohort, tmp_path / format, format)
    assert Cohort.load(tmp_path / "parquet").hourly.equals(cohort.hourly)
    csv = read_table(tmp_path / "csv" / "hourly.csv", tmp_path / "csv" / "stays.csv")
    _equal_frames(csv.hourly, cohort.hourly, variables)
    physionet = read_physionet2019(tmp_path / "psv")
    challenge = [c for c in variables if c in ("stay_id", "hour") or catalog.variable(c).physionet]
    _equal_frames(physionet.hourly, cohort.hourly, challenge)
    labels = cohort.sepsis_labels()["sepsis_label"].to_list()
    assert physionet.sepsis_labels()["sepsis_label"].to_list() == labels
    meds = read_meds(tmp_path / "meds")
    _equal_frames(meds.hourly, cohort.hourly, variables)
    dataset = json.loads((tmp_path / "meds" / "metadata" / "dataset.json").read_text())
    assert dataset["synthetic"] is True
