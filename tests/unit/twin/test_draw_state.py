"""A rollout's draw state: PersistentDraws continued from former scores, Rollout.draws, and the synthetic
cohorts whose stays keep their draws from one rollout call to the next."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from twin_helpers import RangeCorrector

from organsim.synth import CohortSynthesizer, SynthesisConfig
from organsim.twin import PatientTwin
from organsim.twin.twin import PersistentDraws


@pytest.fixture(scope="module")
def twin(micro_model, catalog):
    return PatientTwin.load(micro_model, device="cpu", corrector=RangeCorrector(catalog), batch_size=16)


# ------------------------------------------------------------------------------- PersistentDraws
def test_continued_draws_follow_the_ar1_process_from_the_former_scores() -> None:
    n = 40_000
    previous = torch.randn((n, 3), generator=torch.Generator().manual_seed(5))
    draws = PersistentDraws(torch.tensor([1.0, 0.5, -0.2]), n, torch.Generator().manual_seed(6), previous=previous)
    uniform = draws.next()
    first = draws.score.numpy()  # (n, 3) normal scores of the first hour
    torch.testing.assert_close(uniform, torch.special.ndtr(draws.score), rtol=0, atol=0)
    np.testing.assert_array_equal(first[:, 0], previous[:, 0].numpy())  # rho 1: the former quantile, kept
    for column, rho in ((1, 0.5), (2, -0.2)):
        assert np.corrcoef(previous[:, column].numpy(), first[:, column])[0, 1] == pytest.approx(rho, abs=0.02)
        assert first[:, column].std() == pytest.approx(1.0, abs=0.02)  # still a standard normal score
    fresh = PersistentDraws(torch.tensor([1.0, 0.5, -0.2]), n, torch.Generator().manual_seed(6))
    fresh.next()
    assert abs(np.corrcoef(previous[:, 0].numpy(), fresh.score[:, 0].numpy())[0, 1]) < 0.02  # no state: a fresh process
    # a NaN starts that row's variable fresh: a standard normal score, unrelated to the former one
    partly = previous.clone()
    partly[:, 0] = np.nan
    restarted = PersistentDraws(torch.tensor([1.0, 0.5, -0.2]), n, torch.Generator().manual_seed(6), previous=partly)
    restarted.next()
    assert restarted.score[:, 0].std().item() == pytest.approx(1.0, abs=0.02)
    assert abs(np.corrcoef(previous[:, 0].numpy(), restarted.score[:, 0].numpy())[0, 1]) < 0.02
    for column, rho in ((1, 0.5), (2, -0.2)):  # the continued ones still follow their AR(1) processes
        assert np.corrcoef(previous[:, column].numpy(), restarted.score[:, column].numpy())[0, 1] == pytest.approx(rho, abs=0.02)


def test_fresh_scores_keep_their_within_hour_correlation_beside_continued_ones() -> None:
    """A lab starting afresh (NaN) among continued vitals: it takes the hour's own correlated score,
    so two fresh variables keep ``R`` whatever their ``rho`` (the AR(1) step of a fresh score would
    give ``rho_a rho_b R + sqrt((1 - rho_a^2)(1 - rho_b^2)) R``: -0.2 R for rho 1 and -0.2), and a
    fresh one keeps ``sqrt(1 - rho^2) R`` with a continued one (its innovation's share)."""
    n, r = 40_000, 0.6
    correlation = torch.tensor([[1.0, r, r], [r, 1.0, r], [r, r, 1.0]])
    persistence = torch.tensor([1.0, -0.2, -0.2])
    previous = torch.randn((n, 3), generator=torch.Generator().manual_seed(7))
    previous[:, :2] = np.nan  # variables 0 and 1 start afresh, variable 2 continues
    draws = PersistentDraws(persistence, n, torch.Generator().manual_seed(8), torch.linalg.cholesky(correlation),
                            previous=previous)
    draws.next()
    score = draws.score.numpy()
    assert np.corrcoef(score[:, 0], score[:, 1])[0, 1] == pytest.approx(r, abs=0.02)
    assert np.corrcoef(score[:, 0], score[:, 2])[0, 1] == pytest.approx(np.sqrt(1 - 0.2**2) * r, abs=0.02)
    assert score.std(0) == pytest.approx(np.ones(3), abs=0.02)
    draws.next()  # from the second hour on, every variable follows its own AR(1) process
    np.testing.assert_array_equal(draws.score[:, 0].numpy(), score[:, 0])  # rho 1: kept


def test_held_scores_stay_as_given_while_the_others_follow_their_processes() -> None:
    n = 20_000
    previous = torch.randn((n, 3), generator=torch.Generator().manual_seed(9))
    held = torch.zeros((n, 3), dtype=torch.bool)
    held[: n // 2, 2] = True  # the third variable held in half the rows (a lab not charted yet)
    draws = PersistentDraws(torch.tensor([0.0, 0.5, -0.2]), n, torch.Generator().manual_seed(10), previous=previous, held=held)
    for _ in range(3):
        uniform = draws.next()
        np.testing.assert_array_equal(draws.score[held].numpy(), previous[held].numpy())
        torch.testing.assert_close(uniform[held], torch.special.ndtr(previous[held]), rtol=0, atol=0)
    assert abs(np.corrcoef(previous[n // 2 :, 2].numpy(), draws.score[n // 2 :, 2].numpy())[0, 1]) < 0.03  # (-0.2)^3
    with pytest.raises(ValueError, match="held must be"):
        PersistentDraws(torch.zeros(3), n, torch.Generator(), held=held)  # nothing to hold
    with pytest.raises(ValueError, match="held must be"):
        PersistentDraws(torch.zeros(3), n, torch.Generator(), previous=torch.full((n, 3), float("nan")), held=held)


def test_former_scores_of_the_wrong_shape_or_not_finite_are_refused() -> None:
    with pytest.raises(ValueError, match=r"must be \(4, 3\)"):
        PersistentDraws(torch.zeros(3), 4, torch.Generator(), previous=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="finite"):
        PersistentDraws(torch.zeros(3), 1, torch.Generator(), previous=torch.tensor([[0.0, np.inf, 0.0]]))


@pytest.mark.parametrize("correlated", [False, True])
def test_keyed_redraws_leave_every_later_hour_s_random_numbers_as_they_were(correlated: bool) -> None:
    """Common random numbers: how often the corrector redraws in one rollout (say, under one
    treatment strategy) does not shift the hourly draws of the rollout beside it (another strategy)."""
    n, persistence = 50, torch.tensor([0.0, 0.5, 1.0])
    cholesky = torch.linalg.cholesky(torch.tensor([[1.0, 0.6, 0.2], [0.6, 1.0, 0.1], [0.2, 0.1, 1.0]])) if correlated else None

    def make(key):
        return PersistentDraws(persistence, n, torch.Generator().manual_seed(4), cholesky, redraw_key=key)

    flagged = np.zeros((n, 3), dtype=bool)
    flagged[::3, 0] = True
    redrawing, quiet = make((9, 0)), make((9, 0))
    for hour in range(4):
        uniform = redrawing.next()
        torch.testing.assert_close(uniform, quiet.next(), rtol=0, atol=0)
        for _ in range(hour):  # 0, 1, 2, 3 redraw rounds in this hour, none beside it
            redrawing.redraw(redrawing.score, flagged)
    # the same key gives the same redraws; each round and hour its own numbers
    again = make((9, 0))
    again.next()
    one, _ = again.redraw(again.score, flagged)
    two, _ = again.redraw(again.score, flagged)
    replay = make((9, 0))
    replay.next()
    torch.testing.assert_close(replay.redraw(replay.score, flagged)[0], one, rtol=0, atol=0)
    assert not torch.equal(one[flagged], two[flagged])
    # without a key, a redraw takes its numbers from the hourly stream and shifts every later hour
    shifted, plain = make(None), make(None)
    shifted.next(), plain.next()
    shifted.redraw(shifted.score, flagged)
    assert not torch.equal(shifted.next(), plain.next())


# ------------------------------------------------------------------------------- PatientTwin.rollout
def test_a_rollout_continued_with_its_draws_keeps_the_labs_quantiles_as_one_rollout_does(twin, test_batch):
    labs = ~twin.runtime.feedback  # persistence 1: each sample keeps its lab quantiles
    assert labs.any()
    # rows simulated together (16 = 8 problems x 2 samples): their first scores open the rollout's random stream
    test_batch = test_batch.select(np.arange(8))
    first = twin.rollout(test_batch, 3, n_samples=2, seed=0)
    assert first.draws.shape == (2, test_batch.size, len(twin.variables)) and first.draws.dtype == np.float32
    one_call = twin.rollout(test_batch, 6, n_samples=2, seed=0)
    np.testing.assert_array_equal(one_call.draws[..., labs], first.draws[..., labs])  # within one call
    continued = twin.rollout(test_batch, 3, n_samples=2, seed=1, draws=first.draws)
    np.testing.assert_array_equal(continued.draws[..., labs], first.draws[..., labs])  # across two calls
    fresh = twin.rollout(test_batch, 3, n_samples=2, seed=1)
    assert not np.array_equal(fresh.draws[..., labs], first.draws[..., labs])  # without the state: new quantiles
    assert not np.array_equal(continued.values, fresh.values)
    again = twin.rollout(test_batch, 3, n_samples=2, seed=1, draws=first.draws)
    np.testing.assert_array_equal(again.values, continued.values)  # the same state and seed: the same rollout
    with pytest.raises(ValueError, match="draws must be"):
        twin.rollout(test_batch, 3, n_samples=1, seed=1, draws=first.draws)
    # held scores: given, kept for every hour, returned as given (a vital held too, by the row's mask)
    hold = np.zeros(first.draws.shape, dtype=bool)
    hold[:, ::2, :] = True
    held = twin.rollout(test_batch, 3, n_samples=2, seed=1, draws=first.draws, hold_draws=hold)
    np.testing.assert_array_equal(held.draws[hold], first.draws[hold])
    assert not np.array_equal(held.draws[~hold & twin.runtime.feedback], first.draws[~hold & twin.runtime.feedback])
    with pytest.raises(ValueError, match="hold_draws must be"):
        twin.rollout(test_batch, 3, n_samples=2, seed=1, hold_draws=hold)


# ------------------------------------------------------------------------------- synthetic cohorts
class RecordingTwin:
    """The twin, recording the stays, the draw states given and held and the draw states returned of every rollout call."""

    def __init__(self, twin: PatientTwin) -> None:
        self.twin = twin
        self.agents = twin.agents
        self.calls: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]] = []

    def rollout(self, batch, horizon, **options):
        result = self.twin.rollout(batch, horizon, **options)
        self.calls.append((batch.stay_ids.copy(), options.get("draws"), options.get("hold_draws"), result.draws))
        return result


def test_synthesis_hands_each_stay_its_former_vital_draws_and_its_lab_levels_and_stays_deterministic(
        twin, engine_cohort, monkeypatch):
    synthesizer = CohortSynthesizer.fit(engine_cohort.subset(split="train"), initial_hours=2)
    sample = synthesizer.initial.sample

    def staggered(*args, **kwargs) -> pl.DataFrame:
        """The drawn stays, ending after 4 to 9 hours (every engine stay lasts 36): stays end between calls."""
        drawn = sample(*args, **kwargs)
        return drawn.with_columns(n_hours=pl.Series(4 + np.arange(drawn.height) % 6).cast(drawn["n_hours"].dtype))

    monkeypatch.setattr(synthesizer.initial, "sample", staggered)
    config = SynthesisConfig(patients=6, max_hours=9, seed=3, septic_fraction=0.5, context_hours=6, max_rounds=1)
    recording = RecordingTwin(twin)
    result = synthesizer.generate(recording, config)
    vitals = twin.runtime.feedback  # fed back: their draws continue; a lab holds its stay's level until charted, then starts fresh
    ended: dict[int, np.ndarray] = {}  # stay -> the normal scores its last rollout call ended with
    levels: dict[int, np.ndarray] = {}  # stay -> the level scores its labs were first held at
    held_calls = 0
    for stays, given, held, returned in recording.calls:
        assert given.shape == held.shape == (1, len(stays), len(twin.variables))
        assert not held[..., vitals].any()
        np.testing.assert_array_equal(held[..., ~vitals], np.isfinite(given[..., ~vitals]))  # a lab's score: held or fresh
        held_calls += int(held.any())
        for row, stay in enumerate(stays.tolist()):
            if stay in ended:
                np.testing.assert_array_equal(given[0, row, vitals], ended[stay][vitals])  # its own state, after stays ended
            else:
                assert np.isnan(given[0, row, vitals]).all()  # the first call starts the vitals afresh
            mine = levels.setdefault(stay, given[0, row].copy())
            np.testing.assert_array_equal(given[0, row, held[0, row]], mine[held[0, row]])  # the same level until charted
            np.testing.assert_array_equal(returned[0, row, held[0, row]], mine[held[0, row]])  # held through the call
        ended.update({stay: returned[0, row] for row, stay in enumerate(stays.tolist())})
    assert held_calls > 0
    sizes = [len(stays) for stays, _, _, _ in recording.calls]
    assert len(sizes) > 2 and sizes[-1] < sizes[0]  # stays ended between calls
    again = synthesizer.generate(twin, config)
    assert result.cohort.hourly.equals(again.cohort.hourly) and result.cohort.stays.equals(again.cohort.stays)
