"""`tam demo --quick` through the real CLI in a temporary folder: every stage runs on real files, the report
folder holds markdown, a self-contained HTML page and plots, and the page renders in headless Chromium."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_writes_the_report(quick_demo):
    out, p = quick_demo
    assert f"report: {out / 'report' / 'index.html'}" in p.stdout
    for stage in ("[1/6]", "[2/6]", "[3/6]", "[4/6]", "[5/6]", "[6/6]"):
        assert stage in p.stdout
    assert "NOT real" in p.stdout  # the random-init encoders are flagged
    s = json.loads((out / "results.json").read_text())
    assert set(s["rows"]) == {"concat", "ctm"} and set(s["subsets"]) == {"image", "motion", "audio",
                                                                        "image+motion+audio"}
    assert set(s["pretraining"]) == {"no pre-training", "TSC pre-training"}
    small = s["small"]["attentive"]  # pre-trained vs scratch at a few labels, the paired interval (1 seed: none)
    assert set(small) >= {"scratch", "pretrained", "diff", "n"} and small["n"]["train"] + small["n"]["val"] == 16
    assert small["diff"]["n"] == 1
    assert {"small-attentive-scratch-seed0", "small-attentive-pretrained-seed0"} <= set(s["runs"])
    assert "CTM − this (points, 95% CI)" in (out / "report.md").read_text()
    assert s["extraction"]["failed"] == [] and s["extraction"]["written"] == 56
    assert s["corpus"]["comments_written"] > 0 and s["pretrain_runs"]["pretrain-seed0"]["heldout"]["comments"] > 0
    assert {k for k in s["runs"] if "accuracy" not in s["runs"][k]["test"]} == {"ctm-va-seed0"}  # regression
    for r in s["runs"].values():
        assert 0 <= r["test"].get("accuracy", 0) <= 1
    assert s["regression"]["mean"]["valence_mse"] >= 0
    assert s["linear"]["test"]  # the linear baseline the report prints: the first fusion row's
    cpu = s["cpu_seconds_by_stage"]  # each stage's CPU seconds, its worker processes' included
    assert set(cpu) == set(s["seconds_by_stage"]) and all(v > 0 for k, v in cpu.items() if k != "comments")
    assert "CPU seconds: world" in p.stdout
    # the world's files are real: MP4s, Bilibili XML, the lexicon, and the stages' outputs
    assert len(list((out / "world" / "videos").rglob("*.mp4"))) == 56
    assert len(list((out / "world" / "danmaku").rglob("*.xml"))) == 56
    assert (out / "corpus" / "comments.parquet").is_file() and (out / "features" / "manifest.json").is_file()
    assert (out / "runs" / "pretrain-seed0" / "pretrained.safetensors").is_file()
    md = (out / "report.md").read_text()
    for text in ("Cross-temp multimodal (CTM)", "majority class (trivial baseline)", "Modality subsets",
                 "TSC pre-training", "no repeat within 1 s", "valence_mse", "Expectations checked on this run",
                 "NOT real"):
        assert text in md
    # every number in the fusion table is the run's
    ctm = s["rows"]["ctm"]
    assert f"{100 * ctm['accuracy_mean']:.2f} ± {100 * ctm['accuracy_std']:.2f}" in md
    assert f"| comments | {s['corpus']['filters']['comments']['all']} |" in md
    for name in ("curves.png", "confusion.png", "timeline.png", "attention-attentive-pretrained.png",
                 "readout-attentive-pretrained.png"):
        assert (out / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(report/{name})" in md


@pytest.mark.slow
def test_html_is_self_contained(quick_demo):
    out, _ = quick_demo
    page = (out / "report" / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    pngs = sorted(p.name for p in (out / "report").glob("*.png"))
    assert len(pngs) >= 7  # curves, confusion, timeline + per small-label run: attention, readout (+ its curves)
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) == len(pngs)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from anywhere
    assert "<script" not in page


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(quick_demo, tmp_path):
    out, _ = quick_demo
    url = (out / "report" / "index.html").as_uri()
    flags = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "shot.png"
    p = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1100,12000", url],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and shot.is_file(), p.stderr[-2000:]
    # the page has no script: any console message, or a resource that failed to load, is an error
    assert not re.search(r"CONSOLE|Failed to load resource|net::ERR_", p.stderr), p.stderr[-2000:]
    import matplotlib.image

    img = matplotlib.image.imread(str(shot))[..., :3] * 255
    assert img.shape[:2] == (12000, 1100) and img.std() > 5  # not a blank page
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    # the plots are drawn: their orange and red pixels (valence line, red tints, curves) are on the page; the
    # same page with its images broken has ~100 such pixels (the red "NO" verdicts), with them thousands
    assert ((r > 180) & (g < 140) & (b < 100)).sum() > 1000
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    pngs = len(list((out / "report").glob("*.png")))  # every figure of the report is on the page
    assert dom.count("<img") == pngs >= 7 and dom.count("<table") >= 6 and "Fusion strategies" in dom
