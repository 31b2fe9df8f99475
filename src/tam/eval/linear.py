"""The linear baseline printed beside every fusion result.

Each video becomes one vector: its features, normalised exactly as the model sees them (the model's
`FeatureNorm`, i.e. training statistics), pooled over time (mean and standard deviation over segments, per
modality; zeros for an absent modality). A scikit-learn logistic regression (classification) or one ridge
regression per target (regression), after a StandardScaler fitted on the training rows, is trained on the
training rows; its strength (C, alpha) is chosen on the same validation split the fusion model is selected
on, and the chosen model scores the test rows once.

The logistic regression is fitted in the row span of the scaled training rows (`row_span`): with fewer
training rows n than pooled dimensions p (the demo: 153 x 5,376), its L2-penalised optimum lies in that span,
so the same model is found on n coordinates instead of p.
"""

from __future__ import annotations

import copy
import hashlib
import warnings

import numpy as np
import torch

from tam.eval.metrics import classification_metrics, regression_metrics, selection_score
from tam.memo import Memo

C_GRID = tuple(10.0 ** np.arange(-4, 3))  # logistic regression: inverse strength
ALPHA_GRID = tuple(10.0 ** np.arange(-2, 6))  # ridge: strength
TOL = 1e-8  # the logistic regression's gradient tolerance (`_classifier`)


_POOLED = Memo(8)  # per process: [N, 2 sum D] arrays under the digest of the store's entries, modalities and norm


def pooled_features(store, videos: list[str], modalities: list[str], norm=None) -> np.ndarray:
    """[N, 2 * sum(D_m)]: per modality the mean and std over segments of the (normalised) features.

    Kept per process (`tam.memo`) under the store's entries, the modalities and the normalisation's buffers."""
    h = hashlib.sha256(f"{store.fingerprint(videos)}|{list(modalities)}".encode())
    for name, buf in (norm.state_dict().items() if norm is not None else ()):
        h.update(name.encode())
        h.update(buf.detach().cpu().contiguous().numpy().tobytes())
    return _POOLED.get_or(h.hexdigest(), lambda: _pooled_features(store, videos, modalities, norm)).copy()


@torch.no_grad()
def _pooled_features(store, videos: list[str], modalities: list[str], norm) -> np.ndarray:
    rows = []
    for v in videos:
        f = store.read(v)
        x = {m: torch.from_numpy(np.array(f.features[m], dtype=np.float32))[None] for m in modalities}
        if norm is not None:
            x = norm(x)
        parts = []
        for m in modalities:
            a = x[m][0].double().numpy() if f.present[m] else np.zeros((1, x[m].shape[-1]))
            parts += [a.mean(0), a.std(0)]
        rows.append(np.concatenate(parts))
    if not rows:  # an empty split (e.g. no test rows)
        return np.zeros((0, 2 * sum(store.manifest.dims[m] for m in modalities)))
    return np.nan_to_num(np.stack(rows), nan=0.0, posinf=0.0, neginf=0.0)


def row_span(Xtr: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """`Xtr` and `others` scaled with the training rows' StandardScaler, then written in an orthonormal basis V of
    the scaled training rows' span (right singular vectors with a singular value above numpy's rank tolerance)
    when that span is narrower than the features.

    Why it changes no fit: with an L2 penalty on the weights (intercept unpenalised), the logistic loss'
    stationarity gives, per class, w = -C X^T r (X the scaled training rows, r their residuals), a vector in the
    row span, and for w = V z the penalty |w|^2 = |z|^2 and the scores x.w = (x V).z of every row, training,
    validation or test, are the same. The optimum over z on the rows X V is therefore the optimum over w, and its
    probabilities on every split are the same up to the solver's stopping point: tests/eval/test_linear.py checks
    them against the fit on all p columns run to convergence (within 1e-4, the same chosen C)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(Xtr)
    scaled = [scaler.transform(x) if len(x) else np.zeros((0, Xtr.shape[1])) for x in (Xtr, *others)]
    if Xtr.shape[0] >= Xtr.shape[1]:
        return scaled
    _, s, vt = np.linalg.svd(scaled[0], full_matrices=False)
    keep = s > (s[0] if len(s) else 0.0) * max(Xtr.shape) * np.finfo(float).eps
    V = vt[keep].T
    return [x @ V for x in scaled]


def _classifier(C: float):
    """L-BFGS to a gradient of 1e-8 (scikit-learn's default 1e-4 stops up to 0.1 in probability short of the
    optimum at the weak strengths of the grid): on at most min(n, p) coordinates (`row_span`) this costs little."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, tol=TOL, max_iter=2000)


def _ridge(alpha: float):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(alpha=alpha))


def _probs(model, X: np.ndarray, C: int) -> np.ndarray:
    """predict_proba over all C classes (classes absent from training get probability 0)."""
    out = np.zeros((len(X), C))
    out[:, model.classes_.astype(int)] = model.predict_proba(X)
    return out


def fit_classification(Xtr, ytr, Xva, yva, Xte, yte, num_classes: int) -> dict:
    """Logistic regression on the standardised rows, C chosen on validation accuracy (ties: the stronger
    regularisation); fitted on the rows' coordinates in the training rows' span (`row_span`), the same model."""
    if len(np.unique(ytr)) < 2:
        return {}
    Ztr, Zva, Zte = row_span(Xtr, Xva, Xte)
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on tiny sets: the grid still chooses
        for C in C_GRID:
            model = _classifier(C).fit(Ztr, ytr)
            score = classification_metrics(yva, _probs(model, Zva, num_classes))["accuracy"]
            if best is None or score > best[0]:
                best = (score, C, model)
    _, C, model = best
    out = {"name": f"linear (logistic, C={C:g})", "strength": C,
           "val": classification_metrics(yva, _probs(model, Zva, num_classes))}
    out["test"] = classification_metrics(yte, _probs(model, Zte, num_classes)) if len(yte) else {}
    return out


def fit_regression(Xtr, ytr, Xva, yva, Xte, yte) -> dict:
    """One ridge regression per target, alpha chosen on the validation PCC of that target."""
    pv, pt, alphas = np.zeros(yva.shape), np.zeros((len(Xte), ytr.shape[1])), []
    for j in range(ytr.shape[1]):
        best = None
        for alpha in ALPHA_GRID:
            model = _ridge(alpha).fit(Xtr, ytr[:, j])
            p = model.predict(Xva)
            score = np.corrcoef(p, yva[:, j])[0, 1] if np.std(p) > 0 and np.std(yva[:, j]) > 0 else -np.inf
            if best is None or score > best[0]:
                best = (score, alpha, model, p)
        alphas.append(best[1])
        pv[:, j] = best[3]
        if len(Xte):
            pt[:, j] = best[2].predict(Xte)
    return {"name": "linear (ridge, alpha=" + "/".join(f"{a:g}" for a in alphas) + ")", "strength": alphas,
            "val": regression_metrics(yva, pv), "test": regression_metrics(yte, pt) if len(yte) else {}}


_CACHE = Memo(16)  # inputs' digest -> result, per process (runs that share a split share the baseline)


def _digest(task: str, classes: int, arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256(f"{task}:{classes}".encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def linear_baseline(store, modalities: list[str], train, val, test, norm=None) -> dict:
    """Fit the baseline on `train` (Labels), choose its strength on `val`, score `test`; {} if not fittable.

    The result is a function of the pooled features and targets alone, so it is kept per process under their
    digest: the runs of a grid or of `tam demo` that share a split (every seed and fusion on one labels file)
    fit it once per worker process instead of once per run."""
    X = {s: pooled_features(store, lab.videos, modalities, norm) for s, lab in
         (("train", train), ("val", val), ("test", test))}
    ys = [np.asarray(lab.targets) for lab in (train, val, test)]
    key = _digest(train.task, len(train.classes), [X["train"], X["val"], X["test"], *ys])
    return copy.deepcopy(_CACHE.get_or(key, lambda: _fit(X, train, val, test)))


def _fit(X: dict[str, np.ndarray], train, val, test) -> dict:
    import sklearn.linear_model  # noqa: F401 - loads scipy's and sklearn's BLAS, so that the limit below reaches them
    from threadpoolctl import threadpool_limits

    # one thread for BLAS and OpenMP (scikit-learn's loss): the fits are on at most n coordinates (`row_span`), where
    # threads only add waiting. OpenBLAS's own default (every core) in each of several processes made the logistic
    # regression 20x slower beside other busy processes (166-181 s vs 7-9 s on the demo's split), and the run's 2
    # torch threads in a test worker beside another 17x (2.2-4.3 vs 0.15 CPU-s on the tiny world's split)
    with threadpool_limits(1):
        if train.task == "classification":
            return fit_classification(X["train"], train.targets, X["val"], val.targets, X["test"], test.targets,
                                      len(train.classes))
        return fit_regression(X["train"], train.targets, X["val"], val.targets, X["test"], test.targets)


def loses_to(task: str, model_metrics: dict, linear_metrics: dict) -> bool:
    """True when the model's selection score (accuracy / mean PCC) is below the linear baseline's."""
    if not model_metrics or not linear_metrics:
        return False
    return selection_score(task, model_metrics) < selection_score(task, linear_metrics)
