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


def test_sweep_markdown_prints_the_committed_table_without_loading_a_model(tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nmodels: [m]\ntasks: [sst2, rte]\nseeds: [0, 1]\nmethods:\n  zero_shot: {}\n"
                    "  mezo_full: {lr: 1.0e-5}\n  dominant: {lr: 1.0e-3}\n")
    folder = tmp_path / "r"
    folder.mkdir()
    rows = [{"key": f"{task}{method}{seed}", "model": "m", "task": task, "method": method, "seed": seed,
             "test_score": score + seed} for task in ("sst2", "rte", "copa") for seed in (0, 1)
            for method, score in (("zero_shot", 50.0), ("mezo_full", 70.0), ("dominant", 72.0))]
    (folder / "shard-0.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["sweep", str(grid), "--results", str(folder), "--markdown"]) == 0  # model "m" does not exist
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "| task | zero-shot | full MeZO | dominant layer |"
    assert out[2] == "| SST-2 | 50.5 ± 0.7 (2) | 70.5 ± 0.7 (2) | **72.5 ± 0.7 (2)** |"
    assert out[4] == "| average (2 tasks) | 50.5 | 70.5 | 72.5 |"  # copa is not a task of this grid
    assert "| dominant layer vs full MeZO | 4 | +2.0 [2.0, 2.0] | 4 / 0 | 0.125 (two-sided) |" in out

    readme = tmp_path / "README.md"  # --into: between the grid's markers, written whole
    readme.write_text(f"intro\n<!-- dlzo sweep {grid} --markdown -->\nstale\n<!-- end of dlzo sweep output -->\nrest\n")
    assert main(["sweep", str(grid), "--results", str(folder), "--markdown", "--into", str(readme)]) == 0
    text = readme.read_text()
    assert "stale" not in text and "| SST-2 | 50.5 ± 0.7 (2) |" in text and text.endswith("rest\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "g.yaml", "r"]  # no temporary file left
    assert main(["sweep", str(grid), "--results", str(folder), "--markdown", "--into", str(tmp_path / "no.md")]) == 2
    assert "no.md does not exist" in capsys.readouterr().err
    assert main(["sweep", str(grid), "--results", str(folder), "--into", str(readme)]) == 2
    assert "--into writes the --markdown output" in capsys.readouterr().err


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


def test_sweep_list_of_an_every_layer_grid_loads_no_weights(tmp_path, capsys, monkeypatch):
    """``--list`` (and ``--adopt``) size an every-layer grid from the models' configs: listing a 7B grid must
    not read 13 GB of weights onto the CPU."""
    from zo_helpers import forbid_weight_loading, tiny_llama

    tiny_llama(num_hidden_layers=3).save_pretrained(tmp_path / "m")
    grid = tmp_path / "g.yaml"
    grid.write_text(f"name: g\nmodels: ['{tmp_path / 'm'}']\ntasks: [sst2]\nseeds: [0, 1]\nmethods:\n"
                    "  layer: {each_layer: true, lr: 1.0e-3}\n")
    forbid_weight_loading(monkeypatch)
    other = tmp_path / "other"
    other.mkdir()
    (other / "shard-0.jsonl").write_text("")  # a grid folder with no finished runs yet
    assert main(["sweep", str(grid), "--results", str(tmp_path / "r"), "--adopt", str(other), "--list",
                 "--device", "cpu"]) == 0
    assert "g: 0 of 6 runs done" in capsys.readouterr().out  # 3 layers x 2 seeds
