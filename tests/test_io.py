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


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc only")
def test_umask_is_read_without_changing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Setting the umask to 0 and back, even briefly, lets another thread create
    # world-writable files in between; on Linux it is read from /proc instead.
    old = os.umask(0o027)
    try:
        def no_set(mask: int) -> int:
            raise AssertionError(f"umask set to {mask:o}")

        monkeypatch.setattr(os, "umask", no_set)
        assert fewshot._io._umask() == 0o027
    finally:
        monkeypatch.undo()
        os.umask(old)


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
    monkeypatch.setattr(fewshot._io, "_exchange", lambda a, b: False)  # the two-rename path
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



def _can_swap(folder: Path) -> bool:
    a, b = folder / "probe-a", folder / "probe-b"
    a.mkdir()
    b.mkdir()
    try:
        return fewshot._io._exchange(a, b)
    finally:
        a.rmdir()
        b.rmdir()


def test_replacing_a_folder_is_one_atomic_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where the OS can (Linux renameat2), the new folder and the old one trade places in
    # one step, so no moment exists with nothing at the path: os.replace (the two-rename
    # fallback) never runs. Elsewhere the fallback must give the same result.
    swap = _can_swap(tmp_path)
    target = tmp_path / "model"
    target.mkdir()
    (target / "v").write_text("old")
    real_replace = os.replace
    renames = []

    def counted(src, dst):
        renames.append(dst)
        return real_replace(src, dst)

    monkeypatch.setattr(fewshot._io.os, "replace", counted)
    with atomic_dir(target, overwrite=True, replaceable=["v"]) as tmp:
        (tmp / "v").write_text("new")
    assert (target / "v").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert len(renames) == (0 if swap else 2)


def test_exchange_swaps_two_folders_or_says_it_cannot(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("from a")
    (b / "y").write_text("from b")
    if fewshot._io._exchange(a, b):
        assert [p.name for p in a.iterdir()] == ["y"] and [p.name for p in b.iterdir()] == ["x"]
        with pytest.raises(FileNotFoundError):
            fewshot._io._exchange(a, tmp_path / "missing")
    else:  # nothing moved
        assert [p.name for p in a.iterdir()] == ["x"] and [p.name for p in b.iterdir()] == ["y"]


def test_atomic_text_files_translate_no_newlines(tmp_path: Path, monkeypatch) -> None:
    """csv writes its own \\r\\n; a text-mode translation would double it on Windows."""
    seen = []
    real = os.fdopen

    def spy(fd, mode="r", *args, **kwargs):
        seen.append((mode, kwargs.get("newline")))
        return real(fd, mode, *args, **kwargs)

    monkeypatch.setattr(fewshot._io.os, "fdopen", spy)
    with atomic_file(tmp_path / "a.csv", "w") as f:
        f.write("x\r\n")
    with atomic_file(tmp_path / "b.bin") as f:
        f.write(b"x")
    assert seen == [("w", ""), ("wb", None)]
    assert (tmp_path / "a.csv").read_bytes() == b"x\r\n"
