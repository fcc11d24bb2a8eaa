"""A write that fails half-way leaves the old file and no temporary file beside it."""

import pytest

from mosam_train.atomic_files import atomic_open, write_text_atomically


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("new, half-")
        raise RuntimeError("killed")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


def test_a_finished_write_replaces_the_file_and_creates_its_folder(tmp_path):
    path = write_text_atomically(tmp_path / "a" / "b.txt", "new\n")
    assert path.read_text() == "new\n"
    with atomic_open(path, "wb") as f:
        f.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.txt"]


def test_appending_is_refused(tmp_path):
    with pytest.raises(ValueError, match="whole files"), atomic_open(tmp_path / "x", "a"):
        pass
