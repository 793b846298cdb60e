"""Content hashes: they follow contents, not names of temporary files; parameters exclude external paths."""

from __future__ import annotations

from pathlib import Path

from organsim.tracking import load_pipeline
from organsim.tracking.fingerprints import code_version, hash_path, inputs_hash, params_hash


def test_hash_path_follows_content_and_names_but_skips_hidden_files(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("1")
    (root / "sub" / "b.txt").write_text("2")
    before = hash_path(root)
    (root / ".a.txt.123.tmp").write_text("partial write")
    assert hash_path(root) == before
    (root / "sub" / "b.txt").write_text("3")
    changed = hash_path(root)
    assert changed != before
    (root / "sub" / "b.txt").rename(root / "sub" / "c.txt")
    assert hash_path(root) != changed
    assert hash_path(root / "a.txt") != hash_path(root)


def test_stage_hashes_see_parameters_and_external_content_not_paths(tmp_path: Path) -> None:
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "hourly.csv").write_text("stay_id,hour\n1,0\n")
    path = tmp_path / "p.yaml"
    path.write_text("name: t\nstages:\n  ingest: {format: table, source: x/hourly.csv}\n  generate: {patients: 5}\n")
    ingest_x, generate = load_pipeline(path).stages
    ingest_y = load_pipeline(path, [f"ingest.source={tmp_path / 'y' / 'hourly.csv'}"]).stages[0]
    assert params_hash(ingest_x) == params_hash(ingest_y)
    assert inputs_hash(ingest_x, {}) == inputs_hash(ingest_y, {})
    (tmp_path / "y" / "hourly.csv").write_text("stay_id,hour\n2,0\n")
    assert inputs_hash(ingest_x, {}) != inputs_hash(ingest_y, {})
    assert params_hash(generate) != params_hash(load_pipeline(path, ["generate.patients=6"]).stages[1])
    assert code_version(ingest_x) == code_version(ingest_y) != code_version(generate)
