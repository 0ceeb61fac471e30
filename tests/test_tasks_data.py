"""Loading: local jsonl/parquet, the hub path, and the one-sentence errors (unknown task, missing folder,
malformed rows with file and line)."""

import json

import pytest

from dlzo.errors import DlzoError
from dlzo.tasks import get_task, load_task_data, read_split

SST2_ROWS = [{"idx": i, "sentence": f"sentence {i} ", "label": i % 2} for i in range(30)]


def write_jsonl(path, rows, extra_lines=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(extra_lines))


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(DlzoError, match="Unknown task 'sst3'; valid tasks are sst2, rte, cb, boolq"):
        get_task("sst3")
    assert get_task(" SST2 ").name == "sst2"


def test_missing_data_dir(tmp_path):
    with pytest.raises(DlzoError, match="does not exist.*DLZO_DATA_DIR"):
        load_task_data("sst2", data_dir=tmp_path / "nowhere")


def test_missing_task_folder(tmp_path):
    with pytest.raises(DlzoError, match=r"no folder 'rte'; add rte/validation.jsonl .*set no data directory"):
        load_task_data("rte", data_dir=tmp_path)


def test_missing_validation_file(tmp_path):
    write_jsonl(tmp_path / "sst2" / "train.jsonl", SST2_ROWS)
    with pytest.raises(DlzoError, match="has no validation.jsonl or validation.parquet"):
        load_task_data("sst2", data_dir=tmp_path)


def test_invalid_json_names_file_and_line(tmp_path):
    write_jsonl(tmp_path / "sst2" / "validation.jsonl", SST2_ROWS[:3], extra_lines=['{"sentence": "x", \n'])
    with pytest.raises(DlzoError, match=r"sst2/validation.jsonl, line 4: invalid JSON"):
        load_task_data("sst2", data_dir=tmp_path)


@pytest.mark.parametrize("row, reason", [
    ({"idx": 0, "label": 1}, "missing field 'sentence'"),
    ({"sentence": "good", "label": 2}, "bad label 2"),
    ({"sentence": "good", "label": "positive"}, "bad label 'positive'"),
    ({"sentence": "good", "label": True}, "bad label True"),
    ({"sentence": 7, "label": 0}, "field 'sentence' must be a string"),
])
def test_malformed_row_names_file_line_and_reason(tmp_path, row, reason):
    write_jsonl(tmp_path / "sst2" / "validation.jsonl", [*SST2_ROWS[:5], row])
    with pytest.raises(DlzoError, match=rf"validation.jsonl, line 6: {reason}"):
        load_task_data("sst2", data_dir=tmp_path)


@pytest.mark.parametrize("name, row, reason", [
    ("copa", {"premise": "p.", "choice1": "a", "choice2": "b", "question": "why", "label": 0},
     "'cause' or 'effect'"),
    ("squad", {"title": "t", "context": "c", "question": "q", "answers": {"text": []}}, "no gold answer"),
    ("drop", {"passage": "p", "question": "q"}, "missing field answers_spans.spans"),
])
def test_task_specific_checks(tmp_path, name, row, reason):
    write_jsonl(tmp_path / name / "validation.jsonl", [row])
    with pytest.raises(DlzoError, match=f"line 1: .*{reason}"):
        read_split(get_task(name), "validation", data_dir=tmp_path)


def test_env_var_and_missing_train_fallback(tmp_path, monkeypatch):
    rows = [{"sentence": f"s{i}", "label": i % 2} for i in range(1300)]
    write_jsonl(tmp_path / "sst2" / "validation.jsonl", rows)
    monkeypatch.setenv("DLZO_DATA_DIR", str(tmp_path))
    data = load_task_data("sst2", num_train=200, num_dev=50)
    # the test side keeps MeZO's 1000 examples; train/dev come from the other 300
    assert data.sizes == (200, 50, 1000) and data.source == str(tmp_path / "sst2")
    assert not {r["sentence"] for r in data.test} & {r["sentence"] for r in data.train + data.dev}
    assert data.deviations == ["no train split: train/dev drawn from validation examples not used for test"]
    capped = load_task_data("sst2", num_train=200, num_dev=50, num_test=10)
    assert capped.test == data.test[:10] and capped.train == data.train
    assert capped.deviations[1] == "test = 10 examples (MeZO: 1000)"


def test_parquet_split(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "sst2").mkdir()
    pq.write_table(pa.Table.from_pylist(SST2_ROWS), tmp_path / "sst2" / "validation.parquet")
    rows, _ = read_split(get_task("sst2"), "validation", data_dir=tmp_path)
    assert rows == SST2_ROWS
    assert get_task("sst2").load_split("validation", data_dir=tmp_path) == SST2_ROWS


def test_hub_failure_is_one_sentence(monkeypatch):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'glue' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.delenv("DLZO_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(DlzoError) as info:
        load_task_data("sst2")
    message = str(info.value)
    assert message.startswith("Could not load sst2: no local data directory is set")
    assert "glue/sst2 could not be loaded (Couldn't reach 'glue' on the Hub" in message
    assert "DLZO_DATA_DIR" in message and "\n" not in message


def test_hub_rows_are_used_when_no_data_dir_is_set(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, config, split):
        calls.append((path, config, split))
        return datasets.Dataset.from_list(SST2_ROWS)

    monkeypatch.delenv("DLZO_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_task_data("sst2", num_train=10, num_dev=5)
    assert calls == [("glue", "sst2", "validation"), ("glue", "sst2", "train")]
    assert data.source == "hub:glue/sst2" and data.sizes == (10, 5, 30)
