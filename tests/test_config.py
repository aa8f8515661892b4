"""The typed config: composition, overrides, defaults in one place, checks at load time with the closest key
suggested, complete round trips, and every shipped config building its model and training one step."""

from pathlib import Path

import pytest
import torch
import yaml

from neurofit.config import ExperimentConfig, load_config, save_config
from neurofit.data import write_store
from neurofit.data.datamodule import NeuralDataModule
from neurofit.errors import ConfigError
from neurofit.training.module import EncoderModule
from tests.conftest import tiny_recording

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ENCODER_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("rnn_"))


def test_extends_overrides_and_defaults_from_the_schema_and_constructors():
    cfg = load_config(CONFIGS / "default.yaml", ["training.lr=0.001", "model.core.channels=8"])
    assert isinstance(cfg, ExperimentConfig) and cfg.type == "encoder" and cfg.name == "default"
    assert cfg.training.lr == 0.001 and cfg.model.core.options["channels"] == 8
    assert cfg.model.core.options["layers"] == 3  # ConvCore's default, the one place it is set
    assert cfg.training.max_epochs == 24 and cfg.training.channels_last  # set in default.yaml
    assert cfg.training.patience == 5 and cfg.training.lr_patience == 2  # the schema's defaults
    ln = load_config(CONFIGS / "ln.yaml")
    assert ln.model.core.name == "identity" and ln.model.core.options == {} and ln.model.shifter is None
    gru = load_config(CONFIGS / "video_gru_wide.yaml")  # three files deep
    assert gru.model.core.options["frontend"]["channels"] == 32 and gru.training.skip_frames == 50


def test_exponent_floats_are_numbers_in_files_and_overrides(tmp_path):
    # YAML 1.1 (plain PyYAML) reads 1e-4 as a string; a user writes it as a number.
    (tmp_path / "exp.yaml").write_text("extends: " + str(CONFIGS / "default.yaml") + "\ntraining: {lr: 3e-3}\n")
    cfg = load_config(tmp_path / "exp.yaml", ["training.weight_decay=1E-5"])
    assert cfg.training.lr == 0.003 and cfg.training.weight_decay == 1e-5
    with pytest.raises(ConfigError, match="training.min_delta: must be >= 0, got -0.0001"):
        load_config(CONFIGS / "default.yaml", ["training.min_delta=-1e-4"])


@pytest.mark.parametrize("path", ENCODER_CONFIGS, ids=lambda p: p.name)
def test_resolved_config_is_complete_and_loads_back_identically(path, tmp_path):
    cfg = load_config(path)
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert set(saved["training"]) == set(ExperimentConfig(name="x").training.__dataclass_fields__)


@pytest.mark.parametrize("override, message", [
    ("training.max_epoch=3", "--set training.max_epoch=3: training.max_epoch: unknown key; did you mean max_"),
    ("training.lr_patiance=9", "training.lr_patiance: unknown key; did you mean lr_patience?"),
    ("training.lr=-0.1", "training.lr: must be > 0, got -0.1"),
    ("data.batch_size=0", "data.batch_size: must be >= 1, got 0"),
    ("training.max_epochs=ten", "training.max_epochs: must be an integer, got 'ten'"),
    ("training.max_epochs=2.5", "training.max_epochs: must be an integer, got 2.5"),
    ("training.deterministic=1", "training.deterministic: must be true or false, got 1"),
    ("training.scheduler=cosin", "did you mean cosine?"),
    ("training.scheduler=step", "training.lr_milestones: the step scheduler needs a list of epochs"),
    ("training.lr_milestones=[5, 3]", "must increase"),
    ("training.max_time=6min", "training.max_time: '6min' must be DD:HH:MM:SS"),
    ("training.ema_decay=1", "training.ema_decay: must be < 1"),
    ("model.core.chanels=8", "model.core.chanels: unknown option; did you mean channels?"),
    ("model.core.name=gruu", "model.core.name: unknown core 'gruu'; did you mean gru?"),
    ("model.readout.init_sigma=wide", "model.readout.init_sigma: must be a number, got 'wide'"),
    ("model.interactions=[{name: atention}]", "model.interactions.0.name: unknown interaction 'atention'"),
    ("modle.core.channels=8", "modle: unknown key; did you mean model?"),
    ("data.sampling=balance", "did you mean balanced?"),
    ("training.lr", "expected KEY=VALUE"),
    ("training.lr=[1", "the value is not valid YAML"),
])
def test_bad_values_are_refused_at_load_time_naming_the_source_and_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "default.yaml", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_file_errors_name_the_file_line_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  lr: [0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:3:1: not valid YAML"):
        load_config(bad)
    parent = tmp_path / "parent.yaml"
    parent.write_text("training: {lr_patiance: 3}\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: parent.yaml\ntraining: {lr: 0.01}\n")
    with pytest.raises(ConfigError, match=r"parent\.yaml: training\.lr_patiance: unknown key; did you mean"):
        load_config(child)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(loop)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping of sections"):
        load_config(listed)


def test_changing_a_component_name_drops_the_old_options():
    cfg = load_config(CONFIGS / "default.yaml", ["model.core={name: identity}"])
    assert cfg.model.core.options == {}
    with pytest.raises(ConfigError, match="model.core.channels: unknown option"):
        load_config(CONFIGS / "ln.yaml", ["model.core.channels=4"])


def test_rnn_configs_share_the_loader(tmp_path):
    from neurofit.rnn.config import load_config as load_rnn_config

    for path in CONFIGS.glob("rnn_*.yaml"):
        load_rnn_config(path)
    with pytest.raises(ConfigError, match="rls.runz: unknown key; did you mean runs?"):
        load_rnn_config(CONFIGS / "rnn_curbd.yaml", ["rls.runz=3"])
    with pytest.raises(ConfigError, match="method: must be one of"):
        load_rnn_config(None, {"method": "bpt"})
    child = tmp_path / "rnn.yaml"
    child.write_text(f"extends: {CONFIGS / 'rnn_curbd.yaml'}\nrls: {{runs: 3}}\n")
    assert load_rnn_config(child).rls.runs == 3


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cfg")
    static, _ = tiny_recording("m0", n_neurons=6, n_train=12)
    video, _ = tiny_recording("m0", n_neurons=6, n_train=12, video_frames=8)
    return {False: write_store(tmp / "s.zarr", {"m0": static}), True: write_store(tmp / "v.zarr", {"m0": video})}


@pytest.mark.parametrize("path", [p for p in ENCODER_CONFIGS if "ridge" not in p.name], ids=lambda p: p.name)
def test_every_shipped_encoder_config_builds_and_trains_one_step(path, stores):
    cfg = load_config(path, ["training.skip_frames=2", "training.tbptt_frames=0"]
                      if "video" in path.name else [])
    video = cfg.model.core.name in ("gru", "ctrnn", "conv3d", "dwise_video")
    dm = NeuralDataModule(stores[video], batch_size=4)
    module = EncoderModule(cfg, [s.to_dict() for s in dm.prepare_specs()])
    batch = {k: torch.as_tensor(v) for k, v in dm.recordings["m0"].read(dm.recordings["m0"].trials("train")[:4])
             .items()}
    batch["recording"] = "m0"
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.encoder.parameters())
