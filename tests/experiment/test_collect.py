"""collect on run folders with known results: the table's intervals, the paired claims' verdicts, partial results."""

import csv
import json

import numpy as np
from scipy import stats

from tam.experiment.collect import claim_rows, collect, gather, layout_table, main_table
from tam.experiment.grid import load_grid

from .conftest import write_grid

AXES = {"fusion": ["ctm", "concat"], "labelled": [20, 40], "seed": [0, 1, 2, 3, 4]}
ACC = {"ctm": [0.80, 0.82, 0.79, 0.85, 0.81], "concat": [0.50, 0.55, 0.52, 0.49, 0.51]}


def _fill(grid, skip=(), fail=()):
    for r in grid.runs:
        if r.name in skip:
            continue
        r.run_dir.mkdir(parents=True, exist_ok=True)
        if r.name in fail:
            (r.run_dir / "error.txt").write_text("error: something broke\n")
            continue
        acc = ACC[r.values["fusion"]][r.seed] - (0.1 if r.labelled == 20 else 0)
        (r.run_dir / "results.json").write_text(json.dumps({
            "n": {"train": r.labelled - 3, "val": 3}, "best_epoch": 1, "val": {"accuracy": acc},
            "test": {"accuracy": acc}, "baseline": {"test": {"accuracy": 0.5}}}))
        (r.run_dir / "metrics.csv").write_text("epoch,train_loss\n0,0.9\n1,0.4\n")


def test_table_and_claims_match_scipy(tmp_path, tiny_world):
    g = load_grid(write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out", AXES,
                             [["ctm", ">", "concat"], ["concat", ">", "ctm", "max"], ["ctm", ">", 0.7, "max"]]))
    _fill(g)
    c = gather(g)
    t = main_table(c)
    a = np.array(ACC["ctm"]) * 100
    lo, hi = stats.t.interval(0.95, 4, loc=a.mean(), scale=stats.sem(a))
    assert t.rows[0][0] == "ctm" and t.rows[0][2] == f"{a.mean():.1f} [{lo:.1f}, {hi:.1f}] (5/5)"
    assert t.rows[-1][0].startswith("trivial baseline") and t.rows[-1][1] == "50.0 [50.0, 50.0]"
    table, checks = claim_rows(c)
    verdicts = [(r[0], r[2], r[-1]) for r in table.rows]
    assert verdicts == [("ctm > concat", "20", "YES"), ("ctm > concat", "40", "YES"), ("concat > ctm", "40", "NO"),
                        ("ctm > 0.7", "40", "YES")]
    p = stats.ttest_rel(ACC["ctm"], ACC["concat"]).pvalue
    assert table.rows[1][6] == f"{p:.3g}"
    assert [v for _, v in checks] == ["yes", "yes", "NO", "yes"]


def test_layout_table_puts_an_axis_in_the_columns(tmp_path, tiny_world):
    g = load_grid(write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out", AXES, extra={"tables": ["fusion"]}))
    _fill(g)
    t = layout_table(gather(g), "fusion")
    assert t.header == ["labelled", "ctm", "concat"] and [r[0] for r in t.rows] == ["labelled 20", "labelled 40"]
    b = np.array(ACC["concat"]) * 100 - 10
    lo, hi = stats.t.interval(0.95, 4, loc=b.mean(), scale=stats.sem(b))
    assert t.rows[0][2] == f"{b.mean():.1f} [{lo:.1f}, {hi:.1f}]"


def test_curve_over_another_axis(tmp_path, tiny_world):
    import pytest

    from tam.errors import TamError
    from tam.experiment.collect import axis_curves

    extra = {"curve": {"axis": "fusion", "x": [300, 100], "label": "unlabelled videos"}}
    g = load_grid(write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out", {**AXES, "labelled": [40]},
                             extra=extra))
    _fill(g)
    lines = axis_curves(gather(g))
    assert list(lines) == ["model"] and [x for x, _ in lines["model"]] == [100, 300]  # sorted by x
    assert [ci.mean for _, ci in lines["model"]] == [np.mean(ACC["concat"]), np.mean(ACC["ctm"])]
    _, _, paths = collect(g)
    assert (paths["md"].parent / "curves_fusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "curves_fusion.png" in paths["md"].read_text()
    with pytest.raises(TamError, match="curve: needs axis"):
        load_grid(write_grid(tmp_path / "h.yaml", tiny_world, tmp_path / "out", AXES,
                             extra={"curve": {"axis": "fusion", "x": [1]}}))


def test_partial_results_are_drawn_and_named(tmp_path, tiny_world):
    g = load_grid(write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out", AXES, [["ctm", ">", "concat"]]))
    missing = "fusion-concat__labelled-40__seed-4"
    failed = "fusion-ctm__labelled-40__seed-0"
    _fill(g, skip={missing}, fail={failed})
    doc, c, paths = collect(g)
    assert c.cells[((("fusion", "ctm"),), 40)].keys() == {1, 2, 3, 4}
    md = paths["md"].read_text()
    assert f"failed: {failed}: error: something broke" in md and f"missing (not run yet): {missing}" in md
    assert "1 failed and 1 missing runs are left out" in md
    assert "(4/5)" in md and paths["html"].is_file() and (paths["md"].parent / "curves.png").stat().st_size > 1000
    table, _ = claim_rows(c)
    assert table.rows[1][8] == "3"  # the claim at n = 40 pairs only the 3 seeds both arms finished
    status = {r["run"]: r["status"] for r in csv.DictReader(paths["csv"].open())}
    assert status[failed] == "failed" and status[missing] == "missing" and list(status.values()).count("done") == 18


def test_pretraining_steps_show_ewp_and_atp_beside_their_baselines(tmp_path, tiny_world):
    from tam.experiment.collect import pretraining

    pre = {"store": str(tiny_world[0]), "corpus": str(tmp_path / "corpus"), "set": {"optim.epochs": 1}}
    g = load_grid(write_grid(tmp_path / "g.yaml", tiny_world, tmp_path / "out",
                             {"pretrained": [False, True], "seed": [0, 1, 2]}, extra={"pretrain": pre}))
    assert len(g.pretrain_steps) == 3
    for k, step in enumerate(g.pretrain_steps[:2]):
        step.run_dir.mkdir(parents=True)
        (step.run_dir / "results.json").write_text(json.dumps({
            "heldout": {"ewp_top1": 0.6 + 0.1 * k, "ewp_top5": 0.9, "atp_top1": 0.5, "atp_chance": 0.1},
            "baseline": {"ewp_top1": 0.2, "ewp_top5": 0.7}}))
    t = pretraining(g)
    assert t.rows[0][1:4] == ["0.600", "0.200", "3.00x"] and t.rows[1][3] == "3.50x"
    assert t.rows[2][1] == "not run"
    r = np.array([3.0, 3.5])
    lo, hi = stats.t.interval(0.95, 1, loc=r.mean(), scale=stats.sem(r))
    assert t.rows[3][0] == "mean [95% CI]" and t.rows[3][3] == f"{r.mean():.3f}x [{lo:.3f}, {hi:.3f}]"
