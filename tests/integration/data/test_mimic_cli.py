"""``organsim ingest mimic-iv`` on a one-stay tree in the official layout: summary, output, atomic failure."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

from organsim.cli import app
from organsim.data import Cohort

RUNNER = CliRunner()
FILES = {
    "icu/icustays.csv": "subject_id,hadm_id,stay_id,first_careunit,last_careunit,intime,outtime,los\n"
                        "1,2,3,Surgical Intensive Care Unit (SICU),Surgical Intensive Care Unit (SICU),"
                        "2150-01-01 00:00:00,2150-01-01 02:30:00,0.1\n",
    "hosp/patients.csv": "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n1,F,70,2150,2014 - 2016,\n",
    "hosp/admissions.csv": "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admit_provider_id,"
                           "admission_location,discharge_location,insurance,language,marital_status,race,edregtime,"
                           "edouttime,hospital_expire_flag\n1,2,2149-12-31 22:00:00,2150-01-03 00:00:00,,URGENT,,,,,,,,,,0\n",
    "icu/chartevents.csv.gz": "subject_id,hadm_id,stay_id,caregiver_id,charttime,storetime,itemid,value,valuenum,"
                              "valueuom,warning\n1,2,3,9,2150-01-01 00:30:00,,220045,95,95,bpm,0\n"
                              "1,2,3,9,2150-01-01 01:30:00,,220045,400,400,bpm,0\n",
    "hosp/labevents.csv": "labevent_id,subject_id,hadm_id,specimen_id,itemid,order_provider_id,charttime,storetime,value,"
                          "valuenum,valueuom,ref_range_lower,ref_range_upper,flag,priority,comments\n"
                          "1,1,2,5,50813,,2150-01-01 01:10:00,,4.2,4.2,mmol/L,0.5,2,abnormal,STAT,\n",
    "icu/outputevents.csv": "subject_id,hadm_id,stay_id,caregiver_id,charttime,storetime,itemid,value,valueuom\n",
    "icu/inputevents.csv.gz": "subject_id,hadm_id,stay_id,caregiver_id,starttime,endtime,storetime,itemid,amount,"
                              "amountuom,rate,rateuom,orderid,linkorderid,ordercategoryname,secondaryordercategoryname,"
                              "ordercomponenttypedescription,ordercategorydescription,patientweight,totalamount,"
                              "totalamountuom,isopenbag,continueinnextdept,statusdescription,originalamount,originalrate\n"
                              "1,2,3,9,2150-01-01 00:00:00,2150-01-01 02:00:00,,221906,12,mg,0.2,mcg/kg/min,,,"
                              "01-Drips,,,Continuous IV,60,,,0,0,FinishedRunning,,\n",
    "icu/procedureevents.csv": "subject_id,hadm_id,stay_id,caregiver_id,starttime,endtime,storetime,itemid,value,"
                               "valueuom,location,locationcategory,orderid,linkorderid,ordercategoryname,"
                               "ordercategorydescription,patientweight,isopenbag,continueinnextdept,statusdescription\n",
}


def _tree(root: Path) -> Path:
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".gz"):
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
    return root


def _run(*args: str | Path) -> tuple[int, str]:
    result = RUNNER.invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())  # undo rich's line wrapping


def test_ingest_mimic_iv_writes_a_cohort_with_treatments(tmp_path: Path) -> None:
    code, text = _run("ingest", "mimic-iv", _tree(tmp_path / "mimic"), "--out", tmp_path / "cohort")
    assert code == 0, text
    assert "mimic-iv cohort" in text and "stays │ 1" in text and "hours │ 3" in text
    assert "treatment hours │ 3" in text and "out of range (nulled) │ 1 (hr 1)" in text
    assert "sepsis3_onset" in text and "written to" in text
    cohort = Cohort.load(tmp_path / "cohort")
    assert cohort.stays.row(0, named=True) | {"source": None} == {
        "stay_id": 3, "subject_id": 1, "source": None, "age": 70.0, "sex": 0, "weight": 60.0, "unit": "SICU",
        "hosp_adm_hours": -2.0, "n_hours": 3, "sepsis": False, "sepsis_onset_hour": None, "death": False, "split": None}
    assert cohort.hourly["hr"].to_list() == [95.0, None, None]
    assert cohort.hourly["lactate"].fill_null(0).to_list() == pytest.approx([0, 4.2, 0])
    assert cohort.treatments["norepinephrine"].to_list() == pytest.approx([0.2, 0.2, 0.0])  # 00:00-02:00 at 0.2


def test_bad_input_writes_nothing(tmp_path: Path) -> None:
    src = _tree(tmp_path / "mimic")
    (src / "icu" / "icustays.csv").write_text(FILES["icu/icustays.csv"].replace("2150-01-01 02:30:00", "yesterday"))
    code, text = _run("ingest", "mimic-iv", src, "--out", tmp_path / "cohort")
    assert code == 2
    assert "icustays" in text and "row 1, column 'outtime': 'yesterday' is not a time" in text
    assert not (tmp_path / "cohort").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["mimic"]  # no temporary directory left behind either
