"""Calibrated probabilities: out-of-fold predictions, temperature scaling, isotonic.

A few-shot head is fitted on every labelled example, so its probabilities on
those examples say nothing about how far to trust it. Calibration therefore
works on *out-of-fold* probabilities: the labelled set is split into folds and
each fold is predicted by a head fitted on the others. A calibrator fitted on
those maps the full head's probabilities to calibrated ones. Fold models are
regularised like the final one (``Head.for_subsample``: logistic regression keeps
its penalty per example), so their confidence is close to the final model's.

Few-shot fallbacks: a class with a single labelled example is never held out
(its fold models would not know the class); with no example to hold out at all
the calibrator stays the identity. Isotonic regression needs many examples per
class, so below ``min_isotonic`` held-out examples of some class it falls back
to temperature scaling (one parameter, hard to overfit).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from fewshot._math import expit, softmax
from fewshot.heads.base import fold_ids

__all__ = [
    "CALIBRATORS",
    "Calibrator",
    "IdentityCalibration",
    "IsotonicCalibration",
    "TemperatureScaling",
    "fit_calibrator",
    "fold_ids",
    "held_out_calibrated",
    "out_of_fold_proba",
]

#: Smallest smoothing added to probabilities before taking logs (kNN votes can be 0).
EPS = 1e-4
#: 95% points of chi-squared by degrees of freedom: the likelihood-ratio test a
#: fitted temperature (1 parameter; 2 with the smoothing term) must pass before it
#: replaces the head's own probabilities.
CHI2_95 = {1: 3.841, 2: 5.991}


# -- out-of-fold predictions -------------------------------------------------------------
def out_of_fold_proba(
    head: Any,
    Z: Any,
    y_idx: Any,
    n_classes: int,
    *,
    n_splits: int = 5,
    extra: tuple[Any, Any] | None = None,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(proba, held_out)``: each labelled row predicted by a head fitted without it.

    ``head`` is cloned for each fold (through ``head.for_subsample`` when it has
    one, so that a fold model is regularised like the final model); ``y_idx``
    indexes ``0..n_classes-1``.
    ``extra = (Z_extra, y_extra)`` rows (label descriptions, pseudo-labels) are
    in every fold's training part and never held out. Rows that could not be
    held out (a class with one example) have ``held_out`` false and NaN proba.
    Columns of a class a fold model never saw are 0.
    """
    Z = np.asarray(Z, dtype=np.float32)
    y_idx = np.asarray(y_idx, dtype=np.int64)
    folds = fold_ids(y_idx, n_splits, random_state)
    proba = np.full((len(Z), n_classes), np.nan)
    if extra is not None and len(extra[0]):
        Ze, ye = np.asarray(extra[0], dtype=np.float32), np.asarray(extra[1], dtype=np.int64)
    else:
        Ze, ye = np.zeros((0, Z.shape[1]), np.float32), np.zeros(0, np.int64)
    for f in np.unique(folds[folds >= 0]):
        test = folds == f
        Xf = np.concatenate([Z[~test], Ze])
        yf = np.concatenate([y_idx[~test], ye])
        model = _subsample_clone(head, len(Xf) / (len(Z) + len(Ze))).fit(Xf, yf)
        p = np.zeros((int(test.sum()), n_classes))
        p[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(Z[test])
        proba[test] = p
    return proba, folds >= 0


def _subsample_clone(head: Any, fraction: float) -> Any:
    if hasattr(head, "for_subsample"):
        return head.for_subsample(fraction)
    from sklearn.base import clone

    return clone(head)


# -- calibrators -------------------------------------------------------------------------
def _log_loss(logits: np.ndarray, y_idx: np.ndarray) -> float:
    """Mean cross-entropy of ``softmax(logits)`` against the columns ``y_idx``; written
    out, as scipy's ``logsumexp`` in the optimiser makes a temperature fit 2.4x slower."""
    m = logits.max(axis=1)
    lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=1))
    return float(np.mean(lse - logits[np.arange(len(logits)), y_idx]))


class Calibrator:
    """Maps a head's probabilities ``(n, K)`` to calibrated ones (rows sum to 1).

    Saved as a JSON config plus named arrays (safetensors), like heads.
    """

    name: ClassVar[str] = ""

    def fit(self, proba: np.ndarray, y_idx: np.ndarray) -> Calibrator:
        raise NotImplementedError

    def transform(self, proba: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"method": self.name}, {}

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Calibrator:
        return cls()


class IdentityCalibration(Calibrator):
    """Leaves probabilities as they are (the fallback with nothing to fit on)."""

    name = "identity"

    def fit(self, proba: np.ndarray, y_idx: np.ndarray) -> IdentityCalibration:
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        return np.asarray(proba, dtype=np.float32)


class TemperatureScaling(Calibrator):
    """``softmax(log(p + eps) / T)``, ``T`` (and ``eps``) fitted by penalised log-loss.

    Temperature scaling (Guo et al. 2017) with one more parameter for heads whose
    probabilities are not a softmax: ``eps`` says how much probability a class
    with no kNN vote keeps. It is only fitted with ``fit_smoothing`` (heads whose
    probabilities can be exactly 0); for softmax heads (logistic regression,
    centroid) ``log(p)`` are the logits up to a constant and a fitted ``eps`` would
    only add a way to overfit a few dozen held-out rows.

    ``1/T`` gets a log-normal prior centred on 1 (the head's own probabilities)
    with standard deviation ``prior_sd`` (in log units), i.e. the fit minimises
    ``mean log-loss + log(1/T)^2 / (2 * prior_sd^2 * n)``: with a few dozen
    held-out rows from near-chance fold models the prior keeps ``T`` from running
    to the extremes, with hundreds it is negligible. ``evidence_`` is the
    likelihood-ratio statistic ``2 n (loss(T=1) - loss(T))`` of the fit against the
    head's own probabilities; :func:`fit_calibrator` keeps the probabilities
    unchanged when it is not significant. The map never changes the predicted
    class. ``T`` is searched on a log scale for each ``eps`` (the log-loss is
    convex in ``1/T``), keeping the best pair.
    """

    name = "temperature"
    EPS_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)

    def __init__(
        self, temperature: float = 1.0, smoothing: float = EPS, *,
        fit_smoothing: bool = True, prior_sd: float | None = 1.0,
    ) -> None:
        self.temperature = temperature
        self.smoothing = smoothing
        self.fit_smoothing = fit_smoothing
        self.prior_sd = prior_sd

    def fit(self, proba: np.ndarray, y_idx: np.ndarray) -> TemperatureScaling:
        from scipy.optimize import minimize_scalar

        proba = np.asarray(proba, dtype=np.float64)
        y_idx = np.asarray(y_idx)
        n = len(proba)
        penalty = 0.0 if not self.prior_sd else 1.0 / (2.0 * self.prior_sd**2 * n)
        best = (np.inf, 1.0, EPS)
        for eps in self.EPS_GRID if self.fit_smoothing else (EPS,):
            z = np.log(proba + eps)

            def objective(log_beta: float, z: np.ndarray = z) -> float:
                return _log_loss(np.exp(log_beta) * z, y_idx) + penalty * log_beta**2

            # 1/T in [0.01, 100].
            res = minimize_scalar(
                objective, bounds=(np.log(0.01), np.log(100.0)), method="bounded"
            )
            if res.fun < best[0] - 1e-9:
                best = (float(res.fun), float(np.exp(-res.x)), eps)
        _, self.temperature, self.smoothing = best
        fitted = _log_loss(np.log(proba + self.smoothing) / self.temperature, y_idx)
        own = _log_loss(np.log(proba + EPS), y_idx)
        self.evidence_ = float(max(0.0, 2.0 * n * (own - fitted)))
        return self

    @property
    def n_parameters(self) -> int:
        """Parameters fitted: ``T``, and ``eps`` with ``fit_smoothing``."""
        return 2 if self.fit_smoothing else 1

    def transform(self, proba: np.ndarray) -> np.ndarray:
        z = np.log(np.asarray(proba, dtype=np.float64) + self.smoothing)
        return softmax(z / self.temperature, axis=1).astype(np.float32)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {
            "method": self.name, "temperature": self.temperature, "smoothing": self.smoothing
        }, {}

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Calibrator:
        return cls(float(config["temperature"]), float(config.get("smoothing", EPS)))


class IsotonicCalibration(Calibrator):
    """One-vs-rest isotonic regression per class, rows renormalised (Zadrozny & Elkan).

    Non-parametric, so it can fix any monotone distortion, but it needs many
    held-out examples per class and may change the predicted class.
    """

    name = "isotonic"

    def fit(self, proba: np.ndarray, y_idx: np.ndarray) -> IsotonicCalibration:
        from sklearn.isotonic import IsotonicRegression

        proba = np.asarray(proba, dtype=np.float64)
        self.x_, self.y_ = [], []
        for c in range(proba.shape[1]):
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            iso.fit(proba[:, c], (np.asarray(y_idx) == c).astype(np.float64))
            self.x_.append(np.asarray(iso.X_thresholds_, dtype=np.float64))
            self.y_.append(np.asarray(iso.y_thresholds_, dtype=np.float64))
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        proba = np.asarray(proba, dtype=np.float64)
        pairs = zip(self.x_, self.y_, strict=True)
        out = np.column_stack([np.interp(proba[:, c], x, y) for c, (x, y) in enumerate(pairs)])
        total = out.sum(axis=1, keepdims=True)
        # A row every class calls impossible keeps the head's own probabilities.
        out = np.where(total > 0, out / np.where(total > 0, total, 1.0), proba)
        return out.astype(np.float32)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {}
        for c, (x, y) in enumerate(zip(self.x_, self.y_, strict=True)):
            arrays[f"isotonic_x_{c}"] = x
            arrays[f"isotonic_y_{c}"] = y
        return {"method": self.name, "n_classes": len(self.x_)}, arrays

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Calibrator:
        self = cls()
        n = int(config["n_classes"])
        self.x_ = [np.asarray(arrays[f"isotonic_x_{c}"], np.float64) for c in range(n)]
        self.y_ = [np.asarray(arrays[f"isotonic_y_{c}"], np.float64) for c in range(n)]
        return self


#: Calibration method name -> class (``identity`` is the fallback, not an option).
CALIBRATORS: dict[str, type[Calibrator]] = {
    c.name: c for c in (IdentityCalibration, TemperatureScaling, IsotonicCalibration)
}


def fit_calibrator(
    method: str, proba: np.ndarray, y_idx: np.ndarray, *, min_isotonic: int = 30,
    zero_probabilities: bool = True,
) -> tuple[Calibrator, str | None]:
    """``(calibrator, fallback)``: ``method`` fitted on held-out rows, or its fallback.

    ``proba`` rows that are NaN (never held out) are ignored. ``zero_probabilities``
    says the head's probabilities can be exactly 0 (kNN vote shares), so temperature
    scaling also fits its smoothing term. A fitted temperature that does not beat
    the head's own probabilities by a likelihood-ratio test (chi-squared with one
    degree of freedom per fitted parameter, p < 0.05) on the held-out rows is not
    used: with a few dozen rows from near-chance fold models it would mostly fit
    noise. ``fallback`` says in words why another method was used, else None.
    """
    if method not in ("temperature", "isotonic"):
        from fewshot.errors import UsageError

        raise UsageError(f"unknown calibration '{method}'; choose temperature, isotonic or none")
    ok = ~np.isnan(proba).any(axis=1)
    proba, y_idx = proba[ok], np.asarray(y_idx)[ok]
    if len(proba) == 0:
        return IdentityCalibration(), (
            "no class has two labelled examples to hold out, so probabilities are left "
            "uncalibrated"
        )
    if len(np.unique(y_idx)) < 2:
        return IdentityCalibration(), (
            "only one class has two labelled examples to hold out, so probabilities are left "
            "uncalibrated; give every class at least two examples"
        )
    fallback = None
    if method == "isotonic":
        counts = np.bincount(y_idx, minlength=proba.shape[1])
        if counts.min() < min_isotonic:
            fallback = (
                f"isotonic needs {min_isotonic} held-out examples per class (fewest: "
                f"{int(counts.min())}); used temperature scaling"
            )
            method = "temperature"
    if method == "isotonic":
        return IsotonicCalibration().fit(proba, y_idx), fallback
    ts = TemperatureScaling(fit_smoothing=zero_probabilities).fit(proba, y_idx)
    critical = CHI2_95[ts.n_parameters]
    if ts.evidence_ < critical:
        return IdentityCalibration(), (
            f"a temperature fitted on {len(proba)} held-out predictions (T="
            f"{ts.temperature:.2f}) is no significant improvement on the head's own "
            f"probabilities (likelihood ratio {ts.evidence_:.2f} < {critical}), so they "
            "are left uncalibrated"
        )
    return ts, fallback


def held_out_calibrated(clf: Any, oof: np.ndarray, y: np.ndarray, folds: int = 5) -> np.ndarray:
    """Calibrated held-out probabilities of ``clf``, for thresholds and confusions.

    An isotonic map has about as many steps as rows, so applied to the rows it
    was fitted on it is over-optimistic (its top block of correct rows becomes
    exactly 1.0): it is cross-fitted here, each row calibrated by a map fitted on
    the other folds. Temperature scaling (one or two parameters) is applied as is.
    """
    calibrator = clf.calibrator_
    if calibrator is None or calibrator.name != "isotonic":
        return np.asarray(clf.calibrate(oof), dtype=np.float64)
    fold = fold_ids(y, folds)
    out = np.asarray(calibrator.transform(oof), dtype=np.float64)  # rows never held out
    for k in range(fold.max() + 1):
        test = fold == k
        out[test] = IsotonicCalibration().fit(oof[~test], y[~test]).transform(oof[test])
    return out


# -- multi-label: one map per label ------------------------------------------------------
#: Label calibration methods: ``platt`` (one shared map), ``platt_per_label`` (one per
#: label, shrunk towards the shared one), ``platt_per_label_raw`` (one per label alone).
LABEL_CALIBRATIONS = ("none", "platt", "platt_per_label", "platt_per_label_raw")
#: Clip for log-odds of probabilities that can be exactly 0 or 1 (kNN vote shares).
LOGIT_CLIP = 1e-4
#: Weight of the shared map in a label's own fit, in held-out rows' worth of evidence.
LABEL_SHRINK = 10.0


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), LOGIT_CLIP, 1 - LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


def _platt(z: np.ndarray, y: np.ndarray, centre: tuple[float, float], penalty: float
           ) -> tuple[float, float]:
    """``(a, b)`` minimising the summed log-loss of ``sigmoid(a z + b)`` against ``y`` plus
    ``penalty / 2 * |(a, b) - centre|^2``."""
    from scipy.optimize import minimize

    z, y = z.ravel(), y.ravel().astype(np.float64)
    c = np.asarray(centre, dtype=np.float64)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = w[0] * z + w[1]
        # log(1 + e^s) - y s, written stably
        value = float(np.sum(np.logaddexp(0.0, s) - y * s)) + 0.5 * penalty * float(
            np.sum((w - c) ** 2))
        r = expit(s) - y
        grad = np.array([np.dot(r, z), r.sum()]) + penalty * (w - c)
        return value, grad

    res = minimize(loss, c.copy(), jac=True, method="L-BFGS-B")
    return float(res.x[0]), float(res.x[1])


class LabelCalibration:
    """Per-label Platt scaling of independent per-label probabilities (multi-label).

    Label ``j``'s probability ``p`` becomes ``sigmoid(a_j * logit(p) + b_j)``; with
    ``a = 1, b = 0`` it is unchanged. Fitted on out-of-fold probabilities and the
    indicator matrix of their labels. Maps are monotone, so each label's ranking (and
    what its own threshold can separate) is kept; what moves is how labels compare
    with each other and with one shared threshold.
    """

    def __init__(self, method: str = "platt_per_label", a: Any = None, b: Any = None) -> None:
        if method not in LABEL_CALIBRATIONS:
            from fewshot.errors import UsageError

            raise UsageError(f"unknown label calibration '{method}'; choose one of "
                             f"{', '.join(LABEL_CALIBRATIONS)}")
        self.method = method
        self.a = None if a is None else np.asarray(a, dtype=np.float64)
        self.b = None if b is None else np.asarray(b, dtype=np.float64)

    def fit(self, proba: np.ndarray, Y: np.ndarray) -> LabelCalibration:
        proba, Y = np.asarray(proba, dtype=np.float64), np.asarray(Y)
        n_labels = proba.shape[1]
        self.a, self.b = np.ones(n_labels), np.zeros(n_labels)
        if self.method == "none" or len(proba) == 0:
            return self
        z = _logit(proba)
        # A small ridge keeps a label its rows separate perfectly from running off.
        shared = _platt(z, Y, (1.0, 0.0), 1e-3)
        if self.method == "platt":
            self.a[:], self.b[:] = shared
            return self
        penalty = LABEL_SHRINK if self.method == "platt_per_label" else 1e-3
        for j in range(n_labels):
            self.a[j], self.b[j] = _platt(z[:, j], Y[:, j], shared, penalty)
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        if self.a is None or self.b is None:
            return np.asarray(proba, dtype=np.float32)
        return expit(self.a * _logit(proba) + self.b).astype(np.float32)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"method": self.method}, {"a": np.asarray(self.a), "b": np.asarray(self.b)}

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]
                   ) -> LabelCalibration:
        return cls(str(config["method"]), arrays["a"], arrays["b"])


def fit_label_calibrator(method: str, proba: np.ndarray, Y: np.ndarray) -> LabelCalibration:
    """A :class:`LabelCalibration` by ``method`` fitted on held-out ``proba`` and labels ``Y``."""
    return LabelCalibration(method).fit(proba, Y)
