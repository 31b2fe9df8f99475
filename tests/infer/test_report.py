"""The HTML report's pages: the note that reconciles the whole-video headline with the per-segment timeline."""

from tam.infer.report import timeline_note, video_page


def result(label: str, values: dict, method: str = "token") -> dict:
    n = len(next(iter(values.values())))
    return {"video": "nasa_13013", "source": "", "segments": n, "duration": float(n), "windows": 1, "model": "run",
            "label": label, "probabilities": {"fear": 0.52, "joy": 0.48}, "top": [{"label": label, "p": 0.52}],
            "timeline": {"start": list(range(n)), "end": list(range(1, n + 1)), "method": method,
                         "unit": "probability", "values": values}}


def test_note_explains_a_timeline_whose_top_curve_is_not_the_headline():
    r = result("fear", {"fear": [0.2, 0.3, 0.4], "joy": [0.5, 0.6, 0.3]})
    note = timeline_note(r)
    assert "whole video" in note and "each segment" in note
    assert "Here joy is the highest curve at 2 of 3 segments while the video is predicted fear" in note
    page = video_page(r, b"png", [])
    assert "Here joy is the highest curve" in page and page.index("whole video") < page.index("timeline plot")


def test_no_contradiction_note_when_they_agree_or_for_occlusion():
    agree = timeline_note(result("fear", {"fear": [0.6, 0.7], "joy": [0.4, 0.3]}))
    assert "whole video" in agree and "Here" not in agree
    occlusion = timeline_note(result("fear", {"fear": [-0.1, -0.2], "joy": [0.1, 0.2]}, "occlusion"))
    assert "removed" in occlusion and "Here" not in occlusion
