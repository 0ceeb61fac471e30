"""``dlzo sweep --parallel``: the worker command lines, and workers stopped together with the sweep."""

import argparse
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from dlzo.commands.sweep import visible_gpus, worker_command, worker_gpus

ROOT = Path(__file__).resolve().parents[1]


def _args(**overrides) -> argparse.Namespace:
    values = dict(grid="g.yaml", dtype="float32", device="cuda", data_dir=None, threads=None, time_budget=300.0,
                  run_logs="logs", cuda_graphs=True, paired_passes=False, parallel=2, min_free_gb=None)
    return argparse.Namespace(**{**values, **overrides})


def test_workers_get_every_setting_and_their_shard():
    command = worker_command(_args(), "results/g", 1, 4)
    assert command[:4] == [sys.executable, "-m", "dlzo", "sweep"]
    text = " ".join(command)
    for part in ("--results results/g", "--device cuda", "--time-budget 300.0", "--run-logs logs", "--cuda-graphs",
                 "--shard 1/4"):
        assert part in text
    assert "--paired-passes" not in text and "--data-dir" not in text and "--tf32" not in text
    assert "--min-free-gb" not in text
    assert "--min-free-gb 6.0" in " ".join(worker_command(_args(min_free_gb=6.0), "results/g", 0, 2))
    assert "--tf32" in worker_command(_args(tf32=True), "results/g", 0, 2)
    assert "--no-loop-graphs" not in text
    assert "--no-loop-graphs" in worker_command(_args(loop_graphs=False), "results/g", 0, 2)
    assert "--keep-going" not in text and "--keep-going" in worker_command(_args(keep_going=True), "results/g", 0, 2)
    assert "--claims" not in text and "--tasks" not in text
    assert "--tasks sst2,rte " in " ".join(worker_command(_args(tasks="sst2,rte"), "results/g", 0, 2))
    assert " --claims /tmp/c --shard 0/2" in " ".join(worker_command(_args(), "results/g", 0, 2, "/tmp/c"))
    assert "--adopt" not in text  # the workers adopt what an lr search readies later, from the same folders
    adopting = " ".join(worker_command(_args(adopt=["results/a", "results/b"]), "results/g", 0, 2, "/tmp/c"))
    assert "--adopt results/a --adopt results/b --claims /tmp/c" in adopting


def test_workers_spread_over_the_gpus_of_a_box_one_gpu_each(monkeypatch):
    assert worker_gpus("cuda", 5, ["0", "1"]) == ["0", "1", "0", "1", "0"]
    assert worker_gpus(None, 3, ["2", "5", "7"]) == ["2", "5", "7"]  # the default device is cuda when there is one
    assert worker_gpus("cuda", 3, ["0"]) == [None] * 3  # one GPU: environment unchanged
    assert worker_gpus("cuda:1", 2, ["0", "1"]) == [None] * 2  # a named GPU: every worker there
    assert worker_gpus("cpu", 2, ["0", "1"]) == [None] * 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 1")
    assert visible_gpus() == ["3", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


def test_tf32_is_switched_on_by_the_flag_and_recorded_as_the_float32_matmul():
    import torch

    from dlzo.commands.common import setup_torch
    from dlzo.models import float32_matmul

    before = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        setup_torch(argparse.Namespace(threads=None, tf32=False))
        assert float32_matmul("cuda") == "ieee"
        setup_torch(argparse.Namespace(threads=None, tf32=True))
        assert torch.backends.cuda.matmul.allow_tf32
        assert float32_matmul("cuda:0") == "tf32" and float32_matmul("cpu") == "ieee"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def test_stopping_the_sweep_stops_its_workers(tmp_path):
    script = tmp_path / "parallel.py"
    script.write_text(textwrap.dedent(f"""
        import argparse, sys
        from dlzo.commands import sweep
        sweep.worker_command = lambda args, folder, i, n, claims=None: [
            sys.executable, "-c",
            "import os, pathlib, time; pathlib.Path({str(tmp_path)!r}, f'worker-{{os.getpid()}}').touch(); time.sleep(120)"]
        args = argparse.Namespace(parallel=2)
        sweep._run_parallel(args, "unused")
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sweep = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while len(list(tmp_path.glob("worker-*"))) < 2:
        assert sweep.poll() is None, sweep.stderr.read().decode()
        assert time.time() < deadline, "the workers did not start"
        time.sleep(0.05)
    pids = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
    sweep.send_signal(signal.SIGTERM)
    assert sweep.wait(timeout=60) == 128 + signal.SIGTERM
    for pid in pids:  # reaped by the sweep: the pid no longer exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"worker {pid} outlived the sweep")


def test_parallel_workers_share_the_grid_and_run_each_run_once(tmp_path):
    """End to end: ``dlzo sweep --parallel 2`` on a tiny saved model; the workers claim runs from one queue."""
    import yaml
    from zo_helpers import saved_tiny_sst2_setup

    from dlzo.experiments import ResultsStore

    saved_tiny_sst2_setup(tmp_path, [f"film number {i}" for i in range(24)], (("train", 24), ("validation", 12)))
    grid = dict(name="tiny", models=[str(tmp_path / "model")], tasks=["sst2"], seeds=[0, 1, 2, 3], steps=1,
                batch_size=2, eval_every=1,
                methods={"layer": {"layers": [1], "lr": 1e-3, "num_train": 8, "num_dev": 4, "num_test": 4,
                                   "dominant_layer": 1}})
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "dlzo", "sweep", str(tmp_path / "grid.yaml"), "--parallel", "2",
                           "--results", str(tmp_path / "results"), "--device", "cpu", "--threads", "1",
                           "--data-dir", str(tmp_path / "data"), "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = ResultsStore(tmp_path / "results").rows()
    assert len(rows) == 4 and len({r["key"] for r in rows}) == 4 and {r["seed"] for r in rows} == {0, 1, 2, 3}
    assert "2 workers finished" in done.stdout


def test_min_free_gb_on_the_cpu_is_one_clear_error(capsys, tmp_path):
    from dlzo.cli import main

    code = main(["sweep", str(ROOT / "experiments" / "ci" / "layer_sweep.yaml"), "--device", "cpu",
                 "--min-free-gb", "4", "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == "error: --min-free-gb needs a CUDA device; drop it or pass --device cuda."
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())  # nothing half-written
    assert main(["sweep", str(ROOT / "experiments" / "ci" / "layer_sweep.yaml"), "--device", "cpu", "--parallel", "2",
                 "--min-free-gb", "4", "--results", str(tmp_path / "r")]) == 2  # refused before any worker starts
