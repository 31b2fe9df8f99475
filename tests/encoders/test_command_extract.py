"""`tam extract` end to end through the real CLI, on generated files."""

import pytest

from tam.cli import main
from tam.features.store import FeatureStore


@pytest.fixture(scope="module")
def videos(tmp_path_factory, video_maker):
    d = tmp_path_factory.mktemp("cli")
    video_maker(d / "a b.mp4", seconds=2.0)
    video_maker(d / "c.mkv", seconds=1.0, tone_at=None)
    return d


@pytest.mark.slow
def test_extract_writes_a_store_and_resumes(videos, tmp_path, capsys):
    out = tmp_path / "feats"
    assert main(["extract", str(videos), "-o", str(out), "--tiny", "--no-progress"]) == 0
    text = capsys.readouterr()
    assert "videos written        2" in text.out and (text.err + text.out).count("NOT real") == 1  # warned once
    store = FeatureStore.open(out)
    assert store.videos() == ["a b", "c"] and store.manifest.random_init
    assert store.manifest.encoders["motion"].name == "r3d-tiny" and store.manifest.segment.startswith("16 frames")
    assert main(["extract", str(videos), "-o", str(out), "--tiny", "--no-progress"]) == 0
    assert "already in the store  2" in capsys.readouterr().out


def test_failures_set_the_exit_code(videos, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    args = ["extract", str(bad), "-o", str(tmp_path / "f"), "--tiny", "--no-progress", "--modalities", "audio"]
    assert main(args) == 1
    assert "empty.mp4: empty file" in capsys.readouterr().out
    assert main(args + ["--strict"]) == 2
    assert main(["extract", "-o", str(tmp_path / "f"), "--tiny"]) == 2  # no inputs
    assert main(["extract", str(bad), "-o", str(tmp_path / "g"), "--motion", "vggish"]) == 2
    assert main(["extract", str(bad), "-o", str(tmp_path / "g"), "--shard", "3/2", "--tiny"]) == 2


def test_missing_weights_error_names_the_source(videos, tmp_path, capsys):
    assert main(["extract", str(videos), "-o", str(tmp_path / "f"), "--modalities", "motion"]) == 2
    assert "r3d50_K_200ep.pth" in capsys.readouterr().err
