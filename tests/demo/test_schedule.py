"""How `tam demo` packs its runs into jobs (tam.demo.run.demo_jobs) and estimates the time left (`_Progress`)."""

from __future__ import annotations

from tam.demo.run import (
    GROUP_RUNS,
    PipelineSpec,
    _labelled_rows,
    _Progress,
    cpu_line,
    demo_jobs,
    pipeline_configs,
    small_labels,
    start_order,
)
from tam.train.multiseed import batch_key


def _jobs(tmp_path):
    (tmp_path / "world").mkdir()
    classes = ["anger", "sadness", "joy", "trust"]
    rows = [f"t{i},anger,test" for i in range(8)] + [f"v{i},{classes[i % 4]}," for i in range(40)]
    (tmp_path / "world" / "labels.csv").write_text("video,label,split\n" + "\n".join(rows) + "\n")
    va = [f"t{i},0.1,0.2,test" for i in range(8)] + [f"v{i},0.1,0.2," for i in range(40)]
    (tmp_path / "world" / "labels_va.csv").write_text("video,valence,arousal,split\n" + "\n".join(va) + "\n")
    spec = PipelineSpec(small_labels=12)
    for s in spec.small_seeds:
        small_labels(spec, tmp_path, s)
    pre, fits = pipeline_configs(spec, tmp_path)
    return pre, fits, demo_jobs(pre, fits)


def test_every_run_is_in_one_job_of_alike_configs_after_the_pre_training_it_starts_from(tmp_path):
    pre, fits, jobs = _jobs(tmp_path)
    names = [n for j in jobs for n, _, _ in j["runs"]]
    assert sorted(names) == sorted(n for n, *_ in pre + fits)  # each run once
    for j in jobs:
        assert len(j["runs"]) <= GROUP_RUNS and len({batch_key(c) for _, c, _ in j["runs"]}) == 1
        inits = {c.train.init_from for _, c, _ in j["runs"] if j["kind"] == "fit" and c.train.init_from}
        assert {f"{tmp_path}/runs/{p}/pretrained.safetensors" for p in j["needs"]} == inits
    rows = {n.rsplit("-seed", 1)[0] for n, *_ in fits}
    assert len([j for j in jobs if j["kind"] == "fit"]) < len(fits) and len(rows) > 5  # seeds of a row share a job
    small = [j for j in jobs if j["runs"][0][0].startswith("small-attentive-scratch")]
    assert [len(j["runs"]) for j in small] == [5, 5] and all(j["units"] > 0 for j in jobs)
    world = tmp_path / "world"
    assert _labelled_rows(world / "labels_va.csv") == _labelled_rows(world / "labels.csv") == 40  # no test row


def test_only_the_curves_and_the_linear_baseline_the_report_shows_are_computed(tmp_path):
    _, fits, _ = _jobs(tmp_path)
    spec = PipelineSpec()
    curves = {n for n, _, c, _ in fits if c.train.train_eval_videos}  # train vs validation: the small-label runs
    assert curves == {n for n, *_ in fits if n.startswith("small-")} and len(curves) == 20
    assert {n for n, _, c, _ in fits if c.train.linear_baseline} == {f"{spec.fusions[0]}-seed{s}" for s in spec.seeds}
    assert not any(c.train.curves for _, _, c, _ in fits)  # the report draws its own curves from metrics.csv
    assert cpu_line({"world": 30.0, "extraction": 270.0}, 2).endswith("300 in all, at least 150 s of wall time on 2 "
                                                                      "processes")


def test_the_time_left_comes_from_measured_rates(tmp_path):
    jobs = [{"kind": "pretrain", "runs": [1], "units": 10}, {"kind": "fit", "runs": [1, 2], "units": 100},
            {"kind": "fit", "runs": [1], "units": 300}]
    lines: list[str] = []
    p = _Progress(jobs, workers=2, log=lines.append, every=0.0)
    p.start(0)
    p.started[0] -= 5.0  # the pre-training job took 5 s
    p.finish(0)
    assert p.left(p.t0) is None and "estimating" in lines[-1]  # no fit job measured yet
    p.start(1)
    p.started[1] -= 20.0  # 100 units in 20 s: 0.2 s a unit
    p.finish(1)
    now = p.started[1] + 20.0
    assert abs(p.left(now) - 300 * 0.2 / 2) < 1e-3 and "3/4 runs done (pre-training 1/1)" in lines[-1]
    p.start(2)
    p.started[2] -= 10.0  # 10 s into the last job: 50 s of it left, on 2 processes
    assert abs(p.left(p.started[2] + 10.0) - 25.0) < 1e-3


def test_a_fine_tuning_job_starts_second_so_the_time_left_is_known_early(tmp_path):
    _, _, jobs = _jobs(tmp_path)
    order = start_order(jobs)
    assert sorted(order) == list(range(len(jobs)))
    assert jobs[order[0]]["kind"] == "pretrain" and jobs[order[1]]["kind"] == "fit" and not jobs[order[1]]["needs"]
    assert [jobs[i]["kind"] for i in order[2:11]] == ["pretrain"] * 9  # then the rest of the pre-training
