"""Core transfer (``neurofit fit --init-from RUN --freeze core|none``, issue #20): a frozen core stays
bit-identical (weights and batch-norm statistics) while the new readouts train, fine-tuning moves the core at
its own learning rate, recordings may differ in neuron count, the new readouts can start from a ridge regression
on the transferred core's features, video models transfer, a transferred run resumes, the API takes the same
arguments, and a run whose core does not fit is refused in one line before anything is
written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import neurofit.api as nf
from neurofit.config import load_config
from neurofit.data import write_store
from neurofit.data.datamodule import NeuralDataModule
from neurofit.metrics import correlation
from neurofit.models.readouts.rf_mapping import ridge_score_maps
from neurofit.models.readouts.ridge_gcv import ridge_weights
from neurofit.training.module import EncoderModule
from neurofit.training.readout_init import (
    core_features,
    init_readouts,
    mapping_samples,
    readout_features,
)
from neurofit.training.transfer import transfer_core
from tests.conftest import tiny_recording
from tests.test_bad_input import assert_nothing_written, assert_one_line_error, run_cli

ROOT = Path(__file__).resolve().parents[1]
#: The default model (EMA weights, modulator, shifter) with a core small enough for 8 x 10 test images.
SMALL_CORE = {"extends": str(ROOT / "configs/default.yaml"), "data": {"batch_size": 16},
              "model": {"core": {"name": "conv", "channels": 4, "layers": 2, "input_kernel": 3,
                                 "hidden_kernel": 3}}}
FRONT = {"channels": 4, "layers": 1, "input_kernel": 3, "temporal_kernel": 3}
SMALL_VIDEO = {"extends": str(ROOT / "configs/video_gru.yaml"), "data": {"batch_size": 10},
               "model": {"core": {"name": "gru", "frontend": FRONT, "hidden_channels": 6}},
               "training": {"skip_frames": 4, "tbptt_frames": 5}, "evaluation": {"skip_frames": 4}}


def _store(path: Path, neurons: dict[str, int], seed: int, frames: int = 0, height: int = 8) -> Path:
    recs = {name: tiny_recording(name, n_neurons=n, seed=seed + i, video_frames=frames)[0].isel(
        height=slice(0, height)) for i, (name, n) in enumerate(neurons.items())}
    return write_store(path, recs)


def _config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _fit(store: Path, config: Path, out: Path, *extra: object, epochs: int = 2):
    return run_cli("fit", "--data", store, "--config", config, "--out", out, "--max-epochs", epochs, *extra)


def _state(run: Path, name: str = "last") -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / f"{name}.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("transfer")


@pytest.fixture(scope="module")
def config(work) -> Path:
    return _config(work / "small.yaml", SMALL_CORE)


@pytest.fixture(scope="module")
def source(work, config) -> Path:
    """A run on two recordings (12, 9 neurons) whose core the other runs start from."""
    run = work / "source"
    result = _fit(_store(work / "source.zarr", {"m0": 12, "m1": 9}, seed=0), config, run)
    assert result.returncode == 0, result.describe()
    return run


@pytest.fixture(scope="module")
def new_store(work) -> Path:
    """Two other mice with other neuron counts (15, 7) and other images."""
    return _store(work / "new.zarr", {"n0": 15, "n1": 7}, seed=10)


@pytest.fixture(scope="module")
def frozen(work, source, new_store, config) -> Path:
    run = work / "frozen"
    result = _fit(new_store, config, run, "--init-from", source, "--freeze", "core")
    assert result.returncode == 0, result.describe()
    return run


def test_frozen_core_stays_bit_identical_while_the_readouts_train(source, frozen):
    source_core = _part(_state(source, "best"), "ema.module.core.")  # the source trained with EMA
    assert any("running_mean" in k for k in source_core)  # batch-norm statistics are compared too
    last, init = _state(frozen), _state(frozen, "init")
    for state in (last, _state(frozen, "best"), init):
        assert _identical(_part(state, "encoder.core."), source_core)
        assert _identical(_part(state, "ema.module.core."), source_core)
    # init.ckpt is evaluated through the moving average, which restarts at the mapped and transferred weights.
    assert _identical(_part(init, "ema.module."), _part(init, "encoder."))
    for name in ("n0", "n1"):
        trained, start = _part(last, f"encoder.readouts.{name}."), _part(init, f"encoder.readouts.{name}.")
        assert not _identical(trained, start)
    # The optimiser holds only the per-recording parameters.
    saved = torch.load(frozen / "checkpoints" / "last.ckpt", weights_only=False)
    module = EncoderModule(**saved["hyper_parameters"])
    n_trainable = sum(1 for n, _ in module.encoder.named_parameters() if not n.startswith("core."))
    groups = saved["optimizer_states"][0]["param_groups"]
    assert [len(g["params"]) for g in groups] == [n_trainable]


def test_the_run_records_where_its_core_came_from(source, frozen):
    cfg = load_config(frozen / "config.yaml")
    assert cfg.training.init_from == str(source.resolve()) and cfg.training.freeze == "core"
    info = json.loads((frozen / "train_info.json").read_text())["init_from"]
    assert info["run"] == str(source.resolve()) and info["checkpoint"] == "checkpoints/best.ckpt"
    assert info["weights"] == "moving average" and info["freeze"] == "core" and info["copied"] == ["core"]
    assert info["epoch"] is not None


def test_a_transferred_run_resumes(source, frozen, tmp_path):
    run = tmp_path / "frozen"
    shutil.copytree(frozen, run)
    shutil.rmtree(source.parent / "moved", ignore_errors=True)
    source.rename(source.parent / "moved")  # the resume needs only its own checkpoint
    try:
        result = run_cli("fit", "--data", "unused", "--config", "unused", "--out", run, "--resume",
                         "--max-epochs", 3)
    finally:
        (source.parent / "moved").rename(source)
    assert result.returncode == 0, result.describe()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 2
    assert _identical(_part(_state(run), "encoder.core."), _part(_state(source, "best"), "ema.module.core."))
    assert json.loads((run / "train_info.json").read_text())["init_from"]["copied"] == ["core"]


def test_a_resume_with_another_core_is_refused(source, frozen, new_store, config, tmp_path):
    run = tmp_path / "frozen"
    shutil.copytree(frozen, run)
    again = _fit(new_store, config, run, "--init-from", source, "--freeze", "core", "--resume", epochs=3)
    assert again.returncode == 0, again.describe()  # the same settings resume
    before = (run / "config.yaml").read_text()
    other = _fit(new_store, config, run, "--init-from", tmp_path / "elsewhere", "--freeze", "core", "--resume",
                 epochs=4)
    assert_one_line_error(other, ["config.yaml", "--init-from", "differs from the config of the run being"])
    assert (run / "config.yaml").read_text() == before


def test_fine_tuning_moves_the_core_at_its_own_rate(source, new_store, config, tmp_path):
    run = tmp_path / "tuned"
    result = _fit(new_store, config, run, "--init-from", source, "--freeze", "none",
                  "--set", "training.core_lr_scale=0.1")
    assert result.returncode == 0, result.describe()
    source_core = _part(_state(source, "best"), "ema.module.core.")
    assert _identical(_part(_state(run, "init"), "encoder.core."), source_core)
    assert not _identical(_part(_state(run), "encoder.core."), source_core)
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    groups = saved["optimizer_states"][0]["param_groups"]
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(0.1 * groups[0]["lr"])


def test_same_name_recordings_take_the_parts_whose_shapes_fit(source, config, work):
    # m0 has the source's 12 neurons: its modulator fits; m1 has 5, so only its shifter (no neuron axis) does.
    store = _store(work / "same_names.zarr", {"m0": 12, "m1": 5}, seed=20)
    cfg = load_config(config, [f"training.init_from={source}"])
    specs = NeuralDataModule(store).prepare_specs()
    module = EncoderModule(cfg, [s.to_dict() for s in specs])
    record = transfer_core(module.encoder, cfg, specs)
    assert record["copied"] == ["core", "shifters.m0", "shifters.m1", "modulators.m0"]
    saved = _state(source, "best")
    assert _identical(module.encoder.modulators["m0"].state_dict(), _part(saved, "ema.module.modulators.m0."))


def test_a_transferred_core_maps_the_new_receptive_fields(source, new_store, config):
    cfg = load_config(config, [f"training.init_from={source}"])
    dm = NeuralDataModule(new_store)
    specs = dm.prepare_specs()
    module = EncoderModule(cfg, [s.to_dict() for s in specs])
    transfer_core(module.encoder, cfg, specs)
    stim, _ = mapping_samples(dm.recordings["n0"], 5000, 4)
    resp = mapping_samples(dm.recordings["n0"], 5000, 4)[1]
    scores = ridge_score_maps(core_features(module.encoder, "n0", stim), resp, stim.shape[1:])
    assert scores.shape == (resp.shape[1], *stim.shape[1:])
    assert module.encoder.core.training  # core_features leaves the mode as it found it
    started = init_readouts(module.encoder, dm.recordings, trained_core=True)
    assert set(started) == {"n0", "n1"} and all(v["strength"] > 0 for v in started.values())


def test_ridge_weights_recover_a_linear_readout():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(400, 3, 5, generator=gen)  # (T, N, C)
    weights = torch.randn(3, 5, generator=gen)
    target = (features * weights).sum(-1) + 2.0 + 0.01 * torch.randn(400, 3, generator=gen)
    fitted, intercept, penalty = ridge_weights(features, target)
    assert torch.allclose(fitted, weights, atol=0.01)
    assert torch.allclose(intercept, torch.full((3,), 2.0), atol=0.01)
    assert penalty.shape == (3,)


def test_readouts_start_at_the_ridge_regression_on_a_transferred_core(source, new_store, config):
    cfg = load_config(config, [f"training.init_from={source}", "training.freeze=core",
                               "model.readout.feature_init=ridge"])
    dm = NeuralDataModule(new_store)
    specs = dm.prepare_specs()
    module = EncoderModule(cfg, [s.to_dict() for s in specs])
    transfer_core(module.encoder, cfg, specs)
    stim, resp = mapping_samples(dm.recordings["n0"], 5000, 4)
    features = core_features(module.encoder, "n0", stim)

    def fit_r() -> float:  # in-sample r of the drive, which the start puts at the ridge fit
        weights = module.encoder.readouts["n0"].embedding
        drive = (readout_features(module.encoder, "n0", features) * weights).sum(-1)
        return float(correlation(drive.detach().numpy(), resp).mean())

    random_start = fit_r()  # at the layer's own initial positions, random weights
    started = init_readouts(module.encoder, dm.recordings, trained_core=True)
    assert set(started) == {"n0", "n1"} and all(set(v) == {"strength", "penalty"} for v in started.values())
    assert fit_r() > random_start + 0.1
    assert module.encoder.core.training is False  # the frozen core stays in eval mode


def test_a_transferred_fit_can_start_its_readouts_by_ridge(source, new_store, config, tmp_path):
    run = tmp_path / "ridge_start"
    result = _fit(new_store, config, run, "--init-from", source, "--freeze", "core",
                  "--set", "model.readout.feature_init=ridge", epochs=1)
    assert result.returncode == 0, result.describe()
    assert not torch.equal(_state(run, "init")["encoder.readouts.n0.bias"], torch.zeros(15))  # fresh: zeros
    assert "ridge regression" in result.stderr


def test_video_model_transfers(work, tmp_path):
    config = _config(work / "video.yaml", SMALL_VIDEO)
    source = tmp_path / "video_source"
    result = _fit(_store(work / "video_source.zarr", {"m0": 12, "m1": 9}, seed=0, frames=12), config, source,
                  epochs=1)
    assert result.returncode == 0, result.describe()
    run = tmp_path / "video_frozen"
    result = _fit(_store(tmp_path / "video_new.zarr", {"v0": 6}, seed=30, frames=12), config, run,
                  "--init-from", source, "--freeze", "core", epochs=1)
    assert result.returncode == 0, result.describe()
    assert _identical(_part(_state(run), "encoder.core."), _part(_state(source, "best"), "encoder.core."))
    info = json.loads((run / "train_info.json").read_text())["init_from"]
    assert info["weights"] == "trained"


def test_api_takes_init_from_and_freeze(source, new_store, config, tmp_path):
    model = nf.Model(config, max_epochs=1).fit(new_store, tmp_path / "api", init_from=source, freeze="core")
    assert model.fitted.config.training.freeze == "core"
    metrics = model.evaluate()
    assert set(metrics.recording.values) == {"n0", "n1", "overall"}
    assert _identical(_part(_state(tmp_path / "api"), "encoder.core."),
                      _part(_state(source, "best"), "ema.module.core."))


# --------------------------------------------------------------------------------------------------------------
# bad input: one line naming the run or option, nothing written
# --------------------------------------------------------------------------------------------------------------

def _no_checkpoint(source: Path, tmp: Path) -> Path:
    run = tmp / "no_ckpt"
    shutil.copytree(source, run)
    (run / "checkpoints" / "best.ckpt").unlink()
    return run


def _ridge_run(source: Path, tmp: Path) -> Path:
    run = tmp / "ridge"
    result = _fit(Path(load_config(source / "config.yaml").data.path), ROOT / "configs/ridge.yaml", run)
    assert result.returncode == 0, result.describe()
    return run


BAD = {
    # case: (how to get the --init-from run, the store to fit, extra arguments, what the error line names)
    "unknown freeze value": (None, "new", ["--freeze", "partly"], ["--freeze partly", "['none', 'core']"]),
    "freeze without a run": ("none", "new", ["--freeze", "core"], ["--freeze core", "--init-from"]),
    "not a run directory": ("missing", "new", [], ["not a run directory"]),
    "no checkpoint": ("no_ckpt", "new", [], ["best.ckpt", "missing"]),
    "a ridge run": ("ridge", "new", [], ["ridge run has no core"]),
    "different core config": (None, "new", ["--set", "model.core.channels=6"], ["channels 6 (run: 4)"]),
    "different core": (None, "new", ["--set", "model.core={name: identity}"], ["'conv'", "'identity'"]),
    "other image size": (None, "small_images", [], ["8 x 10", "6 x 10"]),
    "video data for a static core": (None, "video", [], ["static images", "holds videos"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_transfer_input_is_one_line_and_writes_nothing(case, source, new_store, config, work, tmp_path):
    how, data, extra, names = BAD[case]
    runs = {None: source, "missing": tmp_path / "nowhere", "no_ckpt": None, "ridge": None}
    if how == "no_ckpt":
        runs[how] = _no_checkpoint(source, tmp_path)
    elif how == "ridge":
        runs[how] = _ridge_run(source, tmp_path)
    stores = {"new": new_store,
              "small_images": lambda: _store(tmp_path / "small.zarr", {"s0": 5}, seed=40, height=6),
              "video": lambda: _store(tmp_path / "video.zarr", {"v0": 5}, seed=40, frames=12)}
    store = stores[data]() if callable(stores[data]) else stores[data]
    init = [] if how == "none" else ["--init-from", runs[how]]
    out = tmp_path / "out"
    result = _fit(store, config, out, *init, *extra)
    assert_one_line_error(result, names)
    assert_nothing_written(out)
