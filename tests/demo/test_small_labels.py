"""The small-label subsets of `tam demo` (tam.demo.run.small_labels): stratified, seeded, with validation rows."""

from __future__ import annotations

from collections import Counter

from tam.demo.run import PipelineSpec, small_labels


def test_small_labels_are_stratified_seeded_and_keep_every_test_row(tmp_path):
    (tmp_path / "world").mkdir()
    rows = [f"t{i},c{i % 4},test" for i in range(10)] + [f"v{i},c{i % 4}," for i in range(40)]
    (tmp_path / "world" / "labels.csv").write_text("video,label,split\n" + "\n".join(rows) + "\n")
    spec = PipelineSpec(small_labels=12)
    a = small_labels(spec, tmp_path, 0).read_text().splitlines()
    body = [r.split(",") for r in a[1:]]
    assert a[0] == "video,label,split" and [r for r in body if r[2] == "test"] == [r.split(",") for r in rows[:10]]
    drawn = [r for r in body if r[2] != "test"]
    assert len(drawn) == 12 and Counter(r[1] for r in drawn) == {f"c{k}": 3 for k in range(4)}
    assert sum(r[2] == "val" for r in drawn) == 2 and len({r[0] for r in drawn}) == 12
    assert small_labels(spec, tmp_path, 0).read_text().splitlines() == a  # the same seed, the same draw
    assert small_labels(spec, tmp_path, 1).read_text().splitlines() != a
