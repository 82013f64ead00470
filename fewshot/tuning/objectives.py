"""Contrastive objectives: what tuning minimises.

``auto`` (default): ``cosine`` with fewer than 20 classes, ``supcon`` from 20 on.

``cosine``: SetFit's cosine-similarity loss, but over every pair of a
class-aware batch instead of sampled pairs: mean squared error between the
cosine of each pair and 1 (same class) or 0, positive and negative pairs
weighted equally. One forward pass per item, every pair in the batch used.

``supcon``: supervised contrastive loss (Khosla et al., 2020) over the same
class-aware batches: each item is pulled towards every other item of its class
in the batch and pushed from the rest (softmax with a temperature).

``pairs``: SetFit's objective (Tunstall et al., 2022): sampled positive and
negative pairs, mean squared error between their cosine similarity and 1
(same class) or 0. Two forward passes per pair.

``distill``: SetFit's distillation objective: random pairs of unlabelled
items, mean squared error between the student's cosine similarity and the
teacher's (``ContrastiveTuner.tune(..., teacher=embeddings)``).

Multi-label rows (label lists, given to the losses as an indicator matrix):
the target of a pair is its label overlap, by ``overlap``: ``"shared"`` (1 when
the two rows share a label, else 0) or ``"jaccard"`` (shared labels over the
labels of either row, so a pair sharing one label of three pulls less). A row
with no label is a negative for every labelled row; two rows without labels
share nothing to learn from, so their pair is left out.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AUTO_SUPCON_FROM_CLASSES",
    "IN_BATCH",
    "OBJECTIVES",
    "OVERLAPS",
    "inbatch_cosine_loss",
    "pair_cosine_loss",
    "pair_targets",
    "resolve_objective",
    "supcon_loss",
]

OBJECTIVES = ("auto", "cosine", "supcon", "pairs", "distill")
#: Objectives computed over every pair of a class-aware batch (one forward pass per item).
IN_BATCH = ("cosine", "supcon")

#: How label lists make pair targets: ``shared`` (any label in common: 1) or ``jaccard``.
OVERLAPS = ("shared", "jaccard")

#: ``auto`` uses ``cosine`` below this many classes and ``supcon`` from it on
#: (measured: cosine was better on 2-6 classes, supcon on banking77's 77;
#: docs/benchmarks.md, "Contrastive tuning").
AUTO_SUPCON_FROM_CLASSES = 20


def resolve_objective(objective: str, n_classes: int) -> str:
    """The objective ``auto`` stands for with ``n_classes`` classes; others unchanged."""
    if objective != "auto":
        return objective
    return "supcon" if n_classes >= AUTO_SUPCON_FROM_CLASSES else "cosine"


def pair_targets(labels: Any, overlap: str = "shared") -> tuple[Any, Any]:
    """``(targets, valid)``: each pair's target in [0, 1] and whether the pair counts.

    ``labels``: class indices (one label per row: target 1 for the same class, 0
    otherwise) or a 0/1 indicator matrix (label lists: target by ``overlap``, see
    the module notes). ``valid`` leaves out each row with itself and, for label
    lists, pairs of two rows without a label.
    """
    import torch

    n = labels.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=labels.device)
    if labels.dim() == 1:
        return (labels[:, None] == labels[None, :]).float(), off
    Y = labels.float()
    shared = Y @ Y.T
    sizes = Y.sum(1)
    union = sizes[:, None] + sizes[None, :] - shared
    targets = shared / union.clamp(min=1.0) if overlap == "jaccard" else (shared > 0).float()
    return targets, off & (union > 0)


def supcon_loss(embeddings: Any, labels: Any, temperature: float = 0.07,
                overlap: str = "shared") -> Any:
    """Supervised contrastive loss of one batch; anchors without a positive are skipped.

    With graded targets (label lists, ``overlap="jaccard"``) each positive's log
    probability is weighted by its target.
    """
    import torch
    import torch.nn.functional as F

    z = F.normalize(embeddings.float(), dim=1)
    n = z.shape[0]
    logits = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    targets, valid = pair_targets(labels, overlap)
    positives = (targets > 0) & valid
    weights = targets.masked_fill(~positives, 0.0)
    n_pos = weights.sum(1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return z.sum() * 0.0  # no anchor has a positive: nothing to learn from this batch
    pos_log_prob = (log_prob.masked_fill(~positives, 0.0) * weights).sum(1)
    return -(pos_log_prob[has_pos] / n_pos[has_pos]).mean()


def pair_cosine_loss(a: Any, b: Any, targets: Any) -> Any:
    """SetFit's CosineSimilarityLoss: MSE between cos(a, b) and the target (0/1, or the
    teacher's cosine when distilling)."""
    import torch.nn.functional as F

    return F.mse_loss(F.cosine_similarity(a.float(), b.float()), targets.float())


def inbatch_cosine_loss(embeddings: Any, labels: Any, overlap: str = "shared") -> Any:
    """SetFit's cosine-similarity MSE over every pair of a class-aware batch.

    Positive pairs (target above 0: 1, or the label overlap of graded targets)
    and negative pairs (target 0) are averaged separately and weighted equally,
    as SetFit samples them in equal numbers.
    """
    import torch
    import torch.nn.functional as F

    z = F.normalize(embeddings.float(), dim=1)
    cos = z @ z.T
    targets, valid = pair_targets(labels, overlap)
    same = (targets > 0) & valid
    diff = (targets == 0) & valid
    parts = []
    if bool(same.any()):
        parts.append(((cos[same] - targets[same]) ** 2).mean())
    if bool(diff.any()):
        parts.append((cos[diff] ** 2).mean())
    if not parts:
        return z.sum() * 0.0
    return torch.stack(parts).mean()
