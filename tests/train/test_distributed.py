"""Two gloo processes under torchrun give the same result as one process with the same global batch, with dropout
and every stochastic regularisation on (the default ones and more): each sample draws its random streams from
(seed, epoch, index), never from the process's global RNG."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from tam.config import to_dict


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_match_one(tiny_config, tmp_path):
    cfg = to_dict(tiny_config)
    cfg["optim"].update(epochs=2, schedule="cosine", warmup_epochs=0.5)
    cfg["model"].update(dropout=0.1, drop_path=0.1, noise=0.1)
    cfg["augment"].update(crop_min_fraction=0.5, token_dropout=0.1, modality_dropout=0.2, mixup_alpha=0.2,
                          label_smoothing=0.1)
    cfg["train"].update(ema_decay=0.9)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    torchrun = shutil.which("torchrun", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    out = {}
    for n in (1, 2):
        run = tmp_path / f"run{n}"
        cmd = [torchrun, "--standalone", f"--nproc_per_node={n}", "-m", "tam", "train", "--config", str(path),
               "--run-dir", str(run)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1",
                                                                                 **__import__("os").environ})
        assert p.returncode == 0, p.stderr[-3000:]
        out[n] = json.loads((run / "results.json").read_text())
    assert out[1]["n"] == out[2]["n"]
    for split in ("val", "test"):
        for k, v in out[1][split].items():
            assert out[2][split][k] == pytest.approx(v, abs=1e-6), (split, k)
    rows1 = (tmp_path / "run1" / "metrics.csv").read_text().splitlines()
    rows2 = (tmp_path / "run2" / "metrics.csv").read_text().splitlines()
    loss1 = [float(r.split(",")[2]) for r in rows1[1:]]
    loss2 = [float(r.split(",")[2]) for r in rows2[1:]]
    print("max |loss diff|", max(abs(a - b) for a, b in zip(loss1, loss2, strict=True)),
          "max |metric diff|", max(abs(out[2][s][k] - v) for s in ("val", "test") for k, v in out[1][s].items()))
    assert loss2 == pytest.approx(loss1, rel=1e-6, abs=1e-7)


def test_device_names_are_checked():
    import torch

    from tam.errors import TamError
    from tam.train import distributed

    for bad in ("gpu", "cuda1", "CUDA", ""):
        with pytest.raises(TamError, match="choose auto, cpu, cuda or cuda:N"):
            distributed.init(bad)
    assert distributed.init("cpu")[1] == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TamError, match="CUDA is not available"):
            distributed.init("cuda:0")
        assert distributed.init("auto")[1] == torch.device("cpu")
