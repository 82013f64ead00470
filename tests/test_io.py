"""Atomic writes: permissions like an ordinary write, and a failed swap loses nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import fewshot._io
from fewshot._io import ReplaceRefusedError, atomic_dir, atomic_file


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_file_gets_umask_permissions(tmp_path: Path, umask_022) -> None:
    target = tmp_path / "out.json"
    with atomic_file(target, "w") as f:
        f.write("{}")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.read_text() == "{}"


def test_atomic_dir_gets_umask_permissions(tmp_path: Path, umask_022) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert (target / "config.json").read_text() == "{}"


def test_failed_swap_puts_the_old_folder_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "v").write_text("old")
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((Path(src), Path(dst)))
        if len(calls) == 2:  # the new folder moving into place
            raise OSError("disk gone")
        return real_replace(src, dst)

    monkeypatch.setattr(fewshot._io.os, "replace", flaky)
    with (
        pytest.raises(OSError, match="disk gone"),
        atomic_dir(target, overwrite=True, replaceable=["v"]) as tmp,
    ):
        (tmp / "v").write_text("new")
    assert (target / "v").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_overwrite_replaces_only_a_folder_of_its_own_files(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    with atomic_dir(target, overwrite=True) as tmp:  # an empty folder is fine
        (tmp / "a.json").write_text("1")
    with atomic_dir(target, overwrite=True, replaceable=["a.json", "b.json"]) as tmp:
        (tmp / "b.json").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b.json"]
    (target / "notes.txt").write_text("mine")
    (target / "a.json").mkdir()  # a folder named like one of its files is not one
    with (
        pytest.raises(ReplaceRefusedError, match=r"holds files this command did not write "
                      r"\(a.json, notes.txt\)"),
        atomic_dir(target, overwrite=True, replaceable=["a.json", "b.json"]),
    ):
        pass
    assert (target / "notes.txt").read_text() == "mine"
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(ReplaceRefusedError, match="is a file, not a folder"), atomic_dir(
        afile, overwrite=True
    ):
        pass
    assert afile.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out"]
