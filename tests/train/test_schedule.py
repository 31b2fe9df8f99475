"""Learning-rate schedules, early stopping and the weight EMA."""

import pytest
import torch

from tam.config import OptimConfig
from tam.train.schedule import EMA, build_scheduler, lr_factor, should_stop


def test_step_schedule_equals_the_papers_step_lr_per_epoch():
    o = OptimConfig(lr_step_epochs=2, lr_gamma=0.1, epochs=6)
    assert [lr_factor(s, 4, o) for s in range(0, 24, 4)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lr_factor(7, 4, o) == 1 and lr_factor(8, 4, o) == pytest.approx(0.1)
    assert all(lr_factor(s, 4, OptimConfig()) == 1 for s in range(100))  # the paper: constant


def test_warmup_then_cosine():
    o = OptimConfig(schedule="cosine", warmup_epochs=1, epochs=5)
    f = [lr_factor(s, 10, o) for s in range(50)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f[10] == pytest.approx(1.0) and all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[30] == pytest.approx(0.5) and f[-1] == pytest.approx(0.0, abs=0.01)


def test_scheduler_steps_per_step_and_resumes():
    o = OptimConfig(schedule="cosine", warmup_epochs=0.5, epochs=3, lr=1.0)
    p = torch.nn.Parameter(torch.zeros(1))

    def make():
        opt = torch.optim.SGD([p], lr=1.0)
        return opt, build_scheduler(opt, o, 4)

    opt, sched = make()
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    opt2, sched2 = make()
    for _ in range(5):
        opt2.step()
        sched2.step()
    opt3, sched3 = make()  # resume as the loop does: optimiser state (holds the current lr), then scheduler
    opt3.load_state_dict(opt2.state_dict())
    sched3.load_state_dict(sched2.state_dict())
    resumed = []
    for _ in range(7):
        resumed.append(opt3.param_groups[0]["lr"])
        opt3.step()
        sched3.step()
    assert resumed == pytest.approx(lrs[5:])
    assert lrs == pytest.approx([lr_factor(s, 4, o) for s in range(12)])


def test_early_stopping():
    assert not should_stop(5, 1, 0)  # off
    assert not should_stop(4, 1, 3) and should_stop(5, 1, 3)  # epochs 2, 3, 4 brought nothing better
    assert not should_stop(0, -1, 1)


def test_ema_averages_weights_and_copies_buffers():
    m = torch.nn.BatchNorm1d(2)
    ema = EMA(m, 0.9)
    with torch.no_grad():
        m.weight.fill_(2.0)
        m.running_mean.fill_(5.0)
    ema.update(m)
    assert ema.module.weight.tolist() == pytest.approx([1.1, 1.1])  # 0.9·1 + 0.1·2
    assert ema.module.running_mean.tolist() == [5.0, 5.0]
    assert not any(p.requires_grad for p in ema.module.parameters())
    other = EMA(m, 0.9)
    other.load_state_dict(ema.state_dict())
    assert other.module.weight.tolist() == pytest.approx([1.1, 1.1])
