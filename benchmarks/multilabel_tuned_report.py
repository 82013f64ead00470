"""Tables and plots for docs/benchmarks.md from benchmarks/multilabel_tuned.sh's results.

    python benchmarks/multilabel_tuned_report.py

Prints per-seed rows and means (macro-F1, micro-F1, fit wall and CPU seconds, the
tuned/setfit fit-time ratios on the seeds both ran) and writes the bench's plots to
docs/img/multilabel_tuned_*.png.
"""

from __future__ import annotations

import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from fewshot.bench import load_results, plot

    folders = [Path(a) for a in sys.argv[1:]] or [
        ROOT / "benchmarks" / "results" / "multilabel_tuned",
        ROOT / "benchmarks" / "results" / "multilabel_tuned_64"]
    rows = [r for f in folders for r in load_results(f / "results.jsonl") if not r.get("error")]
    last = {(r["n_shot"], r["seed"], r["method"]): r for r in rows}
    print("| shots | seed | method | macro-F1 | micro-F1 | samples-F1 | subset acc | Hamming "
          "| fit s | fit CPU s | predict s |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (n, s, m), r in sorted(last.items()):
        cpu = r.get("fit_cpu_seconds")
        print(f"| {n} | {s} | {m} | {r['macro_f1']:.4f} | {r['micro_f1']:.4f} | "
              f"{r['samples_f1']:.4f} | {r['subset_accuracy']:.4f} | {r['hamming_loss']:.4f} | "
              f"{r['fit_seconds']:.1f} | {'-' if cpu is None else f'{cpu:.1f}'} | "
              f"{r['predict_seconds']:.1f} |")
    print()
    for n in sorted({k[0] for k in last}):
        for m in sorted({k[2] for k in last if k[0] == n}):
            vals = [r["macro_f1"] for (nn, _, mm), r in last.items() if nn == n and mm == m]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            print(f"{n}-shot {m}: macro-F1 {statistics.fmean(vals):.4f} +- {sd:.4f} "
                  f"over {len(vals)} seed(s)")
        setfit = {s: r for (nn, s, m), r in last.items() if nn == n and m == "setfit-lib"}
        for m in sorted({k[2] for k in last if k[0] == n and k[2].startswith("tuned")}):
            both = [s for (nn, s, mm) in last if nn == n and mm == m and s in setfit]
            for key in ("fit_seconds", "fit_cpu_seconds"):
                pairs = [(last[(n, s, m)].get(key), setfit[s].get(key)) for s in both]
                pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
                if pairs:
                    ratio = sum(a for a, _ in pairs) / sum(b for _, b in pairs)
                    print(f"{n}-shot {m} / setfit-lib {key}: {ratio:.3f} "
                          f"(seeds {[s for s in both]})")
    out = folders[0]
    for p in plot(rows, out):
        target = ROOT / "docs" / "img" / f"multilabel_tuned_{p.name}"
        shutil.copyfile(p, target)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
