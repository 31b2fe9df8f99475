"""The model card (`README.md` of an exported folder), generated from the run's own `results.json`, never by hand.

YAML front matter for the Hub (`library_name: tam`, license, tags, pipeline_tag, datasets, model-index with the
test metrics; parseable by `huggingface_hub.ModelCard`), then: what the model predicts, intended and
out-of-scope use, training data and protocol, evaluation beside the majority and linear baselines (with 95 %
t intervals over seeds when sibling runs differ only in the seed), limitations, and how to load it. A bold
warning leads the card when the features came from randomly initialised encoders.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from tam.errors import TamError
from tam.io import read_json

MAX_FRONT_MATTER = 64 << 10
FUSION_NAMES = {"ctm": "CTM (cross-temporal multimodal fusion, the TAM paper)", "inner": "CTM, inner-modal only",
                "cross": "CTM, cross-modal only", "concat": "per-modality encoders, concatenated",
                "divide": "divided space-time attention", "joint": "joint attention over all tokens"}
RANDOM_INIT = ("**WARNING: the features this model was trained on came from randomly initialised encoders. Its "
               "predictions and scores are NOT real (a test or demo model); do not use it on real videos.**")


def seed_runs(run_dir: Path, results: dict) -> list[dict]:
    """results.json of `run_dir` and of its sibling runs whose config differs only in `train.seed`."""
    def key(r: dict) -> str:
        cfg = json.loads(json.dumps(r.get("config", {})))
        cfg.get("train", {}).pop("seed", None)
        return json.dumps(cfg, sort_keys=True)

    runs = {str(run_dir.resolve()): results}
    for sib in sorted(run_dir.resolve().parent.iterdir()) if run_dir.resolve().parent.is_dir() else []:
        f = sib / "results.json"
        if str(sib) not in runs and f.is_file():
            try:
                r = read_json(f, "run results")
            except TamError:
                continue
            if key(r) == key(results):
                runs[str(sib)] = r
    return list(runs.values())


def front_matter(results: dict, config: dict, name: str, license: str, dataset: str) -> dict:
    task = results["task"]
    fusion = config["model"]["fusion"]
    tags = ["tam", "affective-computing", "multimodal", "video", f"fusion-{fusion}",
            "emotion-recognition" if task == "classification" else "valence-arousal-regression"]
    if results.get("random_init_features"):
        tags.append("random-init-features")
    kind = "video-classification" if task == "classification" else "other"
    split = "test" if results.get("test") else "validation"
    scores = results.get("test") or results.get("val") or {}
    metrics = [{"type": k, "value": round(float(v), 4), "name": f"{split} {k}"} for k, v in scores.items()
               if isinstance(v, int | float) and math.isfinite(v)]
    return {"library_name": "tam", "license": license, "tags": tags, "pipeline_tag": kind, "datasets": [dataset],
            "model-index": [{"name": name, "results": [{
                "task": {"type": kind, "name": "video emotion recognition" if task == "classification"
                         else "valence and arousal regression"},
                "dataset": {"name": dataset, "type": dataset, "split": split}, "metrics": metrics}]}]}


def model_card(results: dict, config: dict, runs: list[dict], name: str, license: str, dataset: str) -> str:
    """The card's text: front matter + sections."""
    head = yaml.safe_dump(front_matter(results, config, name, license, dataset), sort_keys=False, allow_unicode=True)
    parts = [f"---\n{head}---", f"# {name}"]
    if results.get("random_init_features"):
        parts.append(RANDOM_INIT)
    parts += [_predicts(results, config), _use(config), _training(results), _evaluation(results, runs),
              _limitations(results, config), _how(name)]
    return "\n\n".join(parts) + "\n"


def _predicts(results: dict, config: dict) -> str:
    m = config["model"]
    what = (f"one of {len(config['classes'])} emotions ({', '.join(config['classes'])}) as probabilities"
            if results["task"] == "classification" else "valence and arousal (in the labels' units)")
    enc = config.get("features", {}).get("encoders", {})
    rows = [f"| {mod} | {e.get('name')} | {e.get('dim')} | {e.get('weights_sha256') or '—'} | "
            f"{'yes' if e.get('random_init') else 'no'} | {e.get('preprocessing', '')} |"
            for mod, e in enc.items() if mod in m["modalities"]]
    return "\n".join([
        "## What the model predicts", "",
        f"For a whole video: {what}, plus a per-segment timeline (`tam predict`). Fusion: "
        f"{FUSION_NAMES.get(m['fusion'], m['fusion'])} over {', '.join(m['modalities'])} segment features; "
        f"d = {m['d']}, {m['layers']} layers, {m['heads']} heads, T = {m['T']} segments per window, readout "
        f"{m['readout']}; feature normalisation {config['normalization']['mode']} with the training statistics.",
        "", "Its inputs are features of these encoders, made exactly as the store that trained it made them:", "",
        "| modality | encoder | dim | weights sha256 | random init | preprocessing |", "|---|---|---|---|---|---|",
        *rows, "", f"Segments: {config.get('features', {}).get('segment', '—')}."])


def _use(config: dict) -> str:
    return "\n".join([
        "## Intended use", "",
        "Research on affective video content analysis: the emotion a video is likely to evoke in viewers, for videos "
        "like its training videos, with features from the encoders above.", "",
        "## Out-of-scope use", "",
        "Judging a particular person's feelings, decisions about people (hiring, surveillance, moderation without "
        "review), videos unlike the training data, and features from any other encoder or preprocessing (tam "
        "refuses those: the encoders' identities must match)."])


def _training(r: dict) -> str:
    cfg = r.get("config", {})
    data, optim, train = cfg.get("data", {}), cfg.get("optim", {}), cfg.get("train", {})
    n = r.get("n", {})
    return "\n".join([
        "## Training data and protocol", "",
        f"Labels `{Path(str(data.get('labels', '?'))).name}` ({r['task']}); clips: train {n.get('train')}, "
        f"validation {n.get('val')}, test {n.get('test')} (skipped without features: {n.get('skipped')}).",
        f"Trained {optim.get('epochs')} epochs ({optim.get('optimizer')}, lr {optim.get('lr')}, batch "
        f"{optim.get('batch_size')}, seed {train.get('seed')}); the checkpoint is the epoch selected on validation "
        f"(`train.select = {train.get('select')}`): epoch {int(r.get('best_epoch', 0)) + 1}. The test split was "
        f"scored once, after selection. Code version {r.get('code_version')}."])


def _evaluation(r: dict, runs: list[dict]) -> str:
    split = "test" if r.get("test") else "val"
    keys = list(r[split])
    lin = (r.get("linear") or {}).get(split)
    rows = [("model", r[split]), (r.get("baseline", {}).get("name", "baseline"), r.get("baseline", {}).get(split))]
    rows += [(r["linear"]["name"], lin)] if lin else []
    lines = ["## Evaluation", "", f"On the {split} split ({r.get('n', {}).get(split)} clips), this run:", "",
             "| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(_num((m or {}).get(k)) for k in keys) + " |" for name, m in rows]
    if len(runs) > 1:
        from tam.eval.statistics import mean_ci

        cis = {k: mean_ci([x.get(split, {}).get(k, math.nan) for x in runs]) for k in keys}
        lines += ["", f"Over {len(runs)} seeds of the same configuration (mean, 95 % t interval): " + "; ".join(
            f"{k} {c.mean:.4f} [{c.low:.4f}, {c.high:.4f}]" for k, c in cis.items()) + "."]
    else:
        lines += ["", "One seed: no interval (train sibling runs with other seeds to get one on the card)."]
    return "\n".join(lines)


def _num(v) -> str:
    return "—" if not isinstance(v, int | float) else f"{v:.4f}"


def _limitations(r: dict, config: dict) -> str:
    lines = ["## Limitations", "",
             "- The scores hold for the training data's distribution and labelling; small test splits give wide "
             "intervals.",
             "- Predictions need features from exactly the encoders and preprocessing listed above; other features "
             "are refused, not silently accepted."]
    lines += [f"- {w}" for w in r.get("warnings", [])]
    if r.get("random_init_features"):
        lines.append("- The encoders were randomly initialised: nothing here measures real affect recognition.")
    return "\n".join(lines)


def _how(name: str) -> str:
    return "\n".join([
        "## How to use", "", "```bash", "pip install tam-affect",
        f"tam predict video.mp4 --model {name} -o preds/      # a folder or a Hub repo id",
        "```", "", "```python", "import tam", f"model, config = tam.from_pretrained({name!r})", "```"])


def check_card(path: Path) -> dict:
    """The card's front matter (only the first MAX_FRONT_MATTER bytes are read; YAML parsed safely; it must say
    `library_name: tam`); a one-line TamError naming the card."""
    try:
        with path.open("rb") as f:
            text = f.read(MAX_FRONT_MATTER).decode("utf-8", errors="replace")
    except OSError as e:
        raise TamError(f"{path}: cannot read the model card ({e.strerror or e})") from None
    parts = text.split("\n---", 1) if text.startswith("---\n") else []
    if len(parts) != 2:
        raise TamError(f"{path}: the model card has no YAML front matter (--- ... ---) in its first "
                       f"{MAX_FRONT_MATTER} bytes")
    try:
        meta = yaml.safe_load(parts[0][4:])
    except yaml.YAMLError as e:
        raise TamError(f"{path}: the model card's front matter is not valid YAML ({' '.join(str(e).split())[:120]})") \
            from None
    if not isinstance(meta, dict) or meta.get("library_name") != "tam":
        raise TamError(f"{path}: the model card's front matter does not say library_name: tam")
    return meta
