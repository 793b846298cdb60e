"""The training cohort of a model directory: the cohort (and split) the twin learned from.

A model directory (``organsim train``) records its training split (fractions, seed, stays per
split, source) but not where the cohort lies, so the cohort directory is passed alongside and
checked against that record: the synthetic generator must learn only from the stays the twin
was trained on.
"""

from __future__ import annotations

from pathlib import Path

from organsim.agents.checkpoint import CONFIG_FILE, read_config
from organsim.data import Cohort
from organsim.utils.errors import DataError


def training_split(model_dir: str | Path, cohort_dir: str | Path) -> Cohort:
    """The train split of ``cohort_dir``, checked to be the split the model in ``model_dir`` trained on.

    An unsplit cohort is split with the fractions and seed the model recorded (as ``organsim
    train`` did); a split cohort must carry the same split settings and stay counts.

    Raises
    ------
    DataError
        When the model records no training split, or the cohort's source, split settings or
        per-split stay counts differ from the model's record (naming both).
    """
    model_dir, cohort_dir = Path(model_dir), Path(cohort_dir)
    record = read_config(model_dir).get("training", {}).get("split")
    config_file = model_dir / CONFIG_FILE
    if not record or not record.get("cohort_meta_split"):
        raise DataError("the model records no training split (train it with `organsim train`)", file=config_file)
    cohort = Cohort.load(cohort_dir)
    if record.get("source") not in (None, cohort.meta.get("source")):
        raise DataError(f"the model was trained on a {record['source']!r} cohort, {cohort_dir} is "
                        f"{cohort.meta.get('source')!r}", file=cohort_dir / "cohort.json")
    settings = record["cohort_meta_split"]
    if cohort.stays["split"].null_count() == cohort.stays.height:
        cohort = cohort.split(tuple(settings["fractions"]), seed=int(settings["seed"]))
    elif cohort.meta.get("split") != settings:
        raise DataError(f"the cohort's split {cohort.meta.get('split')} is not the model's training split {settings}",
                        file=cohort_dir / "cohort.json")
    counts = {s: int((cohort.stays["split"] == s).sum()) for s in record.get("stays", {})}
    if counts != record.get("stays", counts):
        raise DataError(f"the cohort's stays per split {counts} differ from the model's training record "
                        f"{record['stays']}: not the cohort the model was trained on", file=cohort_dir / "cohort.json")
    return cohort.subset(split="train")
