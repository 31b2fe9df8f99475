"""train.curves: the run's curves.png is drawn only when asked (metrics.csv always holds the curves' numbers)."""

from dataclasses import replace

from tam.train.loop import fit


def test_curves_off_leaves_no_png_and_no_link(tiny_config, tmp_path):
    cfg = replace(tiny_config, optim=replace(tiny_config.optim, epochs=1),
                  train=replace(tiny_config.train, curves=False, linear_baseline=False))
    results = fit(cfg, tmp_path / "run", log=lambda s: None)
    assert not (tmp_path / "run" / "curves.png").exists() and (tmp_path / "run" / "metrics.csv").is_file()
    assert results["curves"] == "" and "curves.png" not in (tmp_path / "run" / "results.md").read_text()
