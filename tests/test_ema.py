"""Exponential moving average of the weights (``training.ema_decay``): updated once per training batch with
the documented formula, saved in checkpoints, resumed, and the weights that validation and a loaded run use."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neurofit.cli import main
from neurofit.config import load_config
from neurofit.data.datamodule import NeuralDataModule
from neurofit.run import load_run
from neurofit.training.module import EncoderModule

ROOT = Path(__file__).resolve().parent.parent


def test_update_is_the_documented_average(tiny_store):
    cfg = load_config(ROOT / "configs/ln.yaml", ["training.ema_decay=0.9"])
    specs = [s.to_dict() for s in NeuralDataModule(tiny_store).prepare_specs()]
    module = EncoderModule(cfg, specs)
    assert all(not p.requires_grad for p in module.ema.parameters())
    opt = module.configure_optimizers()["optimizer"]
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in module.encoder.parameters()}
    module.on_train_batch_end(None, {}, 0)  # the first update copies the weights
    name, live = next(iter(module.encoder.named_parameters()))
    before = live.detach().clone()
    with torch.no_grad():
        live.add_(1.0)
    module.on_train_batch_end(None, {}, 1)
    averaged = dict(module.ema.module.named_parameters())[name]
    torch.testing.assert_close(averaged, 0.9 * before + 0.1 * (before + 1.0))
    assert module.evaluated_encoder is module.ema.module


@pytest.mark.parametrize("bad", ["1.0", "0", "-0.5", "true", "fast"])
def test_bad_decay_is_refused(tiny_store, tmp_path, bad, capsys):
    run = tmp_path / "run"
    args = ["fit", "--data", str(tiny_store), "--config", str(ROOT / "configs/ln.yaml"), "--out", str(run),
            "--set", f"training.ema_decay={bad}"]
    assert main(args) == 2
    assert "training.ema_decay" in capsys.readouterr().err
    assert not run.exists()


def test_checkpoints_carry_the_average_and_runs_load_it(tiny_store, tmp_path):
    run = tmp_path / "run"
    args = ["fit", "--data", str(tiny_store), "--config", str(ROOT / "configs/ln.yaml"), "--out", str(run),
            "--max-epochs", "1", "--set", "training.ema_decay=0.5"]
    assert main(args) == 0
    assert main([*args[:-4], "--resume", "--max-epochs", "2", "--set", "training.ema_decay=0.5"]) == 0
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state["ema.n_averaged"].item() > 1
    loaded = load_run(run, "last").encoder
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state[f"ema.module.{name}"])
    assert any(not torch.equal(state[f"encoder.{n}"], state[f"ema.module.{n}"]) for n, _ in
               loaded.named_parameters())
