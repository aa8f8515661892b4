"""The GPU code paths of ``neurofit fit`` run on CPU and train the same model: ``training.channels_last``,
``training.compile`` and ``training.precision: bf16-mixed`` on a static and a video (TBPTT) model, each compared
with fp32 eager training from the same seed in deterministic mode, step by step (the logged training loss)
and by the predictions of the trained weights on every trial (relative RMS difference). Measured: channels-last
and compile agree with eager to 1e-7 (float rounding of other kernels; tolerance 1e-5); bf16-mixed to 0.4% of
the loss and 0.7-1.1% of the predictions (a bfloat16 mantissa has 8 bits; tolerances 2% and 5%).

Where a switch cannot run, fit refuses it before anything is written (``tests/test_ddp.py`` for the process
layout); torch.compile on CPU needs a C++ compiler, which the first test checks is there.
"""

import csv
import shutil

import numpy as np
import pytest
import torch._dynamo

from neurofit.cli import main
from neurofit.data import open_store
from neurofit.run import load_run
from tests.conftest import static_and_video_stores

#: The default config on its trained weights (its EMA copy would barely move in one epoch), shrunk, and in
#: the plain NCHW memory format that the switches are compared with, whatever default.yaml ships.
STATIC = ["--config", "configs/default.yaml", "--set", "training.ema_decay=null",
          "--set", "training.channels_last=false", "--set", "model.core.channels=4",
          "--set", "model.core.layers=2", "--set", "model.core.input_kernel=3", "--set", "data.batch_size=16"]
VIDEO = ["--config", "configs/video_gru.yaml", "--set", "model.core.frontend.channels=4",
         "--set", "model.core.frontend.layers=1", "--set", "model.core.hidden_channels=4",
         "--set", "training.skip_frames=4", "--set", "training.tbptt_frames=4",
         "--set", "evaluation.skip_frames=4", "--set", "data.batch_size=8"]
#: switch -> (--set overrides, relative tolerance of the per-step loss, of the predictions)
SWITCHES = {
    "channels_last": (["training.channels_last=true"], 1e-5, 1e-5),
    "compile": (["training.compile=true"], 1e-5, 1e-5),
    "bf16-mixed": (["training.precision=bf16-mixed"], 0.02, 0.05),
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A static and a video store, two recordings each."""
    return static_and_video_stores(tmp_path_factory.mktemp("speedups"))


def _fit(store, out, model: list[str], *overrides: str):
    args = ["fit", "--data", str(store), *model, "--out", str(out), "--max-epochs", "1", "--accelerator", "cpu",
            "--set", "training.deterministic=true", "--set", "training.log_every_n_steps=1"]
    for override in overrides:
        args += ["--set", override]
    assert main(args) == 0
    with open(out / "logs" / "metrics.csv") as fh:
        losses = [float(r["train/loss"]) for r in csv.DictReader(fh) if r.get("train/loss")]
    return np.array(losses), _predictions(out, store)


def _predictions(run_dir, store) -> np.ndarray:
    """The trained weights' predictions (fp32, eager) for every trial of every recording, concatenated."""
    run = load_run(run_dir, "last")
    preds = []
    for name, ds in open_store(store).items():
        inputs = [ds[key].values if key in ds else None for key in ("stimulus", "behavior", "pupil_center")]
        preds.append(run.predict(name, *inputs).ravel())
    return np.concatenate(preds)


@pytest.fixture(scope="module")
def eager(stores, tmp_path_factory):
    """fp32 eager training of each model, the reference."""
    root = tmp_path_factory.mktemp("eager")
    return {kind: _fit(stores[kind], root / kind, STATIC if kind == "static" else VIDEO) for kind in stores}


def test_a_cpp_compiler_is_there_for_torch_compile():
    assert shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


@pytest.mark.parametrize("kind", ["static", "video"])
@pytest.mark.parametrize("switch", list(SWITCHES))
def test_switch_trains_what_fp32_eager_trains(kind, switch, stores, eager, tmp_path):
    overrides, loss_tol, pred_tol = SWITCHES[switch]
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    losses, preds = _fit(stores[kind], tmp_path / "run", STATIC if kind == "static" else VIDEO, *overrides)
    compiled = torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs
    assert compiled == (switch == "compile")
    ref_losses, ref_preds = eager[kind]
    assert len(losses) == len(ref_losses) >= 6  # every step logged, the same number of steps
    np.testing.assert_allclose(losses, ref_losses, rtol=loss_tol)
    assert np.linalg.norm(preds - ref_preds) <= pred_tol * np.linalg.norm(ref_preds)
