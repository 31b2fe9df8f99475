"""Metrics as pure functions on numpy arrays (checked against scikit-learn and scipy in the tests)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """[C, C] counts, rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in y_true or y_pred (sklearn's convention)."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(1), cm.sum(0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    used = denom > 0
    return float(f1[used].mean()) if used.any() else float("nan")


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    return float(np.mean((y_true - y_pred) ** 2))


def pcc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant (e.g. the constant-mean baseline)."""
    a, b = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict:
    C = probs.shape[1]
    y_pred = probs.argmax(1)
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred, C)}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, names=("valence", "arousal")) -> dict:
    out = {}
    for j, n in enumerate(names):
        out[f"{n}_mse"] = mse(y_true[:, j], y_pred[:, j])
        out[f"{n}_pcc"] = pcc(y_true[:, j], y_pred[:, j])
    return out


def selection_score(task: str, metrics: dict) -> float:
    """What model selection maximises: accuracy, or the mean PCC over valence and arousal (section 5.5)."""
    if task == "classification":
        return metrics["accuracy"]
    pccs = [v for v in (metrics["valence_pcc"], metrics["arousal_pcc"]) if np.isfinite(v)]
    return float(np.mean(pccs)) if pccs else -1.0
