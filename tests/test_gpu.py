"""CUDA code paths: run only where a GPU is present (CI has none; checked on lent GPUs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_device_auto_picks_cuda() -> None:
    from fewshot.encoders import resolve_device

    assert resolve_device(None) == "cuda"


def test_text_encoder_cuda_matches_cpu(tiny_text_model_dir: Path) -> None:
    from fewshot.encoders import TextEncoder

    texts = [f"a good movie number {i}" for i in range(50)] + ["the worst film"]
    cpu = TextEncoder(str(tiny_text_model_dir), device="cpu").encode(texts)
    gpu_enc = TextEncoder(str(tiny_text_model_dir), device="cuda")
    gpu = gpu_enc.encode(texts)
    assert gpu_enc.device_ == "cuda"
    np.testing.assert_allclose(gpu, cpu, atol=1e-5)


def test_image_encoder_cuda_with_workers_matches_cpu(image_folder: Path) -> None:
    from fewshot.encoders import ImageEncoder

    paths = sorted(image_folder.rglob("*.png"))
    cpu = ImageEncoder("test_vit", pretrained=False, device="cpu").encode(paths)
    enc = ImageEncoder("test_vit", pretrained=False, device="cuda", batch_size=4,
                       num_workers=2)
    gpu = enc.encode(paths)
    assert enc.id == ImageEncoder("test_vit", pretrained=False, device="cpu").id
    np.testing.assert_allclose(gpu, cpu, atol=1e-3)


def test_unreadable_image_named_through_worker_processes(image_folder: Path) -> None:
    from fewshot.encoders import ImageEncoder
    from fewshot.errors import ImageReadError

    bad = image_folder / "red" / "broken.png"
    bad.write_bytes(b"not a png")
    paths = sorted(image_folder.rglob("*.png"))
    enc = ImageEncoder("test_vit", pretrained=False, device="cuda", num_workers=2)
    with pytest.raises(ImageReadError, match="broken.png"):
        enc.encode(paths)


def test_train_on_gpu_load_on_cpu(sentiment_jsonl: Path, tiny_text_model_dir: Path,
                                  tmp_path: Path) -> None:
    from fewshot import FewShotClassifier, load_dataset

    ds = load_dataset(sentiment_jsonl)
    clf = FewShotClassifier(str(tiny_text_model_dir), "logreg", cache=False,
                            device="cuda").fit(ds.items, ds.labels)
    clf.save(tmp_path / "m")
    cpu = FewShotClassifier.load(tmp_path / "m", cache=False, device="cpu")
    np.testing.assert_allclose(cpu.predict_proba(ds.items), clf.predict_proba(ds.items),
                               atol=1e-4)
    assert (cpu.predict(ds.items) == np.asarray(ds.labels)).mean() == 1.0


@pytest.mark.parametrize("precision", ["auto", "bf16", "fp16", "no"])
def test_tuning_on_gpu_with_mixed_precision(image_folder: Path, tmp_path: Path,
                                            precision: str) -> None:
    """The tuner on CUDA (autocast, GradScaler for fp16); the tuned model loads on CPU."""
    from fewshot import FewShotClassifier
    from fewshot.encoders import ImageEncoder

    paths = sorted(image_folder.rglob("*.png"))
    labels = [p.parent.name for p in paths]
    clf = FewShotClassifier(
        ImageEncoder("test_efficientnet", pretrained=False, device="cuda"), cache=False,
        tune={"epochs": 3, "batch_size": 8, "mixed_precision": precision},
    ).fit(paths, labels)
    report = clf.tuning_["report"]
    assert report["steps"] == 6 and all(np.isfinite(report["epoch_losses"]))
    folder = clf.save(tmp_path / "m")
    on_cpu = FewShotClassifier.load(folder, device="cpu", cache=False)
    np.testing.assert_allclose(on_cpu.predict_proba(paths), clf.predict_proba(paths), atol=1e-3)
