"""``dlzo train`` end to end on a tiny model with a real tokenizer and a few SST-2 lines."""

import json

import pytest
from zo_helpers import saved_tiny_sst2_setup

from dlzo.cli import main
from dlzo.runfiles import read_log

SENTENCES = ["a gorgeous , witty film", "dull and lifeless", "one of the year 's best", "a waste of time",
             "charming and funny", "painfully slow", "a triumph", "not worth the ticket"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return saved_tiny_sst2_setup(tmp_path_factory.mktemp("cli"), SENTENCES)


def args(root, out, *extra):
    return ["train", "--model", str(root / "model"), "--data-dir", str(root / "data"), "--num-train", "32",
            "--num-dev", "8", "--num-test", "8", "--batch-size", "4", "--lr", "1e-3", "--threads", "1", "--no-progress",
            "--out", str(out), *extra]


def test_train_resume_and_first_order(setup, capsys):
    out = setup / "run"
    assert main(args(setup, out, "--select", "1,2", "--steps", "6", "--eval-every", "3", "--optimizer", "adam")) == 0
    printed = capsys.readouterr().out
    assert "zero-shot: dev loss" in printed and "returned step" in printed
    assert "test: accuracy" in printed and json.loads((out / "test.json").read_text())["n"] == 8
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 6 and [e["step"] for e in result["evals"]] == [0, 3, 6]
    assert main(args(setup, out, "--select", "1,2", "--steps", "9", "--eval-every", "3", "--optimizer", "adam",
                     "--resume")) == 0
    steps = [r["step"] for r in read_log(out / "log.jsonl") if r["type"] == "step"]
    assert steps == list(range(1, 10))
    assert main(args(setup, setup / "fo", "--select", "1", "--method", "fo", "--steps", "3")) == 0
    assert main(args(setup, setup / "fo_epochs", "--select", "1", "--method", "fo", "--epochs", "2")) == 0
    fo_evals = json.loads((setup / "fo_epochs" / "result.json").read_text())["evals"]
    assert [e["step"] for e in fo_evals] == [0, 8, 16]  # 32 examples at batch 4: 8 steps an epoch, eval after each
    assert main(args(setup, setup / "lora", "--select", "all", "--lora-r", "2", "--steps", "2")) == 0
    assert main(args(setup, setup / "paired", "--select", "2", "--steps", "2", "--paired-passes", "--cuda-graphs")) == 0
    header = read_log(setup / "paired" / "log.jsonl")[0]
    assert header["config"]["paired_passes"] is True and header["config"]["cuda_graphs"] is True
    assert read_log(setup / "lora" / "log.jsonl")[0]["selection"]["num_parameters"] == 4 * (2 * 16 + 16 * 2 + 2 * 16 + 8 * 2)  # 4 layers, r=2 on q (16->16) and v (16->8)


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--select", "9"], "Layer 9 is out of range"),
        (["--select", "one"], "--select 'one' is not valid"),
        (["--select", "all", "--no-norms"], "apply inside chosen layers"),
        (["--select", "1", "--modules", "ffn"], "Unknown module group 'ffn'"),
        (["--task", "rtee"], "Unknown task 'rtee'"),
        (["--select", "1", "--lr", "-1"], "learning rate"),
        (["--select", "1", "--epochs", "0"], "positive whole number of passes"),
    ],
)
def test_train_errors_are_one_sentence(setup, capsys, extra, match):
    assert main(args(setup, setup / "err", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and match in err[-1]
