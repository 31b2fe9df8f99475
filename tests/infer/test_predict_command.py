"""The real `tam predict` CLI on synthetic videos with a trained tiny model; the HTML report in headless Chromium."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the real CLI in a subprocess and headless Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def tam(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "tam", *args], capture_output=True, text=True, timeout=300, env=env)


def render(page: Path, tmp: Path) -> tuple[str, list[str]]:
    """(DOM after scripts ran, console messages) of `page` in headless Chromium."""
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp}", "--enable-logging=stderr", "--v=0", "--dump-dom",
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    return proc.stdout, [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


@pytest.fixture(scope="module")
def cli_run(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    bad = out / "broken.mp4"
    bad.write_bytes((world["videos"] / "v0.mp4").read_bytes()[:300])
    proc = tam("predict", str(world["videos"] / "v0.mp4"), str(world["long"]), str(bad), "--model", str(world["ctm"]),
               "-o", str(out / "preds"), "--report", str(out / "report"), "--no-progress")
    return out, proc


def test_cli_writes_jsonl_csv_and_skips_the_bad_file(cli_run):
    out, proc = cli_run
    assert proc.returncode == 1, proc.stderr  # a skipped file: exit 1, the others predicted
    assert "broken.mp4" in proc.stdout and "skipped:" in proc.stdout and "2 predicted, 1 failed" in proc.stdout
    lines = [json.loads(x) for x in (out / "preds" / "predictions.jsonl").read_text().splitlines()]
    assert [(r["video"], r["status"]) for r in lines] == [("broken", "failed"), ("long", "ok"), ("v0", "ok")]
    assert lines[1]["windows"] == 4 and len(lines[1]["timeline"]["values"]["calm"]) == 7
    rows = list(csv.DictReader((out / "preds" / "predictions.csv").open()))
    assert [r["status"] for r in rows] == ["failed", "ok", "ok"] and float(rows[2]["p_calm"]) > 0


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium_without_console_errors(cli_run, tmp_path):
    out, _ = cli_run
    report = out / "report"
    pages = sorted(report.glob("*.html"))
    assert len(pages) == 3 and (report / "index.html") in pages and len(list(report.glob("*.png"))) == 2
    for page in pages:
        dom, console = render(page, tmp_path / page.stem)
        assert console == [], f"{page.name}: {console}"
        assert "</body>" in dom
    dom, _ = render(next(report.glob("long-*.html")), tmp_path / "again")
    assert dom.count('<div title="') == 7  # the script drew one cell per segment
    assert "data:image/png;base64," in dom and dom.count("data:image/jpeg;base64,") == 6
    index = (report / "index.html").read_text()
    assert "broken.mp4" in index and index.count("<a href=") == 2


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_console_check_catches_a_script_error(tmp_path):
    """The check above can fail: a page whose script throws is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>")
    _, console = render(page, tmp_path / "profile")
    assert any("Uncaught" in c for c in console)


def test_cli_refuses_without_inputs(world):
    proc = tam("predict", "--model", str(world["ctm"]))
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and len(proc.stderr.splitlines()) == 1
