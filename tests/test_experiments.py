import json
import time

import pandas as pd
import pytest

from dlzo.errors import DlzoError
from dlzo.experiments import ResultsStore, RunConfig, expand_grid, run_grid, seeds_with_every_lr, select_lr

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
                      before_run=waits.append)
    assert counts["ran"] == len(runs) - 1 and len(waits) == len(runs) - 1  # no wait for the claimed run
    assert taken not in {config.key for config in waits}  # before_run gets the run it is about to start


def test_the_memory_gate_waits_for_what_runs_of_that_kind_held(monkeypatch):
    import torch

    from dlzo import experiments

    squad = RunConfig.make("m", "squad", "mezo_full", lr=1e-6)
    rows = [{"model": "m", "task": "squad", "method": "mezo_full", "peak_gpu_gib": 31.5},
            {"model": "m", "task": "squad", "method": "mezo_full", "peak_gpu_gib": 28.0, "seed": 1},
            {"model": "m", "task": "squad", "method": "dominant", "peak_gpu_gib": 9.0},
            {"model": "other", "task": "squad", "method": "mezo_full", "peak_gpu_gib": 80.0},
            {"model": "m", "task": "squad", "method": "mezo_full"}]  # a CPU row (or one from before the field)
    assert experiments.memory_need(rows, squad) == 31.5  # the largest of its kind, any seed or lr
    assert experiments.memory_need(rows, RunConfig.make("m", "sst2", "mezo_full")) is None
    targets = []
    monkeypatch.setattr(experiments, "wait_for_free_memory", lambda gib, device, **wait: targets.append(gib) or 0.0)
    monkeypatch.setattr(experiments, "free_device_memory", lambda: None)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 2.5 * 2**30)  # this worker's model
    gate = experiments.memory_gate(14.0, "cuda", lambda: rows)
    gate(squad)
    gate(RunConfig.make("m", "squad", "dominant"))
    gate(RunConfig.make("m", "copa", "mezo_full"))
    assert targets == [31.5 - 2.5 + 2.0, 14.0, 14.0]  # more than the floor only where a run of its kind needed it


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


def test_seeds_with_every_lr_keeps_an_unfinished_lr_grid_even():
    rows = [{"model": "m", "task": "t", "method": "layer", "options": f'{{"layers": [{layer}]}}', "seed": seed,
             "lr": lr, "dev_score": 50.0}
            for layer in (0, 1) for lr in (1e-4, 1e-3) for seed in (0, 1, 2)
            if not (lr == 1e-4 and seed == 2) and not (layer == 1 and lr == 1e-4 and seed == 1)]
    df = pd.DataFrame(rows)
    assert seeds_with_every_lr(df) == [0]
    # a group that only ever ran one lr constrains nothing beyond its own seeds
    assert seeds_with_every_lr(df[df["lr"] == 1e-3]) == [0, 1, 2]
    assert seeds_with_every_lr(df.iloc[:0]) == []
    with pytest.raises(DlzoError, match="'seed' and 'lr'"):
        seeds_with_every_lr(df.drop(columns="seed"))


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
        if method(recipe).trainer == "fo":  # MeZO's FO protocol: a dev evaluation after every epoch (1000 examples)
            per_epoch = 1000 // run.batch_size
            assert options.get("epochs") or run.eval_every <= per_epoch, (
                f"{path.name}: {run.method} on {run.task} evaluates every {run.eval_every} steps, an epoch is "
                f"{per_epoch}; give it epochs: 5")


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


def test_left_table_counts_what_is_left_per_task_and_method():
    from dlzo.commands.sweep import left_table as table_of
    from dlzo.experiments import grid_runs, plan_lr_search

    def left_table(runs, search_seeds, rows):
        done = {row["key"] for row in rows}
        return table_of(runs, plan_lr_search(runs, search_seeds, rows), done, staged=search_seeds is not None)

    grid = {**SEARCH_GRID, "tasks": ["sst2", "copa"], "methods": {"zero_shot": {}, "dominant": {"lr": [1e-4, 1e-3]}}}
    runs = grid_runs(grid)
    rows = [{**r.as_dict(), **_favours_small_lr(r), "key": r.key} for r in runs
            if r.task == "sst2" and r.seed == 0]  # sst2's search has run: its seeds 1-2 are ready at 1e-4
    table = left_table(runs, [0], rows)
    assert list(table.index) == ["sst2", "copa"] and list(table.columns) == ["zero_shot", "dominant"]
    assert table.loc["sst2", "dominant"] == "2+0" and table.loc["sst2", "zero_shot"] == "2+0"
    assert table.loc["copa", "dominant"] == "2+2" and table.loc["copa", "zero_shot"] == "3+0"
    plain = left_table(runs, None, [])  # no lr search: every lr on every seed, nothing held back
    assert plain.loc["copa", "dominant"] == "6"
    done = [{"key": r.key} for r in runs]
    assert left_table(runs, None, done).empty


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


# --- lr_search_seeds: the lr grid searched on some seeds, the other seeds at the lr picked on dev ---------------

SEARCH_GRID = {"name": "g", "models": ["m"], "tasks": ["sst2"], "seeds": [0, 1, 2], "lr_search_seeds": [0],
               "methods": {"dominant": {"lr": [1e-4, 1e-3]}}}


def _favours_small_lr(config: RunConfig) -> dict:
    return {"dev_score": 80.0 if config.lr == 1e-4 else 70.0, "test_score": 50.0}


def test_lr_search_seeds_run_every_lr_on_the_search_seed_and_the_picked_lr_on_the_others(tmp_path):
    from dlzo.experiments import grid_runs, grid_search_seeds, plan_lr_search, planned_runs

    runs = grid_runs(SEARCH_GRID)
    assert len(runs) == 6 and grid_search_seeds(SEARCH_GRID) == [0]
    before = plan_lr_search(runs, [0], [])
    assert [(r.seed, r.lr) for r in before.ready] == [(0, 1e-4), (0, 1e-3)]
    assert [r.seed for r in before.held] == [1, 2] and all(r.lr != r.lr for r in before.held)  # nan placeholders
    assert len(planned_runs(SEARCH_GRID)) == 4 and len(before.pending) == 1
    store, calls = ResultsStore(tmp_path / "g"), []
    counts = run_grid(runs, store, lambda c: calls.append((c.seed, c.lr)) or _favours_small_lr(c), progress=False,
                      lr_search_seeds=[0])
    assert calls == [(0, 1e-4), (0, 1e-3), (1, 1e-4), (2, 1e-4)]  # 2 + 2 runs, not 6
    assert counts == {"done_before": 0, "ran": 4, "left": 0, "failed": 0, "held": 0, "undecided": 0}
    after = plan_lr_search(runs, [0], store.rows())
    assert list(after.chosen.values()) == [1e-4] and not after.held and store.done_keys() == {r.key for r in after.ready}
    assert run_grid(runs, store, _favours_small_lr, progress=False, lr_search_seeds=[0])["ran"] == 0


def test_runs_an_lr_search_readies_later_are_adopted_not_rerun(tmp_path):
    """A finer lr grid adopting a coarser one: seed 0 searches a new lr too, and where the old pick wins again,
    seeds 1-2 at that lr are the other grid's finished runs, copied when the search readies them."""
    from dlzo.experiments import grid_runs

    coarse = ResultsStore(tmp_path / "coarse")
    run_grid(grid_runs(SEARCH_GRID), coarse, _favours_small_lr, progress=False, lr_search_seeds=[0])
    finer = {**SEARCH_GRID, "methods": {"dominant": {"lr": [1e-4, 3e-4, 1e-3]}}}
    runs = grid_runs(finer)
    for claims in (None, _claims(tmp_path / "claims")):
        store, calls = ResultsStore(tmp_path / f"finer-{claims is None}"), []
        def run_fn(config, calls=calls):
            calls.append((config.seed, config.lr))
            return _favours_small_lr(config)

        counts = run_grid(runs, store, run_fn, progress=False, lr_search_seeds=[0], adopt_from=[coarse.folder],
                          claims=claims)
        assert calls == [(0, 3e-4)]  # the only run no grid has finished
        assert counts["ran"] == 1 and counts["adopted"] == 4 and counts["left"] == 0 and counts["held"] == 0
        assert store.done_keys() == coarse.done_keys() | {r.key for r in runs if (r.seed, r.lr) == (0, 3e-4)}
        rows = {row["key"]: row for row in store.rows()}
        assert all(rows[row["key"]] == row for row in coarse.rows())  # copied as they were


def test_lr_search_leaves_single_lr_methods_alone_and_ties_go_to_the_smaller_lr(tmp_path):
    from dlzo.experiments import cell_of, grid_runs, plan_lr_search

    grid = {**SEARCH_GRID, "methods": {"zero_shot": {}, "dominant": {"lr": [1e-4, 1e-3]}, "one": {"recipe": "dominant",
                                                                                                  "lr": 1e-3}}}
    runs = grid_runs(grid)
    plan = plan_lr_search(runs, [0], [])
    assert sum(r.method in ("zero_shot", "one") for r in plan.ready) == 6  # every seed, from the start
    rows = [{"key": r.key, "dev_score": 75.0} for r in runs if r.method == "dominant" and r.seed == 0]
    plan = plan_lr_search(runs, [0], rows)
    assert plan.chosen == {cell_of(runs[3]): 1e-4} and not plan.held  # a tie: the smaller lr
    minimised = plan_lr_search(runs, [0], [{**row, "dev_loss": 1.0} for row in rows], by="dev_loss")
    assert list(minimised.chosen.values()) == [1e-4]


def test_fixed_shards_of_an_lr_search_grid_run_each_run_once(tmp_path):
    from dlzo.experiments import grid_runs

    runs = grid_runs({**SEARCH_GRID, "tasks": ["sst2", "rte"]})
    store, calls = ResultsStore(tmp_path / "g"), []
    run_fn = lambda c: calls.append(c.key) or _favours_small_lr(c)  # noqa: E731
    first = run_grid(runs, store, run_fn, shard=(0, 2), progress=False, lr_search_seeds=[0])
    assert first["held"] > 0  # shard 1's search runs have not run: shard 0 does not wait for them
    run_grid(runs, store, run_fn, shard=(1, 2), progress=False, lr_search_seeds=[0])
    last = run_grid(runs, store, run_fn, shard=(0, 2), progress=False, lr_search_seeds=[0])
    assert last["held"] == 0 and len(calls) == len(set(calls)) == 8 and len(store.done_keys()) == 8


def test_a_worker_waits_for_held_back_runs_instead_of_exiting(tmp_path):
    import threading

    from dlzo.experiments import grid_runs

    runs = grid_runs(SEARCH_GRID)
    store, claims = ResultsStore(tmp_path / "g"), tmp_path / "claims"
    claims.mkdir()
    events, lock, waited = [], threading.Lock(), threading.Event()

    def note(what):
        with lock:
            events.append(what)

    def run_fn(config: RunConfig) -> dict:
        if config.seed == 0 and config.lr == 1e-3:  # the slow search run: finishes only once another worker waits
            assert waited.wait(timeout=30), "no worker waited for the held-back runs"
        note(("ran", threading.current_thread().name, config.seed, config.lr))
        return _favours_small_lr(config)

    def nap(seconds):
        note(("wait", threading.current_thread().name))
        waited.set()
        time.sleep(0.005)

    results = {}

    def worker(i):
        results[i] = run_grid(runs, store, run_fn, shard=(i, 2), progress=False, claims=claims, lr_search_seeds=[0],
                              poll_s=0.005, sleep=nap)
        note(("exit", threading.current_thread().name))

    threads = [threading.Thread(target=worker, args=(i,), name=f"w{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    ran = [e[2:] for e in events if e[0] == "ran"]
    assert sorted(ran) == [(0, 1e-4), (0, 1e-3), (1, 1e-4), (2, 1e-4)]  # each run once, the held-back ones too
    waiter = next(e[1] for e in events if e[0] == "wait")
    slow_done = events.index(next(e for e in events if e[0] == "ran" and e[2:] == (0, 1e-3)))
    assert events.index(("exit", waiter)) > slow_done  # the idle worker did not exit before the lr was decided
    assert sum(r["ran"] for r in results.values()) == 4 and all(r["held"] == 0 for r in results.values())


def test_a_failed_search_run_does_not_hang_the_sweep(tmp_path):
    from dlzo.experiments import grid_runs

    runs = grid_runs(SEARCH_GRID)
    bad = next(r for r in runs if r.seed == 0 and r.lr == 1e-3)

    def failing(config: RunConfig) -> dict:
        if config.key == bad.key:
            raise RuntimeError("diverged")
        return _favours_small_lr(config)

    def never(seconds):
        raise AssertionError("waited for a cell that cannot be decided")

    with pytest.warns(UserWarning, match="diverged"):
        counts = run_grid(runs, ResultsStore(tmp_path / "a"), failing, progress=False, keep_going=True,
                          lr_search_seeds=[0], claims=_claims(tmp_path / "ca"), sleep=never)
    assert counts == {"done_before": 0, "ran": 1, "left": 0, "failed": 1, "held": 2, "undecided": 2}
    with pytest.warns(UserWarning, match="diverged"):  # the same without claims (one serial sweep)
        counts = run_grid(runs, ResultsStore(tmp_path / "b"), failing, progress=False, keep_going=True,
                          lr_search_seeds=[0], sleep=never)
    assert counts["failed"] == 1 and counts["undecided"] == 2
    # another worker's search run: noted as failed, or claimed by a process that has died
    for name, mark in (("noted", lambda folder: (folder / f"{bad.key}.failed").touch()),
                       ("dead", lambda folder: (folder / bad.key).write_text(str(_dead_pid())))):
        folder = _claims(tmp_path / f"c-{name}")
        (folder / bad.key).touch()
        mark(folder)
        counts = run_grid(runs, ResultsStore(tmp_path / name), _favours_small_lr, progress=False, claims=folder,
                          lr_search_seeds=[0], sleep=never)
        assert counts["ran"] == 1 and counts["undecided"] == 2, name


def _claims(folder):
    folder.mkdir()
    return folder


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_time_budget_stops_an_lr_search_sweep_too(tmp_path):
    from dlzo.experiments import grid_runs

    counts = run_grid(grid_runs(SEARCH_GRID), ResultsStore(tmp_path), _favours_small_lr, time_budget_s=0.0,
                      progress=False, lr_search_seeds=[0], claims=_claims(tmp_path / "claims"),
                      sleep=lambda s: pytest.fail("waited after the time budget"))
    assert counts["ran"] == 1 and counts["left"] == 1 and counts["held"] == 2


def test_select_lr_on_some_seeds_picks_by_those_seeds_and_keeps_every_seed():
    from dlzo.main_results import tuned_runs

    rows = [{"model": "m", "task": "t", "method": "full", "seed": 0, "lr": 1e-4, "dev_score": 80.0},
            {"model": "m", "task": "t", "method": "full", "seed": 0, "lr": 1e-3, "dev_score": 70.0}]
    for seed in (1, 2):
        rows += [{"model": "m", "task": "t", "method": "full", "seed": seed, "lr": 1e-4, "dev_score": 50.0},
                 {"model": "m", "task": "t", "method": "full", "seed": seed, "lr": 1e-3, "dev_score": 95.0}]
    df = pd.DataFrame(rows)
    assert set(select_lr(df)["lr"]) == {1e-3}  # the mean over all seeds (86.7 vs 60)
    picked = select_lr(df, on_seeds=[0])
    assert set(picked["lr"]) == {1e-4} and sorted(picked["seed"]) == [0, 1, 2]
    assert set(tuned_runs(df, on_seeds=[0])["lr"]) == {1e-4} and set(tuned_runs(df)["lr"]) == {1e-3}
    assert select_lr(df, on_seeds=[5]).empty
    with pytest.raises(DlzoError, match="no column 'seed'"):
        select_lr(df.drop(columns="seed"), on_seeds=[0])


def test_a_grid_without_lr_search_seeds_plans_and_runs_as_before(tmp_path):
    from dlzo.experiments import grid_runs, plan_lr_search, planned_runs

    plain = {k: v for k, v in SEARCH_GRID.items() if k != "lr_search_seeds"}
    runs = grid_runs(plain)
    assert [r.key for r in runs] == [r.key for r in expand_grid(["m"], ["sst2"], plain["methods"], [0, 1, 2])]
    assert [r.key for r in grid_runs(SEARCH_GRID)] == [r.key for r in runs]  # the key does not change run keys
    assert planned_runs(plain) == runs and plan_lr_search(runs, None, []).ready == runs
    counts = run_grid(runs, ResultsStore(tmp_path), _favours_small_lr, progress=False)
    assert counts == {"done_before": 0, "ran": 6, "left": 0, "failed": 0}


def test_bad_lr_search_seeds_are_one_clear_error(tmp_path):
    from dlzo.experiments import load_grid

    path = tmp_path / "g.yaml"
    base = "name: g\nmodels: [m]\ntasks: [sst2]\nseeds: [0, 1]\nmethods:\n  zero_shot: {}\n"
    for value, message in (("[3]", "lr_search_seeds lists seed 3 that its seeds do not"),
                           ("0", "must be a non-empty list of seeds"), ("[]", "must be a non-empty list of seeds"),
                           ("[a]", "must be a non-empty list of seeds")):
        path.write_text(base + f"lr_search_seeds: {value}\n")
        with pytest.raises(DlzoError, match=message) as error:
            load_grid(path)
        assert str(error.value).count(". ") == 0 and str(error.value).endswith(".")  # one sentence
    path.write_text(base + "lr_search_seeds: [1]\n")
    assert load_grid(path)["lr_search_seeds"] == [1]


def test_dlzo_sweep_adopts_and_lists_an_lr_search_grid(tmp_path, capsys):
    import yaml

    from dlzo.cli import main
    from dlzo.experiments import grid_runs

    grid = {**SEARCH_GRID, "methods": {"zero_shot": {}, "dominant": {"lr": [1e-4, 1e-3]}}}
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(grid))
    source = ResultsStore(tmp_path / "old")
    for run in grid_runs(grid):  # a full grid's rows: every lr on every seed
        if run.method == "dominant" or run.seed == 0:
            source.append({**run.as_dict(), **_favours_small_lr(run), "key": run.key, "device": "cpu"})
    assert main(["sweep", str(tmp_path / "g.yaml"), "--results", str(tmp_path / "new"), "--adopt",
                 str(source.folder), "--list", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "adopted 5 finished runs" in out  # zero-shot seed 0, both search runs, then seeds 1-2 at 1e-4
    assert "5 of 7 runs done, 2 ready to run, 0 held back" in out and "full lr grid on every seed: 9 runs" in out
    assert "left, by task and method (ready + held back):" in out and out.rstrip().endswith("sst2         2+0")
    (tmp_path / "g.yaml").write_text(yaml.safe_dump({**grid, "lr_search_seeds": [4]}))
    assert main(["sweep", str(tmp_path / "g.yaml"), "--list", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: The grid file")


def test_dlzo_sweep_runs_held_back_runs_in_the_same_call_and_says_what_it_skipped(tmp_path, capsys, monkeypatch):
    import yaml

    from dlzo.cli import main
    from dlzo.recipes import RunContext

    (tmp_path / "g.yaml").write_text(yaml.safe_dump(SEARCH_GRID))
    calls = []
    monkeypatch.setattr(RunContext, "run", lambda self, c: calls.append((c.seed, c.lr)) or _favours_small_lr(c))
    assert main(["sweep", str(tmp_path / "g.yaml"), "--results", str(tmp_path / "ok"), "--device", "cpu",
                 "--no-progress"]) == 0
    assert calls == [(0, 1e-4), (0, 1e-3), (1, 1e-4), (2, 1e-4)]
    assert "ran 4, done before 0, left 0, failed 0, held back 0" in capsys.readouterr().out

    def failing(self, config):
        if config.lr == 1e-3:
            raise RuntimeError("diverged")
        return _favours_small_lr(config)

    monkeypatch.setattr(RunContext, "run", failing)
    with pytest.warns(UserWarning, match="diverged"):
        code = main(["sweep", str(tmp_path / "g.yaml"), "--results", str(tmp_path / "bad"), "--device", "cpu",
                     "--no-progress", "--keep-going"])
    captured = capsys.readouterr()
    assert code == 2 and "held back 2 (lr searched on seeds [0]), of which 2 skipped because a search run" in captured.out
    assert "1 runs failed" in captured.err


@pytest.mark.parametrize(("small", "big"), [("main_core_smollm2", "main_smollm2"),
                                            ("main_core_qwen2.5-0.5b", "main_core_tuned_qwen2.5-0.5b"),
                                            ("main_core_tuned_qwen2.5-0.5b", "main_qwen2.5-0.5b")])
def test_each_main_grid_holds_every_run_of_the_grid_it_adopts(small, big):
    # --adopt copies rows by run key: a grid that extends another must plan the same runs under the same keys
    from dlzo.experiments import grid_runs, load_grid
    from dlzo.paths import repo_root

    def keys(name):
        return {r.key for r in grid_runs(load_grid(repo_root() / "experiments" / f"{name}.yaml"), layers_of=lambda m: 30)}

    assert keys(small) <= keys(big)


def test_runs_cut_off_mid_way_go_first_then_seed_by_seed(tmp_path):
    runs = expand_grid(["m"], ["sst2", "rte"], METHODS, seeds=[0, 1, 2])
    late = [r for r in runs if r.seed == 2][-1], [r for r in runs if r.seed == 1][0]  # runs with a log
    order = []
    run_grid(runs, ResultsStore(tmp_path / "plain"), lambda c: order.append(c.key) or {}, progress=False,
             first={late[0].key, late[1].key, "a-key-of-another-grid"})
    assert order[:2] == [late[1].key, late[0].key]  # the cut-off runs, in seed order
    rest = [r for r in runs if r not in late]
    assert order[2:] == [r.key for r in sorted(rest, key=lambda r: r.seed)]  # then seed by seed, as without logs
    search = expand_grid(["m"], ["sst2"], METHODS, seeds=[0, 1])  # with an lr search: a cut-off held-back run
    held = [r for r in search if r.method == "full" and r.seed == 1][0]  # waits for its cell's search all the same
    staged = []
    run_grid(search, ResultsStore(tmp_path / "staged"), lambda c: staged.append(c.key) or {"dev_score": c.lr},
             progress=False, lr_search_seeds=[0], first={held.key})
    assert held.key in staged and staged.index(held.key) > max(
        staged.index(r.key) for r in search if r.method == "full" and r.seed == 0)


def test_runs_that_cannot_resume_go_before_cut_off_ones(tmp_path):
    runs = expand_grid(["m"], ["sst2"], METHODS, seeds=[0, 1])
    cut_off, fresh = runs[-1].key, runs[-2].key  # say a ZO run with a log and a first-order run (no log)
    order = []
    run_grid(runs, ResultsStore(tmp_path / "r"), lambda c: order.append(c.key) or {}, progress=False,
             first={cut_off}, unresumable={fresh})
    assert order[:2] == [fresh, cut_off]  # then the rest, seed by seed
    assert order[2:] == [r.key for r in sorted(runs[:-2], key=lambda r: r.seed)]


def test_a_sweep_with_run_logs_starts_first_order_and_zero_shot_runs_first():
    from dlzo.commands.sweep import unresumable_runs

    runs = expand_grid(["m"], ["sst2"], {"zero_shot": {}, "fo_full": {"lr": 1e-5}, "dominant": {"lr": 1e-3},
                                          "x": {"recipe": "fo_layer", "layers": [1], "lr": 1e-5}}, seeds=[0])
    assert {r.method for r in runs if r.key in unresumable_runs(runs)} == {"zero_shot", "fo_full", "x"}


def test_cut_off_runs_are_the_run_logs_with_a_log(tmp_path, capsys):
    from dlzo.cli import main
    from dlzo.commands.sweep import cut_off_runs
    from dlzo.experiments import grid_runs, load_grid

    assert cut_off_runs(None) == set() and cut_off_runs(str(tmp_path / "none")) == set()
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nmodels: [m]\ntasks: [sst2]\nseeds: [0, 1]\nsteps: 5\nmethods:\n  zero_shot: {}\n")
    key = grid_runs(load_grid(grid))[1].key
    (tmp_path / "logs" / key).mkdir(parents=True)
    (tmp_path / "logs" / key / "log.jsonl").write_text("{}\n")
    (tmp_path / "logs" / "empty").mkdir()  # a folder without a log is no cut-off run
    assert cut_off_runs(str(tmp_path / "logs")) == {key}
    assert main(["sweep", str(grid), "--results", str(tmp_path / "r"), "--run-logs", str(tmp_path / "logs"),
                 "--device", "cpu", "--list"]) == 0
    out = capsys.readouterr().out
    assert "1 of the runs ready to run were cut off mid-way: they resume first" in out


def test_sweep_tasks_runs_a_part_of_the_grid_with_the_same_keys(tmp_path, capsys):
    from dlzo.cli import main
    from dlzo.commands.sweep import only_tasks
    from dlzo.experiments import grid_runs, load_grid

    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nmodels: [m]\ntasks: [sst2, rte, squad]\nseeds: [0, 1]\nsteps: 5\n"
                    "methods:\n  zero_shot: {}\n")
    whole = load_grid(grid)
    part = only_tasks(whole, "squad, sst2")
    assert part["tasks"] == ["sst2", "squad"] and only_tasks(whole, None) is whole  # the grid's order
    assert {r.key for r in grid_runs(part)} == {r.key for r in grid_runs(whole) if r.task != "rte"}
    assert main(["sweep", str(grid), "--results", str(tmp_path / "r"), "--tasks", "rte", "--list",
                 "--device", "cpu"]) == 0
    assert "0 of 2 runs done" in capsys.readouterr().out
    assert main(["sweep", str(grid), "--tasks", "rte,boolq", "--list", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --tasks boolq: not a task of grid 'g' (sst2, rte, squad); "
                                               "name some of those.")
