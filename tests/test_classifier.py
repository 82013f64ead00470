"""FewShotClassifier: the sklearn contract, safe model folders and their errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SENTIMENT

from fewshot import FewShotClassifier
from fewshot.encoders import guess_modality
from fewshot.errors import (
    DataError,
    EncoderMismatchError,
    ModelError,
    UsageError,
)
from fewshot.model.folder import FORMAT_VERSION, HEAD_FILE, MANIFEST
from fewshot.model.state import Calibration

TEXTS = [t for t, _ in SENTIMENT]
LABELS = [y for _, y in SENTIMENT]
CALIBRATION_FILE = Calibration.file
#: What a model fitted with the defaults saves (calibrated by default).
MODEL_FOLDER = [MANIFEST, HEAD_FILE, CALIBRATION_FILE]
QUERIES = [
    "good film", "awful movie", "the plot was excellent", "very boring and sad",
    "a story", "happy actor", "not bad", "hate it",
]
HEADS = ["logreg", "knn", "centroid"]


@pytest.fixture
def fitted(tiny_text_encoder) -> FewShotClassifier:
    return FewShotClassifier(tiny_text_encoder, cache=False).fit(TEXTS, LABELS)


def _perturbed_copy(src: Path, dst: Path) -> Path:
    import shutil

    from safetensors.numpy import load_file, save_file

    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    tensors = load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] * 1.01
    save_file(tensors, str(weights))
    return dst


# -- fit / predict -------------------------------------------------------------------------
def test_fit_predict(fitted: FewShotClassifier) -> None:
    assert list(fitted.classes_) == ["neg", "pos"]
    assert fitted.n_train_ == 16
    proba = fitted.predict_proba(QUERIES)
    assert proba.shape == (len(QUERIES), 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    pred = fitted.predict(QUERIES[:4])
    assert list(pred) == ["pos", "neg", "pos", "neg"]
    np.testing.assert_array_equal(
        fitted.predict(QUERIES), fitted.classes_[proba.argmax(axis=1)]
    )
    assert fitted.score(TEXTS, LABELS) == 1.0


@pytest.mark.parametrize("head", HEADS)
def test_each_head_learns_tiny_sentiment(tiny_text_encoder, head: str) -> None:
    clf = FewShotClassifier(tiny_text_encoder, head, cache=False).fit(TEXTS, LABELS)
    assert list(clf.predict(["excellent wonderful", "terrible dull"])) == ["pos", "neg"]
    assert clf.head_.name == head


def test_fit_returns_self_and_leaves_params(tiny_text_encoder) -> None:
    clf = FewShotClassifier(tiny_text_encoder, "knn", cache=False)
    assert clf.fit(TEXTS, LABELS) is clf
    assert clf.get_params()["head"] == "knn"  # the parameter is not replaced by the fitted head
    assert clf.encoder_ is tiny_text_encoder


def test_labels_come_back_unchanged(tiny_text_encoder) -> None:
    pos, neg = "very positive ☺", "négatif / schlecht"
    labels = [pos if y == "pos" else neg for y in LABELS]
    clf = FewShotClassifier(tiny_text_encoder, cache=False).fit(TEXTS, labels)
    assert sorted(clf.classes_.tolist()) == sorted([pos, neg])
    assert list(clf.predict(["great film", "awful film"])) == [pos, neg]


def test_integer_labels_survive_save_load(tiny_text_encoder, tmp_path: Path) -> None:
    labels = [1 if y == "pos" else 0 for y in LABELS]
    clf = FewShotClassifier(tiny_text_encoder, cache=False).fit(TEXTS, labels)
    assert list(clf.predict(["great film", "awful film"])) == [1, 0]
    loaded = FewShotClassifier.load(clf.save(tmp_path / "m"), cache=False)
    assert loaded.classes_.tolist() == [0, 1]
    assert list(loaded.predict(["great film", "awful film"])) == [1, 0]


def test_predict_before_fit(tiny_text_encoder) -> None:
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        FewShotClassifier(tiny_text_encoder).predict(["good"])


def test_fit_errors(tiny_text_encoder) -> None:
    clf = FewShotClassifier(tiny_text_encoder, cache=False)
    with pytest.raises(DataError, match="no training examples"):
        clf.fit([], [])
    with pytest.raises(DataError, match="got 2 items but 1 labels"):
        clf.fit(["a", "b"], ["x"])
    with pytest.raises(DataError, match="single class"):
        clf.fit(["good", "bad"], ["x", "x"])
    with pytest.raises(UsageError, match="cannot tell text from images"):
        clf.fit([1.5, 2.5], ["a", "b"])


def test_missing_values_are_errors_not_the_text_none(tiny_text_encoder, tmp_path) -> None:
    from fewshot.cache import EmbeddingCache

    clf = FewShotClassifier(tiny_text_encoder, cache=False)
    with pytest.raises(DataError) as exc:
        clf.fit(["good", None, "bad", "awful"], ["p", "p", "n", "n"])
    assert str(exc.value) == (
        "item 1 is None (NoneType), not text; give strings only (drop or fill missing "
        "values such as None or NaN)"
    )
    with pytest.raises(DataError, match=r"item 0 is nan \(float\), not text"):
        tiny_text_encoder.encode([float("nan")])
    with pytest.raises(DataError) as exc:
        clf.fit(["good", "great", "bad", "awful"], ["p", "p", None, "n"])
    assert str(exc.value) == ("label 2 is None; give every item a label (drop the unlabelled "
                              "ones, or pass them as unlabelled=...)")
    with pytest.raises(DataError, match="label 1 is .*nan"):
        clf.fit(["good", "great", "bad", "awful"], np.array([1.0, np.nan, 2.0, 2.0], np.float32))
    clf.fit(["good", "great", "bad", "awful"], ["p", "p", "n", "n"])
    with pytest.raises(DataError, match="item 1 is None"):
        clf.predict(["good", None])
    cached = FewShotClassifier(tiny_text_encoder, cache=EmbeddingCache(tmp_path / "c"))
    cached.fit(["good", "bad"], ["p", "n"])
    with pytest.raises(DataError, match="item 0 is 3 \\(int\\), not text"):
        cached.predict([3])  # through the embedding cache too


def test_calibration_folds_below_two_is_a_usage_error(tiny_text_encoder) -> None:
    clf = FewShotClassifier(tiny_text_encoder, cache=False, calibration="temperature",
                            calibration_folds=1)
    with pytest.raises(UsageError) as exc:
        clf.fit(TEXTS, LABELS)
    assert str(exc.value) == ("calibration_folds must be a whole number of at least 2, got 1; "
                              "use 5 (the default) or pass calibration=None")
    clf.set_params(calibration=None).fit(TEXTS, LABELS)  # unused without calibration


def test_guess_modality(tmp_path: Path) -> None:
    from PIL import Image

    assert guess_modality(["a"]) == "text"
    assert guess_modality([tmp_path / "x.png"]) == "image"
    assert guess_modality([Image.new("RGB", (4, 4))]) == "image"


def test_text_encoder_on_images_is_usage_error(tiny_text_encoder, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="the data is image"):
        FewShotClassifier(tiny_text_encoder, cache=False).fit(
            [tmp_path / "a.png", tmp_path / "b.png"], ["x", "y"])


def test_image_classifier_save_load(tiny_image_encoder, image_folder: Path, tmp_path) -> None:
    from PIL import Image

    paths = sorted(image_folder.rglob("*.png"))
    labels = [p.parent.name for p in paths]
    clf = FewShotClassifier(tiny_image_encoder, "centroid", cache=False).fit(paths, labels)
    assert list(clf.classes_) == ["blue", "red"]
    proba = clf.predict_proba(paths)
    assert proba.shape == (12, 2)
    pil = [Image.open(p) for p in paths]
    np.testing.assert_allclose(clf.predict_proba(pil), proba, atol=1e-5)
    folder = clf.save(tmp_path / "m")
    ref = json.loads((folder / MANIFEST).read_text())["encoder"]
    assert ref["name"] == "test_vit" and ref["pretrained"] is False
    # Seeded random weights are rebuilt offline, not fetched from the hub.
    loaded = FewShotClassifier.load(folder, cache=False, device="cpu")
    assert loaded.encoder_.pretrained is False
    np.testing.assert_array_equal(loaded.predict_proba(paths), proba)


# -- save / load --------------------------------------------------------------------------
@pytest.mark.parametrize("head", HEADS)
def test_save_load_same_process_exact(tiny_text_encoder, tmp_path: Path, head: str) -> None:
    clf = FewShotClassifier(tiny_text_encoder, head, cache=False).fit(TEXTS, LABELS)
    folder = clf.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == sorted(MODEL_FOLDER)
    loaded = FewShotClassifier.load(folder, cache=False)
    np.testing.assert_array_equal(loaded.predict_proba(QUERIES), clf.predict_proba(QUERIES))
    assert loaded.classes_.tolist() == clf.classes_.tolist()
    assert loaded.n_train_ == 16
    assert loaded.encoder_.id == tiny_text_encoder.id
    assert loaded.head_.get_params() == clf.head_.get_params()


def test_save_load_with_numpy_scalar_settings(tiny_text_encoder, tmp_path: Path) -> None:
    # Settings from numpy (a GridSearchCV grid over np.arange) are saved as JSON numbers.
    from fewshot.heads import KNNHead

    clf = FewShotClassifier(
        tiny_text_encoder, KNNHead(k=np.int64(3)), calibration="temperature",
        calibration_folds=np.int64(2), cache=False,
    ).fit(TEXTS, LABELS)
    loaded = FewShotClassifier.load(clf.save(tmp_path / "model"), cache=False)
    np.testing.assert_array_equal(loaded.predict_proba(QUERIES), clf.predict_proba(QUERIES))
    assert loaded.head_.k == 3 and type(loaded.head_.k) is int
    assert loaded.calibration_folds == 2


def test_relative_encoder_path_loads_from_another_directory(
    tiny_text_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tiny_text_model_dir.parent)
    clf = FewShotClassifier(tiny_text_model_dir.name, cache=False).fit(TEXTS, LABELS)
    clf.save(tmp_path / "model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the relative name no longer points at the folder
    loaded = FewShotClassifier.load(tmp_path / "model", cache=False)
    np.testing.assert_array_equal(loaded.predict_proba(QUERIES), clf.predict_proba(QUERIES))


def test_save_load_new_process_exact(tiny_text_encoder, tmp_path: Path) -> None:
    expected = {}
    for head in HEADS:
        clf = FewShotClassifier(tiny_text_encoder, head, cache=False).fit(TEXTS, LABELS)
        clf.save(tmp_path / head)
        expected[head] = clf.predict_proba(QUERIES)
    code = (
        "import json, sys\n"
        "from fewshot import FewShotClassifier\n"
        "out = {}\n"
        "for folder in sys.argv[2:]:\n"
        "    clf = FewShotClassifier.load(folder, cache=False, device='cpu')\n"
        "    out[folder] = {'classes': clf.classes_.tolist(),\n"
        "                   'proba': clf.predict_proba(json.loads(sys.argv[1])).tolist()}\n"
        "print(json.dumps(out))\n"
    )
    folders = [str(tmp_path / head) for head in HEADS]
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(QUERIES), *folders],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for head in HEADS:
        got = result[str(tmp_path / head)]
        assert got["classes"] == ["neg", "pos"]
        # float32 -> Python float -> JSON -> float32 is exact.
        np.testing.assert_array_equal(np.asarray(got["proba"], dtype=np.float32), expected[head])


def test_saved_folder_is_json_and_safetensors_only(fitted, tmp_path: Path) -> None:
    from safetensors import safe_open

    folder = fitted.save(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == sorted(MODEL_FOLDER)
    assert not list(tmp_path.glob(".m.*"))  # no temporary folder left behind
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["classes"] == ["neg", "pos"]
    assert manifest["n_train"] == 16
    assert manifest["head"]["type"] == "auto"
    assert manifest["encoder"]["id"] == fitted.encoder_.id
    assert manifest["encoder"]["modality"] == "text"
    assert manifest["encoder"]["resolved_from"]["source"] == "path"
    head_bytes = (folder / HEAD_FILE).read_bytes()
    assert b"\x80\x04" not in head_bytes[:2] and not head_bytes.startswith(b"PK")
    with safe_open(str(folder / HEAD_FILE), framework="numpy") as f:
        assert sorted(f.keys()) == ["centroids", "mean"]  # few rows: auto chose the centroid head
        assert f.metadata()["format"] == str(FORMAT_VERSION)


def test_save_refuses_to_overwrite(fitted, tiny_text_encoder, tmp_path: Path) -> None:
    folder = fitted.save(tmp_path / "m")
    before = (folder / MANIFEST).read_text()
    knn = FewShotClassifier(tiny_text_encoder, "knn", cache=False).fit(TEXTS, LABELS)
    with pytest.raises(UsageError, match="already exists"):
        knn.save(folder)
    assert (folder / MANIFEST).read_text() == before
    knn.save(folder, overwrite=True)
    assert json.loads((folder / MANIFEST).read_text())["head"]["type"] == "knn"
    assert sorted(p.name for p in folder.iterdir()) == sorted(MODEL_FOLDER)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize("where", ["head", "manifest"])
def test_failed_save_keeps_old_folder(
    fitted, tiny_text_encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    import safetensors.numpy

    folder = fitted.save(tmp_path / "m")
    old = {p.name: p.read_bytes() for p in folder.iterdir()}
    knn = FewShotClassifier(tiny_text_encoder, "knn", cache=False).fit(TEXTS, LABELS)

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    if where == "head":
        monkeypatch.setattr(safetensors.numpy, "save_file", boom)
    else:
        monkeypatch.setattr(Path, "write_text", boom)
    with pytest.raises(OSError, match="simulated"):
        knn.save(folder, overwrite=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left
    np.testing.assert_array_equal(
        FewShotClassifier.load(folder, cache=False).predict_proba(QUERIES),
        fitted.predict_proba(QUERIES),
    )


def test_failed_first_save_leaves_nothing(fitted, tmp_path: Path, monkeypatch) -> None:
    import safetensors.numpy

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(safetensors.numpy, "save_file", boom)
    with pytest.raises(OSError):
        fitted.save(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


# -- load errors ---------------------------------------------------------------------------
def test_load_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model folder at"):
        FewShotClassifier.load(tmp_path / "nope")


def test_load_folder_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a fewshot model folder"):
        FewShotClassifier.load(tmp_path)


def test_load_newer_format(fitted, tmp_path: Path) -> None:
    folder = fitted.save(tmp_path / "m")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    manifest["fewshot_version"] = "99.0"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="upgrade fewshot") as info:
        FewShotClassifier.load(folder)
    assert f"format {FORMAT_VERSION + 1}" in str(info.value) and "99.0" in str(info.value)


@pytest.mark.parametrize(
    "manifest_text, match",
    [("{not json", "is corrupt"), ('{"classes": []}', "no format_version"),
     ("[1, 2]", "is corrupt")],
)
def test_load_bad_manifest(fitted, tmp_path: Path, manifest_text: str, match: str) -> None:
    folder = fitted.save(tmp_path / "m")
    (folder / MANIFEST).write_text(manifest_text)
    with pytest.raises(ModelError, match=match):
        FewShotClassifier.load(folder)


def test_load_incomplete_folder(fitted, tmp_path: Path) -> None:
    folder = fitted.save(tmp_path / "m")
    (folder / HEAD_FILE).unlink()
    with pytest.raises(ModelError, match=f"incomplete \\(missing {HEAD_FILE}\\)"):
        FewShotClassifier.load(folder)


def test_load_manifest_missing_key(fitted, tmp_path: Path) -> None:
    folder = fitted.save(tmp_path / "m")
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["classes"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="incomplete \\(missing classes\\)"):
        FewShotClassifier.load(folder)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-arrays"])
def test_load_corrupt_head(fitted, tmp_path: Path, damage: str) -> None:
    from safetensors.numpy import save_file

    folder = fitted.save(tmp_path / "m")
    head = folder / HEAD_FILE
    if damage == "garbage":
        head.write_bytes(b"\x00garbage" * 10)
    elif damage == "truncated":
        head.write_bytes(head.read_bytes()[:-20])
    else:
        save_file({"something": np.zeros(3, np.float32)}, str(head))
    with pytest.raises(ModelError, match="is corrupt") as info:
        FewShotClassifier.load(folder, cache=False)
    assert "re-run fewshot train" in str(info.value)


@pytest.mark.parametrize("head", ["logreg", "centroid", "knn"])
@pytest.mark.parametrize("mismatch", ["features", "classes"])
def test_load_head_from_another_model(tiny_text_encoder, tmp_path: Path, head: str,
                                      mismatch: str) -> None:
    # A head.safetensors copied from a model with another encoder size or other
    # classes: a ModelError at load, not a matmul/index error at predict time.
    from safetensors.numpy import load_file, save_file

    texts, labels = TEXTS + ["meh", "so so"], LABELS + ["neutral", "neutral"]
    folder = FewShotClassifier(tiny_text_encoder, head=head, cache=False).fit(
        texts, labels).save(tmp_path / "m")
    arrays = load_file(str(folder / HEAD_FILE))
    if mismatch == "features":
        arrays = {k: np.concatenate([v, v], axis=-1) if v.ndim == 2 or k == "mean" else v
                  for k, v in arrays.items()}
        save_file(arrays, str(folder / HEAD_FILE))
    else:
        manifest = json.loads((folder / MANIFEST).read_text())
        manifest["head"]["classes"] = manifest["classes"] = manifest["classes"][:2]
        (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="is corrupt") as info:
        FewShotClassifier.load(folder, cache=False)
    assert "re-run fewshot train" in str(info.value)


def test_load_unknown_head_type(fitted, tmp_path: Path) -> None:
    folder = fitted.save(tmp_path / "m")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["head"]["type"] = "transformer"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="head 'transformer'.*upgrade fewshot"):
        FewShotClassifier.load(folder)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_load_refuses_a_pre_release_folder_with_a_retrain_message(
    fitted, tmp_path: Path, version: int
) -> None:
    folder = fitted.save(tmp_path / "m")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["format"] == "fewshot-model" and manifest["format_version"] == 1
    del manifest["format"]  # pre-release folders (formats 1-3) had no layout name
    manifest["format_version"], manifest["fewshot_version"] = version, "0.1.0"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=rf"pre-release model layout \(format {version}, "
                       r"fewshot 0.1.0\).* re-run fewshot train"):
        FewShotClassifier.load(folder, cache=False)


def test_load_with_changed_encoder(fitted, tiny_text_model_dir: Path, tmp_path: Path) -> None:
    folder = fitted.save(tmp_path / "m")
    other = _perturbed_copy(tiny_text_model_dir, tmp_path / "changed-model")
    with pytest.raises(EncoderMismatchError, match="pass the original encoder") as info:
        FewShotClassifier.load(folder, encoder=str(other), cache=False)
    assert fitted.encoder_.id in str(info.value)
    assert isinstance(info.value, ModelError)


def test_encoder_changed_in_place_with_warm_cache(
    tiny_text_model_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    import shutil

    model_dir = tmp_path / "model-files"
    shutil.copytree(tiny_text_model_dir, model_dir)
    clf = FewShotClassifier(str(model_dir), cache=cache_dir, device="cpu").fit(TEXTS, LABELS)
    folder = clf.save(tmp_path / "m")
    # Warm cache, untouched files: loads and predicts the same.
    same = FewShotClassifier.load(folder, cache=cache_dir)
    np.testing.assert_array_equal(same.predict_proba(QUERIES), clf.predict_proba(QUERIES))
    # The weights change in place: the remembered id must not hide it.
    _perturbed_copy(model_dir, tmp_path / "tmp-changed")
    weights = "model.safetensors"
    shutil.copyfile(tmp_path / "tmp-changed" / weights, model_dir / weights)
    with pytest.raises(EncoderMismatchError):
        FewShotClassifier.load(folder, cache=cache_dir)


def test_warm_cache_fit_saves_full_encoder_reference(
    tiny_text_model_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    FewShotClassifier(str(tiny_text_model_dir), cache=cache_dir, device="cpu").fit(TEXTS, LABELS)
    warm = FewShotClassifier(str(tiny_text_model_dir), cache=cache_dir, device="cpu")
    warm.fit(TEXTS, LABELS)
    assert not hasattr(warm.encoder_, "model_")  # every vector and the id came from the cache
    cold = FewShotClassifier(str(tiny_text_model_dir), cache=False, device="cpu")
    cold.fit(TEXTS, LABELS)
    ref_warm = json.loads((warm.save(tmp_path / "warm") / MANIFEST).read_text())["encoder"]
    ref_cold = json.loads((cold.save(tmp_path / "cold") / MANIFEST).read_text())["encoder"]
    assert ref_warm == ref_cold
    assert ref_warm["resolved_from"] == {
        "source": "path", "location": str(tiny_text_model_dir.resolve())
    }


def test_load_with_moved_encoder(fitted, tiny_text_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = fitted.save(tmp_path / "m")
    moved = tmp_path / "moved-model"
    shutil.copytree(tiny_text_model_dir, moved)
    loaded = FewShotClassifier.load(folder, encoder=str(moved), cache=False)
    np.testing.assert_array_equal(loaded.predict_proba(QUERIES), fitted.predict_proba(QUERIES))


def test_load_with_encoder_instance(fitted, tiny_text_encoder, tiny_image_encoder, tmp_path):
    folder = fitted.save(tmp_path / "m")
    loaded = FewShotClassifier.load(folder, encoder=tiny_text_encoder, cache=False)
    assert loaded.encoder_ is tiny_text_encoder
    with pytest.raises(UsageError, match="the data is text"):
        FewShotClassifier.load(folder, encoder=tiny_image_encoder, cache=False)


def test_load_keeps_normalize_setting(tiny_text_model_dir: Path, tmp_path: Path) -> None:
    from fewshot.encoders import TextEncoder

    raw = TextEncoder(str(tiny_text_model_dir), device="cpu", normalize=False)
    clf = FewShotClassifier(raw, "centroid", cache=False).fit(TEXTS, LABELS)
    loaded = FewShotClassifier.load(clf.save(tmp_path / "m"), cache=False)
    assert loaded.encoder_.normalize is False
    np.testing.assert_array_equal(loaded.predict_proba(QUERIES), clf.predict_proba(QUERIES))


# -- cache ---------------------------------------------------------------------------------
def test_cache_dir_same_predictions(tiny_text_encoder, cache_dir: Path) -> None:
    plain = FewShotClassifier(tiny_text_encoder, cache=False).fit(TEXTS, LABELS)
    cached = FewShotClassifier(tiny_text_encoder, cache=cache_dir).fit(TEXTS, LABELS)
    shards = list(cache_dir.rglob("shard-*.safetensors"))
    assert shards, "the cache folder was not populated"
    assert {p.parent.name for p in shards} == {tiny_text_encoder.id}
    first = cached.predict_proba(QUERIES)
    again = cached.predict_proba(QUERIES)  # now read from the cache
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, plain.predict_proba(QUERIES), atol=1e-6)
    np.testing.assert_array_equal(cached.predict(QUERIES), plain.predict(QUERIES))
    np.testing.assert_allclose(cached.embed(TEXTS), tiny_text_encoder.encode(TEXTS), atol=1e-6)


def test_cache_false_writes_nothing(tiny_text_encoder, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FEWSHOT_CACHE", str(tmp_path / "default-cache"))
    FewShotClassifier(tiny_text_encoder, cache=False).fit(TEXTS, LABELS).predict(QUERIES)
    assert not (tmp_path / "default-cache").exists()
    FewShotClassifier(tiny_text_encoder).fit(TEXTS, LABELS)  # cache=True: the default folder
    assert list((tmp_path / "default-cache").rglob("shard-*.safetensors"))


# -- scikit-learn --------------------------------------------------------------------------
def test_cross_val_score(tiny_text_model_dir: Path) -> None:
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    clf = FewShotClassifier(str(tiny_text_model_dir), "centroid", cache=False, device="cpu")
    scores = cross_val_score(
        clf, TEXTS, LABELS, cv=StratifiedKFold(4, shuffle=True, random_state=0)
    )
    assert scores.shape == (4,)
    assert scores.mean() >= 0.9  # measured 1.0 on every fold
    assert not hasattr(clf, "head_")  # cross_val_score fits clones


def test_clone_and_params(tiny_text_model_dir: Path) -> None:
    from sklearn.base import clone

    clf = FewShotClassifier(str(tiny_text_model_dir), "knn", cache=False, batch_size=8)
    params = clone(clf).get_params()
    assert params["encoder"] == str(tiny_text_model_dir)
    assert params["head"] == "knn" and params["batch_size"] == 8 and params["cache"] is False


def test_a_single_string_is_refused_not_split_into_characters(fitted, tiny_text_encoder) -> None:
    wrap = r"not a single str; wrap it in a list: \['a good movie'\]"
    with pytest.raises(TypeError, match=wrap):
        fitted.predict("a good movie")
    with pytest.raises(TypeError, match="not a single str"):
        fitted.predict_proba("a good movie")
    with pytest.raises(TypeError, match=r"fit\(\) takes a sequence of items, not a single str"):
        FewShotClassifier(tiny_text_encoder, cache=False).fit("ab", "xy")
    assert list(fitted.predict(["good film"])) == ["pos"]


def test_load_keeps_the_head_settings(tiny_text_encoder, tmp_path: Path) -> None:
    from sklearn.base import clone

    from fewshot.heads import KNNHead

    clf = FewShotClassifier(tiny_text_encoder, KNNHead(k=3), cache=False).fit(TEXTS, LABELS)
    loaded = FewShotClassifier.load(clf.save(tmp_path / "m"), cache=False)
    assert loaded.get_params()["head"].get_params() == clf.head_.get_params()
    refit = clone(loaded).set_params(encoder=tiny_text_encoder).fit(TEXTS, LABELS)
    assert refit.head_.k == 3
    np.testing.assert_array_equal(refit.predict_proba(QUERIES), clf.predict_proba(QUERIES))


def test_saved_model_files_get_umask_permissions(fitted, tmp_path: Path) -> None:
    # safetensors creates its files 0600: a model saved by one user must be readable by
    # another (a server, CI), as any file written under the umask is.
    import os
    import stat

    old = os.umask(0o022)
    try:
        folder = fitted.save(tmp_path / "m")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == {"fewshot.json": 0o644, "head.safetensors": 0o644,
                     "calibration.safetensors": 0o644}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


@pytest.mark.parametrize("bad", [["pos"], ("pos", "neg"), {"label": "pos"}, np.array(["pos"])])
def test_fit_refuses_a_container_as_a_label(tiny_text_encoder, bad: Any) -> None:
    labels: list[Any] = ["pos", "neg"] * 4
    labels[3] = bad
    with pytest.raises(DataError, match=f"label 3 is a {type(bad).__name__} .*one label"):
        FewShotClassifier(tiny_text_encoder, cache=False).fit(["a", "b"] * 4, labels)


@pytest.mark.parametrize(("key", "value"), [("tuning", "x"), ("n_train", "8"),
                                            ("label_descriptions", [1])])
def test_load_refuses_a_manifest_field_of_the_wrong_type(
    fitted, tmp_path: Path, key: str, value: Any
) -> None:
    folder = fitted.save(tmp_path / "m")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest[key] = value
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"fewshot.json is corrupt \(.*wrong type\)"):
        FewShotClassifier.load(folder, cache=False)


def test_fit_refuses_a_single_class(tiny_text_encoder) -> None:
    with pytest.raises(DataError, match=r"a single class \('pos'\); a classifier needs at least"):
        FewShotClassifier(tiny_text_encoder, cache=False).fit(["a", "b"], ["pos", "pos"])


def test_chunking_encoder_reloads_with_its_setting(tiny_text_model_dir: Path,
                                                   tmp_path: Path) -> None:
    from fewshot.encoders import TextEncoder

    enc = TextEncoder(str(tiny_text_model_dir), device="cpu", long_texts="chunk")
    clf = FewShotClassifier(enc, cache=False).fit(TEXTS, LABELS)
    back = FewShotClassifier.load(clf.save(tmp_path / "m"), cache=False)
    assert back.encoder_.long_texts == "chunk" and back.encoder_.id == clf.encoder_.id
    np.testing.assert_array_equal(back.predict_proba(QUERIES), clf.predict_proba(QUERIES))
