"""Bring a lease's results home: rows of /root/res/<grid>/shard-*.jsonl merged into results/<grid>/shard-0.jsonl by
run key (committed rows win), the logs of unfinished runs into results/run_logs/<grid>/<key>/ (finished runs'
logs dropped), the bench files into results/bench/; rows without a ``dev_curve`` (those before session 14) get
it from their finished run's log when the lease brought one; then the rows of BACKFILL's larger grids are copied
into the smaller grids they contain, and the README's main tables are rewritten from the merged rows (needs dlzo
importable: the project's venv). Run from the repository root:

    python3 tools/gpu-lease/merge.py /work/.device/<n>      # the folder holding res.tgz and logs.tgz
    python3 tools/gpu-lease/merge.py --curves-only /work/.device/<n>   # an older lease's logs: dev curves only
"""
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

LOG_DIRS = {"lsweep": "layer_sweep_smollm2", "qsweep": "layer_sweep_qwen2.5-0.5b",
            "qcore": "main_core_qwen2.5-0.5b", "main": "main_smollm2", "abl": "ablations_smollm2",
            "lrsweep": "layer_lr_sweep_smollm2", "qmain": "main_qwen2.5-0.5b", "finer": "main_finer_lr_smollm2"}
# grids whose runs all belong to a larger grid that now runs them: their rows are copied back after the merge
# (dlzo sweep SMALL --adopt results/LARGE --list), so the smaller grid's table grows with the larger one
BACKFILL = {"main_core_tuned_qwen2.5-0.5b": "main_qwen2.5-0.5b"}
# main-results grids whose tables the README shows between markers (dlzo sweep GRID --markdown --into README.md):
# rewritten after every merge, so the README test (tests/test_main_results.py) stays green
README_TABLES = ("experiments/main_smollm2.yaml", "experiments/main_qwen2.5-0.5b.yaml")
BENCH = {"bench_fp32.json": "bench_smollm2-135m_h200_fp32.json", "bench_tf32.json": "bench_smollm2-135m_h200_tf32.json",
         "bench_bf16.json": "bench_smollm2-135m_h200_bf16.json", "task_speedups_h200.csv": "task_speedups_h200.csv"}


def rows_of(folder: Path) -> dict:
    """A results folder's rows by run key, the first row of a key kept (``ResultsStore.rows``: its shards, not
    failed.jsonl; a line torn by the tar of a running sweep is skipped, here without its warning)."""
    import warnings

    from dlzo.experiments import ResultsStore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = ResultsStore(folder).rows()
    by_key = {}
    for row in rows:
        by_key.setdefault(row["key"], row)
    return by_key


def logged_curve(log: Path) -> tuple[str, int | None] | None:
    """``(dev_curve, best_step)`` of a finished run's log (None while it has no end record)."""
    from dlzo.errors import DlzoError
    from dlzo.recipes import dev_curve
    from dlzo.runfiles import read_log

    try:
        records = read_log(log)  # up to a line torn by the tar of a running sweep (then no end record)
    except DlzoError:  # not even its config line came through
        return None
    end = next((r for r in records if r.get("type") == "end"), None)
    if end is None:
        return None
    evals = {r["step"]: r for r in records if r.get("type") == "eval"}  # a resumed run may log a step twice
    return dev_curve([evals[step] for step in sorted(evals)]), end.get("best_step")


def backfill_curves(logs: Path, results: Path) -> None:
    """Add ``dev_curve`` to committed rows that lack it, from the finished runs' logs under ``logs``."""
    for short, grid in LOG_DIRS.items():
        shards = sorted((results / grid).glob("shard-*.jsonl"))
        if not (logs / short).is_dir() or not shards:
            continue
        added = 0
        for shard in shards:
            rows = [json.loads(line) for line in shard.read_text().splitlines()]
            before = added
            for row in rows:
                log = logs / short / row["key"] / "log.jsonl"
                if row.get("dev_curve") or row.get("best_step") is None or not log.is_file():
                    continue
                found = logged_curve(log)
                if found and found[1] == row["best_step"]:  # the log of this very run
                    row["dev_curve"] = found[0]
                    added += 1
            if added > before:  # rewrite only a shard that gained a curve
                shard.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        print(f"dev curves {grid}: {added} rows filled from run logs")


def main(fetched: str, curves_only: bool = False) -> None:
    work = Path(tempfile.mkdtemp())
    for name in ("res.tgz", "logs.tgz"):
        with tarfile.open(Path(fetched) / name) as archive:
            archive.extractall(work, filter="data")
    results = Path("results")
    if curves_only:
        backfill_curves(work / "logs", results)
        shutil.rmtree(work)
        return
    for folder in sorted((work / "res").iterdir()):
        if folder.is_dir():
            mine = results / folder.name
            committed = rows_of(mine)
            merged = {**rows_of(folder), **committed}
            if len(merged) > len(committed):
                mine.mkdir(exist_ok=True)
                for old in mine.glob("shard-*.jsonl"):
                    old.unlink()
                (mine / "shard-0.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n"
                                                            for r in merged.values()))
            print(f"{folder.name}: {len(committed)} -> {len(merged)} rows")
            if (folder / "failed.jsonl").is_file():
                for line in (folder / "failed.jsonl").read_text().splitlines():
                    print(f"  FAILED on the box: {json.loads(line)['error']}")
        elif folder.name in BENCH:
            shutil.copy(folder, results / "bench" / BENCH[folder.name])
        elif folder.name.startswith("memsnap"):
            (results / "bench" / "memory").mkdir(exist_ok=True)
            shutil.copy(folder, results / "bench" / "memory" / folder.name)
    for short, grid in LOG_DIRS.items():
        source = work / "logs" / short
        if not source.is_dir():
            continue
        done = set(rows_of(results / grid))
        target = results / "run_logs" / grid
        shutil.rmtree(target, ignore_errors=True)
        kept = [d for d in source.iterdir() if d.name not in done]
        for d in kept:
            shutil.copytree(d, target / d.name)
        print(f"run logs {grid}: {len(kept)} unfinished kept")
    backfill_curves(work / "logs", results)
    shutil.rmtree(work)
    for small, large in BACKFILL.items():
        if (results / large).is_dir():
            out = subprocess.run([sys.executable, "-m", "dlzo", "sweep", f"experiments/{small}.yaml", "--adopt",
                                  str(results / large), "--list", "--device", "cpu"], capture_output=True, text=True)
            print(f"{small} <- {large}: " + (out.stdout.splitlines() or [out.stderr.strip()])[0])
    for grid_file in README_TABLES:
        out = subprocess.run([sys.executable, "-m", "dlzo", "sweep", grid_file, "--markdown", "--into", "README.md"],
                             capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr.strip())


if __name__ == "__main__":
    main(sys.argv[-1], curves_only="--curves-only" in sys.argv)
