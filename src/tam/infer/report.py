"""`--report DIR`: a PNG plot and a self-contained HTML page per video, and an index page for the batch.

Each page embeds everything it shows (the plot as a PNG data URI, thumbnails as JPEG data URIs, the timeline
as JSON read by a few lines of inline script), so it can be mailed or archived alone. Files:
    DIR/index.html          every video: top emotion (or valence/arousal), length, link; failures with reasons
    DIR/<entry>.html/.png   one video (<entry>: the feature store's file-safe name of the video id)
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from tam.features.store import entry_name
from tam.io import atomic_write, write_text

COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac"]
THUMBS = 6


def write_report(results: list[dict], root: str | Path, progress: bool = False) -> Path:
    """Write one PNG + HTML page per successful result and `index.html`; returns the index path."""
    from tqdm import tqdm

    root = Path(root)
    for r in tqdm([r for r in results if r["status"] == "ok"], desc="report", unit="video", disable=not progress,
                  leave=False):
        name = entry_name(r["video"])
        png = plot_png(r)
        atomic_write(root / f"{name}.png", lambda p, data=png: p.write_bytes(data))
        write_text(root / f"{name}.html", video_page(r, png, thumbnails(r.get("source", ""), r)))
    index = root / "index.html"
    write_text(index, index_page(results))
    return index


# ---- the plot -------------------------------------------------------------------------------------------
def plot_png(r: dict, dpi: int = 100) -> bytes:
    """The timeline as a PNG: one line per class (or valence / arousal) over time; predicted words below."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    tl = r["timeline"]
    mid = (np.asarray(tl["start"]) + np.asarray(tl["end"])) / 2
    words = r.get("words") or {}
    font = _font_for(words)
    if font is None:  # no font here can draw these words: they stay in the page's table only
        words = {}
    rows = 2 if words else 1
    fig, axes = plt.subplots(rows, 1, figsize=(9, 3.2 + 1.2 * (rows - 1)), dpi=dpi, squeeze=False, sharex=True,
                             gridspec_kw={"height_ratios": [3, 1][:rows]})
    ax = axes[0, 0]
    for k, (name, values) in enumerate(tl["values"].items()):
        ax.plot(mid, values, marker="o", ms=3, lw=1.5, color=COLOURS[k % len(COLOURS)], label=name)
    if "change" in tl["unit"]:
        ax.axhline(0, color="#888", lw=0.8)
    ax.set_ylabel(tl["unit"])
    ax.set_title(f"{r['video']}: {_headline(r)}  [timeline: {tl['method']}]", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    if words:
        wax = axes[1, 0]
        for t, ws in zip(mid, words["top"]):
            wax.text(t, 0.5, "\n".join(ws[:3]), ha="center", va="center", fontsize=7, family=font)
        wax.set_yticks([])
        wax.set_ylabel("words")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
             "SimHei", "Microsoft YaHei", "PingFang SC", "AR PL UMing CN")


def _font_for(words: dict) -> str | None:
    """A font family that draws the words: the default for ASCII, else an installed CJK font (None: none)."""
    text = "".join(w for seg in words.get("top", []) for w in seg)
    if text.isascii():
        return "sans-serif"
    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    return next((f for f in CJK_FONTS if f in have), None)


def _headline(r: dict) -> str:
    if "label" in r:
        return f"{r['label']} ({r['probabilities'][r['label']]:.2f})"
    return f"valence {r['valence']:+.2f}, arousal {r['arousal']:+.2f}"


# ---- thumbnails -----------------------------------------------------------------------------------------
def thumbnails(source: str, r: dict, n: int = THUMBS, width: int = 160) -> list[tuple[float, str]]:
    """(time, JPEG data URI) for up to `n` segment midpoints spread over the video; [] when it cannot decode."""
    from tam.encoders.video_io import open_media, pick_video_stream
    from tam.errors import TamError

    tl = r["timeline"]
    mids = (np.asarray(tl["start"]) + np.asarray(tl["end"])) / 2
    times = [float(mids[i]) for i in sorted(set(np.linspace(0, len(mids) - 1, min(n, len(mids))).round().astype(int)))]
    if not source or not Path(source).is_file():
        return []
    out = []
    try:
        with open_media(source) as c:
            stream = pick_video_stream(c)
            if stream is None:
                return []
            for t in times:
                img = _frame_at(c, stream, t)
                if img is not None:
                    out.append((t, _jpeg_uri(img, width)))
    except (TamError, OSError, ValueError, EOFError):
        return out
    except Exception as e:  # noqa: BLE001 - FFmpeg errors have many types; thumbnails are optional
        if type(e).__module__.startswith("av"):
            return out
        raise
    return out


def _frame_at(container, stream, t: float):
    """The first frame at or after `t` seconds (after seeking to the key frame before it) as a PIL image."""
    start = (container.start_time or 0) / 1e6
    container.seek(int((t + start) * 1e6), backward=True, any_frame=False)
    last = None
    for frame in container.decode(stream):
        last = frame
        if frame.time is not None and frame.time - start >= t - 1e-3:
            break
    return last.to_image() if last is not None else None


def _jpeg_uri(img, width: int) -> str:
    img = img.convert("RGB")
    img.thumbnail((width, width * 3))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---- pages ----------------------------------------------------------------------------------------------
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse}td,th{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:left}
.bar{display:inline-block;height:.9em;background:#4e79a7;vertical-align:middle}
.strip{display:flex;height:28px;margin:.5em 0;border:1px solid #ccc}.strip div{flex:1;cursor:pointer}
.strip div:hover{outline:2px solid #000}.thumbs{display:flex;gap:6px;flex-wrap:wrap}
.thumbs figure{margin:0;font-size:.8em;text-align:center}.warn{color:#b00;font-weight:bold}
#detail{min-height:1.5em;font-family:monospace}.legend span{margin-right:1em}"""

_SCRIPT = """(function(){
  var r = JSON.parse(document.getElementById('data').textContent);
  var tl = r.timeline, names = Object.keys(tl.values), colours = %s;
  var strip = document.getElementById('strip'), detail = document.getElementById('detail');
  var legend = document.getElementById('legend');
  names.forEach(function(n, k){
    var s = document.createElement('span'); s.style.color = colours[k %% colours.length];
    s.textContent = '\\u25A0 ' + n; legend.appendChild(s);
  });
  function best(i){
    var b = 0; names.forEach(function(n, k){ if (tl.values[n][i] > tl.values[names[b]][i]) b = k; }); return b;
  }
  function describe(i){
    var parts = names.map(function(n){ return n + ' ' + tl.values[n][i].toFixed(3); });
    var w = r.words && r.words.top[i] ? '  words: ' + r.words.top[i].join(' ') : '';
    return tl.start[i].toFixed(1) + '-' + tl.end[i].toFixed(1) + ' s  ' + parts.join('  ') + w;
  }
  for (var i = 0; i < tl.start.length; i++) {
    var cell = document.createElement('div'), b = best(i);
    cell.style.background = colours[b %% colours.length];
    cell.title = describe(i);
    cell.addEventListener('click', (function(i){ return function(){ detail.textContent = describe(i); }; })(i));
    strip.appendChild(cell);
  }
  detail.textContent = 'segments: ' + tl.start.length + ' (click one)';
})();"""


def _page(title: str, body: str, script: str = "") -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n{body}\n{script}</body></html>\n")


def video_page(r: dict, png: bytes, thumbs: list[tuple[float, str]]) -> str:
    """A self-contained page: headline, top emotions, the plot, an interactive segment strip, words, frames."""
    e = html.escape
    parts = [f"<h1>{e(r['video'])}</h1>", f"<p>source: {e(r.get('source', ''))}; {r['segments']} segments, "
             f"{r['duration']:.1f} s, {r['windows']} window(s); model {e(str(r.get('model', '')))}</p>"]
    if r.get("random_init_features"):
        parts.append("<p class=\"warn\">Random-init encoders: these predictions are NOT real.</p>")
    if "label" in r:
        rows = "".join(f"<tr><td>{e(t['label'])}</td><td><span class=\"bar\" style=\"width:{200 * t['p']:.0f}px\">"
                       f"</span> {t['p']:.3f}</td></tr>" for t in r["top"])
        parts.append(f"<h2>Top emotions</h2><table>{rows}</table>")
    else:
        parts.append(f"<h2>Prediction</h2><p>valence {r['valence']:+.3f}, arousal {r['arousal']:+.3f}</p>")
    png_uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    parts += [f"<h2>Timeline ({e(r['timeline']['method'])}, {e(r['timeline']['unit'])})</h2>",
              f"<p class=\"note\">{e(timeline_note(r))}</p>",
              f"<img alt=\"timeline plot\" src=\"{png_uri}\" style=\"max-width:100%\">",
              "<div class=\"legend\" id=\"legend\"></div><div class=\"strip\" id=\"strip\"></div><div id=\"detail\">"
              "</div>"]
    if r.get("words"):
        rows = "".join(f"<tr><td>{s:.1f} s</td><td>{e(' '.join(w))}</td></tr>"
                       for s, w in zip(r["timeline"]["start"], r["words"]["top"]))
        parts.append(f"<h2>Predicted viewer words</h2><table>{rows}</table>")
    if thumbs:
        figs = "".join(f"<figure><img alt=\"frame at {t:.1f} s\" src=\"{uri}\"><figcaption>{t:.1f} s</figcaption>"
                       "</figure>" for t, uri in thumbs)
        parts.append(f"<h2>Frames</h2><div class=\"thumbs\">{figs}</div>")
    parts.append("<p><a href=\"index.html\">all videos</a></p>")
    data = json.dumps({k: r[k] for k in ("timeline", "words") if k in r}, ensure_ascii=False).replace("</", "<\\/")
    script = (f"<script type=\"application/json\" id=\"data\">{data}</script>\n"
              f"<script>{_SCRIPT % json.dumps(COLOURS)}</script>\n")
    return _page(f"tam predict: {r['video']}", "\n".join(parts), script)


def timeline_note(r: dict) -> str:
    """How the headline and the timeline differ, and, when their top classes disagree, that this is expected."""
    tl = r["timeline"]
    if tl["method"] == "occlusion":
        how = ("The timeline is the change in the prediction when each segment is removed (occlusion): above 0 the "
               "segment pushes the video towards that class")
    else:
        how = ("The timeline applies the same head to each segment's token alone; it is not calibrated against the "
               "video-level prediction, so read where a curve rises and falls, not its level against the headline")
    note = ("The headline is the prediction for the whole video (the model's video token, averaged over windows "
            f"of segments). {how} (docs/predict.md, \"The affect timeline\").")
    if "label" in r and tl["method"] != "occlusion":
        names = list(tl["values"])
        wins = np.bincount(np.argmax(np.array([tl["values"][k] for k in names]), axis=0), minlength=len(names))
        top = names[int(wins.argmax())]
        if top != r["label"]:
            note += (f" Here {top} is the highest curve at {wins.max()} of {wins.sum()} segments while the video is "
                     f"predicted {r['label']}: the two readouts answer different questions, not a contradiction.")
    return note


def index_page(results: list[dict]) -> str:
    """The batch: one row per video with its top emotion and a link; failures with their reasons."""
    e = html.escape
    rows = []
    for r in results:
        if r["status"] != "ok":
            continue
        link = f"<a href=\"{e(entry_name(r['video']))}.html\">{e(r['video'])}</a>"
        rows.append(f"<tr><td>{link}</td><td>{e(_headline(r))}</td><td>{r['duration']:.1f} s</td>"
                    f"<td>{r['segments']}</td></tr>")
    failed = [r for r in results if r["status"] != "ok"]
    body = [f"<h1>tam predict: {len(rows)} video(s)</h1>",
            "<table><tr><th>video</th><th>prediction</th><th>duration</th><th>segments</th></tr>"
            + "".join(rows) + "</table>"]
    if any(r.get("random_init_features") for r in results):
        body.append("<p class=\"warn\">Random-init encoders: these predictions are NOT real.</p>")
    if failed:
        body.append(f"<h2>Skipped ({len(failed)})</h2><ul>"
                    + "".join(f"<li>{e(r.get('error', ''))}</li>" for r in failed) + "</ul>")
    return _page("tam predict", "\n".join(body))
