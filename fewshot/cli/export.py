"""``fewshot export``: a model folder whose encoder is ONNX, predicting without PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fewshot.cli._common import (
    ForceOpt,
    ImageFieldOpt,
    TextFieldOpt,
    check_output,
    handle_errors,
    info,
    load_data,
)


@handle_errors
def export(
    model_dir: Annotated[
        Path, typer.Argument(metavar="MODEL_DIR", help="Model folder from fewshot train.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to write the exported model to.")
    ],
    quantize: Annotated[
        str | None,
        typer.Option("--quantize",
                     help="int8: weights stored as int8 (dynamic quantization): a smaller, "
                     "faster model whose probabilities differ slightly.",
                     show_default="fp32"),
    ] = None,
    check_data: Annotated[
        Path | None,
        typer.Option("--check-data",
                     help="Items to compare the exported model with the original on (labels "
                     "not needed; a seeded sample of 256): best the training data or data "
                     "like it.",
                     show_default="built-in sentences, or generated images"),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="Split of a --check-data dataset folder.")
    ] = "train",
    text_field: TextFieldOpt = "text",
    image_field: ImageFieldOpt = None,
    force: ForceOpt = False,
) -> None:
    """Export the model in MODEL_DIR with its encoder as ONNX, for onnxruntime.

    The exported folder predicts with fewshot predict, evaluate and serve, and needs
    only pip install 'fewshot[runtime]' (no PyTorch). The export checks itself
    before writing: the original and the exported model predict the same items and
    their probabilities are compared; an fp32 export that differs is refused, an
    int8 one that changes labels is written with a warning. The figures are kept
    in the folder's manifest (encoder.export).
    """
    from fewshot.export import export_model
    from fewshot.model.folder import MODEL_FILES

    check_output(output, force, folder_of=MODEL_FILES,
                 inputs={"MODEL_DIR": model_dir, "--check-data": check_data})
    items, described = None, None
    if check_data is not None:
        ds = load_data(check_data, split, text_field=text_field, label_field="label",
                       image_field=image_field, require_labels=False)
        items, described = ds.items, f"--check-data {check_data}"
    result = export_model(model_dir, output, quantize=quantize, check_items=items,
                          check_source=described, overwrite=force)
    check = result.check
    kind = result.quantize or "fp32"
    info(f"exported {model_dir} to {output} (encoder.onnx, {kind}, "
         f"{result.graph_bytes / 1e6:.1f} MB)")
    info(f"check on {check['items']} items ({check['items_from']}): labels agree on "
         f"{check['label_agreement']:.2%}, max probability difference "
         f"{check['max_abs_diff']:.2g}, min embedding cosine {check['min_embedding_cosine']:.4f}")
