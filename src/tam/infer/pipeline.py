"""`tam.predict(...)`: a trained model on new videos -> per-video emotion and a per-segment affect timeline.

    results = tam.predict(["a.mp4", "b.mkv"], model="runs/ve8")            # extract, then predict
    results = tam.predict(model="runs/ve8", features="feats/")               # from an existing store
    write_outputs(results, "out/")                                          # predictions.jsonl + .csv

Each result is the dict written as one JSON line (schema in docs/predict.md): the video, its status, the
prediction (class probabilities, or valence/arousal), the top emotions and the timeline. Features come from
the encoders recorded in the model's checkpoint; other encoders are refused before anything is decoded.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tam.errors import TamError
from tam.io import write_text

RUNTIMES = ("torch", "onnx")


def predict(videos: Sequence[str | os.PathLike] = (), model: str | os.PathLike = "", *, features: str = "",
            cache: str = "", weights: dict[str, str] | None = None, audio_pca: str = "", device: str = "auto",
            timeline: str = "auto", words: str = "", vocab: str = "", report: str = "", progress: bool = True,
            strict: bool = False, batch: int = 8, workers: int = 1, log: Callable[[str], None] = print,
            runtime: str = "torch") -> list[dict]:
    """Predict the evoked emotion of `videos` (files or folders) with `model`: a run directory, an exported model
    folder or a Hub repo id (`tam.hub.resolve`).

    `features`: read an existing feature store instead (then `videos` are ids in it; none = all). `cache`:
    keep extracted features in this store (a re-run skips videos already there); default a temporary one.
    `weights`: modality -> local weights file/folder for the model's encoders. `timeline`: auto | token |
    occlusion (see `tam.infer.timeline`). `words`: a `tam pretrain` run directory whose decoder adds the predicted
    viewer words track (`vocab`: its corpus's vocab.json, default from its config.yaml). `report`: write PNG +
    HTML pages there. Bad files are returned with status "failed" (unless `strict`). `runtime`: torch | onnx (the
    fusion and head through onnxruntime from the folder's model.onnx; the encoders stay PyTorch).
    """
    if not model:
        raise TamError("give the trained model's run directory (model=RUN_DIR)")
    predictor = Predictor(model, weights=weights, audio_pca=audio_pca, device=device, words=words, vocab=vocab,
                          runtime=runtime)
    return predictor(videos, features=features, cache=cache, timeline=timeline, report=report, progress=progress,
                     strict=strict, batch=batch, workers=workers, log=log)


class Predictor:
    """A model loaded once (its encoders and word model built on first use, then kept): `predict` makes one per
    call, `tam serve` one per server. Calling it predicts a batch exactly as `predict` does."""

    def __init__(self, model: str | os.PathLike, *, weights: dict[str, str] | None = None, audio_pca: str = "",
                 device: str = "auto", words: str = "", vocab: str = "", runtime: str = "torch"):
        from tam.encoders.cli_support import pick_device
        from tam.train.checkpoint import load_model

        if runtime not in RUNTIMES:
            raise TamError(f"runtime {runtime!r}: choose from {RUNTIMES}")
        self.device = pick_device(device, os.environ)
        self.net, self.meta = load_model(model, device=self.device)
        if runtime == "onnx":  # the same checked config; the fusion + head from model.onnx
            from tam.hub.onnx import load_onnx

            self.net = load_onnx(model, self.meta, self.net)
        self.model, self.weights, self.audio_pca = str(model), weights or {}, audio_pca
        self.words, self.vocab = words, vocab
        self._encoders: dict | None = None
        self._word_model = None

    def encoders(self) -> dict:
        """The model's encoders (identity-checked against its manifest), built on the first call."""
        if self._encoders is None:
            from tam.infer.model_encoders import build_model_encoders, model_manifest

            self._encoders = build_model_encoders(model_manifest(self.meta, self.model),
                                                  list(self.meta["model"]["modalities"]), self.weights,
                                                  self.device, self.audio_pca, self.model)
        return self._encoders

    def __call__(self, videos: Sequence[str | os.PathLike] = (), *, features: str = "", cache: str = "",
                 timeline: str = "auto", report: str = "", progress: bool = True, strict: bool = False,
                 batch: int = 8, workers: int = 1, log: Callable[[str], None] = print,
                 encoders: Callable[[dict], dict] = lambda e: e) -> list[dict]:
        """Results for `videos` (see `predict`); `encoders` may wrap the built encoders for this call only."""
        import torch

        from tam.infer.timeline import pick_method

        method = pick_method(timeline, self.meta["model"]["fusion"])
        with tempfile.TemporaryDirectory(prefix="tam-predict-") as tmp:
            if features:
                store, items = _open_features(features, [str(v) for v in videos], self.meta, self.model)
            else:
                store, items = _extract(videos, self, cache or tmp, batch, workers, strict, progress, encoders)
            wm = self._words(store) if self.words else None
            results = _analyse_all(self.net, self.meta, store, items, method, torch.device(self.device), batch,
                                   progress, self.model, wm)
            if report:
                from tam.infer.report import write_report

                write_report(results, report, progress=progress)
                log(f"report: {Path(report) / 'index.html'}")
        return results

    def _words(self, store):
        if self._word_model is None:
            from tam.infer.words import load_word_model

            self._word_model = load_word_model(self.words, self.vocab, self.device)
        return _check_word_model(self._word_model, self.words, store)


def _open_features(root: str, ids: list[str], meta: dict, where: str):
    from tam.features.store import FeatureStore
    from tam.infer.model_encoders import check_identity, model_manifest

    store = FeatureStore.open(root)
    want = model_manifest(meta, where)
    check_identity(store.manifest, want, list(meta["model"]["modalities"]), root)
    have = set(store.videos())
    def error(v: str) -> str:  # a damaged entry fails that video only
        return next(iter(store.check([v])), "") or ("" if v in have else f"{root}: no features for video {v!r}")

    return store, [(v, "", error(v)) for v in (ids or sorted(have))]


def _extract(videos, predictor: Predictor, root, batch, workers, strict, progress, wrap):
    """Extract `videos` into the store at `root` with the predictor's encoders (built on first use, identity-checked;
    `wrap` may wrap them); items (id, path, error)."""
    from tam.encoders.extract import ExtractOptions, extract, find_videos, open_store
    from tam.infer.model_encoders import model_manifest, segment_policy

    if not videos:
        raise TamError("give video files or folders (or features=STORE)")
    want = model_manifest(predictor.meta, predictor.model)
    policy = segment_policy(want.segment, predictor.model)
    jobs = find_videos([str(v) for v in videos])
    encoders = wrap(predictor.encoders())
    store = open_store(root, encoders, policy)
    outcomes = extract(jobs, store, encoders, ExtractOptions(policy=policy, batch=16, workers=workers,
                                                             strict=strict), progress=progress)
    return store, [(o.video, str(o.path), o.error if o.status == "failed" else "") for o in outcomes]


def _check_word_model(wm, words: str, store):
    """The pre-trained decoder, refused unless its features come from the same encoders as the store's."""
    from tam.features.store import Manifest
    from tam.infer.model_encoders import check_identity

    mods = list(wm.meta["model"]["modalities"])
    check_identity(store.manifest, Manifest.from_json(wm.meta["features"]), mods,
                   f"{words}: the pre-trained decoder vs the features of {store.root}")
    return wm


def _analyse_all(net, meta, store, items, method, device, batch, progress, where, wm=None) -> list[dict]:
    from tqdm import tqdm

    from tam.infer.timeline import analyse

    results = []
    for video, path, error in tqdm(items, desc="predict", unit="video", disable=not progress, leave=False):
        if error:
            results.append({"video": video, "source": path, "status": "failed", "error": error})
            continue
        t0 = time.perf_counter()
        try:  # a damaged entry fails this video only; the rest of the batch goes on
            vf = store.read(video)
            an = analyse(net, meta, store, video, method, device, batch)
            r = video_result(vf, path or vf.extra.get("source", ""), an, meta, method, where,
                             store.manifest.random_init, time.perf_counter() - t0)
            if wm is not None:
                from tam.infer.words import predict_words

                r["words"] = predict_words(wm, store, video, device)
        except TamError as e:
            r = {"video": video, "source": path, "status": "failed", "error": str(e)}
        results.append(r)
    return results


def video_result(vf, source: str, an: dict, meta: dict, method: str, model: str, random_init: bool,
                 seconds: float) -> dict:
    """The JSON-line dict of one analysed video (schema: docs/predict.md)."""
    names, out, tl = an["names"], an["output"], an["timeline"]
    times = vf.times
    r = {"video": vf.video, "source": source, "status": "ok", "model": model, "task": meta["task"]}
    if meta["task"] == "classification":
        order = out.argsort()[::-1]
        r["label"] = names[order[0]]
        r["probabilities"] = {n: round(float(p), 6) for n, p in zip(names, out)}
        r["top"] = [{"label": names[i], "p": round(float(out[i]), 6)} for i in order[:3]]
    else:
        r.update({n: round(float(v), 6) for n, v in zip(names, out)})
    unit = {("token", "classification"): "probability", ("token", "regression"): "value",
            ("occlusion", "classification"): "probability change", ("occlusion", "regression"): "value change"}
    r["segments"], r["windows"] = int(an["T"]), int(an["windows"])
    r["duration"] = round(float(times[-1, 1] - times[0, 0]), 3)
    r["timeline"] = {"method": method, "unit": unit[method, meta["task"]],
                     "start": [round(float(s), 3) for s in times[:, 0]],
                     "end": [round(float(e), 3) for e in times[:, 1]],
                     "values": {n: [round(float(v), 5) for v in tl[:, k]] for k, n in enumerate(names)}}
    if meta["task"] == "classification":
        r["timeline"]["top"] = [names[i] for i in tl.argmax(1)]
    r["present"] = {m: bool(vf.present[m]) for m in meta["model"]["modalities"]}
    r["notes"] = list(vf.extra.get("notes", []))
    r["random_init_features"] = bool(random_init)
    r["seconds"] = round(seconds, 4)
    return r


# ---- outputs ------------------------------------------------------------------------------------------
def csv_rows(results: list[dict]) -> list[dict]:
    """One flat row per video: id, status, label / values, probabilities, length, error."""
    rows = []
    for r in results:
        row = {"video": r["video"], "source": r.get("source", ""), "status": r["status"]}
        row["label"] = r.get("label", "")
        for k in ("valence", "arousal"):
            if k in r:
                row[k] = r[k]
        row.update({f"p_{n}": p for n, p in r.get("probabilities", {}).items()})
        row.update({"segments": r.get("segments", ""), "duration": r.get("duration", ""),
                    "timeline": r.get("timeline", {}).get("method", ""), "error": r.get("error", "")})
        rows.append(row)
    return rows


def write_outputs(results: list[dict], out: str | os.PathLike) -> tuple[Path, Path]:
    """Atomically write OUT/predictions.jsonl (one result a line) and OUT/predictions.csv."""
    out = Path(out)
    jsonl = out / "predictions.jsonl"
    write_text(jsonl, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
    rows = csv_rows(results)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    write_text(out / "predictions.csv", buf.getvalue())
    return jsonl, out / "predictions.csv"


def summary(results: list[dict], wall: float) -> str:
    """A readable table: one line per video (top emotion or valence/arousal), then failures."""
    ok = [r for r in results if r["status"] == "ok"]
    failed = [r for r in results if r["status"] != "ok"]
    width = max([len(r["video"]) for r in results] + [5])
    lines = ["", f"{'video'.ljust(width)}  {'prediction':<28}  segments  duration", "-" * (width + 50)]
    for r in ok:
        what = (f"{r['label']} ({r['probabilities'][r['label']]:.2f})" if "label" in r
                else f"valence {r['valence']:+.2f} arousal {r['arousal']:+.2f}")
        lines.append(f"{r['video'].ljust(width)}  {what:<28}  {r['segments']:>8}  {r['duration']:>7.1f}")
    lines += ["", f"{len(ok)} predicted, {len(failed)} failed, {wall:.1f} s wall"]
    if failed:
        lines += ["skipped:"] + [f"  {r['error']}" for r in failed]
    if any(r.get("random_init_features") for r in ok):
        lines += ["WARNING: random-init encoders: these predictions are NOT real (tests and demos only)"]
    return "\n".join(lines)
