"""MeZO's sampling: sizes per task, MeZO's exact permutation, determinism, disjointness, and the fallback
(BoolQ, SQuAD) that keeps passages / articles out of both sides."""

import json

import numpy as np
import pytest
from tasks_support import shared_data

from dlzo.tasks import load_task_data

# (train, dev, test) with MeZO's defaults. CB (250 train rows) and COPA (400) use 100 dev, so they train on
# the other 150 and 300; WSC (554) keeps 500 dev and trains on 54.
SIZES = {"sst2": (1000, 500, 872), "rte": (1000, 500, 277), "cb": (150, 100, 56),
         "boolq": (1000, 500, 1000), "wsc": (54, 500, 104), "multirc": (1000, 500, 1000),
         "copa": (300, 100, 100), "squad": (1000, 500, 1000), "drop": (1000, 500, 1000)}


def key(row: dict):
    return json.dumps(row, sort_keys=True)


@pytest.mark.parametrize("name", list(SIZES))
def test_sizes_and_disjoint_splits(name):
    data = load_task_data(name, seed=0, data_dir=shared_data())
    assert data.sizes == SIZES[name]
    train, dev, test = ({key(r) for r in split} for split in (data.train, data.dev, data.test))
    assert len(train) == len(data.train) and len(dev) == len(data.dev)
    assert not train & dev and not train & test and not dev & test


def test_mezo_permutation_exactly():
    """The same rows as MeZO's sample_subset: np.random.seed(s); permutation(n)[:num] (global RNG)."""
    data = load_task_data("rte", seed=3, data_dir=shared_data())
    train_rows = [json.loads(line) for line in (shared_data() / "rte" / "train.jsonl").open()]
    valid_rows = [json.loads(line) for line in (shared_data() / "rte" / "validation.jsonl").open()]
    state = np.random.get_state()
    try:
        np.random.seed(3)
        picked = [train_rows[i] for i in np.random.permutation(len(train_rows)).tolist()[:1500]]
        np.random.seed(3)
        test = [valid_rows[i] for i in np.random.permutation(len(valid_rows)).tolist()[:1000]]
    finally:
        np.random.set_state(state)
    assert data.train == picked[:-500] and data.dev == picked[-500:] and data.test == test


def test_sampling_leaves_the_global_numpy_rng_alone():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    load_task_data("cb", seed=5, data_dir=shared_data())
    assert np.random.rand() == expected


def test_same_seed_same_examples_other_seed_other_examples():
    a = load_task_data("copa", seed=0, data_dir=shared_data())
    b = load_task_data("copa", seed=0, data_dir=shared_data())
    c = load_task_data("copa", seed=1, data_dir=shared_data())
    assert (a.train, a.dev, a.test) == (b.train, b.dev, b.test)
    assert a.train != c.train and a.test != c.test


def test_num_test_caps_a_prefix_of_the_full_test_and_is_labelled():
    full = load_task_data("sst2", seed=0, data_dir=shared_data())
    capped = load_task_data("sst2", seed=0, data_dir=shared_data(), num_test=50)
    assert capped.test == full.test[:50]
    assert full.deviations == [] and capped.deviations == ["test = 50 examples (MeZO: 872)"]


def test_wsc_split_is_switchable():
    mezo = load_task_data("wsc", data_dir=shared_data())
    other = load_task_data("wsc", data_dir=shared_data(), wsc_mezo_split=False)
    assert mezo.sizes == (54, 500, 104) and mezo.deviations == []
    assert other.sizes == (454, 100, 104)
    assert other.deviations == ["WSC dev = 100 (MeZO keeps 500 dev, 54 train)"]


def test_boolq_fallback_is_flagged_and_passage_disjoint():
    data = load_task_data("boolq", seed=0, data_dir=shared_data())
    assert data.deviations == ["no train split: train/dev drawn from validation passages not used for test"]
    test_passages = {r["passage"] for r in data.test}
    assert not test_passages & {r["passage"] for r in data.train + data.dev}


@pytest.mark.parametrize("seed", [0, 1])
def test_squad_fallback_is_flagged_and_article_disjoint(seed):
    data = load_task_data("squad", seed=seed, data_dir=shared_data())
    assert data.sizes == (1000, 500, 1000)
    assert data.deviations == ["no train split: train/dev drawn from validation articles not used for test"]
    assert not {r["title"] for r in data.test} & {r["title"] for r in data.train + data.dev}
    assert len({r["id"] for r in data.train + data.dev + data.test}) == 2500


def test_drop_subset_is_flagged():
    data = load_task_data("drop", data_dir=shared_data())
    assert len(data.deviations) == 1 and "not comparable with published DROP" in data.deviations[0]


def test_num_dev_zero_gives_no_dev():
    data = load_task_data("cb", data_dir=shared_data(), num_train=10, num_dev=0)
    assert data.sizes == (10, 0, 56)
