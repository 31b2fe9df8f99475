"""The pieces of the service that need no server: safe names, server paths, the model card summary."""

from __future__ import annotations

import pytest

from tam.serve.media import Refused, safe_name, under
from tam.serve.service import model_card


@pytest.mark.parametrize("given,want", [("clip.mp4", "clip.mp4"), ("../../etc/passwd", "passwd"),
                                        ("C:\\x\\..\\evil.mkv", "evil.mkv"), ("..", "video.mp4"),
                                        (".hidden.mp4", "hidden.mp4"), ("名前 1.mp4", "___1.mp4"), ("", "video.mp4"),
                                        (None, "video.mp4"), ("a/" + "b" * 300 + ".mp4", "b" * 96 + ".mp4")])
def test_safe_name(given, want):
    assert safe_name(given, "video.mp4") == want


def test_under_refuses_everything_outside_the_folder(tmp_path):
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.mp4").write_bytes(b"x")
    (tmp_path / "secret.mp4").write_bytes(b"x")
    (tmp_path / "ok" / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    folder = str(tmp_path / "ok")
    assert under(folder, "a.mp4") == tmp_path / "ok" / "a.mp4"
    assert under(folder, str(tmp_path / "ok" / "a.mp4")) == tmp_path / "ok" / "a.mp4"
    for bad, status in [("../secret.mp4", 403), (str(tmp_path / "secret.mp4"), 403), ("link.mp4", 403),
                        ("none.mp4", 404), ("a\x00.mp4", 422)]:
        with pytest.raises(Refused) as e:
            under(folder, bad)
        assert e.value.status == status, bad
    with pytest.raises(Refused) as e:
        under("", "a.mp4")
    assert e.value.status == 403 and "--allow-folder" in e.value.reason


def test_model_card_summary_skips_front_matter_and_titles(tmp_path):
    assert model_card(str(tmp_path)) == ""
    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\ntags: [video]\n---\n# tam: ve8\n\n"
                                        "A CTM model that predicts 8 emotions.\n\n## Use\n\nmore\n")
    assert model_card(str(tmp_path)) == "A CTM model that predicts 8 emotions."
