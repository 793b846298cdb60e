"""Layer 2: data. The canonical :class:`Cohort`, loaders (PhysioNet 2019, MEDS, MIMIC-IV, Parquet/CSV), exports, splits,
normalisation and value tokenizers."""

from organsim.data.cohort import SEPSIS_LABEL_LEAD_HOURS, SPLITS, Cohort, conform, sepsis_label_expr
from organsim.data.export import FORMATS as EXPORT_FORMATS
from organsim.data.export import (
    ExportSummary,
    export_cohort,
    is_synthetic,
    write_csv,
    write_physionet2019,
)
from organsim.data.meds import read_meds, write_meds
from organsim.data.mimic import read_mimic_iv
from organsim.data.physionet import read_physionet2019
from organsim.data.schema import table_schema
from organsim.data.tables import read_table
from organsim.data.validate import IngestReport

__all__ = [
    "EXPORT_FORMATS",
    "ExportSummary",
    "export_cohort",
    "is_synthetic",
    "write_csv",
    "write_physionet2019",
    "SEPSIS_LABEL_LEAD_HOURS",
    "SPLITS",
    "Cohort",
    "IngestReport",
    "conform",
    "read_meds",
    "read_mimic_iv",
    "read_physionet2019",
    "read_table",
    "sepsis_label_expr",
    "table_schema",
    "write_meds",
]
