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
    # a NaN starts that row's variable fresh: the score a rollout without state starts with
    partly = previous.clone()
    partly[:, 0] = np.nan
    restarted = PersistentDraws(torch.tensor([1.0, 0.5, -0.2]), n, torch.Generator().manual_seed(6), previous=partly)
    restarted.next()
    torch.testing.assert_close(restarted.score[:, 0], fresh.score[:, 0], rtol=0, atol=0)
    np.testing.assert_array_equal(restarted.score[:, 1:].numpy(), first[:, 1:])


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


# ------------------------------------------------------------------------------- synthetic cohorts
class RecordingTwin:
    """The twin, recording the stays and the draw states given and returned of every rollout call."""

    def __init__(self, twin: PatientTwin) -> None:
        self.twin = twin
        self.agents = twin.agents
        self.calls: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []

    def rollout(self, batch, horizon, **options):
        result = self.twin.rollout(batch, horizon, **options)
        self.calls.append((batch.stay_ids.copy(), options.get("draws"), result.draws))
        return result


def test_synthesis_hands_each_stay_its_former_vital_draws_and_stays_deterministic(twin, engine_cohort, monkeypatch):
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
    vitals = twin.runtime.feedback  # fed back: their draws continue; the labs' start fresh every call
    assert [given is None for _, given, _ in recording.calls] == [True] + [False] * (len(recording.calls) - 1)  # one batch
    ended: dict[int, np.ndarray] = {}  # stay -> the normal scores its last rollout call ended with
    for stays, given, returned in recording.calls:
        if given is not None:
            assert given.shape == (1, len(stays), len(twin.variables))
            assert np.isnan(given[..., ~vitals]).all()
            for row, stay in enumerate(stays.tolist()):
                np.testing.assert_array_equal(given[0, row, vitals], ended[stay][vitals])  # its own state, after stays ended
        ended.update({stay: returned[0, row] for row, stay in enumerate(stays.tolist())})
    sizes = [len(stays) for stays, _, _ in recording.calls]
    assert len(sizes) > 2 and sizes[-1] < sizes[0]  # stays ended between calls
    again = synthesizer.generate(twin, config)
    assert result.cohort.hourly.equals(again.cohort.hourly) and result.cohort.stays.equals(again.cohort.stays)
