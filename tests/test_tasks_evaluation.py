"""evaluate / evaluate_tasks and the ``dlzo eval`` command, end to end on a tiny model."""

import json

import pytest
import torch
from tasks_support import shared_data, smollm2_tokenizer, tiny_model

from dlzo.cli import main
from dlzo.evaluation import evaluate, evaluate_tasks
from dlzo.losses import make_loss_fn
from dlzo.metrics import exact_match, f1_score
from dlzo.scoring import score_candidates_one_by_one
from dlzo.tasks import load_task_data


@pytest.mark.parametrize("name", ["cb", "copa"])
@pytest.mark.parametrize("calibrate", [False, True])
def test_evaluate_candidate_tasks(name, calibrate):
    model, tokenizer = tiny_model(), smollm2_tokenizer()
    data = load_task_data(name, data_dir=shared_data())
    examples = data.test[:7]
    result = evaluate(model, tokenizer, data.task, examples, batch_size=3, calibrate=calibrate)
    reference = score_candidates_one_by_one(model, tokenizer, data.task, examples, calibrate=calibrate)
    assert result["predictions"] == reference.argmax(1).tolist()  # input order, despite length sorting
    labels = [data.task.label(ex) for ex in examples]
    correct = sum(p == y for p, y in zip(result["predictions"], labels, strict=True))
    assert result["score"] == pytest.approx(100 * correct / 7)
    assert result["n"] == 7 and result["metric"] == "accuracy" and result["calibrated"] is calibrate
    assert sum(result["prediction_shares"].values()) == pytest.approx(1.0)
    with torch.inference_mode():
        whole_batch_loss = make_loss_fn(model, tokenizer, data.task)(examples).item()
    assert result["loss"] == pytest.approx(whole_batch_loss, abs=1e-5)  # the training loss on these examples


def test_evaluate_generation_task():
    model, tokenizer = tiny_model(), smollm2_tokenizer()
    data = load_task_data("squad", data_dir=shared_data())
    examples = data.test[:3]
    result = evaluate(model, tokenizer, data.task, examples, batch_size=2)
    golds = [data.task.answers(ex) for ex in examples]
    assert result["score"] == pytest.approx(
        100 * sum(f1_score(p, g) for p, g in zip(result["predictions"], golds, strict=True)) / 3)
    assert result["em"] == pytest.approx(
        100 * sum(exact_match(p, g) for p, g in zip(result["predictions"], golds, strict=True)) / 3)
    with torch.inference_mode():
        expected_loss = make_loss_fn(model, tokenizer, data.task)(examples).item()
    assert result["loss"] == pytest.approx(expected_loss, abs=1e-5)
    assert evaluate(model, tokenizer, data.task, examples, with_loss=False)["loss"] is None


def test_evaluate_tasks_table():
    model, tokenizer = tiny_model(), smollm2_tokenizer()
    table = evaluate_tasks(model, tokenizer, ["wsc", "boolq"], data_dir=shared_data(), num_test={"boolq": 4},
                           batch_size=8)
    assert table["task"].tolist() == ["wsc", "boolq"] and table["n"].tolist() == [104, 4]
    assert table.loc[0, "deviations"] == ""
    assert table.loc[1, "deviations"].startswith("no train split")
    assert "test = 4 examples (MeZO: 1000)" in table.loc[1, "deviations"]
    assert len(table.attrs["results"][0]["predictions"]) == 104


@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_model().save_pretrained(folder)
    smollm2_tokenizer().save_pretrained(folder)
    return folder


def test_eval_command_end_to_end(tiny_model_folder, tmp_path, capsys):
    out = tmp_path / "zeroshot.json"
    code = main(["eval", "--model", str(tiny_model_folder), "--task", "copa,squad", "--num-test", "3",
                 "--data-dir", str(shared_data()), "--batch-size", "2", "--json", str(out), "--no-progress",
                 "--threads", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "copa" in printed and "squad" in printed and "accuracy" in printed and "f1" in printed
    record = json.loads(out.read_text())
    assert record["num_test"] == 3 and record["device"] == "cpu"
    by_task = {r["task"]: r for r in record["results"]}
    assert by_task["copa"]["n"] == by_task["squad"]["n"] == 3
    assert by_task["squad"]["deviations"][0].startswith("no train split")
    assert "test = 3 examples (MeZO: 100)" in by_task["copa"]["deviations"]


@pytest.mark.parametrize("args, message", [
    (["--task", "sst3"], "error: Unknown task 'sst3'"),
    (["--task", "sst2", "--num-test", "squad=lots"], "error: --num-test 'squad=lots' is not N or task=N"),
    (["--task", "sst2", "--num-test", "0"], "error: --num-test needs positive numbers"),
])
def test_eval_command_errors_are_one_sentence(args, message, capsys):
    assert main(["eval", *args]) == 2
    assert capsys.readouterr().err.startswith(message)
