"""Method recipes and one grid cell end to end, on a tiny random LLaMA saved with SmolLM2's tokenizer."""

import json

import pytest
import torch
import transformers

from dlzo.errors import DlzoError
from dlzo.experiments import ResultsStore, expand_grid, memory_need, run_grid
from dlzo.recipes import METHODS, RunContext, build_selection, epoch_schedule, random_layer


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, smollm2):
    _, tokenizer = smollm2
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=512, tie_word_embeddings=True)
    folder = tmp_path_factory.mktemp("tiny")
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_every_method_builds_a_selection():
    for name in METHODS:
        options = {"layers": [1]} if name in ("layer", "fo_layer") else {}
        selection = build_selection(name, options, dominant=2, n_layers=4, seed=0)
        assert (selection is None) == (name == "zero_shot")
    assert tuple(build_selection("dominant", {}, 2, 4, 0).layers) == (2,)
    assert tuple(build_selection("layer", {"layers": ["dominant", 3]}, 2, 4, 0).layers) == (2, 3)
    with pytest.raises(DlzoError, match="needs the option 'layers'"):
        build_selection("layer", {}, 2, 4, 0)
    with pytest.raises(DlzoError, match="Unknown method 'magic'"):
        build_selection("magic", {}, 2, 4, 0)


def test_random_layer_control_never_picks_the_dominant_layer():
    picks = {random_layer(seed, 30, exclude=11) for seed in range(200)}
    assert 11 not in picks and len(picks) > 20
    assert random_layer(5, 30, 11) == random_layer(5, 30, 11)


@pytest.mark.real_model
def test_grid_cells_run_end_to_end(tiny_dir, tmp_path):
    small = {"num_train": 32, "num_dev": 16, "num_test": 16, "dominant_layer": 2}
    methods = {"zero_shot": dict(small), "dominant": {**small, "lr": 1e-3}, "fo_layer": {**small, "layers": [1], "lr": 1e-3}}
    runs = expand_grid([tiny_dir], ["sst2", "copa", "squad"], methods, seeds=[0], steps=3, batch_size=4,
                       eval_every=2)
    store = ResultsStore(tmp_path / "sweep")
    context = RunContext(device="cpu")
    assert run_grid(runs, store, context.run, progress=False)["ran"] == 9
    table = store.table().set_index(["task", "method"])
    assert set(table.index) == {(t, m) for t in ("sst2", "copa", "squad") for m in methods}
    squad = table.loc[("squad", "dominant")]  # a generation task through the ZO engine: LM loss, F1/EM
    assert squad["metric"] == "f1" and squad["test_em"] is not None and squad["dev_loss"] > 0
    assert "no train split" in squad["deviations"]
    assert json.loads(table.loc[("sst2", "dominant"), "trained_layers"]) == [2]
    assert table.loc[("copa", "fo_layer"), "trained_layers"] == "[1]"
    assert table.loc[("sst2", "zero_shot"), "num_parameters"] == 0
    for _, row in table.iterrows():
        assert 0 <= row["test_score"] <= 100 and row["num_test"] == 16 and row["device"] == "cpu"
    assert (table["num_parameters"] > 0).sum() == 6
    assert "peak_gpu_gib" not in table  # recorded on a GPU only
    zero = table.loc[("sst2", "zero_shot")]
    assert zero["dev_score"] == table.loc[("sst2", "dominant"), "zero_shot_dev_score"]
    curve = json.loads(table.loc[("sst2", "dominant"), "dev_curve"])  # every dev evaluation: [step, loss, score]
    assert [step for step, _, _ in curve] == [0, 2, 3]  # eval_every 2 of 3 steps, and the last step
    assert curve[0][1:] == [pytest.approx(zero["dev_loss"], abs=1e-6), pytest.approx(zero["dev_score"], abs=1e-4)]
    best = table.loc[("sst2", "dominant")]
    assert [loss for step, loss, _ in curve if step == best["best_step"]] == [pytest.approx(best["dev_loss"], abs=1e-6)]


@pytest.mark.real_model
@pytest.mark.skipif(not torch.cuda.is_available(), reason="peak GPU memory needs a GPU")
def test_a_gpu_cell_records_its_peak_memory_for_the_memory_gate(tiny_dir, tmp_path):
    small = {"num_train": 32, "num_dev": 16, "num_test": 16, "dominant_layer": 2}
    runs = expand_grid([tiny_dir], ["sst2"], {"dominant": {**small, "lr": 1e-3}}, seeds=[0], steps=2, batch_size=4,
                       eval_every=2)
    store = ResultsStore(tmp_path / "sweep")
    assert run_grid(runs, store, RunContext(device="cuda").run, progress=False)["ran"] == 1
    row = store.rows()[0]
    assert 0 < row["peak_gpu_gib"] < torch.cuda.get_device_properties(0).total_memory / 2**30
    assert memory_need(store.rows(), runs[0]) == row["peak_gpu_gib"]


def test_epoch_schedule_is_mezo_first_order_protocol():
    assert epoch_schedule(5, 1000, 8) == (625, 125)  # 5 epochs of 1000 examples, a dev evaluation per epoch
    assert epoch_schedule(5, 150, 8) == (90, 18)  # CB's 150 training examples: the last partial batch dropped
    for bad in (0, -1, 2.5, True, "5"):
        with pytest.raises(DlzoError, match="positive whole number"):
            epoch_schedule(bad, 1000, 8)
    with pytest.raises(DlzoError, match="7 examples, fewer than one batch of 8"):
        epoch_schedule(5, 7, 8)


@pytest.mark.real_model
def test_a_cell_given_in_epochs_trains_and_evaluates_per_epoch(tiny_dir, tmp_path):
    options = {"num_train": 32, "num_dev": 16, "num_test": 16, "dominant_layer": 2, "epochs": 3}
    runs = expand_grid([tiny_dir], ["sst2"], {"fo_full": {**options, "lr": 1e-4}}, seeds=[0], steps=1000,
                       batch_size=8, eval_every=500)
    store = ResultsStore(tmp_path / "sweep")
    assert run_grid(runs, store, RunContext(device="cpu").run, progress=False)["ran"] == 1
    row = store.table().iloc[0]
    assert (row["train_steps"], row["eval_every_steps"]) == (12, 4)  # 3 epochs of 32 // 8 batches, not 1000/500
    assert row["best_step"] in (0, 4, 8, 12)


def test_grid_methods_default_to_their_recipe_lr_grid_and_eps():
    from dlzo.experiments import grid_runs

    grid = {"name": "g", "models": ["m"], "tasks": ["sst2"], "seeds": [0],
            "methods": {"zero_shot": {}, "mezo_lora": {}, "dominant": {"lr": 1e-3}, "x": {"recipe": "mezo_full"}}}
    runs = grid_runs(grid)
    by = {}
    for r in runs:
        by.setdefault(r.method, []).append(r)
    assert [r.lr for r in by["mezo_lora"]] == list(METHODS["mezo_lora"].lr_grid) and by["mezo_lora"][0].eps == 1e-2
    assert [r.lr for r in by["dominant"]] == [1e-3] and by["dominant"][0].eps == 1e-3
    assert [r.lr for r in by["x"]] == list(METHODS["mezo_full"].lr_grid)
    assert len(by["zero_shot"]) == 1
    grid["eps"] = 1e-4
    assert {r.eps for r in grid_runs(grid) if r.method != "zero_shot"} == {1e-4}


@pytest.mark.real_model
def test_a_grid_cell_cut_short_resumes_from_its_run_log(tiny_dir, tmp_path):
    small = {"num_train": 32, "num_dev": 16, "num_test": 16, "dominant_layer": 2}
    [config] = expand_grid([tiny_dir], ["sst2"], {"dominant": {**small, "lr": 1e-2}}, seeds=[0], steps=4,
                           batch_size=4, eval_every=2)
    logs = tmp_path / "logs"
    whole = RunContext(device="cpu", run_logs=logs).run(config)
    log = logs / config.key / "log.jsonl"
    assert sorted(p.name for p in log.parent.iterdir()) == ["log.jsonl", "result.json"]
    lines = log.read_text().splitlines()
    kept = [line for line in lines if json.loads(line).get("step", 0) <= 3 and json.loads(line)["type"] != "end"]
    log.write_text("\n".join(kept) + "\n")  # as if the job was killed after step 3, before its evaluation
    resumed = RunContext(device="cpu", run_logs=logs).run(config)
    for key in ("dev_loss", "dev_score", "test_score", "test_loss", "best_step", "zero_shot_dev_loss"):
        assert resumed[key] == whole[key], key
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()
            if json.loads(line)["type"] == "step"] == [1, 2, 3, 4]


@pytest.mark.real_model
def test_a_generation_cell_decodes_dev_once_at_the_kept_checkpoint(tmp_path, monkeypatch):
    import dlzo.evaluation as evaluation
    from dlzo.models import load_model
    from dlzo.training import replay

    # the real SmolLM2 (zero-shot SQuAD F1 ~14; a random tiny model scores 0, which would prove nothing)
    options = {"num_train": 8, "num_dev": 8, "num_test": 4, "dominant_layer": 11}
    [config] = expand_grid(["smollm2-135m"], ["squad"], {"dominant": {**options, "lr": 1e-4}}, seeds=[0], steps=2,
                           batch_size=2, eval_every=1)
    decoded = []
    real = evaluation.generate_answers

    def counting(model, tokenizer, prompts, **kwargs):
        decoded.append(len(prompts))
        return real(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(evaluation, "generate_answers", counting)
    context = RunContext(device="cpu", run_logs=tmp_path / "logs")
    row = context.run(config)
    curve = json.loads(row["dev_curve"])
    assert [step for step, _, _ in curve] == [0, 1, 2]
    assert all(loss > 0 and score is None for _, loss, score in curve)  # checkpoints picked on dev loss alone
    assert sum(decoded) == 8 + 4  # dev decoded once (the kept checkpoint), then test; not at every evaluation
    # that decoding is the kept checkpoint's: replay the run's log to its best step and decode dev again
    model, tokenizer = load_model("smollm2-135m")
    selection = build_selection("dominant", config.opts, 11, 30, 0)
    replay(model, selection, tmp_path / "logs" / config.key / "log.jsonl", step=row["best_step"])
    data = context.data("squad", 0, config.opts)
    again = evaluation.evaluate(model, tokenizer, data.task, data.dev, batch_size=context.eval_batch_size,
                                with_loss=False)
    assert again["score"] == row["dev_score"] > 0
