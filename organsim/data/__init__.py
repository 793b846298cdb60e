"""Layer 2: data. The canonical :class:`Cohort`, loaders (PhysioNet 2019, MEDS, Parquet/CSV), splits,
normalisation and value tokenizers."""

from organsim.data.cohort import SPLITS, Cohort, conform
from organsim.data.schema import table_schema

__all__ = ["SPLITS", "Cohort", "conform", "table_schema"]
