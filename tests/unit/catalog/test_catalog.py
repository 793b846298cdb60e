"""The catalog loads from data_schemas/ and rejects malformed YAML at load time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from organsim.catalog import SYSTEMS, load_catalog
from organsim.catalog.loader import default_schema_dir
from organsim.utils.errors import CatalogError

# The starting set of ../shared/DESIGN.md, system by system, with its PhysioNet 2019 column.
DESIGN_VARIABLES = {
    "cardiovascular": {"hr": "HR", "sbp": "SBP", "dbp": "DBP", "map": "MAP", "cvp": None, "troponin_i": "TroponinI"},
    "respiratory": {"resp_rate": "Resp", "spo2": "O2Sat", "sao2": "SaO2", "pao2": None, "paco2": "PaCO2",
                    "fio2": "FiO2", "etco2": "EtCO2"},
    "renal": {"creatinine": "Creatinine", "bun": "BUN", "potassium": "Potassium", "urine_output": None},
    "hepatic": {"bilirubin_total": "Bilirubin_total", "bilirubin_direct": "Bilirubin_direct", "ast": "AST",
                "alt": None, "alkaline_phosphatase": "Alkalinephos"},
    "immune": {"temperature": "Temp", "wbc": "WBC", "crp": None, "procalcitonin": None},
    "nervous": {"gcs": None},
    "hematologic": {"hemoglobin": "Hgb", "hematocrit": "Hct"},
    "coagulation": {"platelets": "Platelets", "ptt": "PTT", "inr": None, "fibrinogen": "Fibrinogen"},
    "metabolic": {"glucose": "Glucose", "lactate": "Lactate", "ph": "pH", "hco3": "HCO3", "base_excess": "BaseExcess",
                  "sodium": None, "chloride": "Chloride", "calcium": "Calcium", "magnesium": "Magnesium",
                  "phosphate": "Phosphate"},
}


def test_catalog_has_the_design_variables(catalog):
    assert tuple(s.code for s in catalog.systems) == SYSTEMS
    for system, variables in DESIGN_VARIABLES.items():
        assert [v.code for v in catalog.variables_of(system)] == list(variables)
        for code, column in variables.items():
            assert catalog.variable(code).physionet == column
    assert catalog.treatment_codes == ("iv_fluid_ml", "norepinephrine", "antibiotic", "mechanical_ventilation")
    assert {s.code for s in catalog.statics} >= {"age", "sex", "weight", "hosp_adm_hours"}


def test_physionet_mapping_covers_every_signal_column(catalog):
    columns = ("HR O2Sat Temp SBP MAP DBP Resp EtCO2 BaseExcess HCO3 FiO2 pH PaCO2 SaO2 AST BUN Alkalinephos "
               "Calcium Chloride Creatinine Bilirubin_direct Glucose Lactate Magnesium Phosphate Potassium "
               "Bilirubin_total TroponinI Hct Hgb PTT WBC Fibrinogen Platelets Age Gender HospAdmTime").split()
    assert sorted(catalog.physionet_columns) == sorted(columns)


def test_clinical_cutoffs_are_in_the_catalog(catalog):
    assert 65 in catalog.variable("map").cutoffs
    assert {2.0, 4.0} <= set(catalog.variable("lactate").cutoffs)
    assert {90, 94} <= set(catalog.variable("spo2").cutoffs)
    assert {50, 100} <= set(catalog.variable("platelets").cutoffs)
    assert {1.2, 2.0, 3.5} <= set(catalog.variable("creatinine").cutoffs)
    assert {1.2, 2.0, 6.0} <= set(catalog.variable("bilirubin_total").cutoffs)
    assert {6, 10, 13} <= set(catalog.variable("gcs").cutoffs)


def test_catalog_objects_are_frozen(catalog):
    with pytest.raises(Exception, match="frozen"):
        catalog.variable("hr").unit = "Hz"


def test_lookup_errors_name_the_known_codes(catalog):
    with pytest.raises(KeyError, match="unknown variable 'heart_rate'.*hr"):
        catalog.variable("heart_rate")
    with pytest.raises(KeyError, match="unknown system"):
        catalog.variables_of("skin")


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    target = tmp_path / "data_schemas"
    shutil.copytree(default_schema_dir(), target)
    return target


def _edit(schema_dir: Path, name: str, edit) -> None:
    path = schema_dir / name
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _variable(data: dict, code: str) -> dict:
    return next(v for v in data["variables"] if v["code"] == code)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: _variable(d, "map").update(plausable=[0, 300]), r"variables\[3\] \(code 'map'\)\.plausable: Extra inputs"),
        (lambda d: _variable(d, "map").update(system="cardio"), r"code 'map'\)\.system"),
        (lambda d: _variable(d, "map").update(plausible=[300, 20]), "low > high"),
        (lambda d: _variable(d, "map").update(normal=[10, 400]), "outside the plausible range"),
        (lambda d: _variable(d, "map").update(cutoffs=[70, 65]), "strictly ascending"),
        (lambda d: _variable(d, "map").update(kind="vitals"), r"code 'map'\)\.kind"),
        (lambda d: _variable(d, "spo2").update(saturates=["top"]), r"code 'spo2'\)\.saturates"),
        (lambda d: _variable(d, "hr").update(code="map"), "codes used more than once: \\['map'\\]"),
        (lambda d: d["variables"].pop(next(i for i, v in enumerate(d["variables"]) if v["code"] == "gcs")),
         "systems without variables: \\['nervous'\\]"),
        (lambda d: d.update(extra_section=[]), "unknown top-level keys \\['extra_section'\\]"),
    ],
)
def test_malformed_variables_yaml_fails_at_load(schema_copy, edit, message):
    _edit(schema_copy, "variables.yaml", edit)
    with pytest.raises(CatalogError, match=message):
        load_catalog(schema_copy)


def test_event_on_unknown_variable_fails(schema_copy):
    _edit(schema_copy, "events.yaml", lambda d: d["events"][0].update(variable="mean_pressure"))
    with pytest.raises(CatalogError, match="event 'hypotension' reads unknown variables \\['mean_pressure'\\]"):
        load_catalog(schema_copy)


def test_binary_treatment_range_and_version_mismatch(schema_copy, tmp_path):
    _edit(schema_copy, "treatments.yaml", lambda d: d["treatments"][2].update(plausible=[0, 2]))
    with pytest.raises(CatalogError, match="binary treatment"):
        load_catalog(schema_copy)
    other = tmp_path / "other"
    shutil.copytree(default_schema_dir(), other)
    _edit(other, "events.yaml", lambda d: d.update(version="9.9.9"))
    with pytest.raises(CatalogError, match="version '9.9.9' differs"):
        load_catalog(other)


def test_missing_or_broken_file(schema_copy):
    (schema_copy / "tables" / "hourly.yaml").unlink()
    with pytest.raises(CatalogError, match="hourly.yaml is missing"):
        load_catalog(schema_copy)
    (schema_copy / "tables" / "hourly.yaml").write_text("table: [unclosed\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(schema_copy)
