"""Wall time of the README's tuning snippet: tune=True on the 32 support tickets.

    python benchmarks/tuning_time.py

The first fit in a process includes loading all-MiniLM-L6-v2; later ones do not.
Run it on an idle machine: other work on the same cores multiplies the time.
"""

import time

from fewshot import FewShotClassifier, load_dataset

train = load_dataset("examples/data/support", "train")
for run in range(2):
    start = time.perf_counter()
    clf = FewShotClassifier("all-MiniLM-L6-v2", tune=True, cache=False, show_progress=False)
    clf.fit(train.items, train.labels)
    report = clf.tuning_["report"]
    print(f"fit {run + 1}: {len(train.items)} examples, {time.perf_counter() - start:.1f} s "
          f"({report['steps']} tuning steps in {report['seconds']:.1f} s)")
