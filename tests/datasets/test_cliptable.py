"""Clip-level feature tables imported into the feature store as T = 1, columns grouped by a YAML config."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tam.datasets import cliptable
from tam.errors import TamError
from tam.features.store import FeatureStore

TABLE = ("id\tname\tcolorfulness\tmotion\tloud\tpitch\tdur\n"
         "0\tACCEDE00000.mp4\t5.41E+00\t1.0E-01\t-2.5E+00\t3\t10.5\n"
         "1\tACCEDE00001.mp4\t4.00E+00\t2.0E-01\t-1.5E+00\t4\t8\n"
         "2\tACCEDE00002.mp4\tNaN\t2.0E-01\t-1.5E+00\t4\t9\n")
GROUPS = "duration_column: dur\nmodalities:\n  visual: [colorfulness..motion]\n  acoustic: [loud, 4]\n"


def write(tmp_path, table=TABLE, groups=GROUPS):
    t, g = tmp_path / "features.tsv", tmp_path / "groups.yaml"
    t.write_text(table)
    g.write_text(groups)
    return t, g


def test_import_groups_columns_into_modalities(tmp_path):
    t, g = write(tmp_path)
    report = cliptable.import_table(t, g, tmp_path / "store")
    assert (report.written, report.present) == (2, 0)
    assert report.skipped == [("ACCEDE00002", "line 4: non-finite values in ['visual']")]
    store = FeatureStore.open(tmp_path / "store")
    enc = store.manifest.encoders
    assert set(enc) == {"visual", "acoustic"} and enc["visual"].dim == 2 and enc["acoustic"].dim == 2
    assert enc["visual"].name == "table:features.tsv"
    assert enc["visual"].weights_sha256 == hashlib.sha256(t.read_bytes()).hexdigest()
    assert enc["acoustic"].preprocessing == "clip-level columns loud,4"
    v = store.read("ACCEDE00000")
    assert v.T == 1 and v.times.tolist() == [[0.0, 10.5]]
    np.testing.assert_allclose(v.features["visual"], [[5.41, 0.1]], rtol=1e-6)
    np.testing.assert_allclose(v.features["acoustic"], [[-2.5, 3.0]], rtol=1e-6)
    assert store.videos() == ["ACCEDE00000", "ACCEDE00001"]
    again = cliptable.import_table(t, g, tmp_path / "store")  # re-run resumes: nothing rewritten
    assert (again.written, again.present, len(again.skipped)) == (0, 2, 1)


def test_header_less_table_and_default_times(tmp_path):
    t, g = write(tmp_path, "0\tA.mp4\t1.0\t2.0\t3.0\r1\tB.mp4\t4.0\t5.0\t6.0\r",
                 "modalities:\n  handcrafted: [f1..f3]\n")
    cliptable.import_table(t, g, tmp_path / "store")
    v = FeatureStore.open(tmp_path / "store").read("B")
    assert v.times.tolist() == [[0.0, 0.0]] and v.features["handcrafted"].tolist() == [[4.0, 5.0, 6.0]]


def test_changed_table_refused_by_existing_store(tmp_path):
    t, g = write(tmp_path)
    cliptable.import_table(t, g, tmp_path / "store")
    t.write_text(TABLE.replace("5.41E+00", "5.42E+00"))
    with pytest.raises(TamError, match="made by other encoders"):
        cliptable.import_table(t, g, tmp_path / "store")


@pytest.mark.parametrize("table, groups, message", [
    (TABLE + "3\tX.mp4\t1\t2\n", GROUPS, r"features.tsv:5: expected 7 columns, got 4"),
    (TABLE + "3\tX.mp4\t1\tfast\t1\t1\t1\n", GROUPS, r"features.tsv:5: column 'motion' is not a number: 'fast'"),
    (TABLE, "modalities:\n  visual: [colour]\n", r"modality 'visual': no feature column 'colour'"),
    (TABLE, "modalities:\n  visual: [motion..colorfulness]\n", r"range 'motion..colorfulness' runs backwards"),
    (TABLE, "modalities:\n  a: [loud]\n  b: [3]\n", r"column 'loud' is given to both 'a' and 'b'"),
    (TABLE, "modalities:\n  a: [9]\n", r"index 9 outside 1..5"),
    (TABLE, "modalities: {}\n", r"groups.yaml: `modalities` must map"),
    (TABLE, "modality:\n  a: [loud]\n", r"groups.yaml: keys must be among"),
    (TABLE + "3\tACCEDE00000.mp4\t1\t1\t1\t1\t1\n", GROUPS, r"features.tsv:5: clip 'ACCEDE00000' appears twice"),
])
def test_errors(tmp_path, table, groups, message):
    t, g = write(tmp_path, table, groups)
    with pytest.raises(TamError, match=message):
        cliptable.import_table(t, g, tmp_path / "store")
