"""The ZO training loop: frozen parameters stay frozen, replay and kill-and-resume are bit-exact, NaNs are refused."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from zo_helpers import lm_eval_fn, lm_loss_fn, tiny_llama, token_examples
from zo_resume_run import CONFIG, run

from dlzo import DlzoError
from dlzo.runfiles import load_checkpoint, read_log
from dlzo.selection import ChannelMask, LoraSpec, Selection
from dlzo.training import ZOConfig, replay, train

TRAIN, DEV = token_examples(64), token_examples(16, seed=1)
QUICK = ZOConfig(steps=6, lr=5e-2, eps=1e-3, batch_size=8, seed=3)


def params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "selection",
    [
        Selection(layers=[2]),
        Selection(layers=[1], modules=("mlp",), norms=False),
        Selection(layers=[1], channels=ChannelMask(channels=[4, 40])),
        Selection(layers=[1], channels=ChannelMask(channels=[4, 40], mode="frozen")),
        Selection(sparse=0.25),
        Selection(layers=[2], lora=LoraSpec(r=2, alpha=4)),
    ],
    ids=["layer", "mlp", "channels-only", "channels-frozen", "sparse", "lora"],
)
def test_unselected_parameters_are_bit_identical_after_training(selection):
    model = tiny_llama()
    selected = selection.apply(model)  # resolved first, so the names include peft's for LoRA
    before = params(selected.model)
    train(model, selected, lm_loss_fn(model), TRAIN, QUICK, progress=False)
    chosen = {s.name: s.mask for s in selected.params}
    for name, param in selected.model.named_parameters():
        old = before[name]
        if name not in chosen:
            assert torch.equal(param, old), name
        elif chosen[name] is None:
            assert not torch.equal(param, old), name
        else:
            mask = chosen[name]
            assert torch.equal(param[~mask], old[~mask]), name
            assert not torch.equal(param[mask], old[mask]), name


@pytest.mark.parametrize("options", [{}, {"optimizer": "adam", "directions": 2, "weight_decay": 0.1},
                                     {"optimizer": "momentum", "one_sided": True}])
def test_replay_rebuilds_the_trained_parameters_bit_exactly(tmp_path, options):
    config = ZOConfig(**{**QUICK.__dict__, "steps": 24, "eval_every": 6, "lr": 1e-2, **options})
    model = tiny_llama(dtype=torch.bfloat16)
    result = train(model, Selection(layers=[1, 3]), lm_loss_fn(model), TRAIN, config, eval_fn=lm_eval_fn(DEV),
                   out_dir=tmp_path, progress=False)
    header = read_log(tmp_path / "log.jsonl")[0]
    assert header["device"] == "cpu" and header["float32_matmul"] == "ieee"  # provenance of the numbers
    names = header["selection"]["tensors"]
    returned = {n: p.detach().clone() for n, p in model.named_parameters() if n in names}
    rebuilt = replay(tiny_llama(dtype=torch.bfloat16), Selection(layers=[1, 3]), tmp_path / "log.jsonl")
    assert all(torch.equal(rebuilt[n], returned[n]) for n in names)
    assert replay(tiny_llama(dtype=torch.bfloat16), Selection(layers=[1, 3]), result.records).keys() == rebuilt.keys()
    # the last step too (the checkpoint holds its fp32 masters), whichever step was the best
    tensors, state = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert state["step"] == 24
    last = replay(tiny_llama(dtype=torch.bfloat16), Selection(layers=[1, 3]), tmp_path / "log.jsonl", step=24)
    assert all(torch.equal(last[n], tensors[f"master.{i}"].to(torch.bfloat16)) for i, n in enumerate(names))


def test_the_model_returns_holding_the_best_evaluated_parameters():
    model = tiny_llama()
    config = ZOConfig(steps=30, lr=0.5, eps=1e-3, batch_size=8, eval_every=5)  # a large lr: evals go up and down
    result = train(model, Selection(layers=[1]), lm_loss_fn(model), TRAIN, config, eval_fn=lm_eval_fn(DEV),
                   progress=False)
    losses = {e["step"]: e["loss"] for e in result.evals}
    assert result.best_step == min(losses, key=losses.get) == result.returned_step
    assert lm_eval_fn(DEV)(model)["loss"] == result.best["loss"]
    assert result.zero_shot["loss"] == losses[0] and result.final["loss"] == losses[30]


def test_a_killed_run_resumes_bit_identical_to_an_uninterrupted_one(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    script = Path(__file__).with_name("zo_resume_run.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "0.04"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = killed / "checkpoint.safetensors"
    try:  # kill it 1-2 steps after a checkpoint at step >= 12 (checkpoints every 4 steps)
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()
            if checkpoint.is_file():
                saved = load_checkpoint(checkpoint)[1]["step"]
                logged = max(r.get("step", 0) for r in read_log(killed / "log.jsonl"))
                if saved >= 12 and saved < logged <= saved + 2:
                    break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    saved_step = load_checkpoint(checkpoint)[1]["step"]
    logged = [r for r in read_log(killed / "log.jsonl") if r["type"] == "step"]
    assert 12 <= saved_step < CONFIG.steps and proc.returncode == -signal.SIGKILL
    assert logged[-1]["step"] > saved_step  # killed mid-way between checkpoints
    kept = [r for r in read_log(killed / "log.jsonl") if r.get("step", 0) <= saved_step]

    resumed, resumed_model = run(killed, resume=True)
    assert read_log(killed / "log.jsonl")[: len(kept)] == kept  # timings too: steps 1..saved were not re-run
    uninterrupted, clean_model = run(clean)
    assert all(torch.equal(a, b) for a, b in zip(resumed_model.parameters(), clean_model.parameters(), strict=True))
    assert resumed.evals == uninterrupted.evals and resumed.best_step == uninterrupted.best_step

    def untimed(path):
        return [{k: v for k, v in r.items() if not k.startswith("time_")} for r in read_log(path)]

    assert untimed(killed / "log.jsonl") == untimed(clean / "log.jsonl")
    steps = [r["step"] for r in read_log(killed / "log.jsonl") if r["type"] == "step"]
    assert steps == list(range(1, CONFIG.steps + 1))  # each step logged once
    trained = [load_file(d / "trained.safetensors") for d in (killed, clean)]
    assert trained[0].keys() == trained[1].keys()
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])
    assert json.loads((killed / "result.json").read_text())["returned_step"] == uninterrupted.returned_step


def test_non_finite_losses_are_refused_and_repeated_ones_stop_the_run(tmp_path):
    model = tiny_llama()
    loss_fn, calls = lm_loss_fn(model), []

    def flaky(batch):  # two forwards per step: NaN at step 3, then from step 8 on
        calls.append(1)
        step = (len(calls) + 1) // 2
        return torch.tensor(float("nan")) if step == 3 or step >= 8 else loss_fn(batch)

    config = ZOConfig(steps=20, lr=1e-2, batch_size=8, checkpoint_every=2, max_refused=3)
    with pytest.warns(UserWarning, match="refused"), pytest.raises(DlzoError, match="3 steps in a row") as info:
        train(model, Selection(layers=[1]), flaky, TRAIN, config, out_dir=tmp_path, progress=False)
    assert "checkpoint" in str(info.value) and "\n" not in str(info.value)
    records = [r for r in read_log(tmp_path / "log.jsonl") if r["type"] == "step"]
    assert [r["step"] for r in records if r["refused"]] == [3, 8, 9, 10]
    assert records[2]["g"] is None and records[2]["loss_plus"] is None
    tensors, state = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert state["step"] == 8 and state["refused_in_row"] == 1  # the last checkpoint before the stop
    # the refused step changed nothing: replaying steps 1-3 equals replaying steps 1-2
    two = replay(tiny_llama(), Selection(layers=[1]), tmp_path / "log.jsonl", step=2)
    three = replay(tiny_llama(), Selection(layers=[1]), tmp_path / "log.jsonl", step=3)
    assert all(torch.equal(two[n], three[n]) for n in two)
    # and the checkpoint still resumes (with a healthy loss)
    fresh = tiny_llama()
    result = train(fresh, Selection(layers=[1]), lm_loss_fn(fresh), TRAIN, config, out_dir=tmp_path, resume=True,
                   progress=False)
    assert result.steps == 20 and result.refused_steps == 2  # steps 3 and 8; 9 and 10 ran again, healthy


def test_run_folder_misuse_is_one_sentence(tmp_path):
    model = tiny_llama()
    train(model, Selection(layers=[1]), lm_loss_fn(model), TRAIN, QUICK, out_dir=tmp_path, progress=False)
    with pytest.raises(DlzoError, match="already holds a run"):
        train(model, Selection(layers=[1]), lm_loss_fn(model), TRAIN, QUICK, out_dir=tmp_path, progress=False)
    changed = ZOConfig(**{**QUICK.__dict__, "lr": 0.1})
    with pytest.raises(DlzoError, match="lr=0.05"):
        train(tiny_llama(), Selection(layers=[1]), lm_loss_fn(model), TRAIN, changed, out_dir=tmp_path, resume=True,
              progress=False)
    with pytest.raises(DlzoError, match="selection"):
        train(tiny_llama(), Selection(layers=[2]), lm_loss_fn(model), TRAIN, QUICK, out_dir=tmp_path, resume=True,
              progress=False)
    with pytest.raises(DlzoError, match="does not match"):
        replay(tiny_llama(), Selection(layers=[2]), tmp_path / "log.jsonl")
    with pytest.raises(DlzoError, match="fewer than one batch"):
        train(tiny_llama(), Selection(layers=[1]), lm_loss_fn(model), TRAIN[:4], QUICK, progress=False)


def test_replay_takes_the_dominant_layer_and_ranked_channels_from_the_log(tmp_path):
    from dlzo import load_model

    _, tokenizer = load_model("smollm2-135m")
    vocab = dict(vocab_size=len(tokenizer))
    model = tiny_llama(**vocab)
    selection = Selection(layers="dominant", channels=ChannelMask(fraction=0.1, mode="frozen"))
    train(model, selection, lm_loss_fn(model), TRAIN, QUICK, out_dir=tmp_path, progress=False, tokenizer=tokenizer,
          dominant_layer=2)
    logged = read_log(tmp_path / "log.jsonl")[0]["selection"]
    assert logged["layers"] == [2] and len(logged["channels"]["2"]) == round(0.1 * 64)
    rebuilt = replay(tiny_llama(**vocab), selection, tmp_path / "log.jsonl")  # no tokenizer, no profiling
    trained = dict(model.named_parameters())
    assert all(torch.equal(t, trained[n]) for n, t in rebuilt.items())


class _Stop(Exception):
    """Stands in for a kill: raised from inside a run."""


LOG_ONLY = ZOConfig(steps=12, lr=2e-3, eps=1e-3, batch_size=8, optimizer="adam", directions=2, eval_every=4, seed=5)


def _log_only_run(out, resume=False, config=LOG_ONLY, stop_loss_after_eval=None, stop_at_eval=None):
    """A checkpoint-free run; optionally 'killed' some forwards after the n-th evaluation or at the n-th one."""
    model = tiny_llama()
    loss_fn, evaluate = lm_loss_fn(model), lm_eval_fn(DEV)
    state = {"evals": 0, "countdown": None}

    def loss(batch):
        if state["countdown"] is not None:
            state["countdown"] -= 1
            if state["countdown"] < 0:
                raise _Stop
        return loss_fn(batch)

    def eval_fn(m):
        state["evals"] += 1
        if state["evals"] == stop_at_eval:
            raise _Stop
        if state["evals"] == stop_loss_after_eval:
            state["countdown"] = 9  # 4 forwards per step: steps 5 and 6 finish, step 7 dies mid-way
        return evaluate(m)

    result = train(model, Selection(layers=[1, 2]), loss, TRAIN, config, eval_fn=eval_fn, out_dir=out, resume=resume,
                   progress=False, checkpoints=False)
    return result, model


def _steps(log):
    return [{k: r[k] for k in ("step", "seed", "g", "loss_plus", "loss_minus", "lr")}
            for r in read_log(log) if r["type"] == "step"]


@pytest.mark.parametrize("kill", ["mid_step", "mid_eval"])
def test_a_log_only_run_resumes_from_its_log_bit_identical(tmp_path, kill):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    uninterrupted, clean_model = _log_only_run(clean)
    assert sorted(p.name for p in clean.iterdir()) == ["log.jsonl", "result.json"]  # no tensors on disk
    with pytest.raises(_Stop):
        _log_only_run(killed, **({"stop_loss_after_eval": 2} if kill == "mid_step" else {"stop_at_eval": 3}))
    logged = _steps(killed / "log.jsonl")
    assert [r["step"] for r in logged] == list(range(1, 7 if kill == "mid_step" else 9))
    with (killed / "log.jsonl").open("a") as handle:
        handle.write('{"type": "step", "st')  # a line torn by the kill
    resumed, resumed_model = _log_only_run(killed, resume=True)
    assert all(torch.equal(a, b) for a, b in zip(resumed_model.parameters(), clean_model.parameters(), strict=True))
    assert resumed.evals == uninterrupted.evals and resumed.best_step == uninterrupted.best_step
    assert _steps(killed / "log.jsonl") == _steps(clean / "log.jsonl")
    assert [r["type"] for r in read_log(killed / "log.jsonl")].count("end") == 1


def test_resuming_a_log_with_other_settings_is_refused(tmp_path):
    with pytest.raises(_Stop):
        _log_only_run(tmp_path, stop_loss_after_eval=2)
    with pytest.raises(DlzoError, match="original settings"):
        _log_only_run(tmp_path, resume=True, config=ZOConfig(**{**LOG_ONLY.__dict__, "lr": 1e-3}))
