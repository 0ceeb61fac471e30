import json
import subprocess
import sys

import pytest

from dlzo.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_user_error_is_one_line_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "dlzo", "outliers", "--model", "smollm2-136m"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: Unknown model key 'smollm2-136m'; did you mean 'smollm2-135m'?"
    assert "Traceback" not in proc.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    """``dlzo sweep GRID --list | head -1``: the closed pipe ends the command with status 141, no traceback."""
    import os

    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nmodels: [m]\ntasks: [sst2, rte]\nseeds: [0, 1]\nmethods:\n  zero_shot: {}\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # every print reaches the pipe inside the command
    proc = subprocess.Popen([sys.executable, "-m", "dlzo", "sweep", str(grid), "--results", str(tmp_path / "r"),
                             "--list", "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.real_model
def test_outliers_command_on_smollm2(tmp_path, capsys):
    out_json = tmp_path / "profile.json"
    assert main(["outliers", "--model", "smollm2-135m", "--no-progress", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "first outlier layer (top-1 > 100, ratio > 1000): 11" in out
    assert "first outlier layer, looser rule (ratio > 500): 2" in out
    payload = json.loads(out_json.read_text())
    assert payload["first_outlier_layer"] == 11 and payload["first_outlier_layer_loose"] == 2
    assert len(payload["layers"]) == 30


@pytest.mark.real_model
def test_outliers_command_reports_when_no_layer_qualifies(capsys):
    assert main(["outliers", "--no-progress", "--num-texts", "2", "--min-ratio", "1e9", "--loose-ratio", "1e9"]) == 0
    out = capsys.readouterr().out
    assert "no layer qualifies under the strict rule" in out
