"""Two gloo processes under torchrun pre-train exactly like one process with the same global batch."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tam.config import to_dict


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    from tam.config import ModelConfig, OptimConfig, TrainConfig
    from tam.demo.worlds.features import WorldSpec
    from tam.demo.worlds.pretrain import CommentWorldSpec, make_comment_world
    from tam.train.pretrain import DecoderConfig, PretrainConfig, PretrainDataConfig

    store, corpus = make_comment_world(tmp_path / "w", WorldSpec(min_segments=3, max_segments=12),
                                       CommentWorldSpec(n_videos=12))
    path = tmp_path / "cfg.yaml"
    cfg = PretrainConfig(model=ModelConfig(d=16, layers=1, heads=2, T=8, dropout=0.0),
                         decoder=DecoderConfig(layers=2, heads=2, dropout=0.0),
                         data=PretrainDataConfig(store=str(store), corpus=str(corpus), comments_per_clip=8),
                         optim=OptimConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=8, epochs=2),
                         train=TrainConfig(num_workers=0, progress=False, device="cpu"))
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    losses = {}
    for n in (1, 2):
        run = tmp_path / f"run{n}"
        cmd = [torchrun, "--standalone", f"--nproc_per_node={n}", "-m", "tam", "pretrain", "run", "--config",
               str(path), "--run-dir", str(run)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert p.returncode == 0, p.stderr[-3000:]
        rows = (run / "metrics.csv").read_text().splitlines()[1:]
        losses[n] = [float(x) for r in rows for x in r.split(",")[2:]]  # loss, l_wp, l_tp per epoch
    assert len(losses[1]) == 6
    assert losses[2] == pytest.approx(losses[1], rel=1e-4)
