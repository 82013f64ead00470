"""Few-shot image classification: 8 images per class, frozen backbone, logreg, kNN and centroid.

Run from the repository root:  python examples/image_classification.py [DATASET] [--encoder NAME]

DATASET is a folder with train/<label>/* and test/<label>/* (default: the ants vs
bees set in ../shared/data/hymenoptera). The encoder defaults to DINOv2 ViT-S/14,
downloaded from the Hugging Face Hub; offline, pass a timm ``local-dir:`` folder
(this script uses ../shared/models/mobilenetv2-tf-in1k when it exists).
"""

import argparse
from pathlib import Path

from fewshot import FewShotClassifier, classification_report, few_shot_indices, load_dataset

root = Path(__file__).resolve().parents[1]
local = root.parent / "shared" / "models" / "mobilenetv2-tf-in1k"
parser = argparse.ArgumentParser()
parser.add_argument("dataset", nargs="?", default=root.parent / "shared" / "data" / "hymenoptera")
parser.add_argument(
    "--encoder",
    default=f"local-dir:{local}" if local.is_dir() else "vit_small_patch14_dinov2.lvd142m",
)
parser.add_argument("--shots", type=int, default=8)
args = parser.parse_args()

train = load_dataset(args.dataset, "train")
test = load_dataset(args.dataset, "test")
few = train.subset(few_shot_indices(train.labels, args.shots, seed=0))
print(f"{len(few)} training images ({args.shots} per class), {len(test)} test images")
print(f"encoder: {args.encoder}")

for head in ("logreg", "knn", "centroid"):
    clf = FewShotClassifier(args.encoder, head=head).fit(few.items, few.labels)
    acc = classification_report(test.labels, clf.predict(test.items))["accuracy"]
    print(f"{head:9} accuracy {acc:.3f}")
