"""Atomic writes: permissions like an ordinary write, and a failed swap loses nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import fewshot._io
from fewshot._io import atomic_dir, atomic_file


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
    with pytest.raises(OSError, match="disk gone"), atomic_dir(target, overwrite=True) as tmp:
        (tmp / "v").write_text("new")
    assert (target / "v").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
