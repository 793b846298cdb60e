"""MIMIC-IV loader on a tiny tree in the official layout, with golden values worked out by hand.

Three stays: 300 (subject 10, 10:30 -> 14:10, four ICU hours starting at :30), 301 (subject 11,
25 hours) and 302 (subject 10 again, six hours, two months after stay 300).
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import polars as pl
import pytest

from organsim.data.mimic import read_mimic_iv
from organsim.utils.errors import DataError

HEADERS = {
    "icu/icustays": "subject_id,hadm_id,stay_id,first_careunit,last_careunit,intime,outtime,los",
    "hosp/patients": "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod",
    "hosp/admissions": "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,admit_provider_id,"
                       "admission_location,discharge_location,insurance,language,marital_status,race,edregtime,"
                       "edouttime,hospital_expire_flag",
    "icu/chartevents": "subject_id,hadm_id,stay_id,caregiver_id,charttime,storetime,itemid,value,valuenum,valueuom,warning",
    "hosp/labevents": "labevent_id,subject_id,hadm_id,specimen_id,itemid,order_provider_id,charttime,storetime,value,"
                      "valuenum,valueuom,ref_range_lower,ref_range_upper,flag,priority,comments",
    "icu/outputevents": "subject_id,hadm_id,stay_id,caregiver_id,charttime,storetime,itemid,value,valueuom",
    "icu/inputevents": "subject_id,hadm_id,stay_id,caregiver_id,starttime,endtime,storetime,itemid,amount,amountuom,"
                       "rate,rateuom,orderid,linkorderid,ordercategoryname,secondaryordercategoryname,"
                       "ordercomponenttypedescription,ordercategorydescription,patientweight,totalamount,"
                       "totalamountuom,isopenbag,continueinnextdept,statusdescription,originalamount,originalrate",
    "icu/procedureevents": "subject_id,hadm_id,stay_id,caregiver_id,starttime,endtime,storetime,itemid,value,valueuom,"
                           "location,locationcategory,orderid,linkorderid,ordercategoryname,ordercategorydescription,"
                           "patientweight,isopenbag,continueinnextdept,statusdescription,ORIGINALAMOUNT,ORIGINALRATE",
}
COMPRESSED = {"icu/chartevents", "hosp/labevents", "icu/inputevents"}
"""Tables written as .csv.gz; the others as .csv."""

D1, D2, D3 = "2180-01-01", "2150-06-01", "2180-03-02"
HR, TEMP_F, TEMP_C, FIO2, EYE, VERBAL, MOTOR, WEIGHT = 220045, 223761, 223762, 223835, 220739, 223900, 223901, 226512
CREATININE, LACTATE, FOLEY = 50912, 50813, 226559
NACL, LR, NOREPINEPHRINE, EPINEPHRINE, VASOPRESSIN, PHENYLEPHRINE, VANCOMYCIN = (
    225158, 225828, 221906, 221289, 222315, 221749, 225798)


def chart(stay: int, time: str, itemid: int, valuenum: object, value: object = None) -> dict:
    return {"subject_id": 11 if stay == 301 else 10, "stay_id": stay, "charttime": time, "itemid": itemid,
            "value": valuenum if value is None else value, "valuenum": valuenum}


def tables() -> dict[str, list[dict]]:
    """The tree's rows (columns not named are empty)."""
    return {
        "icu/icustays": [
            {"subject_id": 10, "hadm_id": 200, "stay_id": 300, "first_careunit": "Medical Intensive Care Unit (MICU)",
             "intime": f"{D1} 10:30:00", "outtime": f"{D1} 14:10:00"},
            {"subject_id": 11, "hadm_id": 201, "stay_id": 301, "first_careunit": "Trauma SICU (TSICU)",
             "intime": f"{D2} 08:00:00", "outtime": "2150-06-02 08:00:00"},
            {"subject_id": 10, "hadm_id": 202, "stay_id": 302,
             "first_careunit": "Cardiac Vascular Intensive Care Unit (CVICU)",
             "intime": f"{D3} 00:00:00", "outtime": f"{D3} 05:00:00"},
        ],
        "hosp/patients": [
            {"subject_id": 10, "gender": "M", "anchor_age": 60, "anchor_year": 2178},
            {"subject_id": 11, "gender": "F", "anchor_age": 45, "anchor_year": 2150},
            {"subject_id": 12, "gender": "F", "anchor_age": 30, "anchor_year": 2120},
        ],
        "hosp/admissions": [
            {"subject_id": 10, "hadm_id": 200, "admittime": f"{D1} 06:30:00", "hospital_expire_flag": 0},
            {"subject_id": 11, "hadm_id": 201, "admittime": f"{D2} 08:30:00", "hospital_expire_flag": 1},
            {"subject_id": 10, "hadm_id": 202, "admittime": "2180-03-01 12:00:00", "hospital_expire_flag": 0},
        ],
        "icu/chartevents": [
            chart(300, f"{D1} 10:00:00", HR, 70),  # before intime: dropped
            chart(300, f"{D1} 10:40:00", WEIGHT, 80),
            chart(300, f"{D1} 10:45:00", HR, 80),
            chart(300, f"{D1} 10:45:00", EYE, 3), chart(300, f"{D1} 10:45:00", VERBAL, 4),
            chart(300, f"{D1} 10:45:00", MOTOR, 6),
            chart(300, f"{D1} 11:00:00", HR, 90),
            chart(300, f"{D1} 11:00:00", TEMP_F, 98.6),
            chart(300, f"{D1} 11:05:00", HR, "", "Unable to assess"),  # text only: skipped
            chart(300, f"{D1} 11:10:00", TEMP_C, 37.4),
            chart(300, f"{D1} 11:20:00", EYE, 4),  # the hour's last eye score
            chart(300, f"{D1} 11:20:00", 999999, "abc"),  # not a catalog item: never parsed
            chart(300, f"{D1} 11:40:00", HR, 100),
            chart(300, f"{D1} 11:45:00", EYE, 2),  # hour 2 has no verbal/motor: no GCS
            chart(300, f"{D1} 12:00:00", HR, 300),  # above 280: nulled
            chart(300, f"{D1} 12:00:00", FIO2, 50),
            chart(300, f"{D1} 13:00:00", FIO2, 0.4),
            chart(301, f"{D2} 09:15:00", HR, 110),
        ],
        "hosp/labevents": [
            {"labevent_id": 1, "subject_id": 10, "hadm_id": 200, "itemid": CREATININE, "charttime": f"{D1} 12:15:00",
             "value": 1.2, "valuenum": 1.2, "comments": 'drawn late, "line", fine'},
            {"labevent_id": 2, "subject_id": 10, "hadm_id": 202, "itemid": CREATININE, "charttime": f"{D3} 02:30:00",
             "value": 2.0, "valuenum": 2.0},
            {"labevent_id": 3, "subject_id": 10, "itemid": CREATININE, "charttime": "2180-02-01 09:00:00",
             "value": 0.9, "valuenum": 0.9},  # between the stays: no ICU stay
            {"labevent_id": 4, "subject_id": 10, "hadm_id": 200, "itemid": LACTATE, "charttime": f"{D1} 12:15:00",
             "value": "___", "valuenum": ""},  # no valuenum: skipped
            {"labevent_id": 5, "subject_id": 11, "hadm_id": 201, "itemid": LACTATE, "charttime": f"{D2} 08:00:00",
             "value": 3.1, "valuenum": 3.1},
            {"labevent_id": 6, "subject_id": 12, "itemid": LACTATE, "charttime": "2120-01-01 00:00:00",
             "value": "oops", "valuenum": "oops"},  # not an ICU subject: never parsed
        ],
        "icu/outputevents": [
            {"subject_id": 10, "stay_id": 300, "charttime": f"{D1} 11:00:00", "itemid": FOLEY, "value": 100},
            {"subject_id": 10, "stay_id": 300, "charttime": f"{D1} 11:20:00", "itemid": FOLEY, "value": 50},
            {"subject_id": 10, "stay_id": 300, "charttime": f"{D1} 12:00:00", "itemid": FOLEY, "value": 2500},
        ],
        "icu/inputevents": [
            infusion(300, "10:45:00", "12:15:00", NOREPINEPHRINE, rate=0.1, rateuom="mcg/kg/min", patientweight=80),
            infusion(300, "11:30:00", "12:30:00", VASOPRESSIN, rate=0.04, rateuom="units/min", patientweight=80),
            infusion(300, "12:30:00", "13:00:00", EPINEPHRINE, rate=8, rateuom="mcg/min", patientweight=80),
            infusion(300, "11:00:00", "13:00:00", NACL, amount=1000, amountuom="ml", patientweight=80),
            infusion(300, "10:00:00", "11:00:00", NACL, amount=120, amountuom="ml", patientweight=80),
            infusion(300, "13:45:00", "13:45:00", LR, amount=500, amountuom="ml", patientweight=80),
            infusion(300, "11:35:00", "12:35:00", VANCOMYCIN, amount=250, amountuom="ml", patientweight=80,
                     ordercategoryname="08-Antibiotics (IV)"),
            infusion(300, "11:00:00", "11:00:00", 111111, amount="x"),  # not a catalog item: never parsed
            infusion(301, "08:00:00", "10:00:00", NACL, amount=0.5, amountuom="L", patientweight=50),
            infusion(301, "08:00:00", "09:00:00", PHENYLEPHRINE, rate=100, rateuom="mcg/min"),
            infusion(301, "09:00:00", "10:00:00", NOREPINEPHRINE, rate=0.3, rateuom="mcg/kg/min", patientweight=50,
                     statusdescription="Rewritten"),  # superseded: skipped
        ],
        "icu/procedureevents": [
            {"subject_id": 10, "stay_id": 300, "starttime": f"{D1} 11:00:00", "endtime": f"{D1} 12:45:00",
             "itemid": 225792},
            {"subject_id": 11, "stay_id": 301, "starttime": f"{D2} 20:00:00", "endtime": "2150-06-03 00:00:00",
             "itemid": 225794},
        ],
    }


def infusion(stay: int, start: str, end: str, itemid: int, **values: object) -> dict:
    day = D2 if stay == 301 else D1
    return {"subject_id": 11 if stay == 301 else 10, "stay_id": stay, "starttime": f"{day} {start}",
            "endtime": f"{day} {end}", "itemid": itemid, **values}


def write_tree(root: Path, rows: dict[str, list[dict]], headers: dict[str, str] = HEADERS) -> Path:
    """Write ``rows`` as the official MIMIC-IV layout under ``root`` (hosp/, icu/; some tables gzipped)."""
    for table, records in rows.items():
        header = headers[table].split(",")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        path = root / f"{table}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        if table in COMPRESSED:
            with gzip.open(path.with_suffix(".csv.gz"), "wt", encoding="utf-8") as handle:
                handle.write(buffer.getvalue())
        else:
            path.write_text(buffer.getvalue(), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):
    return read_mimic_iv(write_tree(tmp_path_factory.mktemp("mimic"), tables()))


def _hour(frame: pl.DataFrame, stay: int, hour: int) -> dict:
    return frame.filter((pl.col("stay_id") == stay) & (pl.col("hour") == hour)).row(0, named=True)


def test_stays_statics_and_grid(cohort) -> None:
    stays = cohort.stays.sort("stay_id")
    assert stays["stay_id"].to_list() == [300, 301, 302]
    assert stays["subject_id"].to_list() == [10, 11, 10]
    assert stays["n_hours"].to_list() == [4, 25, 6]  # hour of outtime: 3 h 40 min -> 4; 24 h -> 25; 5 h -> 6
    assert stays["age"].to_list() == [62, 45, 62]
    assert stays["sex"].to_list() == [1, 0, 1]
    assert stays["weight"].to_list() == [80, 50, None]  # chart 226512; inputevents patientweight; none
    assert stays["unit"].to_list() == ["MICU", "SICU", "other"]
    assert stays["hosp_adm_hours"].to_list() == [-4.0, 0.5, -12.0]
    assert stays["death"].to_list() == [False, True, False]
    assert not stays["sepsis"].any() and stays["sepsis_onset_hour"].null_count() == 3
    assert stays["source"].unique().to_list() == ["mimic-iv"]
    assert cohort.meta["treatments_recorded"] is True
    assert "sepsis3_onset" in cohort.meta["provenance"]["sepsis"]
    assert cohort.hourly.height == cohort.treatments.height == 35


def test_hourly_values(cohort) -> None:
    first, second, third = (_hour(cohort.hourly, 300, h) for h in (1, 2, 3))
    assert first["hr"] == pytest.approx(85)  # 80 and 90 averaged; 70 before intime and the text entry skipped
    assert first["temperature"] == pytest.approx((37.0 + 37.4) / 2)  # 98.6 F -> 37.0 C
    assert first["gcs"] == 14  # last eye (4) + verbal 4 + motor 6
    assert first["urine_output"] == 150  # 100 + 50 summed
    assert second["hr"] == 100  # 300 nulled as implausible
    assert second["fio2"] == pytest.approx(0.5)  # 50 % -> fraction
    assert second["creatinine"] == pytest.approx(1.2)
    assert second["gcs"] is None and second["urine_output"] is None  # eye only; 2500 mL/h nulled
    assert third["fio2"] == pytest.approx(0.4)
    assert _hour(cohort.hourly, 302, 3)["creatinine"] == pytest.approx(2.0)  # same subject, later stay
    assert _hour(cohort.hourly, 301, 1)["lactate"] == pytest.approx(3.1)  # charted at intime
    assert _hour(cohort.hourly, 301, 2)["hr"] == 110
    measured = cohort.hourly.drop("stay_id", "hour").select(pl.sum_horizontal(pl.all().is_not_null())).to_series()
    assert int(measured.sum()) == 11  # the values above, nothing else anywhere


def test_treatments(cohort) -> None:
    rows = [_hour(cohort.treatments, 300, h) for h in (1, 2, 3, 4)]
    # norepinephrine 0.1 for 45 min of hours 1 and 2; vasopressin 0.04 U/min x 2.5 all of hour 2;
    # epinephrine 8 mcg/min / 80 kg = 0.1 for 30 min of hour 3
    assert [r["norepinephrine"] for r in rows] == pytest.approx([0.075, 0.175, 0.05, 0.0])
    # 1000 mL over 11:00-13:00 -> 250/500/250; 120 mL over 10:00-11:00 -> 60 inside the stay; 500 mL bolus at 13:45
    assert [r["iv_fluid_ml"] for r in rows] == pytest.approx([310, 500, 250, 500])
    assert [r["antibiotic"] for r in rows] == [0, 1, 1, 0]
    assert [r["mechanical_ventilation"] for r in rows] == [1, 1, 1, 0]
    stay_301 = cohort.treatments.filter(pl.col("stay_id") == 301).sort("hour")
    assert stay_301["norepinephrine"].to_list()[:2] == pytest.approx([0.2, 0.0])  # 100 mcg/min / 50 kg x 0.1
    assert stay_301["iv_fluid_ml"].to_list()[:3] == pytest.approx([250, 250, 0])  # 0.5 L over two hours
    ventilated = stay_301.filter(pl.col("mechanical_ventilation") == 1)["hour"].to_list()
    assert ventilated == list(range(13, 25))  # 20:00 on, clipped at outtime (end of hour 24)


def test_ingest_report(cohort) -> None:
    report = cohort.meta["provenance"]["ingest_report"]
    assert report["out_of_range"] == {"hr": {"below": 0, "above": 1}, "urine_output": {"below": 0, "above": 1}}
    assert report["converted"] == {"temperature_f_to_c": 1, "fio2_percent_to_fraction": 1,
                                   "vasopressor rate mcg/min -> ug/kg/min": 2}
    assert report["dropped"] == {"chartevents values without valuenum": 1, "chartevents values outside the stay": 1,
                                 "labevents values without valuenum": 1, "inputevents rows rewritten (superseded)": 1}
    assert report["flagged"] == {"gcs_hours_incomplete": 1}
    assert (report["files"], report["stays"], report["hours"]) == (8, 3, 35)


def _edit(rows: dict[str, list[dict]], table: str, index: int, **changes: object) -> dict[str, list[dict]]:
    rows[table][index] = {**rows[table][index], **changes}
    return rows


BAD_INPUTS = {
    "non-numeric valuenum": (lambda r: _edit(r, "icu/chartevents", 2, valuenum="eighty"),
                             "icu/chartevents.csv.gz", 3, "valuenum", "'eighty' is not a number"),
    "malformed time": (lambda r: _edit(r, "icu/outputevents", 1, charttime="2180-13-01 11:20:00"),
                       "icu/outputevents.csv", 2, "charttime", "is not a time"),
    "unknown stay": (lambda r: _edit(r, "icu/outputevents", 2, stay_id=999),
                     "icu/outputevents.csv", 3, "stay_id", "stay_id 999 is not in icu/icustays"),
    "repeated stay": (lambda r: _edit(r, "icu/icustays", 2, stay_id=300),
                      "icu/icustays.csv", 3, "stay_id", "appears more than once"),
    "admission missing": (lambda r: _edit(r, "icu/icustays", 1, hadm_id=777),
                          "icu/icustays.csv", 2, "hadm_id", "hadm_id 777 is not in hosp/admissions"),
    "unknown rate unit": (lambda r: _edit(r, "icu/inputevents", 1, rateuom="units/kg/min"),
                          "icu/inputevents.csv.gz", 2, "rateuom", "'units/kg/min' of vasopressin"),
    "end before start": (lambda r: _edit(r, "icu/procedureevents", 0, endtime=f"{D1} 10:59:00"),
                         "icu/procedureevents.csv", 1, "endtime", "before starttime"),
    "gender": (lambda r: _edit(r, "hosp/patients", 2, gender="X"), "hosp/patients.csv", 3, "gender", "'X'"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_file_row_and_column(tmp_path: Path, case: str) -> None:
    change, file, row, column, words = BAD_INPUTS[case]
    src = write_tree(tmp_path / "mimic", change(tables()))
    with pytest.raises(DataError, match=words) as caught:
        read_mimic_iv(src)
    assert (caught.value.file, caught.value.row, caught.value.column) == (str(src / file), row, column)


def test_missing_or_doubled_table_and_missing_column(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "mimic", tables())
    (src / "icu" / "procedureevents.csv").rename(src / "icu" / "procedureevents.txt")
    with pytest.raises(DataError, match="required MIMIC-IV table icu/procedureevents is missing"):
        read_mimic_iv(src)
    (src / "icu" / "procedureevents.txt").rename(src / "icu" / "procedureevents.csv")
    (src / "icu" / "chartevents.csv").write_text(HEADERS["icu/chartevents"] + "\n")
    with pytest.raises(DataError, match="both .csv.gz and .csv") as caught:
        read_mimic_iv(src)
    assert caught.value.file == str(src / "icu" / "chartevents.csv")
    rows = tables()
    rows["icu/chartevents"] = [{k: v for k, v in r.items() if k != "valuenum"} for r in rows["icu/chartevents"]]
    headers = {**HEADERS, "icu/chartevents": HEADERS["icu/chartevents"].replace(",valuenum", "")}
    src = write_tree(tmp_path / "no_valuenum", rows, headers)
    with pytest.raises(DataError, match="missing from the header") as caught:
        read_mimic_iv(src)
    assert (caught.value.row, caught.value.column) == (0, "valuenum")
