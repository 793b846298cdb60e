"""Per-stay random streams, drawn once before a run so that any re-run sees the same randomness.

Every random number the engine uses comes from ``numpy.random.default_rng([seed, stay_id, stream])``
with one stream per purpose. A stay's draws therefore depend on (seed, stay_id, stream) only: not on
which other stays are simulated with it, nor on the treatment it receives. That is what makes the
oracle exact: re-running a patient under another strategy replays the same process noise, the same
measurement errors, the same measurement-timing draws and the same clinician coin flips, and only
the consequences of the different treatment differ.

Streams
-------
``STREAM_PATIENTS`` (0)     patient parameters (:mod:`organsim.physiology.patients`)
``STREAM_PROCESS`` (1)      physiological process noise: Ornstein-Uhlenbeck disturbances, one value
                            per hour and channel (:data:`PROCESS_CHANNELS`)
``STREAM_MEASUREMENT`` (2)  measurement errors: one standard normal per ICU hour and variable
``STREAM_OBSERVATION`` (3)  measurement timing: uniforms per ICU hour, plus per-stay uniforms
``STREAM_POLICY`` (4)       treatment-policy randomness: uniforms per ICU hour, plus per-stay uniforms
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STREAM_PATIENTS = 0
STREAM_PROCESS = 1
STREAM_MEASUREMENT = 2
STREAM_OBSERVATION = 3
STREAM_POLICY = 4

PROCESS_CHANNELS: tuple[tuple[str, float], ...] = (
    ("vascular_tone", 0.85),
    ("heart_rate", 0.7),
    ("respiratory_drive", 0.7),
    ("temperature", 0.8),
    ("glucose", 0.75),
    ("oxygenation", 0.9),
    ("electrolytes", 0.95),
    ("venous_return", 0.85),
    ("lab_drift", 0.97),
)
"""(name, hour-to-hour autocorrelation) of each process-noise channel; each is a stationary
standard-normal AR(1) (discretised Ornstein-Uhlenbeck) sequence the model scales in its own units."""

PROCESS_INDEX = {name: i for i, (name, _) in enumerate(PROCESS_CHANNELS)}
N_POLICY_HOURLY = 8
N_POLICY_STAY = 16
N_OBSERVATION_STAY = 16


def stay_generator(seed: int, stay_id: int, stream: int) -> np.random.Generator:
    """The generator of one stay's stream; ``seed`` and ``stay_id`` must be non-negative integers."""
    if seed < 0 or stay_id < 0:
        raise ValueError(f"seed and stay_id must be non-negative integers, got seed={seed}, stay_id={stay_id}")
    return np.random.default_rng([int(seed), int(stay_id), int(stream)])


@dataclass(frozen=True)
class NoiseBank:
    """All randomness of a run, per stay.

    Attributes
    ----------
    process
        ``(n, total_hours, n_channels)`` AR(1) disturbances, standard-normal marginals, one row per
        engine hour from the first pre-ICU hour to the last ICU hour.
    measurement
        ``(n, hours, n_variables)`` standard normals (float32), ICU hours only.
    observation
        ``(n, hours, n_observation_uniforms)`` uniforms on [0, 1) (float32) deciding what is
        measured when.
    observation_stay
        ``(n, N_OBSERVATION_STAY)`` per-stay uniforms of the observation model (e.g. which stays get
        liver tests at all).
    policy
        ``(n, hours, N_POLICY_HOURLY)`` uniforms (float32) for treatment policies (``ObservedState.random``).
    policy_stay
        ``(n, N_POLICY_STAY)`` per-stay uniforms for treatment policies (``ObservedState.random_stay``).
    """

    process: np.ndarray
    measurement: np.ndarray
    observation: np.ndarray
    observation_stay: np.ndarray
    policy: np.ndarray
    policy_stay: np.ndarray

    @classmethod
    def draw(
        cls,
        stay_ids: np.ndarray,
        *,
        seed: int,
        total_hours: int,
        hours: int,
        n_variables: int,
        n_observation_uniforms: int,
    ) -> NoiseBank:
        """Draw every stream for ``stay_ids``; ``total_hours`` counts pre-ICU plus ICU hours."""
        n = len(stay_ids)
        n_channels = len(PROCESS_CHANNELS)
        innovations = np.empty((n, total_hours, n_channels))
        measurement = np.empty((n, hours, n_variables), dtype=np.float32)
        observation = np.empty((n, hours, n_observation_uniforms), dtype=np.float32)
        observation_stay = np.empty((n, N_OBSERVATION_STAY))
        policy = np.empty((n, hours, N_POLICY_HOURLY), dtype=np.float32)
        policy_stay = np.empty((n, N_POLICY_STAY))
        for i, stay_id in enumerate(np.asarray(stay_ids, dtype=np.int64)):
            innovations[i] = stay_generator(seed, int(stay_id), STREAM_PROCESS).standard_normal((total_hours, n_channels))
            measurement[i] = stay_generator(seed, int(stay_id), STREAM_MEASUREMENT).standard_normal(
                (hours, n_variables), dtype=np.float32
            )
            obs_rng = stay_generator(seed, int(stay_id), STREAM_OBSERVATION)
            observation_stay[i] = obs_rng.random(N_OBSERVATION_STAY)
            observation[i] = obs_rng.random((hours, n_observation_uniforms), dtype=np.float32)
            pol_rng = stay_generator(seed, int(stay_id), STREAM_POLICY)
            policy_stay[i] = pol_rng.random(N_POLICY_STAY)
            policy[i] = pol_rng.random((hours, N_POLICY_HOURLY), dtype=np.float32)
        process = np.empty_like(innovations)
        _continue_ar1(process, innovations, 0)
        return cls(
            process=process,
            measurement=measurement,
            observation=observation,
            observation_stay=observation_stay,
            policy=policy,
            policy_stay=policy_stay,
        )

    def refreshed(self, stay_ids: np.ndarray, *, seed: int, from_hour: int, pre_icu_hours: int, draw: Sequence[int]) -> NoiseBank:
        """This bank with every hourly stream redrawn from ICU hour ``from_hour`` on: another future
        the same patients could have had from there.

        Earlier hours keep their noise (the history is the same), the per-stay uniforms are kept
        (they describe the stay), and the process disturbances go on as the same AR(1) processes
        from the last kept hour with fresh innovations. The fresh numbers come from
        ``default_rng([seed, stay_id, stream, *draw])``: ``draw`` (non-negative integers, e.g.
        ``(run seed, sample)``) names the alternative future, the same ``draw`` gives the same one.
        """
        if not 1 <= from_hour <= self.measurement.shape[1]:
            raise ValueError(f"from_hour must be an ICU hour in 1..{self.measurement.shape[1]}, got {from_hour}")
        if not draw or any(int(d) < 0 for d in draw):
            raise ValueError(f"draw must be non-empty non-negative integers, got {list(draw)}")
        start = pre_icu_hours + from_hour - 1  # process row of ICU hour from_hour
        process, measurement = self.process.copy(), self.measurement.copy()
        observation, policy = self.observation.copy(), self.policy.copy()
        innovations = np.empty_like(process)
        later = slice(from_hour - 1, None)
        key = [int(d) for d in draw]
        for i, stay_id in enumerate(np.asarray(stay_ids, dtype=np.int64)):
            def fresh(stream: int, stay: int = int(stay_id)) -> np.random.Generator:
                return np.random.default_rng([int(seed), stay, stream, *key])

            innovations[i, start:] = fresh(STREAM_PROCESS).standard_normal((process.shape[1] - start, process.shape[2]))
            measurement[i, later] = fresh(STREAM_MEASUREMENT).standard_normal(measurement[i, later].shape, dtype=np.float32)
            observation[i, later] = fresh(STREAM_OBSERVATION).random(observation[i, later].shape, dtype=np.float32)
            policy[i, later] = fresh(STREAM_POLICY).random(policy[i, later].shape, dtype=np.float32)
        _continue_ar1(process, innovations, start)
        return NoiseBank(process=process, measurement=measurement, observation=observation,
                         observation_stay=self.observation_stay, policy=policy, policy_stay=self.policy_stay)


def _continue_ar1(process: np.ndarray, innovations: np.ndarray, start: int) -> None:
    """Fill ``process[:, start:]`` (``(n, hours, channels)``) in place with the standard-normal AR(1)
    processes of :data:`PROCESS_CHANNELS` driven by ``innovations[:, start:]``, continuing from
    ``process[:, start - 1]`` (``start = 0`` begins each at its first innovation)."""
    rho = np.array([r for _, r in PROCESS_CHANNELS])
    scale = np.sqrt(1.0 - rho**2)
    if start == 0:
        process[:, 0] = innovations[:, 0]
        start = 1
    for t in range(start, process.shape[1]):
        process[:, t] = rho * process[:, t - 1] + scale * innovations[:, t]
