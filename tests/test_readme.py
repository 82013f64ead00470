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


@pytest.mark.integration
def test_quickstart_script_runs(minilm_dir, tmp_path: Path) -> None:
    """The README's main-job command: train, evaluate and predict via the CLI."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "FEWSHOT_CACHE": str(tmp_path / "cache"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = tmp_path / "support"
    res = subprocess.run(["bash", str(REPO / "examples" / "quickstart.sh"), str(out)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "accuracy=" in res.stdout
    accuracy = float(re.search(r"accuracy=([0-9.]+)", res.stdout).group(1))
    assert accuracy >= 0.75
    preds = [json.loads(line) for line in Path(f"{out}.predictions.jsonl").read_text().splitlines()]
    assert [p["label"] for p in preds] == ["shipping", "technical"]
