"""Does fusing the transformer graph (onnxruntime.transformers' optimizer) before dynamic
int8 quantization speed up an export? ag_news and trec, frozen MiniLM + auto head, 8 shots
(seed 0): torch, fp32, int8 (as fewshot export writes them) and the optimized fp32/int8.

    python benchmarks/export_fusion.py prepare   # models and graphs under /tmp/ox
    python benchmarks/export_fusion.py speed     # one JSON line per variant
"""
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from export_speed import read_jsonl as rd

W = Path("/tmp/ox")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def prepare():
    from onnxruntime.transformers.optimizer import optimize_model

    from fewshot import FewShotClassifier
    from fewshot.data.splits import few_shot_indices
    from fewshot.export import _update_config, export_model
    for name in ("ag_news", "trec"):
        t, lab = rd(DATA / name / "train.jsonl")
        idx = few_shot_indices(lab, 8, 0)
        x, y = [t[i] for i in idx], [lab[i] for i in idx]
        d = W / name
        if not (d / "torch/fewshot.json").exists():
            FewShotClassifier("all-MiniLM-L6-v2", cache=False, device="cpu",
                              show_progress=False).fit(x, y).save(d / "torch", overwrite=True)
        for q in (None, "int8"):
            out = d / (q or "fp32")
            if not (out / "fewshot.json").exists():
                export_model(d / "torch", out, quantize=q, check_items=x, overwrite=True)
        for q in ("fp32opt", "int8opt"):
            out = d / q
            if out.exists():
                continue
            shutil.copytree(d / "fp32", out)
            g = out / "encoder.onnx"
            m = optimize_model(str(g), model_type="bert", num_heads=0, hidden_size=0)
            print(name, q, m.get_fused_operator_statistics(), flush=True)
            m.save_model_to_file(str(g))
            if q == "int8opt":  # the fused ops have no type for the quantizer to infer
                import onnx
                from onnxruntime.quantization import QuantType, quantize_dynamic
                q8 = g.with_suffix(".q.onnx")
                quantize_dynamic(str(g), str(q8), weight_type=QuantType.QInt8, per_channel=True,
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
                q8.replace(g)
                _update_config(out, quantize="int8")
            _reset_id(out)


def _reset_id(folder):
    """The manifest records the graph's id; the rewritten graph has another."""
    import re

    from fewshot import FewShotClassifier
    from fewshot.errors import EncoderMismatchError
    try:
        FewShotClassifier.load(folder, cache=False)
    except EncoderMismatchError as e:
        new, old = re.findall(r"text-onnx-[0-9a-f]+", str(e))[:2]
        m = folder / "fewshot.json"
        m.write_text(m.read_text().replace(old, new))


def speed():
    import torch

    from fewshot import FewShotClassifier
    torch.set_num_threads(2)
    for name, limit in (("ag_news", 2000), ("trec", 500)):
        t, gold = rd(DATA / name / "test.jsonl")
        t, gold = t[:limit], np.asarray(gold[:limit])
        ref = rref = None
        for v in ("torch", "fp32", "int8", "fp32opt", "int8opt"):
            clf = FewShotClassifier.load(W / name / v, cache=False, device="cpu",
                                         show_progress=False)
            if v != "torch":
                clf.encoder_.set_params(threads=2)
            clf.predict_proba(t[:32])
            b = time.perf_counter()
            p = clf.predict_proba(t)
            s = time.perf_counter() - b
            lab = np.asarray(clf.classes_)[p.argmax(1)]
            if v == "torch":
                ref, rref, pref = lab, len(t) / s, p
            print(json.dumps({"dataset": name, "variant": v, "texts_per_s": round(len(t) / s, 1),
                              "ratio": round(len(t) / s / rref, 3),
                              "acc": round(float(np.mean(lab == gold)), 4),
                              "same_as_torch": round(float(np.mean(lab == ref)), 4),
                              "max_abs_diff": float(np.abs(p - pref).max())}), flush=True)


{"prepare": prepare, "speed": speed}[sys.argv[1]]()
