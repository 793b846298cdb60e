"""Atomic writes never leave partial results and never destroy what was there."""

from __future__ import annotations

import pytest

from organsim.utils import DataError, atomic_directory, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a" / "out.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]


def test_failed_directory_build_keeps_previous_content(tmp_path):
    target = tmp_path / "cohort"
    with atomic_directory(target) as tmp:
        (tmp / "x.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "x.txt").write_text("new, half written")
        raise RuntimeError("interrupted")
    assert (target / "x.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]


def test_directory_without_overwrite_refuses(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(FileExistsError, match="already exists"), atomic_directory(tmp_path / "d", overwrite=False):
        pass


def test_data_error_names_file_row_column():
    err = DataError("not a number: 'abc'", file="p1.psv", row=3, column="HR")
    assert str(err) == "file p1.psv, row 3, column 'HR': not a number: 'abc'"
    assert (err.file, err.row, err.column) == ("p1.psv", 3, "HR")


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    import os

    umask = os.umask(0)
    os.umask(umask)
    file = atomic_write_text(tmp_path / "f.txt", "x")
    with atomic_directory(tmp_path / "d") as tmp:
        (tmp / "y").write_text("y")
    assert file.stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~umask
