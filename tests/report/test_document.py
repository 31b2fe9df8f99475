"""The report's document model: markdown and a self-contained HTML page (tam.report.document, tam.report.plots)."""

import base64
import re

from tam.report import plots
from tam.report.document import Checks, Document, Figure, Section, Table, to_html, to_markdown, write_document


def _doc(png: bytes) -> Document:
    return Document("t <1>", ["intro with `code`", "**a warning**"], [
        Section("s", [Table(["a", "b"], [["x", "1 ± 2"], ["<y>", "3"]], "cap"), Figure("f.png", png, "fig"),
                      Checks([("one", "yes"), ("two", "NO"), ("three", "not run")]), ["p", "q"]])])


def test_markdown_and_html_hold_the_same_content(tmp_path):
    png = plots.confusion([[3, 1], [0, 2]], ["a", "b"], "cm")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    doc = _doc(png)
    md = to_markdown(doc)
    assert "| a | b |\n|---|---|\n| x | 1 ± 2 |" in md and "![fig](f.png)" in md and "- two: **NO**" in md
    page = to_html(doc)
    assert "&lt;y&gt;" in page and "<y>" not in page and "<code>code</code>" in page and 'class="warn"' in page
    data = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(data) == png
    assert not re.search(r'(src|href)="(?!data:)', page) and "<script" not in page
    paths = write_document(doc, tmp_path / "r")
    assert (tmp_path / "r" / "f.png").read_bytes() == png and paths["html"].read_text() == page


def test_timeline_and_curves_render():
    plan = {"video": "U000", "T": 4, "cue": 1, "scene": [-1, 2, -1, 0], "move": [0, 1, -1, 0],
            "valence": [0, 0.9, 0.54, 0], "arousal": [0.1, 0.8, 0.48, 0.1]}
    assert plots.timeline(plan, [(1.2, True), (2.5, False)], (0.0, 0.15, 0.33, 0.62))[:4] == b"\x89PNG"
    rows = [{"epoch": str(i), "val_accuracy": "0.5", "train_loss": "1.0"} for i in range(3)]
    pre = [{"epoch": str(i), "loss": "2", "l_wp": "1", "l_tp": "1"} for i in range(1, 3)]
    assert plots.training_curves({"ctm-seed0": rows}, pre)[:4] == b"\x89PNG"
