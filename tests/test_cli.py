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
