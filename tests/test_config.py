"""Config composition, overrides and errors."""

from pathlib import Path

import pytest

from neurofit.config import load_config
from neurofit.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_extends_and_overrides(tmp_path):
    cfg = load_config(CONFIGS / "default.yaml", ["training.lr=0.001", "model.core.channels=8"])
    assert cfg["type"] == "encoder" and cfg["name"] == "default"
    assert cfg["training"]["lr"] == 0.001 and cfg["model"]["core"]["channels"] == 8
    assert cfg["model"]["core"]["layers"] == 3  # merged from base.yaml
    ln = load_config(CONFIGS / "ln.yaml")
    assert ln["model"]["core"] == {"name": "identity"} and ln["model"]["shifter"] is None


def test_every_shipped_config_loads():
    from neurofit.rnn import load_config as load_rnn_config

    for path in CONFIGS.glob("*.yaml"):
        (load_rnn_config if path.name.startswith("rnn_") else load_config)(path)


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle: {}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown section"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(CONFIGS / "default.yaml", ["training.lr"])
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(loop)
