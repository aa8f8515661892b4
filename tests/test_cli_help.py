"""Every command of the CLI prints --help (docs/cli.md, section "Commands")."""

import pytest

from neurofit.cli import main

COMMANDS = [[], ["simulate"], ["simulate", "v1"], ["simulate", "regions"], ["convert"], ["convert", "sensorium"],
            ["convert", "nwb"], ["export"], ["export", "sensorium"], ["fit"], ["evaluate"], ["ensemble"],
            ["attention"], ["insilico"], ["compare"], ["sweep"], ["rnn"], ["rnn", "fit"], ["rnn", "currents"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "neurofit")
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: neurofit" in capsys.readouterr().out
