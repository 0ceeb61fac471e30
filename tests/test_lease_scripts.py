"""The GPU-lease scripts (tools/gpu-lease) run unattended on a leased box: every ``dlzo sweep`` they start must
name an existing grid, flags the CLI accepts and tasks of that grid, and merge.py must name existing grids —
checked here, where a typo costs nothing, instead of on the box, where it costs a lease."""

import re
import shlex
from pathlib import Path

import pytest

from dlzo.cli import build_parser
from dlzo.commands.sweep import only_tasks
from dlzo.experiments import load_grid

ROOT = Path(__file__).resolve().parents[1]
LEASE = ROOT / "tools" / "gpu-lease"


def sweep_commands(script: Path) -> list[list[str]]:
    """The argument lists of the script's ``python3 -m dlzo sweep`` commands, its shell variables expanded
    (``NAME="..."`` / ``NAME=...`` assignments that start a line; ``${NAME:-default}`` to the default; any other
    variable, e.g. a worker count computed with ``$((...))``, to 2)."""
    text = script.read_text().replace("\\\n", " ")  # continuation lines joined
    variables = {}
    for name, quoted, bare in re.findall(r'^\s*(\w+)=(?:"([^"]*)"|(\S+))', text, flags=re.M):
        variables[name] = quoted or bare

    def expand(words: str) -> str:
        words = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: variables.get(m[1], m[2]), words)
        return re.sub(r"\$(\w+)", lambda m: expand(variables.get(m[1], "2")), words)

    commands = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        for match in re.finditer(r"python3 -m dlzo sweep ([^;)&]*)", line):
            commands.append(shlex.split(expand(match[1])))
    return commands


@pytest.mark.parametrize("script", ["qwen.sh", "smol.sh"])
def test_every_sweep_of_the_lease_scripts_parses_and_names_a_grid_and_its_tasks(script):
    commands = sweep_commands(LEASE / script)
    assert len(commands) >= 3
    parser = build_parser()
    for words in commands:
        args = parser.parse_args(["sweep", *words])
        grid = load_grid(ROOT / args.grid)
        part = only_tasks(grid, args.tasks)  # raises on a task the grid does not have
        assert args.device == "cuda" and args.parallel >= 1 and args.results.startswith("/root/res/")
        assert Path(args.results).name == grid["name"]  # merge.py files rows under the folder's name
        if args.tasks:
            assert set(part["tasks"]) < set(grid["tasks"])


def test_the_main_tables_run_their_classification_tasks_first():
    for script, grid in (("smol.sh", "main_smollm2"), ("qwen.sh", "main_qwen2.5-0.5b")):
        parser = build_parser()
        mains = [parser.parse_args(["sweep", *w]) for w in sweep_commands(LEASE / script)
                 if Path(w[0]).stem == grid]
        assert [a.tasks is not None for a in mains] == [True, False]  # a part first, then the whole grid
        assert set(only_tasks(load_grid(ROOT / mains[0].grid), mains[0].tasks)["tasks"]).isdisjoint({"squad", "drop"})


def test_merge_names_existing_grids():
    namespace = {}
    source = (LEASE / "merge.py").read_text()
    exec(compile(source.split("\ndef ", 1)[0], "merge.py", "exec"), namespace)  # its constants only
    grids = {p.stem for p in (ROOT / "experiments").glob("*.yaml")}
    assert set(namespace["LOG_DIRS"].values()) <= grids
    assert set(namespace["BACKFILL"]) | set(namespace["BACKFILL"].values()) <= grids


def test_merge_reads_a_lease_folder_like_the_results_store(tmp_path):
    """merge.py's rows come from ``ResultsStore.rows``: every shard (not failed.jsonl), a line torn by the tar of
    a running sweep skipped, the first row of a key kept."""
    import importlib.util
    import json
    import warnings

    spec = importlib.util.spec_from_file_location("lease_merge", LEASE / "merge.py")
    merge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merge)
    (tmp_path / "shard-0.jsonl").write_text(
        json.dumps({"key": "a", "test_score": 1}) + "\n" + json.dumps({"key": "b", "test_score": 2}) + "\n")
    (tmp_path / "shard-1.jsonl").write_text(
        json.dumps({"key": "a", "test_score": 9}) + "\n" + '{"key": "c", "test_sc')  # torn mid-write
    (tmp_path / "failed.jsonl").write_text(json.dumps({"key": "d", "error": "x"}) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # merge.py reads torn lines quietly
        rows = merge.rows_of(tmp_path)
    assert {key: row["test_score"] for key, row in rows.items()} == {"a": 1, "b": 2}
