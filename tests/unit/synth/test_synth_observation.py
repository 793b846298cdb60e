"""The observation model: learned charting rhythms, joint charting of a panel, determinism."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from organsim.data import Cohort
from organsim.synth import ObservationModel, ObservationState
from organsim.synth.generate import _planned_onsets
from organsim.synth.observation import (
    MIN_LEAF_STAYS,
    N_LENGTH_BANDS,
    N_STYLES,
    drawing_order,
    recording_resolution,
)


@pytest.fixture(scope="module")
def rhythm_cohort(catalog) -> Cohort:
    """HR charted every hour but one in five (when nothing else is charted), lactate every 4th hour."""
    n_stays, n_hours = 30, 40
    hours = np.tile(np.arange(1, n_hours + 1), n_stays)
    quiet = hours % 5 == 0
    hourly = pl.DataFrame({
        "stay_id": np.repeat(np.arange(1, n_stays + 1), n_hours),
        "hour": hours,
        "hr": np.where(quiet, np.nan, 80.0),
        "sbp": np.where(quiet, np.nan, 120.0),
        "lactate": np.where(hours % 4 == 0, 1.5, np.nan),
    }, nan_to_null=True).with_columns(pl.col("hour").cast(pl.Int32))
    stays = pl.DataFrame({"stay_id": np.arange(1, n_stays + 1), "sepsis": np.zeros(n_stays, dtype=bool)})
    return Cohort.from_frames(stays, hourly, source="test", catalog=catalog)


def test_drawing_order_puts_the_vitals_first_then_the_rarest():
    assert drawing_order(np.array([0.05, 0.9, 0.01, 0.5, 0.2])).tolist() == [1, 3, 2, 0, 4]


def test_recording_resolution():
    assert recording_resolution(np.array([80.0, 81.0, 95.0, np.nan])) == 1.0
    assert recording_resolution(np.array([36.7, 37.2, 38.05])) == 0.05
    assert recording_resolution(np.array([7.35, 7.41, 7.387])) == 0.0  # not 90 % on any grid
    assert recording_resolution(np.array([150.0, 200.0, 250.0])) == 50.0


def test_state_from_history():
    values = np.array([[[1.0, np.nan], [np.nan, np.nan], [3.0, np.nan]]])  # (1 stay, 3 hours, 2 variables)
    state = ObservationState.from_history(values, np.array([[5, 6, 7]]), np.zeros((1, 2), dtype=np.int64))
    np.testing.assert_array_equal(state.last_hour, [[7.0, np.nan]])
    np.testing.assert_array_equal(state.last_value, [[3.0, np.nan]])


def test_learns_the_charting_rhythm(rhythm_cohort, catalog):
    variables = ("hr", "sbp", "lactate", "glucose")
    model = ObservationModel.for_catalog(variables, catalog).fit(rhythm_cohort)
    lactate, sbp = variables.index("lactate"), variables.index("sbp")
    style = np.tile(model.draw_styles(1, np.random.default_rng(0)), (2, 1))  # every training stay charts alike
    charted_now = np.array([[True, False, False, False], [False, False, False, False]])  # hr charted, or not
    for hours_since, expected in ((4.0, "due"), (1.0, "just charted")):
        since = np.full((2, 4), hours_since, dtype=np.float32)
        p = model.probability(lactate, since, charted_now, np.full(2, 20.0), np.zeros((2, 4)), style)
        assert (p.min() > 0.8) if expected == "due" else (p.max() < 0.2)
    p = model.probability(sbp, np.ones((2, 4), dtype=np.float32), charted_now, np.full(2, 20.0), np.zeros((2, 4)), style)
    assert p[0] > 0.9 and p[1] < 0.2  # sbp comes with hr
    # masking constant simulated values over long stays reproduces the training rates
    rng = np.random.default_rng(0)
    n, length = 200, 38
    simulated = np.tile(np.array([80.0, 120.0, 1.5, 100.0], dtype=np.float32), (n, length, 1))
    hours = np.tile(np.arange(3, 3 + length), (n, 1))
    state = ObservationState(last_hour=np.full((n, 4), 2.0), last_value=np.tile([80.0, 120.0, 1.5, np.nan], (n, 1)),
                             style=model.draw_styles(n, rng), first_hour=np.ones(n))
    state.last_hour[:, 3] = np.nan
    charted = np.isfinite(model.mask(simulated, hours, state, rng))
    assert charted[..., 0].mean() == pytest.approx(0.8, abs=0.05)
    assert charted[..., 2].mean() == pytest.approx(0.25, abs=0.05)
    assert charted[..., 3].mean() < 0.05  # never charted in training
    simulated[..., 0] = 80.4  # heart rate is charted in whole beats (the training values are)
    assert np.nanmax(model.mask(simulated, hours, state, rng)[..., 0]) == 80.0
    assert (charted[..., 0] == charted[..., 1]).mean() > 0.9  # charted together
    assert np.isfinite(state.last_hour[:, 2]).all() and state.last_hour[:, 2].max() == 2 + length


def test_same_generator_same_mask(catalog):
    n_stays, n_hours = 30, 20
    charted = np.random.default_rng(3).random((2, n_stays * n_hours)) < [[0.7], [0.2]]
    hourly = pl.DataFrame({"stay_id": np.repeat(np.arange(1, n_stays + 1), n_hours),
                           "hour": np.tile(np.arange(1, n_hours + 1), n_stays),
                           "hr": np.where(charted[0], 80.0, np.nan), "lactate": np.where(charted[1], 1.5, np.nan)},
                          nan_to_null=True).with_columns(pl.col("hour").cast(pl.Int32))
    stays = pl.DataFrame({"stay_id": np.arange(1, n_stays + 1), "sepsis": np.zeros(n_stays, dtype=bool)})
    model = ObservationModel.for_catalog(("hr", "lactate"), catalog).fit(
        Cohort.from_frames(stays, hourly, source="test", catalog=catalog))
    simulated = np.full((5, 10, 2), 1.0, dtype=np.float32)
    hours = np.tile(np.arange(1, 11), (5, 1))

    def mask(seed):
        rng = np.random.default_rng(seed)
        state = ObservationState(np.full((5, 2), np.nan), np.full((5, 2), np.nan), model.draw_styles(5, rng),
                                 first_hour=np.ones(5))
        return model.mask(simulated, hours, state, rng)

    np.testing.assert_array_equal(mask(1), mask(1))
    assert not np.array_equal(np.isnan(mask(1)), np.isnan(mask(2)))


def test_charting_styles_follow_the_stays(catalog):
    """Half the stays chart temperature every hour, half every 6 hours: synthetic stays split the same way."""
    n_stays, n_hours = 40, 36
    hours = np.tile(np.arange(1, n_hours + 1), n_stays)
    stay = np.repeat(np.arange(1, n_stays + 1), n_hours)
    hourly = pl.DataFrame({"stay_id": stay, "hour": hours, "hr": 80.0,
                           "temperature": np.where((stay % 2 == 0) | (hours % 6 == 0), 37.0, np.nan)},
                          nan_to_null=True).with_columns(pl.col("hour").cast(pl.Int32))
    stays = pl.DataFrame({"stay_id": np.arange(1, n_stays + 1), "sepsis": np.zeros(n_stays, dtype=bool)})
    model = ObservationModel.for_catalog(("hr", "temperature"), catalog).fit(
        Cohort.from_frames(stays, hourly, source="test", catalog=catalog))
    rng = np.random.default_rng(0)
    n, length = 300, 36
    state = ObservationState(np.full((n, 2), 0.0), np.tile([80.0, 37.0], (n, 1)), model.draw_styles(n, rng),
                             first_hour=np.ones(n))
    simulated = np.tile(np.array([80.0, 37.0], dtype=np.float32), (n, length, 1))
    charted = np.isfinite(model.mask(simulated, np.tile(np.arange(1, length + 1), (n, 1)), state, rng))
    shares = charted[..., 1].mean(axis=1)  # per synthetic stay
    assert (shares > 0.8).mean() > 0.25 and (shares < 0.3).mean() > 0.25  # both kinds of stay, not one average
    assert charted[..., 1].mean() == pytest.approx(hourly["temperature"].is_not_null().mean(), abs=0.05)


def test_styles_keep_the_stays_joint_charting_and_sepsis(catalog):
    """Septic stays chart lactate with PaCO2 (a blood gas); of the others, half chart the liver panel (AST
    with bilirubin) and never a blood gas, half neither: drawn styles keep each stay's combination."""
    n_stays, n_hours = 120, 24
    stay = np.repeat(np.arange(n_stays), n_hours)
    hours = np.tile(np.arange(1, n_hours + 1), n_stays)
    septic, liver = stay < 40, (stay >= 40) & (stay % 2 == 0)
    gas = np.where(septic & (hours % 3 == 0), 1.5, np.nan)
    hourly = pl.DataFrame({"stay_id": stay + 1, "hour": hours, "hr": 80.0, "lactate": gas, "paco2": gas * 26.0,
                           "ast": np.where(liver & (hours % 12 == 0), 30.0, np.nan),
                           "bilirubin_total": np.where(liver & (hours % 12 == 0), 1.0, np.nan)},
                          nan_to_null=True).with_columns(pl.col("hour").cast(pl.Int32))
    stays = pl.DataFrame({"stay_id": np.arange(1, n_stays + 1), "sepsis": np.arange(n_stays) < 40})
    variables = ("hr", "lactate", "paco2", "ast", "bilirubin_total")
    model = ObservationModel.for_catalog(variables, catalog).fit(Cohort.from_frames(stays, hourly, source="test", catalog=catalog))
    rng = np.random.default_rng(0)
    n = 400
    new_septic = np.arange(n) < n // 2
    state = ObservationState(np.full((n, 5), 0.0), np.tile([80.0, 1.5, 39.0, 30.0, 1.0], (n, 1)),
                             model.draw_styles(n, rng, new_septic, n_hours=np.full(n, n_hours)), first_hour=np.ones(n))
    simulated = np.tile(np.array([80.0, 1.5, 39.0, 30.0, 1.0], dtype=np.float32), (n, n_hours, 1))
    charted = np.isfinite(model.mask(simulated, np.tile(np.arange(1, n_hours + 1), (n, 1)), state, rng)).any(axis=1)
    lactate, paco2, ast, bilirubin = (charted[:, variables.index(v)] for v in variables[1:])
    assert lactate[new_septic].mean() > 0.9 and not lactate[~new_septic].any()  # blood gases in septic stays only
    assert (lactate == paco2).mean() > 0.95 and (ast == bilirubin).mean() > 0.95  # panels stay whole
    assert not (ast & lactate).any()  # no stay of either kind charts both
    assert ast[~new_septic].mean() == pytest.approx(0.5, abs=0.1)
    leaf_stays = [tree.tree_.n_node_samples[tree.tree_.children_left == -1] for trees in model.style_trees_ for tree in trees]
    assert min(leaves.min() for leaves in leaf_stays) >= MIN_LEAF_STAYS  # no drawn style follows one training stay
    assert max(len(leaves) for leaves in leaf_stays) > 1  # the trees do split


def test_styles_without_sepsis_or_length_are_drawn_at_the_training_shares(rhythm_cohort, catalog):
    model = ObservationModel.for_catalog(("hr", "lactate"), catalog).fit(rhythm_cohort)
    styles = model.draw_styles(50, np.random.default_rng(1))
    assert styles.shape == (50, 2) and np.isin(styles, np.arange(N_STYLES * N_LENGTH_BANDS)).all()
    np.testing.assert_array_equal(styles, model.draw_styles(50, np.random.default_rng(1)))


def test_a_decile_charts_at_the_rate_of_its_length_band(catalog):
    """The least-charting tenth of short stays charts temperature every 6th hour, of long stays every 2nd:
    synthetic stays of the lowest decile chart at their own band's rate, not at a blend of both."""
    lengths = np.repeat([12, 48], 100)  # stays of two lengths, two length bands
    every = np.where(np.arange(200) % 10 == 0, np.where(lengths == 12, 6, 2), 1)  # one stay in ten charts rarely
    stay = np.repeat(np.arange(1, 201), lengths)
    hours = np.concatenate([np.arange(1, n + 1) for n in lengths])
    hourly = pl.DataFrame({"stay_id": stay, "hour": hours, "hr": 80.0,
                           "temperature": np.where(hours % np.repeat(every, lengths) == 0, 37.0, np.nan)},
                          nan_to_null=True).with_columns(pl.col("hour").cast(pl.Int32))
    stays = pl.DataFrame({"stay_id": np.arange(1, 201), "sepsis": np.zeros(200, dtype=bool)})
    model = ObservationModel.for_catalog(("hr", "temperature"), catalog).fit(
        Cohort.from_frames(stays, hourly, source="test", catalog=catalog))
    rng = np.random.default_rng(0)
    for length, rate in ((12, 1 / 6), (48, 1 / 2)):
        n = 400
        styles = model.draw_styles(n, rng, np.zeros(n, dtype=bool), n_hours=np.full(n, length))
        state = ObservationState(np.full((n, 2), np.nan), np.full((n, 2), np.nan), styles, first_hour=np.ones(n))
        simulated = np.tile(np.array([80.0, 37.0], dtype=np.float32), (n, length, 1))
        shares = np.isfinite(model.mask(simulated, np.tile(np.arange(1, length + 1), (n, 1)), state, rng))[..., 1].mean(axis=1)
        rare = styles[:, 1] % N_STYLES == 0  # the lowest decile
        assert rare.mean() == pytest.approx(0.1, abs=0.05)
        assert shares[rare].mean() == pytest.approx(rate, abs=0.08)
        assert shares[~rare].mean() > 0.9


def test_septic_stays_chart_more_as_their_onset_comes_on(catalog):
    """Septic training stays chart lactate every hour from 6 h before their onset (hour 30), every
    8th hour before; the others every 8th hour throughout. Masked with its onset a stay charts
    lactate in most of those hours; without one (not septic) at the background rate."""
    n_stays, n_hours, onset = 60, 40, 30
    hours = np.tile(np.arange(1, n_hours + 1), n_stays)
    septic = np.repeat(np.arange(n_stays) < n_stays // 2, n_hours)
    near = septic & (hours >= onset - 6) & (hours <= onset + 2)
    hourly = pl.DataFrame({"stay_id": np.repeat(np.arange(1, n_stays + 1), n_hours), "hour": hours,
                           "hr": np.full(len(hours), 80.0), "lactate": np.where(near | (hours % 8 == 0), 1.5, np.nan)},
                          nan_to_null=True).with_columns(pl.col("hour").cast(pl.Int32))
    stays = pl.DataFrame({"stay_id": np.arange(1, n_stays + 1), "sepsis": np.arange(n_stays) < n_stays // 2,
                          "sepsis_onset_hour": [onset if i < n_stays // 2 else None for i in range(n_stays)]})
    model = ObservationModel.for_catalog(("hr", "lactate"), catalog).fit(
        Cohort.from_frames(stays, hourly, source="test", catalog=catalog))
    n = 200
    simulated = np.full((n, n_hours, 2), 1.5, dtype=np.float32)
    window = slice(onset - 6 - 1, onset - 1)  # ICU hours 24 .. 29

    def lactate_share(onsets):
        rng = np.random.default_rng(1)
        state = ObservationState.opening(model.draw_styles(n, rng, np.full(n, onsets is not None)), np.ones(n), onsets)
        return np.isfinite(model.mask(simulated, np.tile(np.arange(1, n_hours + 1), (n, 1)), state, rng))[:, window, 1].mean()

    assert lactate_share(np.full(n, float(onset))) > 0.8
    assert lactate_share(None) < 0.3
    assert lactate_share(np.full(n, np.nan)) == lactate_share(None)  # NaN onsets: not septic


def test_a_drawn_septic_stay_s_charting_leads_up_to_its_drawn_suspicion_hour():
    """The generator hands the mask each stay's planned onset: its last hour less its onset_to_end,
    the hour its label is read around; none for a stay drawn as not septic."""
    drawn = pl.DataFrame({"first_hour": [1, 5, 1], "n_hours": [40, 20, 30], "onset_to_end": [3, 0, None],
                          "sepsis": [True, True, False]})
    np.testing.assert_array_equal(_planned_onsets(drawn), [37.0, 24.0, np.nan])
