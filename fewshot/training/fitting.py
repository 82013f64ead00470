"""The one fitting path: a head (and calibrator) on embeddings, as a FittedModel.

``FewShotClassifier.fit``, self-training, distillation and the benchmark's
tuned methods all fit through :func:`fit_embeddings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fewshot.errors import DataError, UsageError
from fewshot.model.state import Calibration, FittedModel, Thresholds

__all__ = ["CALIBRATIONS", "DEFAULT_CALIBRATION", "check_calibration", "fit_embeddings",
           "is_multi_label", "label_thresholds"]

#: Calibration methods by name (``None`` or ``"none"``: the head's own probabilities).
CALIBRATIONS = ("temperature", "isotonic")
#: The one default of the Python API and the CLI: probabilities you can threshold,
#: and the out-of-fold predictions that review thresholds and label shift need.
DEFAULT_CALIBRATION = "temperature"


def check_calibration(calibration: str | None, folds: Any = 5) -> str | None:
    """The calibration method (None for none); a bad name or fold count is a UsageError."""
    if calibration in (None, "none"):
        return None
    if calibration not in CALIBRATIONS:
        raise UsageError(f"unknown calibration '{calibration}' (calibration=, --calibration); "
                         "choose temperature, isotonic or none")
    if not (isinstance(folds, int | np.integer) and not isinstance(folds, bool) and folds >= 2):
        raise UsageError(f"calibration_folds must be a whole number of at least 2, got "
                         f"{folds!r}; use 5 (the default) or pass calibration=None")
    return calibration


def fit_embeddings(
    encoder: Any,
    Z: np.ndarray,
    y: Sequence[Any],
    *,
    head: Any = "auto",
    calibration: str | None = DEFAULT_CALIBRATION,
    calibration_folds: int = 5,
    extra: tuple[np.ndarray, Sequence[Any]] | None = None,
    pseudo: tuple[np.ndarray, Sequence[Any]] | None = None,
    n_train: int | None = None,
    **records: Any,
) -> FittedModel:
    """Fit ``head`` on embeddings ``Z`` of ``encoder`` with labels ``y``.

    ``extra`` rows (label descriptions) train the head and are never held out.
    ``pseudo`` rows (self-training's pseudo-labels) train the head only, never
    the calibration folds: they were picked by a model that saw every labelled
    row, so in a fold they would hand the held-out rows their own labels back
    and flatter the calibrator. With ``calibration``, the calibrator is fitted
    on out-of-fold predictions over ``Z`` (``calibration_folds`` folds).
    ``records`` (``tuning``, ``self_training``, ``distillation``,
    ``label_descriptions``) are kept on the model as given.
    """
    from sklearn.base import clone

    from fewshot.heads import make_head

    method = check_calibration(calibration, calibration_folds)
    template = make_head(head)
    if is_multi_label(y):
        return _fit_multi_label(encoder, Z, y, template, method, calibration_folds,
                                len(Z) if n_train is None else n_train, records)
    Ze, ye = extra if extra is not None else (Z[:0], [])
    Zp, yp = pseudo if pseudo is not None else (Z[:0], [])
    y_all = np.asarray([*y, *ye, *yp])
    try:
        fitted = clone(template).fit(np.concatenate([Z, Ze, Zp]), y_all)
    except ValueError as e:
        raise DataError(f"cannot fit the {template.name} head: {e}") from e
    classes = fitted.classes_
    index = {c: i for i, c in enumerate(classes.tolist())}
    y_idx_all = np.asarray([index[v] for v in y_all.tolist()], dtype=np.int64)
    model = FittedModel(
        encoder=encoder, head=fitted, n_train=len(Z) if n_train is None else n_train,
        class_counts=np.bincount(y_idx_all, minlength=len(classes)).astype(np.int64),
        **records,
    )
    if method is None:
        return model
    from fewshot.confidence.calibration import fit_calibrator, out_of_fold_proba

    y_idx, ye_idx = y_idx_all[: len(Z)], y_idx_all[len(Z) : len(Z) + len(Ze)]
    # The fitted head hands each fold its own choice (auto's pick), so folds need no search.
    proba, held = out_of_fold_proba(fitted, Z, y_idx, len(classes),
                                    n_splits=calibration_folds, extra=(Ze, ye_idx))
    calibrator, fallback = fit_calibrator(method, proba, y_idx,
                                          zero_probabilities=template.zero_probabilities)
    info = {"method": calibrator.name, "requested": method, "fallback": fallback,
            "folds": calibration_folds, "n_held_out": int(held.sum())}
    if records.get("tuning"):
        # The body was tuned on every fold, so held-out items are not truly unseen:
        # out-of-fold probabilities (and the calibrator) lean over-confident.
        info["body_tuned_on_all_folds"] = True
    model.calibration = Calibration(calibrator, info, proba[held].astype(np.float32),
                                    y_idx[held])
    return model


def is_multi_label(y: Sequence[Any]) -> bool:
    """Whether labels ``y`` are label lists (multi-label rows) rather than one label each."""
    return any(isinstance(v, list | tuple | set | frozenset) for v in y)


#: Held-out positives at which a label's own threshold and the global one weigh the same.
SHRINK_ROWS = 10


def label_thresholds(
    proba: np.ndarray, Y: np.ndarray, *, shrink_rows: int = SHRINK_ROWS
) -> tuple[np.ndarray, float]:
    """``(per-label thresholds, global threshold)`` from held-out probabilities.

    The global threshold maximises micro-F1 over all labels; each label's own
    maximises its F1, and is shrunk towards the global one by how many held-out
    positives back it: ``(n_pos * own + shrink_rows * global) / (n_pos + shrink_rows)``.
    Candidates are quantiles of the probabilities (2% to 98%), per label for its own
    threshold and over all labels for the global one: a head whose probabilities
    sit far from 0.5 (logistic regression on a few rows of a rare label) still
    gets thresholds inside its range.
    """
    qs = np.linspace(0.02, 0.98, 49)
    grids = np.quantile(proba, qs, axis=0).T  # (L, G): each label's own candidates
    shared = np.quantile(proba, qs)  # (G,)
    positive = Y.astype(bool)[:, :, None]

    def f1(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tp = (chosen & positive).sum(axis=0)  # (L, G)
        predicted, actual = chosen.sum(axis=0), positive.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_label = np.nan_to_num(2 * tp / (predicted + actual))
            micro = np.nan_to_num(2 * tp.sum(0) / (predicted.sum(0) + actual.sum(0)))
        return per_label, micro

    per_label, _ = f1(proba[:, :, None] >= grids[None, :, :])
    _, micro = f1(proba[:, :, None] >= shared)
    best_global = float(shared[int(np.argmax(micro))])
    own = grids[np.arange(len(grids)), np.argmax(per_label, axis=1)]
    n_pos = Y.sum(axis=0)
    values = (n_pos * own + shrink_rows * best_global) / (n_pos + shrink_rows)
    return values.astype(np.float64), best_global


def _fit_multi_label(
    encoder: Any, Z: np.ndarray, y: Sequence[Any], template: Any, method: str | None,
    folds: int, n_train: int, records: dict[str, Any],
) -> FittedModel:
    """One-vs-rest on the label lists ``y``; per-label thresholds on out-of-fold
    probabilities. Probabilities stay the head's own: the thresholds make the decisions."""
    from sklearn.base import clone
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import MultiLabelBinarizer

    if records.get("label_descriptions") or records.get("self_training"):
        raise UsageError("label descriptions and self-training work with one label per item; "
                         "drop them for multi-label data")
    binarizer = MultiLabelBinarizer()
    Y = binarizer.fit_transform([list(v) for v in y])
    names = np.asarray(binarizer.classes_)
    if len(names) < 2:
        raise DataError(f"the data has {len(names)} label(s) ({', '.join(map(str, names))}); "
                        "a classifier needs at least two: add examples of another label")
    fitted = clone(template).fit(Z, Y)
    k = min(folds, len(Z))
    info: dict[str, Any] = {"folds": k, "shrink_rows": SHRINK_ROWS, "n_held_out": len(Z)}
    if method is not None:
        info["calibration"] = (f"{method} not applied: per-label thresholds chosen on "
                               "out-of-fold probabilities make the decisions")
    if k < 2:
        values, info["global"] = np.full(len(names), 0.5), 0.5
        info["n_held_out"] = 0
    else:
        oof = np.zeros(Y.shape, dtype=np.float64)
        for train, test in KFold(k, shuffle=True, random_state=0).split(Z):
            oof[test] = clone(template).fit(Z[train], Y[train]).predict_proba(Z[test])
        values, info["global"] = label_thresholds(oof, Y)
    return FittedModel(
        encoder=encoder, head=fitted, n_train=n_train, label_names=names,
        class_counts=Y.sum(axis=0).astype(np.int64), thresholds=Thresholds(values, info),
        **records,
    )
