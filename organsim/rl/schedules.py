"""Curriculum schedules for RL training."""

from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True)
class HorizonSchedule:
    """ScalingInter-style rollout horizon that grows in stages.

    The horizon is ``horizons[0]`` for the first ``steps_per_stage`` training steps, then
    ``horizons[1]``, and so on; it stays at ``horizons[-1]`` after the last stage.

    Attributes
    ----------
    horizons : tuple of int
        Horizon of each stage (e.g. hours to roll out), positive and non-decreasing.
    steps_per_stage : int
        Training steps spent in each stage but the last, >= 1.

    Examples
    --------
    >>> schedule = HorizonSchedule(horizons=(6, 12, 24), steps_per_stage=100)
    >>> schedule(0), schedule(99), schedule(100), schedule(10_000)
    (6, 6, 12, 24)
    """

    horizons: tuple[int, ...] = (6, 12, 24)
    steps_per_stage: int = 100

    def __post_init__(self) -> None:
        horizons = tuple(self.horizons)
        object.__setattr__(self, "horizons", horizons)
        if not horizons or any(h < 1 for h in horizons):
            raise ValueError(
                f"HorizonSchedule.horizons={horizons} must be a non-empty list of ints >= 1"
            )
        if any(later < earlier for earlier, later in pairwise(horizons)):
            raise ValueError(f"HorizonSchedule.horizons={horizons} must be non-decreasing")
        if self.steps_per_stage < 1:
            raise ValueError(f"HorizonSchedule.steps_per_stage={self.steps_per_stage} must be >= 1")

    def stage(self, step: int) -> int:
        """Index of the stage that training step ``step`` (>= 0) belongs to."""
        if step < 0:
            raise ValueError(f"HorizonSchedule: step={step} must be >= 0")
        return min(step // self.steps_per_stage, len(self.horizons) - 1)

    def __call__(self, step: int) -> int:
        """Rollout horizon at training step ``step``."""
        return self.horizons[self.stage(step)]
