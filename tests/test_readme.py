"""The README's Python blocks run as written (with the real default text model)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import REPO, SHARED

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.integration
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, minilm_dir, mobilenet_dir, shared_data,
                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Run from a copy of the repo's layout so relative paths (examples/, ../shared)
    # resolve as they do for a reader, and nothing is written into the checkout.
    root = tmp_path / "repo"
    shutil.copytree(REPO / "examples", root / "examples")
    (tmp_path / "shared").symlink_to(SHARED, target_is_directory=True)
    monkeypatch.chdir(root)
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), namespace)
    if "clf" in namespace and "test" in namespace:
        clf, test = namespace["clf"], namespace["test"]
        accuracy = (clf.predict(test.items) == test.labels).mean()
        assert accuracy >= 0.75  # 4 classes, 8 examples each: chance is 0.25


def _run_example(script: str, out: Path, tmp_path: Path):
    """``bash examples/SCRIPT OUT`` with this venv's fewshot and a private cache."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "FEWSHOT_CACHE": str(tmp_path / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(["bash", str(REPO / "examples" / script), str(out)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return res


@pytest.mark.integration
def test_quickstart_script_runs(minilm_dir, tmp_path: Path) -> None:
    """The README's main-job command: train, evaluate and predict via the CLI."""
    import json

    out = tmp_path / "support"
    res = _run_example("quickstart.sh", out, tmp_path)
    assert "accuracy=" in res.stdout
    accuracy = float(re.search(r"accuracy=([0-9.]+)", res.stdout).group(1))
    assert accuracy >= 0.75
    preds = [json.loads(line) for line in Path(f"{out}.predictions.jsonl").read_text().splitlines()]
    assert [p["label"] for p in preds] == ["shipping", "technical"]


@pytest.mark.integration
def test_human_in_the_loop_script_runs(minilm_dir, tmp_path: Path) -> None:
    """examples/human_in_the_loop.sh: calibrated train, review, audit."""
    import json

    out = tmp_path / "loop"
    res = _run_example("human_in_the_loop.sh", out, tmp_path)
    summary = json.loads((out / "review" / "summary.json").read_text())
    # The auto head's own probabilities pass the likelihood-ratio test here: no temperature.
    assert summary["calibration"]["method"] == "identity"
    assert summary["n_accepted"] + summary["n_review"] == 24
    assert summary["measured"]["precision_accepted"] >= 0.9
    assert summary["measured"]["accuracy_all"] >= 0.75
    rows = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    assert len(rows) == 32 and [r["rank"] for r in rows] == list(range(1, 33))
    assert "most likely mislabelled (top 3)" in res.stdout


def _typed_commands(*sections: str) -> list[list[str]]:
    """The hand-typed ``fewshot`` commands (bash blocks) of the README's ``## `` sections
    named, in order, as argument lists."""
    import shlex

    parts = re.split(r"^## ", README, flags=re.M)
    text = "".join(part for part in parts if part.split("\n", 1)[0].strip() in sections)
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [shlex.split(line)[1:] for block in blocks for line in block.splitlines()
            if line.startswith("fewshot ")]


def test_readme_commands_read_only_what_the_repo_or_an_earlier_command_has() -> None:
    """Each path a README command reads is in the repository or written by a command
    before it, so the commands run as shown from a fresh clone."""
    commands = _typed_commands("Run it", "Deploy")
    assert [c[0] for c in commands] == ["train", "evaluate", "predict", "export", "predict",
                                        "serve"]
    written: set[str] = set()
    for args in commands:
        output = args[args.index("--output") + 1] if "--output" in args else None
        inputs = [a for a in args[1:] if "/" in a and not a.startswith("-") and a != output]
        for path in inputs:
            assert path in written or (REPO / path).exists(), (args, path)
        if output is not None:
            written.add(output)
    assert (REPO / "examples/data/support/new.txt").read_text().splitlines() == [
        "my parcel never showed up", "the app crashes on startup"]


@pytest.mark.integration
def test_readme_commands_run_as_typed(minilm_dir, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    """The three commands under "Run it", typed into a fresh clone's root."""
    import json

    from typer.testing import CliRunner

    from fewshot.cli import app

    root = tmp_path / "repo"
    shutil.copytree(REPO / "examples", root / "examples")
    monkeypatch.chdir(root)
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "cache"))
    for args in _typed_commands("Run it"):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    rows = (root / "runs/support.predictions.jsonl").read_text().splitlines()
    assert [json.loads(r)["label"] for r in rows] == ["shipping", "technical"]
