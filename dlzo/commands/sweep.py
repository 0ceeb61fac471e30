"""``dlzo sweep``: run an experiment grid resumably into ``results/<name>/``."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import DlzoError
from .common import setup_torch


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="run an experiment grid (YAML) resumably; finished runs are skipped",
        description="Run every run of a grid file (models x tasks x methods x seeds x lr) that is not yet in the "
        "results folder. Kill it at any time and start it again to continue. --parallel N starts N worker "
        "processes (shards) that fill one GPU side by side.",
    )
    p.add_argument("grid", help="grid YAML file (see experiments/)")
    p.add_argument("--results", default=None, help="results folder (default: results/<grid name>)")
    p.add_argument("--shard", default="0/1", help="run only shard i of n (i/n), for parallel workers")
    p.add_argument("--parallel", type=int, default=1,
                   help="start this many worker processes; on a box with several GPUs (and --device cuda or the "
                   "default) they go round-robin over the GPUs, one GPU per worker (CUDA_VISIBLE_DEVICES)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds after which no new run starts (for chunked jobs)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--dtype", default="float32", help="model dtype (default float32)")
    p.add_argument("--data-dir", default=None, help="benchmark data folder (default: $DLZO_DATA_DIR)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="replay CUDA graphs of the ZO forwards (GPU only; same kernels on padded batches)")
    p.add_argument("--paired-passes", action="store_true",
                   help="single-layer selections: the + and - forwards as one forward (float rounding differs)")
    p.add_argument("--no-loop-graphs", dest="loop_graphs", action="store_false",
                   help="GPU: run the perturbation and update loops eagerly instead of replaying CUDA graphs of them")
    p.add_argument("--tf32", action="store_true",
                   help="let float32 matrix products use TF32 tensor cores on the GPU (~1.7x faster steps; the "
                   "projected gradient moves by a few percent, see dlzo bench --tf32); rows record float32_matmul")
    p.add_argument("--run-logs", default=None,
                   help="keep each ZO run's log in this folder (<key>/log.jsonl); a run cut off by a kill or a time "
                   "limit resumes from its log when the sweep is started again (the logged updates are re-applied "
                   "without forward passes)")
    p.add_argument("--claims", default=None,
                   help="a folder shared by the workers of one sweep: each worker runs any run no worker has claimed "
                   "yet instead of a fixed shard (--parallel sets this up itself)")
    p.add_argument("--min-free-gb", type=float, default=None,
                   help="GPU: start a run only when the device has this many GiB free (all processes counted; "
                   "waits up to 10 minutes, then starts it anyway), or more where finished runs of the same model, "
                   "task and method held more at their peak (rows' peak_gpu_gib), so --parallel workers do not "
                   "start runs that cannot fit")
    p.add_argument("--adopt", action="append", default=[], metavar="FOLDER",
                   help="first copy the rows of this results folder whose run (same key: same settings) belongs to "
                   "this grid, e.g. a smaller grid's finished runs (repeatable); runs an lr search readies later are "
                   "copied from there too when their turn comes, instead of run again")
    p.add_argument("--keep-going", action="store_true",
                   help="a run that fails (other than running out of GPU memory, which is retried) is noted in "
                   "<results>/failed.jsonl and the sweep goes on; the exit status says how many failed")
    p.add_argument("--tasks", default=None,
                   help="comma-separated: run (or --list) only these tasks of the grid, e.g. the short ones first "
                   "(same run keys, same results folder; the grid's lr search is per task anyway)")
    p.add_argument("--list", action="store_true",
                   help="only print how many runs are done and left, and a task x method table of what is left "
                   "(with lr_search_seeds: ready + held back until their lr search has finished)")
    p.add_argument("--markdown", action="store_true",
                   help="only print the results so far as the README's Markdown: the table (mean ± std over seeds, "
                   "each method's lr picked on dev) and the paired claim tests pooled over tasks")
    p.add_argument("--into", default=None, metavar="FILE",
                   help="with --markdown: write it into FILE (e.g. README.md) between the line "
                   "'<!-- dlzo sweep GRID --markdown -->' (GRID as given here) and the next "
                   "'<!-- end of dlzo sweep output -->' line, instead of printing it")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    p.set_defaults(func=run)


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise DlzoError(f"--shard {text!r} must look like i/n, e.g. 0/4.") from None
    return index, count


def run(args: argparse.Namespace) -> int:
    from ..experiments import (
        ResultsStore,
        grid_runs,
        grid_search_seeds,
        load_grid,
        memory_gate,
        numeric_mismatch,
        plan_lr_search,
        run_grid,
    )
    from ..models import float32_matmul, layer_count
    from ..paths import atomic_write_text, repo_root
    from ..recipes import RunContext

    setup_torch(args)
    grid = only_tasks(load_grid(args.grid), args.tasks)
    folder = args.results or str((repo_root() or Path(".")) / "results" / grid["name"])
    store = ResultsStore(folder)
    if args.into and not args.markdown:
        raise DlzoError("--into writes the --markdown output; add --markdown.")
    if args.markdown:
        from ..main_results import block_marker, grid_markdown, replace_marked_block

        table = store.table()
        text = grid_markdown(grid, table[table["task"].isin(grid["tasks"])] if len(table) else table)
        if not args.into:
            print(text)
            return 0
        target = Path(args.into)
        if not target.is_file():
            raise DlzoError(f"{args.into} does not exist; pass the Markdown file that holds the table's markers.")
        atomic_write_text(target, replace_marked_block(target.read_text(), block_marker(args.grid), text,
                                                       name=args.into))
        print(f"{grid['name']}: table written into {args.into}")
        return 0
    context = RunContext(device=args.device, dtype=args.dtype, data_dir=args.data_dir, progress=False,
                         cuda_graphs=args.cuda_graphs, paired_passes=args.paired_passes, run_logs=args.run_logs,
                         loop_graphs=args.loop_graphs)
    on_gpu = context.device.startswith("cuda")
    if args.min_free_gb is not None and not on_gpu:
        raise DlzoError("--min-free-gb needs a CUDA device; drop it or pass --device cuda.")
    numerics = (on_gpu, args.dtype, float32_matmul(context.device))  # what this sweep's rows will record
    mismatch = numeric_mismatch(store.rows(), *numerics)
    if mismatch:
        raise DlzoError(f"{folder} holds runs made with other numerics ({mismatch}); run with the settings of "
                        "those rows (--dtype, --tf32) or into another --results folder.")
    search_seeds = grid_search_seeds(grid)
    runs = grid_runs(grid, layers_of=layer_count)  # an every-layer grid reads its layer counts from configs, no weights
    if args.adopt and args.claims is None:  # before any worker starts (a worker, with --claims, adopts lazily)
        keys = {r.key for r in runs}
        for source in args.adopt:
            theirs = [r for r in ResultsStore(source).rows() if r.get("key") in keys]
            mismatch = numeric_mismatch(theirs, *numerics)
            if mismatch:
                raise DlzoError(f"{source} holds runs made with other numerics ({mismatch}); adopt only runs "
                                "made with the settings of this sweep.")
        adopted = dict.fromkeys(args.adopt, 0)
        while True:  # with lr_search_seeds, adopted search rows may decide an lr and so ready more runs to adopt
            ready = {r.key for r in plan_lr_search(runs, search_seeds, store.rows()).ready}
            copied = {source: store.adopt(source, ready) for source in args.adopt}
            if not any(copied.values()):
                break
            adopted = {source: adopted[source] + copied[source] for source in args.adopt}
        for source, number in adopted.items():
            print(f"{grid['name']}: adopted {number} finished runs from {source}")
    if args.parallel > 1:
        return _run_parallel(args, folder)
    before_run = None
    if args.min_free_gb is not None:  # and more for a kind of run that has held more (rows' peak_gpu_gib)
        before_run = memory_gate(args.min_free_gb, context.device, store.rows)
    if args.list:
        rows = store.rows()
        plan = plan_lr_search(runs, search_seeds, rows)
        done = {row["key"] for row in rows if "key" in row}
        print(list_line(grid["name"], plan, done, search_seeds, len(runs), folder))
        cut_off = cut_off_runs(args.run_logs)
        resumed = sum(r.key in cut_off and r.key not in done for r in plan.ready)
        if resumed:
            print(f"{resumed} of the runs ready to run were cut off mid-way: they resume first, from their logs in "
                  f"{args.run_logs}")
        left = left_table(runs, plan, done, staged=search_seeds is not None)
        if len(left):
            print(f"left, by task and method (ready{' + held back' if search_seeds is not None else ''}):")
            print(left.to_string())
        return 0
    start = time.perf_counter()
    counts = run_grid(runs, store, context.run, shard=_parse_shard(args.shard), time_budget_s=args.time_budget,
                      progress=args.progress, claims=args.claims, before_run=before_run,
                      keep_going=args.keep_going, lr_search_seeds=search_seeds, first=cut_off_runs(args.run_logs),
                      unresumable=unresumable_runs(runs) if args.run_logs else (), adopt_from=args.adopt)
    elapsed = time.perf_counter() - start
    rate = counts["ran"] / elapsed * 3600 if elapsed > 0 else 0.0
    held = ""
    if "held" in counts:
        held = f", held back {counts['held']} (lr searched on seeds {search_seeds})"
        if counts["undecided"]:
            held += (f", of which {counts['undecided']} skipped because a search run of their cell failed in this "
                     "sweep (a rerun tries again)")
    print(f"{grid['name']} shard {args.shard}: ran {counts['ran']}, done before {counts['done_before']}, "
          f"left {counts['left']}, failed {counts['failed']}{held}"
          f"{', adopted ' + str(counts['adopted']) if counts.get('adopted') else ''} ({elapsed:.0f} s, "
          f"{rate:.0f} runs/hour) -> {folder}")
    if counts["failed"]:
        raise DlzoError(f"{counts['failed']} runs failed (see {Path(folder) / 'failed.jsonl'}); fix the cause and "
                        "rerun the same command (finished runs are kept).")
    return 0


def only_tasks(grid: dict, tasks: str | None) -> dict:
    """The grid restricted to ``tasks`` (comma-separated names, ``--tasks``), in the grid's own task order."""
    if not tasks:
        return grid
    names = [name.strip() for name in tasks.split(",") if name.strip()]
    unknown = [name for name in names if name not in grid["tasks"]]
    if unknown or not names:
        raise DlzoError(f"--tasks {', '.join(unknown) or repr(tasks)}: not a task of grid {grid['name']!r} "
                        f"({', '.join(grid['tasks'])}); name some of those.")
    return {**grid, "tasks": [task for task in grid["tasks"] if task in names]}


def cut_off_runs(run_logs: str | None) -> set[str]:
    """The keys of the runs with a log in ``run_logs`` (``<key>/log.jsonl``): runs a kill or a time limit cut off,
    which the sweep resumes before starting new ones (finished runs among them are skipped anyway)."""
    if not run_logs or not Path(run_logs).is_dir():
        return set()
    return {d.name for d in Path(run_logs).iterdir() if (d / "log.jsonl").is_file()}


def unresumable_runs(runs) -> set[str]:
    """The keys of the runs that keep no run log and so start over when cut off (first-order and zero-shot
    methods): with ``--run-logs`` (a sweep that expects to be cut off) they start before the others."""
    from ..recipes import method

    return {r.key for r in runs if method(r.opts.get("recipe", r.method)).trainer != "zo"}


def list_line(name: str, plan, done: set[str], search_seeds: list[int] | None, n_grid: int, folder: str) -> str:
    """``--list``'s line from the grid's :class:`~dlzo.experiments.LrSearchPlan` and the finished keys: runs done
    of the planned total; with ``lr_search_seeds`` also the runs ready but not done and those held back until
    their cell's lr search has finished (``n_grid``: the full lr grid on every seed)."""
    finished = sum(r.key in done for r in plan.ready)
    line = f"{name}: {finished} of {len(plan.planned)} runs done"
    if search_seeds is not None:
        line += (f", {len(plan.ready) - finished} ready to run, {len(plan.held)} held back until the lr search on "
                 f"seeds {search_seeds} decides (the full lr grid on every seed: {n_grid} runs)")
    return f"{line} -> {folder}"


def left_table(runs: list, plan, done: set[str], staged: bool):
    """The runs of ``plan`` (the grid's :class:`~dlzo.experiments.LrSearchPlan`) not in ``done``, per task (rows)
    and method (columns), in the order of the grid's ``runs``: ``ready``, or with an lr search (``staged``)
    ``ready+held`` (held back: waiting for the cell's lr search). Empty when the grid is done."""
    import pandas as pd

    left = [{"task": r.task, "method": r.method, "ready": 1, "held": 0} for r in plan.ready if r.key not in done]
    left += [{"task": r.task, "method": r.method, "ready": 0, "held": 1} for r in plan.held]
    if not left:
        return pd.DataFrame()
    counts = pd.DataFrame(left).groupby(["task", "method"], sort=False)[["ready", "held"]].sum()
    text = counts["ready"].astype(str)
    if staged:
        text = text + "+" + counts["held"].astype(str)
    order = list(dict.fromkeys(r.task for r in runs)), list(dict.fromkeys(r.method for r in runs))
    table = text.unstack("method").fillna("")
    return table.reindex(index=[t for t in order[0] if t in table.index],
                         columns=[m for m in order[1] if m in table.columns])


def worker_command(args: argparse.Namespace, folder: str, index: int, count: int,
                   claims: str | None = None) -> list[str]:
    """The command line of worker ``index`` of ``count`` (this sweep with ``--shard index/count``, and
    ``--claims`` when the workers share a claims folder)."""
    base = [sys.executable, "-m", "dlzo", "sweep", args.grid, "--results", folder, "--dtype", args.dtype,
            "--no-progress"]
    for flag, value in (("--device", args.device), ("--data-dir", args.data_dir), ("--threads", args.threads),
                        ("--time-budget", args.time_budget), ("--run-logs", args.run_logs),
                        ("--min-free-gb", args.min_free_gb), ("--tasks", getattr(args, "tasks", None))):
        if value is not None:
            base += [flag, str(value)]
    base += [flag for flag, on in (("--cuda-graphs", args.cuda_graphs), ("--paired-passes", args.paired_passes),
                                   ("--tf32", getattr(args, "tf32", False)),
                                   ("--no-loop-graphs", not getattr(args, "loop_graphs", True)),
                                   ("--keep-going", getattr(args, "keep_going", False))) if on]
    for source in getattr(args, "adopt", None) or []:  # runs an lr search readies later are adopted, not rerun
        base += ["--adopt", str(source)]
    if claims is not None:
        base += ["--claims", str(claims)]
    return base + ["--shard", f"{index}/{count}"]


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (indices or UUIDs)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def worker_gpus(device: str | None, count: int, visible: list[str]) -> list[str | None]:
    """The CUDA_VISIBLE_DEVICES of each of ``count`` workers: round-robin over ``visible`` when there are
    several GPUs and the device is ``cuda`` (or left to the default); ``None`` (environment unchanged) when
    there is one GPU or none, or when the device names one GPU (``cuda:1``) or the CPU."""
    if len(visible) < 2 or device not in (None, "cuda"):
        return [None] * count
    return [visible[i % len(visible)] for i in range(count)]


def _terminated(signum, _frame):
    raise SystemExit(128 + signum)


def _run_parallel(args: argparse.Namespace, folder: str) -> int:
    """Start ``args.parallel`` workers of this command and wait for all of them. The workers share a fresh
    claims folder (every worker takes the next run nobody has claimed, in seed order; each writes its own
    ``shard-<i>.jsonl``). When this process is stopped (Ctrl-C, or SIGTERM from ``timeout`` or a batch
    system), the workers are stopped with it, so none keeps writing into the results (or run-log) folder
    after the job has ended."""
    n = args.parallel
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    previous = signal.signal(signal.SIGTERM, _terminated)
    workers = []
    claims = tempfile.mkdtemp(prefix="dlzo-claims-")  # gone with this sweep: a rerun re-claims unfinished runs
    gpus = worker_gpus(getattr(args, "device", None), n, visible_gpus())
    if gpus[0] is not None:
        print(f"{n} workers over GPUs {', '.join(sorted(set(gpus), key=gpus.index))} (one GPU per worker)")
    try:
        workers = [subprocess.Popen(worker_command(args, folder, i, n, claims),
                                    env={**env, "CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else env)
                   for i, gpu in enumerate(gpus)]
        codes = [w.wait() for w in workers]
    finally:
        signal.signal(signal.SIGTERM, previous)
        for w in workers:
            if w.poll() is None:
                w.terminate()
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
        shutil.rmtree(claims, ignore_errors=True)
    print(f"{n} workers finished in {time.perf_counter() - start:.0f} s (exit codes {codes})")
    if any(codes):
        raise DlzoError(f"{sum(1 for c in codes if c)} of {n} sweep workers failed; rerun the same command to "
                        "resume (finished runs are kept).")
    return 0
