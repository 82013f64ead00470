"""fewshot export: ONNX model folders, their agreement check, and the torch-free runtime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import SENTIMENT
from typer.testing import CliRunner

from fewshot import FewShotClassifier
from fewshot.cli import app
from fewshot.encoders.onnx import OnnxImageEncoder, OnnxTextEncoder, preprocess_image
from fewshot.errors import EncoderMismatchError, UsageError
from fewshot.export import builtin_items, export_model

TEXTS = [t for t, _ in SENTIMENT]
LABELS = [y for _, y in SENTIMENT]
NEW_TEXTS = ["a great story", "the movie was awful", "boring plot", "i loved it", "",
             "unknownword another"]
runner = CliRunner()

#: Runs the fewshot CLI with torch, transformers, sentence-transformers, timm and
#: torchvision unimportable (and the packages in $ALSO_BLOCKED): any import of them
#: fails the command.
BLOCKED_CLI = """
import os
import sys

BLOCKED = ("torch", "transformers", "sentence_transformers", "timm", "torchvision",
           *filter(None, os.environ.get("ALSO_BLOCKED", "").split(",")))


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the exported runtime must not import it")
        return None


sys.meta_path.insert(0, Blocker())
from fewshot.cli import main

sys.argv = ["fewshot", *sys.argv[1:]]
try:
    main()
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
"""


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "env-cache"))


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path) -> Path:
    """A model folder on the tiny StaticEmbedding model (a folder path, so a subprocess
    resolves it too)."""
    from fewshot.encoders import TextEncoder

    enc = TextEncoder(str(tiny_text_model_dir), device="cpu", show_progress=False)
    clf = FewShotClassifier(enc, cache=False).fit(TEXTS, LABELS)
    return clf.save(tmp_path_factory.mktemp("text") / "model")


@pytest.fixture(scope="module")
def text_export(tmp_path_factory: pytest.TempPathFactory, text_model: Path) -> Path:
    out = tmp_path_factory.mktemp("text-export") / "onnx"
    export_model(text_model, out)
    return out


def manifest(folder: Path) -> dict:
    return json.loads((folder / "fewshot.json").read_text())


def test_exported_text_model_predicts_as_the_original(text_model: Path,
                                                      text_export: Path) -> None:
    torch_clf = FewShotClassifier.load(text_model, cache=False, device="cpu")
    onnx_clf = FewShotClassifier.load(text_export, cache=False)
    assert isinstance(onnx_clf.encoder_, OnnxTextEncoder)
    expected = torch_clf.predict_proba(TEXTS + NEW_TEXTS)
    got = onnx_clf.predict_proba(TEXTS + NEW_TEXTS)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert list(onnx_clf.predict(NEW_TEXTS)) == list(torch_clf.predict(NEW_TEXTS))
    assert sorted(p.name for p in text_export.iterdir()) == [
        "calibration.safetensors", "encoder.json", "encoder.onnx", "fewshot.json",
        "head.safetensors", "tokenizer.json"]


def test_manifest_records_the_check(text_model: Path, text_export: Path) -> None:
    ref = manifest(text_export)["encoder"]
    original = manifest(text_model)
    assert ref["format"] == "onnx" and ref["quantize"] is None
    assert ref["source_id"] == original["encoder"]["id"]
    assert ref["id"].startswith("text-onnx-") and ref["name"] == original["encoder"]["name"]
    check = ref["export"]["check"]
    texts, described = builtin_items("text")
    assert check["items"] == len(texts) and check["items_from"] == described
    assert check["label_agreement"] == 1.0
    assert 0 <= check["max_abs_diff"] <= 1e-5
    # Everything but the encoder is the original's.
    got = manifest(text_export)
    for key in ("head", "classes", "class_counts", "n_train", "calibration", "format_version"):
        assert got[key] == original[key], key
    assert (text_export / "head.safetensors").read_bytes() == (
        text_model / "head.safetensors").read_bytes()


def test_resaved_exported_model_keeps_its_encoder(text_export: Path, tmp_path: Path) -> None:
    clf = FewShotClassifier.load(text_export, cache=False)
    clf.save(tmp_path / "again")
    assert manifest(tmp_path / "again")["encoder"] == manifest(text_export)["encoder"]
    assert (tmp_path / "again" / "encoder.onnx").read_bytes() == (
        text_export / "encoder.onnx").read_bytes()


def test_predict_and_evaluate_import_no_torch(text_model: Path, text_export: Path,
                                              tmp_path: Path, sentiment_jsonl: Path) -> None:
    script = tmp_path / "blocked.py"
    script.write_text(BLOCKED_CLI)
    env = {**os.environ, "FEWSHOT_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "pred.jsonl"
    # Predicting needs neither scikit-learn nor scipy (2.5 s of imports at start-up).
    run = subprocess.run([sys.executable, str(script), "predict", str(text_export),
                          str(sentiment_jsonl), "-o", str(out)],
                         capture_output=True, text=True, timeout=300,
                         env={**env, "ALSO_BLOCKED": "sklearn,scipy,pandas"})
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = FewShotClassifier.load(text_model, cache=False).predict_proba(TEXTS)
    assert [r["label"] for r in rows] == LABELS
    got = np.array([[r["probabilities"]["neg"], r["probabilities"]["pos"]] for r in rows])
    np.testing.assert_allclose(got, expected, atol=2e-5)
    run = subprocess.run([sys.executable, str(script), "evaluate", str(text_export),
                          str(sentiment_jsonl), "--json", "--no-cache"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["accuracy"] == 1.0
    # The same blocker makes a PyTorch path fail with one line naming the extra.
    run = subprocess.run([sys.executable, str(script), "predict", str(text_model),
                          str(sentiment_jsonl), "-o", str(tmp_path / "p2.jsonl"), "--no-cache"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("error: the text encoder ")
    assert "needs PyTorch (torch, sentence_transformers not installed): pip install " \
           "'fewshot[torch]'" in run.stderr


def test_int8_export(text_model: Path, text_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "q"
    result = export_model(text_model, out, quantize="int8", check_items=TEXTS,
                          check_source="sentiment")
    ref = manifest(out)["encoder"]
    assert ref["quantize"] == "int8" and ref["export"]["check"] == result.check
    assert result.check["items"] == 16 and result.check["items_from"] == "sentiment"
    clf = FewShotClassifier.load(out, cache=False)
    assert list(clf.predict(TEXTS)) == LABELS
    # The weights are stored as int8: the graph is smaller than the fp32 one.
    assert result.graph_bytes < (text_export / "encoder.onnx").stat().st_size
    assert json.loads((out / "encoder.json").read_text())["quantize"] == "int8"


def test_fp32_export_that_disagrees_is_refused(text_model: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import fewshot.export as export_mod
    from fewshot.errors import ModelError

    monkeypatch.setattr(export_mod, "FP32_TOLERANCE", -1.0)  # nothing can pass
    with pytest.raises(ModelError, match=r"does not match the original \(labels agree on "
                       r"100\.00% of 33 items \(33 built-in sentences\), max probability "
                       r"difference .*nothing was written"):
        export_model(text_model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_int8_that_changes_labels_warns(text_model: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import fewshot.export as export_mod

    monkeypatch.setattr(export_mod, "INT8_AGREEMENT", 1.01)  # full agreement is not enough
    with pytest.warns(UserWarning, match=r"int8 model differs from the original: labels "
                      r"agree on 100\.00% of 33 items"):
        result = export_model(text_model, tmp_path / "q", quantize="int8")
    assert result.warning is not None and (tmp_path / "q" / "encoder.onnx").is_file()


def test_export_errors(text_model: Path, text_export: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown quantization 'fp16'"):
        export_model(text_model, tmp_path / "x", quantize="fp16")
    with pytest.raises(UsageError, match="is already exported"):
        export_model(text_export, tmp_path / "x")
    with pytest.raises(UsageError, match="already exists; choose another folder"):
        export_model(text_model, text_export)
    with pytest.raises(UsageError, match="is an exported model: its encoder is in the folder"):
        FewShotClassifier.load(text_export, encoder="all-MiniLM-L6-v2")


def test_changed_graph_is_refused(text_export: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(text_export, folder)
    graph = folder / "encoder.onnx"
    data = bytearray(graph.read_bytes())
    data[-1] ^= 1
    graph.write_bytes(bytes(data))
    with pytest.raises(EncoderMismatchError, match="a file was changed or replaced"):
        FewShotClassifier.load(folder, cache=False)


def test_cli_export(text_model: Path, tmp_path: Path, sentiment_jsonl: Path) -> None:
    out = tmp_path / "cli"
    result = runner.invoke(app, ["export", str(text_model), "-o", str(out),
                                 "--check-data", str(sentiment_jsonl)])
    assert result.exit_code == 0, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"exported {text_model} to {out} (encoder.onnx, fp32, ")
    assert lines[1].startswith(f"check on 16 items (--check-data {sentiment_jsonl}): labels "
                               "agree on 100.00%, max probability difference ")
    again = runner.invoke(app, ["export", str(text_model), "-o", str(out)])
    assert again.exit_code == 2
    assert again.stderr.strip().splitlines() == [
        f"error: {out} already exists; choose another output or pass --force"]
    forced = runner.invoke(app, ["export", str(text_model), "-o", str(out), "--force",
                                 "--quantize", "int8"])
    assert forced.exit_code == 0, forced.output
    assert manifest(out)["encoder"]["quantize"] == "int8"


# -- images ------------------------------------------------------------------------------
def test_image_preprocessing_matches_timm(tiny_image_encoder) -> None:
    from fewshot.export import _image_steps

    steps = _image_steps(tiny_image_encoder.transform_)
    assert [s["op"] for s in steps] == ["resize", "center_crop", "to_float", "normalize"]
    images, _ = builtin_items("image", 6)
    from PIL import Image

    images.append(Image.new("RGB", (20, 9), (200, 10, 30)))  # smaller than the crop
    for img in images:
        expected = tiny_image_encoder.transform_(img).numpy()
        np.testing.assert_array_equal(preprocess_image(img, steps), expected)


def test_tuned_image_model_exports(image_folder: Path, tmp_path: Path) -> None:
    from fewshot.data import load_dataset
    from fewshot.encoders import ImageEncoder

    ds = load_dataset(image_folder)
    enc = ImageEncoder("test_vit", pretrained=False, device="cpu", show_progress=False)
    clf = FewShotClassifier(enc, cache=False, tune={"max_steps": 2, "batch_size": 4})
    clf.fit(ds.items, ds.labels)
    model = clf.save(tmp_path / "tuned")
    assert (model / "body.safetensors").is_file()
    result = export_model(model, tmp_path / "onnx", check_items=ds.items,
                          check_source="images")
    assert result.check["label_agreement"] == 1.0 and result.check["max_abs_diff"] < 1e-4
    exported = FewShotClassifier.load(tmp_path / "onnx", cache=False)
    assert isinstance(exported.encoder_, OnnxImageEncoder)
    assert not (tmp_path / "onnx" / "body.safetensors").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(exported.predict_proba(ds.items),
                                   FewShotClassifier.load(model, cache=False,
                                                          device="cpu").predict_proba(ds.items),
                                   atol=1e-5)
    assert manifest(tmp_path / "onnx")["tuning"] == manifest(model)["tuning"]


# -- the real text model -------------------------------------------------------------------
@pytest.mark.integration
def test_minilm_export_matches_sentence_transformers(minilm_dir: Path, tmp_path: Path) -> None:
    """Truncation at max_seq_length, BERT's token types and padding all agree."""
    from fewshot.encoders import TextEncoder

    enc = TextEncoder("all-MiniLM-L6-v2", device="cpu", show_progress=False)
    clf = FewShotClassifier(enc, cache=False).fit(TEXTS, LABELS)
    model = clf.save(tmp_path / "m")
    export_model(model, tmp_path / "onnx")
    onnx_enc = FewShotClassifier.load(tmp_path / "onnx", cache=False).encoder_
    texts = [*NEW_TEXTS, "word " * 600, "Ünïcödé and emoji 🙂", "  padded  "]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(onnx_enc.encode(texts), enc.encode(texts), atol=1e-5)
    with pytest.warns(UserWarning, match="1 of 1 texts are longer than the model's 256 tokens"):
        onnx_enc.encode(["word " * 600])
