"""Few-shot text classification from Python: fit, evaluate, save, load, predict.

Run from the repository root:  python examples/text_classification.py
"""

from pathlib import Path

from fewshot import FewShotClassifier, classification_report, load_dataset

data = Path(__file__).parent / "data" / "support"
train = load_dataset(data, "train")  # 8 labelled tickets per class
test = load_dataset(data, "test")

clf = FewShotClassifier("all-MiniLM-L6-v2", head="logreg").fit(train.items, train.labels)
report = classification_report(test.labels, clf.predict(test.items))
print(f"accuracy {report['accuracy']:.3f}  macro-F1 {report['macro_f1']:.3f}  (n={report['n']})")

clf.save("runs/support-py", overwrite=True)
clf = FewShotClassifier.load("runs/support-py")  # JSON + safetensors, no pickle
for text, label, proba in zip(
    ["where is my package", "I cannot sign in"],
    clf.predict(["where is my package", "I cannot sign in"]),
    clf.predict_proba(["where is my package", "I cannot sign in"]).max(axis=1),
    strict=True,
):
    print(f"{text!r:28} -> {label} ({proba:.2f})")
