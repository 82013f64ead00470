"""Image encoder: any timm model, with timm's own preprocessing for it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from fewshot._progress import progress
from fewshot.encoders.base import Encoder, require_torch, resolve_device
from fewshot.encoders.resolve import (
    DEFAULT_IMAGE_ENCODER,
    check_hub,
    hub_failure,
    local_failure,
    resolve_image_model,
)
from fewshot.errors import ImageReadError

__all__ = ["ImageEncoder"]


class ImageEncoder(Encoder):
    """Embed images (paths or PIL images) with a timm backbone's pooled features.

    ``model`` is a timm name (DINOv2 ``vit_small_patch14_dinov2.lvd142m`` by
    default), ``local-dir:PATH`` or a folder holding timm's ``config.json`` and one
    weights file. Preprocessing comes from the model's pretrained config
    (``timm.data.resolve_model_data_config``), so weights and transform stay
    together. ``pretrained=False`` builds the architecture with seeded random
    weights (for tests, or to check a code path offline).
    """

    modality = "image"

    def __init__(
        self,
        model: Any = DEFAULT_IMAGE_ENCODER,
        *,
        pretrained: bool = True,
        device: str | None = None,
        normalize: bool = True,
        batch_size: int = 32,
        num_workers: int | None = None,
        show_progress: bool | None = None,
    ) -> None:
        super().__init__(
            model, device=device, normalize=normalize, batch_size=batch_size,
            show_progress=show_progress,
        )
        self.pretrained = pretrained
        self.num_workers = num_workers

    _LIBRARIES = ("torch", "torchvision", "timm", "pillow")

    def _load(self) -> None:
        require_torch(f"the image encoder {self.model if isinstance(self.model, str) else ''}"
                      .rstrip(), ("torch", "torchvision", "timm"))
        import timm
        import torch

        device = resolve_device(self.device)
        if isinstance(self.model, torch.nn.Module):
            net = self.model
            name = getattr(net, "default_cfg", {}).get("architecture", type(net).__name__)
        else:
            name = str(self.model)
            if self.pretrained:
                resolved = resolve_image_model(name)
                timm_name = name if resolved.source == "hub" else f"local-dir:{resolved.location}"
                check_hub("image", resolved)
                try:
                    net = timm.create_model(timm_name, pretrained=True, num_classes=0)
                except Exception as e:  # download/registry errors come in many types
                    if resolved.is_local:
                        raise local_failure("image", resolved, e) from e
                    raise hub_failure("image", resolved, e) from e
                self.resolved_ = resolved
            else:
                arch = name[len("local-dir:") :] if name.startswith("local-dir:") else name
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    try:
                        net = timm.create_model(arch, pretrained=False, num_classes=0)
                    except RuntimeError as e:
                        from fewshot.errors import EncoderNotFoundError

                        raise EncoderNotFoundError(
                            f"'{name}' is not a timm architecture; with pretrained=False "
                            "pass a registry name such as vit_small_patch14_dinov2"
                        ) from e
        net.eval().to(device)
        self.data_config_ = timm.data.resolve_model_data_config(net)
        self.transform_ = timm.data.create_transform(**self.data_config_, is_training=False)
        self.model_ = net
        self.name_ = name
        self.device_ = device
        # timm models set num_features as a plain int in __init__; the stubs' Module.__getattr__
        # (only reached for parameters, buffers and submodules) says Tensor | Module.
        self.dim_ = int(cast(int, net.num_features))

    def reference(self) -> dict[str, Any]:
        ref = super().reference()
        if not self.pretrained:
            ref["pretrained"] = False  # so loading rebuilds the seeded weights, not the hub's
        return ref

    def _resolve(self) -> Any:
        return resolve_image_model(str(self.model)) if self.pretrained else None

    def _identity(self) -> dict[str, Any]:
        cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config_.items()}
        return {"kind": "timm", "architecture": type(self.model_).__name__, "data_config": cfg}

    def item_key(self, item: Any) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        if isinstance(item, (str, os.PathLike)):
            try:
                h.update(Path(item).read_bytes())
            except OSError as e:
                raise ImageReadError(item, e.strerror or str(e)) from e
        else:  # a PIL image
            h.update(f"{item.mode}|{item.size}".encode())
            h.update(item.tobytes())
        return h.digest()

    def _encode(
        self, items: Sequence[Any], batch_size: int, show_progress: bool | None
    ) -> np.ndarray:
        import torch
        from torch.utils.data import DataLoader, Dataset

        workers = self.num_workers
        if workers is None:
            # On CPU the model needs the cores; on a GPU, decode in parallel.
            workers = 0 if self.device_ == "cpu" else min(8, os.cpu_count() or 1)
        # DataLoader takes any map-style dataset (__getitem__ and __len__); its stubs want a
        # torch Dataset subclass, which _Images is not (this module imports torch lazily).
        dataset = cast(
            "Dataset[tuple[Any, tuple[str, str] | None]]", _Images(items, self.transform_)
        )
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=self.device_ == "cuda",
        )
        out = np.empty((len(items), self.dim_), dtype=np.float32)
        pos = 0
        with (
            progress("Embedding images", len(items), show_progress) as advance,
            torch.inference_mode(),
        ):
            for batch, errors in loader:
                if errors:
                    raise ImageReadError(*errors[0])
                feats = self.model_(batch.to(self.device_, non_blocking=True))
                out[pos : pos + len(feats)] = feats.float().cpu().numpy()
                pos += len(feats)
                advance(len(feats))
        return out


    # -- training hooks -------------------------------------------------------------
    def training_items(self, items: Sequence[Any]) -> list[Any]:
        """Decoded RGB images, so each epoch does not decode the files again."""
        out = []
        for item in items:
            img, error = _decode(item)
            if error is not None:
                raise ImageReadError(*error)
            out.append(img)
        return out

    def training_batch(self, items: Sequence[Any], *, augment: bool = False) -> Any:
        import torch

        if augment and not hasattr(self, "train_transform_"):
            import timm

            # Random crops of most of the image, colour left alone and no flips
            # (digits and text in images are not mirror-symmetric).
            self.train_transform_ = timm.data.create_transform(
                **self.data_config_, is_training=True, scale=(0.6, 1.0), hflip=0.0,
                color_jitter=0.0, auto_augment=None,
            )
        transform = self.train_transform_ if augment else self.transform_
        return torch.stack([transform(img) for img in items]).to(self.device_)

    def training_forward(self, batch: Any) -> Any:
        return self.model_(batch)


def _decode(item: Any) -> tuple[Any, tuple[str, str] | None]:
    from PIL import Image

    try:
        if isinstance(item, (str, os.PathLike)):
            with Image.open(item) as im:
                return im.convert("RGB"), None
        return item.convert("RGB"), None
    except Exception as e:  # PIL raises many types for broken files
        return None, (str(item), str(e) or type(e).__name__)


class _Images:
    """Map-style dataset that reports unreadable files instead of raising in a worker."""

    def __init__(self, items: Sequence[Any], transform: Any) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Any, tuple[str, str] | None]:
        img, error = _decode(self.items[i])
        if error is not None:
            return None, error
        return self.transform(img), None


def _collate(batch: list[tuple[Any, tuple[str, str] | None]]) -> tuple[Any, list]:
    import torch

    errors = [err for _, err in batch if err is not None]
    if errors:
        return None, errors
    return torch.stack([x for x, _ in batch]), []
