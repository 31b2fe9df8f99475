"""Several seeds trained as one batched computation equal the same runs trained alone (tam.train.multiseed)."""

import csv
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from torch.func import vmap

from tam.config import ModelConfig, OptimConfig, RunConfig
from tam.errors import TamError
from tam.models.model import build_model
from tam.models.stochastic import SampleRNG, sample_rng
from tam.train.checkpoint import load_state
from tam.train.loop import fit
from tam.train.multiseed import LaneRNG, Stacked, batch_key, fit_many, pays, read_group


def _quiet(_):
    pass


def _seeds(cfg, seeds):
    return [replace(cfg, train=replace(cfg.train, seed=s)).validate() for s in seeds]


def _regularised(cfg):
    """Every random stream on: dropout, stochastic depth, feature noise, crops, token / modality dropout, mixup;
    plus EMA, gradient clipping and a schedule (each must stay per run inside the batch)."""
    return replace(cfg, model=replace(cfg.model, dropout=0.1, drop_path=0.1, noise=0.1),
                   optim=replace(cfg.optim, epochs=3, schedule="cosine", warmup_epochs=0.5, grad_clip=0.5),
                   train=replace(cfg.train, ema_decay=0.9, linear_baseline=False, train_eval_videos=16),
                   augment=replace(cfg.augment, crop_min_fraction=0.5, token_dropout=0.1, modality_dropout=0.2,
                                   mixup_alpha=0.2, label_smoothing=0.1)).validate()


def _rows(run_dir):
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


def test_lane_k_draws_run_ks_streams():
    K, B = 3, 4
    seeds = torch.arange(K * B) * 7919 + 1
    rng = LaneRNG(seeds, K, torch.device("cpu"))

    def draw(lane):
        rng.lane = lane
        return torch.cat([rng.rand(5), rng.randn(3), rng.rand(2)], dim=1)

    got = vmap(draw, randomness="same")(torch.arange(K))
    for k in range(K):
        alone = SampleRNG(seeds[k * B:(k + 1) * B])
        want = torch.cat([alone.rand(5), alone.randn(3), alone.rand(2)], dim=1)
        assert torch.equal(got[k], want)
    assert len(rng) == B


def test_vmap_step_with_relative_bias_equals_each_runs_own_step():
    """model.rel_bias with rel_bias_init under the vmap step: each lane's outputs and gradients (the bias's included)
    are its own model's, with a padded video and a missing modality (a group once failed here: the fused attention
    kernel has no gradient for an additive mask under vmap)."""
    K, B, T, dims = 2, 3, 6, {"image": 8, "motion": 6, "audio": 4}
    cfg = ModelConfig(d=16, layers=2, heads=2, T=T, dropout=0.1, rel_bias=2, rel_bias_init=0.5)
    models = []
    for k in range(K):
        torch.manual_seed(k)
        models.append(build_model(cfg, dims, 3).train())
    g = torch.Generator().manual_seed(0)
    x = {m: torch.randn(K, B, T, D, generator=g) for m, D in dims.items()}
    valid, present = torch.ones(K, B, T, dtype=torch.bool), torch.ones(K, B, 3, dtype=torch.bool)
    valid[:, 1, 4:], present[:, 2, 2] = False, False
    seeds = torch.arange(K * B) + 11
    stacked = Stacked(models, torch.device("cpu"))
    out = stacked.forward(x, valid, present, seeds)
    out.square().sum().backward()
    for k, model in enumerate(models):
        with sample_rng(seeds[k * B:(k + 1) * B]):
            own = model({m: v[k] for m, v in x.items()}, valid[k], present[k])
        own.square().sum().backward()
        torch.testing.assert_close(out[k], own, rtol=1e-5, atol=1e-6)
        grads = {n: p.grad for n, p in model.named_parameters()}
        assert grads["fusion.layers.0.b_rel"].abs().max() > 0
        for n, p in stacked.module.named_parameters():
            torch.testing.assert_close(p.grad[k], grads[n], rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.parametrize("d,batch,vmap", [(32, 16, True), (64, 8, True), (32, 32, True), (64, 16, True),
                                           (32, 64, False), (64, 32, False)])
def test_the_vmap_step_is_chosen_by_the_work_of_a_step_not_its_tokens(d, batch, vmap):
    """Measured as whole epochs (bench_multiseed.epochs, K = 5, M = 2, T = 16): the vmap gains at batch · M · (T+1) · d
    = 34,816 for every fusion of the timing grid (1.15-1.39x); 69,632 is left to each run's own steps (the step alone
    lost there, 0.62-0.85x)."""
    cfg = RunConfig(model=ModelConfig(modalities=["image", "audio"], d=d, T=16), optim=OptimConfig(batch_size=batch))
    assert pays(cfg) is vmap


@pytest.mark.slow
def test_batched_seeds_equal_separate_runs(tiny_config, tmp_path):
    cfgs = _seeds(_regularised(tiny_config), [0, 1, 2])
    lines = []
    batched = fit_many(cfgs, [tmp_path / f"batched{k}" for k in range(3)], logs=[lines.append, _quiet, _quiet],
                       batched=True)
    assert any("one vmap step for all" in x for x in lines)
    alone = [fit(c, tmp_path / f"alone{k}", log=_quiet) for k, c in enumerate(cfgs)]
    for k in range(3):
        a, b = tmp_path / f"alone{k}", tmp_path / f"batched{k}"
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
        ra, rb = _rows(a), _rows(b)
        assert [r.keys() for r in ra] == [r.keys() for r in rb]
        for x, y in zip(ra, rb, strict=True):  # every per-epoch loss and metric
            for key in x:
                assert float(y[key]) == pytest.approx(float(x[key]), rel=1e-4, abs=1e-5), (k, x["epoch"], key)
        assert batched[k]["best_epoch"] == alone[k]["best_epoch"]
        assert batched[k]["test"] == pytest.approx(alone[k]["test"], rel=1e-4, abs=1e-5)
        assert batched[k]["val"] == pytest.approx(alone[k]["val"], rel=1e-4, abs=1e-5)
        wa, wb = load_file(str(a / "best.safetensors")), load_file(str(b / "best.safetensors"))
        assert wa.keys() == wb.keys() and all(torch.allclose(wa[n], wb[n], rtol=1e-3, atol=1e-4) for n in wa)
        sa, sb = load_state(a / "last.pt"), load_state(b / "last.pt")
        assert torch.equal(sa["rng"], sb["rng"]) and sa["epoch"] == sb["epoch"] and sa["sched"] == sb["sched"]
        moments = [(x["exp_avg_sq"], y["exp_avg_sq"]) for x, y in zip(sa["opt"]["state"].values(),
                                                                     sb["opt"]["state"].values(), strict=True)]
        assert moments and all(torch.allclose(x, y, rtol=1e-3, atol=1e-9) for x, y in moments)
    # the seeds differ from each other, so the comparison above tells them apart
    assert len({round(float(_rows(tmp_path / f"alone{k}")[-1]["train_loss"]), 6) for k in range(3)}) == 3


def test_cells_of_other_models_share_the_process_and_equal_separate_runs(tiny_config, tmp_path):
    """Two cells (other widths) of two seeds each, interleaved in one group: trained cell by cell over one Data, each
    run bit for bit as `fit` alone (the shared data, normalisation statistics and linear baseline change nothing)."""
    one = replace(tiny_config, optim=replace(tiny_config.optim, epochs=1), train=replace(tiny_config.train,
                                                                                          train_eval_videos=0))
    other = replace(one, model=replace(one.model, d=8))
    assert batch_key(one) == batch_key(replace(one, train=replace(one.train, seed=5)))
    assert batch_key(one) != batch_key(other)
    cfgs = [*_seeds(one, [0]), *_seeds(other, [0]), *_seeds(one, [1]), *_seeds(other, [1])]
    lines = [[] for _ in cfgs]
    together = fit_many(cfgs, [tmp_path / f"one{k}" for k in range(4)], logs=[x.append for x in lines],
                        batched=False)
    assert all(any("1 run(s) of other seeds" in y for y in x) for x in lines)
    assert not any("one after another" in y for x in lines for y in x)
    for k, c in enumerate(cfgs):
        alone = fit(c, tmp_path / f"alone{k}", log=_quiet)
        assert _rows(tmp_path / f"one{k}") == _rows(tmp_path / f"alone{k}")  # bit for bit
        assert together[k]["test"] == alone["test"] and together[k]["linear"] == alone["linear"]
        assert together[k]["config"] == alone["config"]
    assert together[0]["test"] != together[1]["test"]  # the cells differ, so the comparison tells them apart


@pytest.mark.slow
def test_own_steps_in_one_process_equal_separate_runs_exactly(tiny_config, tmp_path):
    cfgs = _seeds(_regularised(replace(tiny_config, optim=replace(tiny_config.optim, epochs=2))), [3, 4])
    assert pays(cfgs[0])  # small steps: the automatic choice would be the vmap; forced off here
    lines = []
    together = fit_many(cfgs, [tmp_path / "one0", tmp_path / "one1"], logs=[lines.append, _quiet], batched=False)
    assert any("each run's own steps in turn" in x for x in lines)
    for k, c in enumerate(cfgs):
        alone = fit(c, tmp_path / f"alone{k}", log=_quiet)
        assert _rows(tmp_path / f"one{k}") == _rows(tmp_path / f"alone{k}")  # bit for bit
        assert together[k]["test"] == alone["test"] and together[k]["best_epoch"] == alone["best_epoch"]
        assert torch.equal(load_state(tmp_path / f"one{k}" / "last.pt")["rng"],
                           load_state(tmp_path / f"alone{k}" / "last.pt")["rng"])


@pytest.mark.parametrize("text", ['{"runs": 3}', '{"runs": [{"config": null, "overrides": "x", "run_dir": "r"}]}',
                                  '{"runs": [{"config": null, "overrides": [], "run_dir": "r"}], "batched": "yes"}'])
def test_a_malformed_group_file_is_one_line_naming_it(tmp_path, text):
    path = tmp_path / "group.json"
    path.write_text(text)
    with pytest.raises(TamError, match=r"group\.json: a run group is"):
        read_group(path)


class _Killed(Exception):
    pass


@pytest.mark.slow
def test_a_killed_group_resumes_to_the_same_results(tiny_config, tmp_path):
    cfgs = _seeds(_regularised(tiny_config), [5, 6])
    full = fit_many(cfgs, [tmp_path / "full0", tmp_path / "full1"], logs=[_quiet, _quiet], batched=True)

    def kill(line):
        if line.startswith("epoch   2/3"):  # the last run has saved epoch 2: both runs' last.pt hold it
            raise _Killed

    dirs = [tmp_path / "kill0", tmp_path / "kill1"]
    with pytest.raises(_Killed):
        fit_many(cfgs, dirs, logs=[_quiet, kill], batched=True)
    assert [load_state(d / "last.pt")["epoch"] for d in dirs] == [1, 1]
    lines = []
    resumed = fit_many(cfgs, dirs, logs=[lines.append, _quiet], batched=True)
    assert any("one vmap step" in x for x in lines)  # the stacked optimiser state is rebuilt from both last.pt
    for k in range(2):
        for x, y in zip(_rows(dirs[k]), _rows(tmp_path / f"full{k}"), strict=True):
            assert x.keys() == y.keys()
            assert all(float(x[key]) == pytest.approx(float(y[key]), rel=1e-5, abs=1e-6) for key in x), (k, x, y)
        assert resumed[k]["best_epoch"] == full[k]["best_epoch"]
        assert resumed[k]["test"] == pytest.approx(full[k]["test"], rel=1e-5, abs=1e-6)
