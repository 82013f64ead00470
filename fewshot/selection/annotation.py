"""Choose what to label next from an unlabelled pool (selective annotation).

- ``diverse``: needs no labels. The pool is clustered into ``budget + n_labelled``
  groups (k-means on the embeddings) and, in each of the largest groups holding
  no labelled item, the item nearest the group's centre is chosen: the picks
  represent the pool like a stratified sample, one per region, which is what a
  head trained on a few labels needs most. (TypiClust, Hacohen et al. 2022, picks
  the densest item of each group instead; in the simulation in
  docs/benchmarks.md the centre was better on trec and ag_news at every budget
  and on sst5 up to 4 labels per class, and at most 0.01 worse elsewhere.)
- ``uncertain``: the items the current model is least sure of (smallest margin
  between its top two probabilities), with a diversity guard: the most
  uncertain ``10 x budget`` items are clustered into ``budget`` groups and the
  most uncertain item of each group is taken, so a batch is not ten copies of
  one confusing phrasing.
- ``hybrid``: ``diverse`` while there is no model; with one, the same groups as
  ``diverse``, but in each group the most uncertain of its central items (the
  fifth of the group nearest its centre, at most 10): representative of a region
  not yet labelled *and* informative to the current model (density-weighted
  uncertainty, Settles & Craven 2008). A fraction rather than a fixed count keeps
  the candidates central when the groups are small (many classes, large budgets).
  Margins are only worth following from a model that beats a guess:
  :func:`informative_model` tests that on its out-of-fold predictions, and
  :func:`labelled_model_margins` (behind ``fewshot suggest``; the benchmark does
  the same) gives ``hybrid`` no ``proba`` until it does, so ``hybrid`` stays
  ``diverse`` while the model is no better than naming the most common label. (A
  model fitted without calibration keeps no out-of-fold predictions; its margins
  are followed untested, and the note says so.)
- ``random``: a seeded uniform draw, the baseline.

Multi-label models (independent per-label probabilities, each label decided by its
own threshold) have no "top two labels": with ``thresholds``, an item's uncertainty
is that of its closest call, ``exp(-min_j |logit(p_j) - logit(t_j)|)``: 1 when some
label's probability sits on its threshold, falling as every label's decision gets
clearer (the least-confident binary decision, "BinMin" in Brinker 2006, on the
log-odds scale the one-vs-rest heads work in, so a rare label's threshold of 0.05
is as open to doubt as a common one's 0.5). A multi-label model keeps no
out-of-fold predictions to test against a guess, so ``hybrid`` follows its margins
untested, and says so.

With ``prototypes`` (the embedded label descriptions, one row per class),
``diverse`` and ``hybrid`` stratify by the class each item's nearest description
names: the budget is dealt over those strata (the stratum with the fewest items
picked or labelled so far first, larger strata first on ties) and the strategy
runs inside each. A label-free choice sees only the embedding space,
whose large directions need not be the labels' (on sst5 they are about topic, not
sentiment); the descriptions point the picks at every label. Measured in
docs/benchmarks.md: above random at every budget on sst5, ag_news, trec and
banking77, where plain ``diverse`` is below random on sst5 at 1x and 2x.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from fewshot.errors import DataError, UsageError
from fewshot.heads.base import l2n

__all__ = ["ANNOTATION_STRATEGIES", "Suggestion", "decision_thresholds", "informative_model",
           "labelled_model", "labelled_model_margins", "suggest"]

ANNOTATION_STRATEGIES = ("diverse", "uncertain", "hybrid", "random")


class Suggestion(NamedTuple):
    """A pool index to label, its score (cosine to its region's centre, or uncertainty) and why."""

    # Shadows tuple.index (mypy: assignment); renaming it would break the public API.
    index: int  # type: ignore[assignment]
    score: float
    reason: str


def _kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, centres)`` of ``x`` in ``k`` groups (mini-batch k-means on big pools)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    k = min(k, len(x))
    if len(x) > 20_000:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=3)
    labels = model.fit_predict(x)
    return labels, model.cluster_centers_.astype(np.float32)


def _regions(
    x: np.ndarray, budget: int, labelled: np.ndarray, seed: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]:
    """``(uncovered, covered)`` regions, each largest first: ``(free members, cosine to centre)``.

    The pool is split into ``budget + n_labelled`` k-means groups; groups holding
    a labelled item are covered already. Members are the group's unlabelled items,
    most central first (for unit vectors, the highest cosine to the centre is the
    nearest to it).
    """
    assign, centres = _kmeans(x, budget + len(labelled), seed)
    covered = set(assign[labelled].tolist())
    free = np.ones(len(x), dtype=bool)
    free[labelled] = False
    by_group = np.argsort(assign, kind="stable")
    sizes = np.bincount(assign, minlength=len(centres))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    out: tuple[list, list] = ([], [])
    for c in np.argsort(-sizes, kind="stable"):
        members = by_group[starts[c] : starts[c + 1]]
        members = members[free[members]]
        if len(members):
            direction = centres[c] / max(float(np.linalg.norm(centres[c])), 1e-12)
            cos = x[members] @ direction
            order = np.argsort(-cos, kind="stable")
            out[c in covered].append((members[order], cos[order]))
    return out


#: ``hybrid`` draws from the most central fifth of a region, at most 10 items
CENTRAL_FRACTION, MAX_CANDIDATES = 0.2, 10


def _candidates(region_size: int) -> int:
    """How many of a region's most central items ``hybrid`` chooses among."""
    return int(min(MAX_CANDIDATES, max(1, np.ceil(CENTRAL_FRACTION * region_size))))


def _per_region(
    x: np.ndarray, budget: int, labelled: np.ndarray, seed: int,
    uncertainty: np.ndarray | None = None,
) -> list[Suggestion]:
    """One item per uncovered region: its most central (``diverse``), or with
    ``uncertainty`` the most uncertain of its most central items (``hybrid``)."""
    uncovered, covered = _regions(x, budget, labelled, seed)
    reason = "diverse" if uncertainty is None else "hybrid"
    out: list[Suggestion] = []

    def add(j: int, cos: float) -> None:  # hybrid's score is the uncertainty
        out.append(Suggestion(j, cos if uncertainty is None else float(uncertainty[j]), reason))

    for members, cos in uncovered[:budget]:
        if uncertainty is None:
            add(int(members[0]), float(cos[0]))
        else:
            cand = members[:_candidates(len(members))]
            add(int(cand[int(np.argmax(uncertainty[cand]))]), 0.0)
    # Fewer uncovered regions than the budget (k-means leaves groups empty on pools
    # full of duplicates, or labelled items cover most groups): take the next most
    # central items of the uncovered regions in turn, then those of covered ones.
    taken = {s.index for s in out}
    for regions in (uncovered, covered):
        depth = 0
        while len(out) < budget and depth < max((len(m) for m, _ in regions), default=0):
            for members, cos in regions:
                if len(out) == budget:
                    break
                if depth < len(members) and int(members[depth]) not in taken:
                    add(int(members[depth]), float(cos[depth]))
                    taken.add(int(members[depth]))
            depth += 1
    return out


def _strata(
    x: np.ndarray, budget: int, labelled: np.ndarray, seed: int, prototypes: np.ndarray,
    uncertainty: np.ndarray | None = None,
) -> list[Suggestion]:
    """``diverse`` (``hybrid`` with ``uncertainty``) inside strata of the nearest
    prototype, the budget dealt over them."""
    k = len(prototypes)
    nearest = np.argmax(x @ prototypes.T, axis=1)
    sizes = np.bincount(nearest, minlength=k)
    # Copies of one labelled item (a pool with duplicates) count once for their stratum.
    distinct = labelled[np.unique(x[labelled], axis=0, return_index=True)[1]] if len(
        labelled) else labelled
    seen = np.bincount(nearest[distinct], minlength=k)
    free = np.ones(len(x), dtype=bool)
    free[labelled] = False
    available = np.bincount(nearest[free], minlength=k)
    share = np.zeros(k, dtype=np.int64)
    dealt: list[int] = []  # the stratum of each pick, in the order the budget was dealt
    for _ in range(budget):
        open_ = np.flatnonzero(available > share)
        # Fewest picked or labelled first; the larger stratum on a tie.
        s = int(open_[np.lexsort((-sizes[open_], (seen + share)[open_]))[0]])
        share[s] += 1
        dealt.append(s)
    picks: dict[int, list[Suggestion]] = {}
    for s in np.flatnonzero(share).tolist():
        members = np.flatnonzero(nearest == s)
        local = np.flatnonzero(~free[members])
        unc = None if uncertainty is None else uncertainty[members]
        found = _per_region(x[members], int(share[s]), local, seed, uncertainty=unc)
        picks[s] = [p._replace(index=int(members[p.index])) for p in found]
    # Best first: in the order the budget was dealt, so the first B of a larger budget
    # are the budget-B answer.
    queues = {s: iter(p) for s, p in picks.items()}
    return [next(queues[s]) for s in dealt]


def informative_model(
    oof_proba: np.ndarray, oof_labels: np.ndarray, alpha: float = 0.05
) -> tuple[bool, str]:
    """Whether a model's margins are worth following: is it better than a guess?

    ``hybrid`` trades a region's most central item for its most uncertain one,
    which only helps if the model's uncertainty means something. A model that is
    no better than always naming the most common class on its own held-out rows
    (out-of-fold predictions over the labelled items; one-sided binomial test at
    ``alpha``) has margins that are noise, and ``hybrid`` should stay ``diverse``.
    ``oof_labels`` are class indices (columns of ``oof_proba``), as in
    ``FewShotClassifier.oof_labels_``. Returns the verdict and a one-line reason.
    """
    from scipy.stats import binomtest

    proba = np.asarray(oof_proba, dtype=np.float64)
    raw = np.asarray(oof_labels)
    if raw.size and (raw.dtype.kind not in "iu" or raw.min() < 0
                     or (proba.ndim == 2 and raw.max() >= proba.shape[1])):
        raise UsageError(
            "oof_labels must be class indices (columns of oof_proba), like "
            "FewShotClassifier.oof_labels_; map the labels to their column numbers"
        )
    labels = raw.astype(np.int64)
    held = ~np.isnan(proba).any(axis=1) if len(proba) else np.zeros(0, dtype=bool)
    proba, labels = proba[held], labels[held]
    n = len(labels)
    more = "label at least two items of two or more classes"
    if n == 0:
        return False, (
            f"no labelled class has two items to hold out, so the model is untested; {more}"
        )
    if len(np.unique(labels)) < 2:
        return False, f"only one label could be held out, so the model is untested; {more}"
    right = int((proba.argmax(axis=1) == labels).sum())
    base = float(np.bincount(labels).max() / n)
    p = float(binomtest(right, n, base, alternative="greater").pvalue)
    verdict = p < alpha
    return verdict, (
        f"{right} of {n} ({right / n:.2f}) held-out labelled items right, against {base:.2f} "
        f"for the most common label (p={p:.3f}); "
        + ("better than a guess" if verdict else
           "not measurably better than a guess: label more items and hybrid will follow its "
           "margins once it is")
    )


def labelled_model(
    encoder: Any, items: Sequence[Any], labels: Sequence[Any], *, cache: Any = None
) -> Any:
    """The model whose margins ``uncertain`` and ``hybrid`` follow when none is given:
    a FewShotClassifier fitted on the items labelled so far, or None below two labels.
    ``labels`` may be label lists (multi-label): the model is then one-vs-rest.

    Class-weighted logistic regression, as the labels picked so far are rarely
    balanced; temperature-calibrated, which keeps the out-of-fold predictions
    :func:`labelled_model_margins` tests it on (single-label).
    """
    lists = any(isinstance(y, list | tuple | set | frozenset) for y in labels)
    if len({y for ys in labels for y in ys} if lists else set(labels)) < 2:
        return None
    from fewshot.classifier import FewShotClassifier
    from fewshot.heads import make_head

    return FewShotClassifier(encoder, make_head("logreg", class_weight="balanced"),
                             cache=cache, calibration="temperature").fit(items, labels)


def labelled_model_margins(
    model: Any, embeddings: np.ndarray, *, strategy: str = "hybrid"
) -> tuple[np.ndarray | None, str | None]:
    """``(proba, note)``: what :func:`suggest` should get as ``proba`` for the pool, and
    for ``hybrid`` one line on whether it follows the model's margins, and why.

    ``model`` is a fitted FewShotClassifier (or None: no probabilities) whose
    encoder gave ``embeddings``; ``proba`` are its head's probabilities. For
    ``hybrid`` they are None (picks stay ``diverse``) unless the model beats a
    guess on its out-of-fold predictions (:func:`informative_model`); a model
    fitted without calibration keeps none, so its margins are followed untested.
    """
    if model is None:
        return None, None
    proba = model.head_.predict_proba(embeddings)
    if strategy != "hybrid":
        return proba, None
    if model.multi_label_:
        return proba, (
            "the model is multi-label and keeps no out-of-fold predictions to test it on; "
            "its margins (each label's distance from its threshold) are followed untested"
        )
    if model.calibrator_ is None:
        return proba, (
            "the model was fitted without calibration, so it keeps no out-of-fold "
            "predictions to test it on; its margins are followed untested (refit it with "
            "calibration, fewshot train's default, to have them tested)"
        )
    trusted, why = informative_model(model.oof_proba_, model.oof_labels_)
    if trusted:
        return proba, f"following the model's margins; {why}"
    return None, f"picks stay diverse; {why}"


def decision_thresholds(model: Any) -> np.ndarray | None:
    """The per-label thresholds a multi-label FewShotClassifier decides by (its
    ``threshold`` override for every label when set), or None for a single-label one."""
    if model is None or not model.multi_label_:
        return None
    n = len(model.classes_)
    if model.threshold is not None:
        return np.full(n, float(model.threshold))
    fitted = model.model_.thresholds
    return np.full(n, 0.5) if fitted is None else np.asarray(fitted.values, dtype=np.float64)


def _margin_uncertainty(proba: np.ndarray) -> np.ndarray:
    if proba.shape[1] < 2:
        return np.zeros(len(proba), dtype=np.float32)
    top2 = -np.partition(-proba, 1, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])


#: Log-odds are taken of probabilities clipped this far from 0 and 1 (vote shares).
_LOGIT_CLIP = 1e-4


def _threshold_uncertainty(proba: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Multi-label: ``exp(-min_j |logit(p_j) - logit(t_j)|)``, 1 on a threshold."""

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, _LOGIT_CLIP, 1 - _LOGIT_CLIP)
        return np.log(p) - np.log1p(-p)

    gap = np.abs(logit(proba) - logit(np.asarray(thresholds, dtype=np.float64)))
    return np.exp(-gap.min(axis=1)) if proba.shape[1] else np.zeros(len(proba))


def _uncertainty(proba: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
    p = np.asarray(proba, dtype=np.float64)
    return _margin_uncertainty(p) if thresholds is None else _threshold_uncertainty(
        p, thresholds)


def _uncertain(
    x: np.ndarray, unc: np.ndarray, budget: int, exclude: set[int], seed: int
) -> list[Suggestion]:
    order = np.argsort(-unc, kind="stable")
    keep = np.ones(len(unc), dtype=bool)
    keep[np.fromiter(exclude, dtype=np.int64, count=len(exclude))] = False
    allowed = order[keep[order]]
    cand = allowed[: min(len(allowed), 10 * budget)]
    if len(cand) <= budget:
        return [Suggestion(int(i), float(unc[i]), "uncertain") for i in cand]
    groups, _ = _kmeans(x[cand], budget, seed)
    out = []
    for g in range(groups.max() + 1):
        members = cand[groups == g]
        if len(members):
            j = members[int(np.argmax(unc[members]))]
            out.append(Suggestion(int(j), float(unc[j]), "uncertain"))
    # k-means leaves groups empty on pools full of duplicates: fill the budget with
    # the next most uncertain candidates.
    taken = {s.index for s in out}
    for i in cand:
        if len(out) >= budget:
            break
        if int(i) not in taken:
            out.append(Suggestion(int(i), float(unc[i]), "uncertain"))
            taken.add(int(i))
    return sorted(out, key=lambda s: -s.score)[:budget]


def suggest(
    embeddings: np.ndarray,
    budget: int,
    *,
    strategy: str = "diverse",
    labelled: Sequence[int] | None = None,
    proba: np.ndarray | None = None,
    seed: int = 0,
    prototypes: np.ndarray | None = None,
    thresholds: np.ndarray | None = None,
) -> list[Suggestion]:
    """``budget`` pool indices to label next, best first.

    ``embeddings`` are the pool's; ``labelled`` are pool indices whose labels are
    already known (never suggested again); ``proba`` are the current model's
    class probabilities for every pool item (needed by ``uncertain``);
    ``prototypes`` are label descriptions embedded by the same encoder, one row
    per class, which ``diverse`` and ``hybrid`` spread the picks over.
    ``thresholds`` (one per column of ``proba``) say ``proba`` are a multi-label
    model's independent per-label probabilities, each label decided by its
    threshold (:func:`decision_thresholds`); uncertainty is then each item's
    closest call (see the module notes).
    """
    if strategy not in ANNOTATION_STRATEGIES:
        raise UsageError(
            f"unknown strategy '{strategy}'; choose one of {', '.join(ANNOTATION_STRATEGIES)}"
        )
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise UsageError(
            f"embeddings must be a 2-D array (one row per pool item), got shape {x.shape}"
        )
    x = l2n(x)
    n = len(x)
    given = np.asarray([] if labelled is None else labelled)
    if given.dtype == bool:
        raise UsageError(
            "labelled takes pool indices, not a boolean mask; pass np.flatnonzero(mask)"
        )
    if given.size and given.dtype.kind not in "iu":
        raise UsageError(
            f"labelled takes whole-number pool indices, got {given.dtype} values; "
            "pass the indices as integers"
        )
    labelled_arr = np.unique(given.astype(np.int64))
    if n == 0:
        raise DataError("the pool is empty; give items to choose from")
    if len(labelled_arr) and (labelled_arr[0] < 0 or labelled_arr[-1] >= n):
        bad = int(labelled_arr[0] if labelled_arr[0] < 0 else labelled_arr[-1])
        raise UsageError(f"labelled index {bad} is outside the pool (0 to {n - 1})")
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer):
        raise UsageError(f"budget must be a whole number of items, got {budget!r}")
    budget = int(budget)
    if budget < 1:
        raise UsageError(f"budget must be at least 1, got {budget}")
    free = n - len(labelled_arr)
    if budget > free:
        raise DataError(
            f"budget {budget} is larger than the unlabelled pool ({free} items); lower the budget"
        )
    if proba is not None and np.ndim(proba) != 2:
        raise UsageError(
            f"proba must be a 2-D array (one row of class probabilities per pool item), "
            f"got shape {np.shape(proba)}"
        )
    if proba is not None and len(proba) != n:
        raise DataError(f"got probabilities for {len(proba)} items but the pool has {n}")
    if thresholds is not None:
        cuts = np.asarray(thresholds, dtype=np.float64)
        if proba is None:
            raise UsageError("thresholds go with a multi-label model's probabilities; "
                             "pass proba= too, or drop thresholds")
        if cuts.shape != (np.shape(proba)[1],) or not np.all((cuts >= 0) & (cuts <= 1)):
            raise UsageError(
                f"thresholds must be one number in [0, 1] per column of proba "
                f"({np.shape(proba)[1]}), got shape {cuts.shape}"
            )
    protos = None
    if prototypes is not None:
        try:
            protos = np.asarray(prototypes, dtype=np.float32)
        except (TypeError, ValueError):
            raise UsageError(
                "prototypes must be embedded vectors, not texts; pass "
                "encoder.encode(descriptions)"
            ) from None
        if protos.ndim != 2 or protos.shape[1] != x.shape[1] or len(protos) < 2:
            raise UsageError(
                f"prototypes must be a 2-D array of at least two label descriptions with the "
                f"pool's {x.shape[1]} dimensions, got shape {protos.shape}; embed the "
                "descriptions with the pool's encoder"
            )
        broken = np.flatnonzero(~np.isfinite(protos).all(axis=1) | ~protos.any(axis=1))
        if len(broken):
            raise UsageError(
                f"prototype row {int(broken[0])} is not finite or is all zeros; re-embed the "
                "label descriptions with the pool's encoder"
            )
        if strategy in ("random", "uncertain"):
            raise UsageError(
                f"label descriptions guide 'diverse' and 'hybrid' only, not '{strategy}'; "
                "drop them or choose diverse or hybrid"
            )
        protos = l2n(protos)
    if strategy == "random":
        rng = np.random.default_rng(seed)
        pool = np.setdiff1d(np.arange(n), labelled_arr)
        return [Suggestion(int(i), 0.0, "random") for i in rng.choice(pool, budget, False)]
    if strategy == "uncertain":
        if proba is None:
            raise UsageError(
                "strategy 'uncertain' needs a model's probabilities: pass proba= (CLI: --model "
                "MODEL_DIR, or --labelled FILE with at least two labels)"
            )
        return _uncertain(x, _uncertainty(proba, thresholds), budget,
                          set(labelled_arr.tolist()), seed)
    if strategy == "hybrid" and proba is not None:
        unc = _uncertainty(proba, thresholds)
        if protos is not None:
            return _strata(x, budget, labelled_arr, seed, protos, uncertainty=unc)
        return _per_region(x, budget, labelled_arr, seed, uncertainty=unc)
    if protos is not None:
        return _strata(x, budget, labelled_arr, seed, protos)
    return _per_region(x, budget, labelled_arr, seed)
