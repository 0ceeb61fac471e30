import json
import time

import pandas as pd
import pytest

from dlzo.errors import DlzoError
from dlzo.experiments import ResultsStore, RunConfig, expand_grid, run_grid, select_lr

METHODS = {"full": {"lr": [1e-6, 1e-7], "eps": 1e-3}, "layer": {"lr": 1e-4, "layers": [11]}}


def test_expand_grid_and_stable_keys():
    runs = expand_grid(["m"], ["sst2", "rte"], METHODS, seeds=[0, 1], steps=10)
    assert len(runs) == 2 * (2 * 2 + 1 * 2)
    layer = [r for r in runs if r.method == "layer"][0]
    assert layer.opts == {"layers": [11]} and layer.steps == 10 and layer.lr == 1e-4
    again = expand_grid(["m"], ["sst2", "rte"], METHODS, seeds=[0, 1], steps=10)
    assert [r.key for r in runs] == [r.key for r in again]
    assert len({r.key for r in runs}) == len(runs)


def test_run_grid_resumes_and_skips_finished(tmp_path):
    runs = expand_grid(["m"], ["sst2"], METHODS, seeds=[0, 1, 2])
    store = ResultsStore(tmp_path / "sweep")
    calls = []

    def run_fn(config: RunConfig) -> dict:
        calls.append(config.key)
        if len(calls) == 4:
            raise KeyboardInterrupt  # a sweep killed mid-way
        return {"dev_score": config.lr * 1e6 + config.seed, "test_score": 50.0}

    with pytest.raises(KeyboardInterrupt):
        run_grid(runs, store, run_fn, progress=False)
    assert len(store.done_keys()) == 3
    counts = run_grid(runs, store, run_fn, progress=False)
    assert counts == {"done_before": 3, "ran": 6, "left": 0, "failed": 0}
    assert len(calls) == 4 + 6 and len(set(calls)) == 9
    assert run_grid(runs, store, run_fn, progress=False)["ran"] == 0


def test_runs_go_seed_by_seed_so_a_stopped_sweep_leaves_whole_seeds(tmp_path):
    runs = expand_grid(["m"], ["sst2", "rte"], METHODS, seeds=[0, 1, 2])  # expanded layer/method-major
    seen = []
    for i in range(2):
        run_grid(runs, ResultsStore(tmp_path / str(i)), lambda c: seen.append(c.seed) or {}, shard=(i, 2),
                 time_budget_s=0.0, progress=False)  # one run per shard: the first two of the order
    assert seen == [0, 0]
    order = []
    run_grid(runs, ResultsStore(tmp_path / "all"), lambda c: order.append(c) or {}, progress=False)
    assert [c.seed for c in order] == sorted(c.seed for c in runs)
    assert [c.key for c in order if c.seed == 1] == [r.key for r in runs if r.seed == 1]  # stable within a seed


def test_workers_sharing_a_claims_folder_run_every_run_exactly_once(tmp_path):
    import threading

    runs = expand_grid(["m"], ["sst2", "rte"], METHODS, seeds=[0, 1, 2])
    store, claims = ResultsStore(tmp_path / "sweep"), tmp_path / "claims"
    claims.mkdir()
    ran, lock = [], threading.Lock()

    def run_fn(config: RunConfig) -> dict:
        time.sleep(0.002)
        with lock:
            ran.append(config.key)
        return {"dev_score": 1.0}

    first = run_grid(runs, store, run_fn, shard=(0, 3), time_budget_s=0.0, progress=False, claims=claims)
    assert first["ran"] == 1 and first["left"] == len(runs) - 1 and ran == [sorted(runs, key=lambda r: r.seed)[0].key]
    threads = [threading.Thread(target=run_grid, args=(runs, store, run_fn),
                                kwargs=dict(shard=(i, 3), progress=False, claims=claims)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ran) == sorted(r.key for r in runs)  # each run once, none skipped
    assert store.done_keys() == {r.key for r in runs}
    again = run_grid(runs, store, run_fn, progress=False, claims=claims)
    assert again == {"done_before": len(runs), "ran": 0, "left": 0, "failed": 0}


def test_a_run_out_of_device_memory_goes_back_to_the_queue(tmp_path):
    import torch

    runs = expand_grid(["m"], ["sst2"], METHODS, seeds=[0])
    victim = sorted(runs, key=lambda r: r.seed)[0].key
    store, claims = ResultsStore(tmp_path / "sweep"), tmp_path / "claims"
    claims.mkdir()
    tries = []

    def run_fn(config: RunConfig) -> dict:
        tries.append(config.key)
        if config.key == victim and tries.count(victim) <= 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 18.00 MiB.")
        return {"dev_score": 1.0}

    with pytest.warns(UserWarning, match="ran out of device memory"):
        counts = run_grid(runs, store, run_fn, progress=False, claims=claims, oom_wait_s=0.0)
    assert counts == {"done_before": 0, "ran": len(runs), "left": 0, "failed": 0} and store.done_keys() == {r.key for r in runs}
    assert tries.count(victim) == 3 and tries[-1] == victim  # retried at the end of the queue, twice
    assert (claims / victim).exists()  # claimed again by the try that finished it


def test_other_errors_and_a_run_that_keeps_running_out_of_memory_are_raised(tmp_path):
    import torch

    runs = expand_grid(["m"], ["sst2"], METHODS, seeds=[0])

    def broken(config: RunConfig) -> dict:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run_grid(runs, ResultsStore(tmp_path / "a"), broken, progress=False, oom_wait_s=0.0)

    def hungry(config: RunConfig) -> dict:
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.warns(UserWarning), pytest.raises(torch.OutOfMemoryError):
        run_grid(runs, ResultsStore(tmp_path / "b"), hungry, progress=False, oom_retries=2, oom_wait_s=0.0)


def test_keep_going_notes_a_failed_run_and_runs_the_rest(tmp_path):
    runs = expand_grid(["m"], ["sst2"], METHODS, seeds=[0, 1])
    bad = runs[1].key
    store = ResultsStore(tmp_path / "g")

    def sometimes(config: RunConfig) -> dict:
        if config.key == bad:
            raise DlzoError("The data folder /x has no sst2; pass --data-dir.")
        return {"test_score": 1.0}

    with pytest.warns(UserWarning, match="failed: The data folder /x has no sst2"):
        counts = run_grid(runs, store, sometimes, progress=False, keep_going=True)
    assert counts["failed"] == 1 and counts["ran"] == len(runs) - 1 and bad not in store.done_keys()
    noted = [json.loads(line) for line in (store.folder / "failed.jsonl").read_text().splitlines()]
    assert [n["key"] for n in noted] == [bad] and noted[0]["error"].startswith("The data folder")
    assert len(store.rows()) == len(runs) - 1  # failed.jsonl is not a results shard
    assert run_grid(runs, store, lambda config: {"test_score": 2.0}, progress=False)["ran"] == 1  # retried later


def test_workers_wait_for_free_gpu_memory_before_claiming_a_run(tmp_path, monkeypatch):
    import torch

    from dlzo import experiments

    free = iter([1 * 2**30, 3 * 2**30, 9 * 2**30])  # GiB free at each poll
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (next(free), 80 * 2**30))
    naps = []
    monkeypatch.setattr(experiments.time, "sleep", naps.append)
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    experiments.wait_for_free_memory(8.0, poll_s=5.0)
    assert naps == [5.0, 5.0]  # two polls below 8 GiB, the third one starts the run
    assert len(emptied) == 3  # every poll first gives this worker's cached blocks back (no idle deadlock)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (0, 80 * 2**30))
    with pytest.warns(UserWarning, match="less than 8 GiB free"):
        experiments.wait_for_free_memory(8.0, poll_s=0.0, timeout_s=0.0)

    runs = expand_grid(["m"], ["sst2"], METHODS, seeds=[0])
    claims = tmp_path / "claims"
    claims.mkdir()
    taken = sorted(runs, key=lambda r: r.seed)[0].key
    (claims / taken).touch()  # another worker has it
    waits = []
    counts = run_grid(runs, ResultsStore(tmp_path / "sweep"), lambda c: {}, progress=False, claims=claims,
                      before_run=lambda: waits.append(1))
    assert counts["ran"] == len(runs) - 1 and len(waits) == len(runs) - 1  # no wait for the claimed run


def test_shards_split_the_work_and_torn_lines_are_skipped(tmp_path):
    runs = expand_grid(["m"], ["sst2"], METHODS, seeds=[0, 1])
    store = ResultsStore(tmp_path)
    for i in range(2):
        run_grid(runs, store, lambda c: {"dev_score": 1.0}, shard=(i, 2), progress=False)
    assert store.done_keys() == {r.key for r in runs}
    with (tmp_path / "shard-0.jsonl").open("a") as f:
        f.write('{"key": "torn')
    with pytest.warns(UserWarning, match="torn line"):
        assert len(store.rows()) == len(runs)
    store.append({"key": "after"}, shard=0)
    with pytest.warns(UserWarning):
        assert "after" in store.done_keys()
    with pytest.raises(DlzoError, match="Shard 2 of 2 does not exist"):
        run_grid(runs, store, lambda c: {}, shard=(2, 2))


def test_time_budget_stops_starting_new_runs(tmp_path):
    runs = expand_grid(["m"], ["sst2"], METHODS, seeds=[0])
    counts = run_grid(runs, ResultsStore(tmp_path), lambda c: {"x": 1}, time_budget_s=0.0, progress=False)
    assert counts["ran"] == 1 and counts["left"] == len(runs) - 1


def test_select_lr_uses_dev_not_test():
    rows = []
    for seed in range(3):
        rows.append({"model": "m", "task": "t", "method": "full", "seed": seed, "lr": 1e-6, "dev_score": 80,
                     "test_score": 60, "dev_loss": 0.5})
        rows.append({"model": "m", "task": "t", "method": "full", "seed": seed, "lr": 1e-7, "dev_score": 70,
                     "test_score": 90, "dev_loss": 0.4})
    df = pd.DataFrame(rows)
    assert set(select_lr(df)["lr"]) == {1e-6}
    assert set(select_lr(df, by="dev_loss")["lr"]) == {1e-7}
    assert len(select_lr(df)) == 3


def test_duplicate_runs_in_grid_are_refused():
    with pytest.raises(DlzoError, match="same run twice"):
        expand_grid(["m"], ["t"], {"a": {"lr": [1e-3, 1e-3]}}, seeds=[0])


def test_options_round_trip_as_json():
    config = RunConfig.make("m", "t", "x", options={"layers": [2, 11], "lora_r": 8})
    assert json.loads(config.as_dict()["options"]) == {"layers": [2, 11], "lora_r": 8}


def test_each_layer_expands_per_model_and_grid_files(tmp_path):
    runs = expand_grid(["a", "b"], ["sst2"], {"layer": {"each_layer": True, "lr": 1e-4}}, seeds=[0],
                       layers_of=lambda m: {"a": 3, "b": 2}[m])
    assert [(r.model, r.opts["layers"]) for r in runs] == [("a", [0]), ("a", [1]), ("a", [2]), ("b", [0]), ("b", [1])]
    with pytest.raises(DlzoError, match="layer counts"):
        expand_grid(["a"], ["t"], {"layer": {"each_layer": True}}, seeds=[0])
    from dlzo.experiments import grid_runs, load_grid

    path = tmp_path / "grid.yaml"
    path.write_text("name: g\nmodels: [m]\ntasks: [sst2]\nseeds: [0, 1]\nsteps: 50\n"
                    "methods:\n  zero_shot: {}\n  dominant: {lr: [1e-4, 1e-5]}\n")
    runs = grid_runs(load_grid(path))
    assert len(runs) == 2 + 4 and {r.steps for r in runs} == {50}
    path.write_text("name: g\nmodels: [m]\n")
    with pytest.raises(DlzoError, match="lacks tasks, seeds, methods"):
        load_grid(path)
    with pytest.raises(DlzoError, match="does not exist"):
        load_grid(tmp_path / "none.yaml")


@pytest.mark.parametrize("path", sorted(__import__("pathlib").Path(__file__).resolve().parents[1].glob("experiments/**/*.yaml")),
                         ids=lambda p: p.name)
def test_every_committed_grid_expands_and_builds_its_selections(path):
    from dlzo.experiments import grid_runs, load_grid
    from dlzo.recipes import build_selection, method

    runs = grid_runs(load_grid(path), layers_of=lambda model: 30)
    assert runs
    for run in runs:
        options = run.opts
        recipe = options.get("recipe", run.method)
        assert method(recipe).name == recipe
        build_selection(recipe, options, dominant=11, n_layers=30, seed=run.seed)


def test_a_grid_adopts_the_finished_runs_it_shares_with_another_grid(tmp_path):
    small = expand_grid(["m"], ["sst2"], {"full": {"lr": 1e-6}}, seeds=[0, 1], steps=10)
    big = expand_grid(["m"], ["sst2"], {"full": {"lr": [1e-6, 1e-7]}}, seeds=[0, 1], steps=10)
    other = expand_grid(["m"], ["sst2"], {"full": {"lr": 1e-6}}, seeds=[0], steps=20)  # not the same runs
    source = ResultsStore(tmp_path / "small")
    for run in small + other:
        source.append({"key": run.key, "test_score": 1.0})
    target = ResultsStore(tmp_path / "big")
    assert target.adopt(source.folder, {r.key for r in big}) == 2  # lr 1e-6, both seeds; steps 20 is not ours
    assert target.done_keys() == {r.key for r in small}
    assert target.adopt(source.folder, {r.key for r in big}) == 0  # adopting twice copies nothing
    assert run_grid(big, target, lambda config: {"test_score": 2.0}, progress=False)["ran"] == 2
    with pytest.raises(DlzoError, match="holds no results shards"):
        target.adopt(tmp_path / "nowhere", set())


def test_dlzo_sweep_adopt_copies_before_listing(tmp_path):
    import subprocess
    import sys

    from dlzo.experiments import grid_runs, load_grid

    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nmodels: [m]\ntasks: [sst2]\nseeds: [0, 1]\nsteps: 5\nmethods:\n  zero_shot: {}\n")
    source = ResultsStore(tmp_path / "old")
    source.append({"key": grid_runs(load_grid(grid))[0].key, "test_score": 1.0})
    out = subprocess.run([sys.executable, "-m", "dlzo", "sweep", str(grid), "--results", str(tmp_path / "new"),
                          "--adopt", str(source.folder), "--list", "--device", "cpu"],
                         capture_output=True, text=True, check=True).stdout
    assert "adopted 1 finished runs" in out and "1 of 2 runs done" in out


def test_a_results_folder_keeps_one_dtype_and_one_float32_matmul_mode():
    from dlzo.experiments import numeric_mismatch

    gpu_ieee = [{"device": "NVIDIA H200", "dtype": "float32"},  # before float32_matmul was recorded: IEEE
                {"device": "NVIDIA H200", "dtype": "float32", "float32_matmul": "ieee"}]
    assert numeric_mismatch(gpu_ieee, True, "float32", "ieee") is None
    assert "ieee float32 matmuls, not tf32" in numeric_mismatch(gpu_ieee, True, "float32", "tf32")
    assert "dtype float32, not bfloat16" in numeric_mismatch(gpu_ieee, True, "bfloat16", "ieee")
    assert numeric_mismatch(gpu_ieee, False, "bfloat16", "ieee") is None  # CPU runs are not compared with GPU rows
    assert numeric_mismatch([], True, "float32", "tf32") is None
    cpu = [{"device": "cpu", "dtype": "float32", "float32_matmul": "ieee"}]
    assert "CPU rows use dtype float32" in numeric_mismatch(cpu, False, "bfloat16", "ieee")


def test_dlzo_sweep_refuses_to_mix_numerics_in_one_results_folder(tmp_path):
    import subprocess
    import sys

    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nmodels: [m]\ntasks: [sst2]\nseeds: [0]\nmethods:\n  zero_shot: {}\n")
    ResultsStore(tmp_path / "res").append({"key": "x", "device": "cpu", "dtype": "float32"})
    out = subprocess.run([sys.executable, "-m", "dlzo", "sweep", str(grid), "--results", str(tmp_path / "res"),
                          "--dtype", "bfloat16", "--device", "cpu", "--list"], capture_output=True, text=True)
    assert out.returncode != 0 and "holds runs made with other numerics" in out.stderr
    assert "Traceback" not in out.stderr
