import json

import pytest
import torch
from helpers import tiny_model

from dlzo.calibration import BUILTIN_TEXTS, calibration_texts
from dlzo.errors import DlzoError
from dlzo.outliers import first_outlier_layer, profile_activations, rank_mlp_channels, top_mlp_channels

TEXTS = ["the cat sat on the mat.", "a longer sentence, with some punctuation!", "short"]


def plant_outlier(model, layer: int, dim: int, scale: float = 1e5):
    """Make one hidden dim of `layer`'s output huge by scaling that row of its MLP down-projection."""
    with torch.no_grad():
        model.model.layers[layer].mlp.down_proj.weight[dim].mul_(scale)


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_planted_outlier_is_found_in_exactly_that_layer(layer, byte_tokenizer):
    model = tiny_model("llama")
    clean = profile_activations(model, byte_tokenizer, TEXTS)
    assert first_outlier_layer(clean) is None  # a random tiny model has no massive activation
    plant_outlier(model, layer, dim=7)
    profile = profile_activations(model, byte_tokenizer, TEXTS)
    assert first_outlier_layer(profile) == layer
    assert profile.qualifying_layers()[0] == layer
    table = profile.table()
    assert int(table.loc[layer, "channel"]) == 7
    assert table.loc[layer, "top1"] > 100 and table.loc[layer, "ratio"] > 1000
    assert profile.top_hidden_dims(layer, k=1)["dim"].iloc[0] == 7
    if layer > 0:
        assert table.loc[layer - 1, "ratio"] < 1000


def test_profile_statistics_match_a_direct_computation(byte_tokenizer):
    model = tiny_model("llama")
    profile = profile_activations(model, byte_tokenizer, TEXTS, batch_size=2)
    # recompute sequence 1 (padded inside its batch) without padding, from output_hidden_states
    enc = byte_tokenizer([TEXTS[1]])
    with torch.no_grad():
        hidden = model(**enc, output_hidden_states=True).hidden_states
    h = hidden[2][0].abs()  # output of layer 1 (not the last layer, so not post-norm)
    row = profile.per_sequence.query("seq == 1 and layer == 1").iloc[0]
    top = h.flatten().topk(3).values
    assert row["top1"] == pytest.approx(float(top[0]), rel=1e-5)
    assert row["top3"] == pytest.approx(float(top[2]), rel=1e-5)
    assert row["median"] == pytest.approx(float(h.flatten().median()), rel=1e-5)
    assert row["seq_len"] == len(TEXTS[1].encode())


def test_thresholds_that_no_layer_meets_give_none(byte_tokenizer):
    model = tiny_model("llama")
    plant_outlier(model, 1, dim=3)
    profile = profile_activations(model, byte_tokenizer, TEXTS)
    assert profile.first_outlier_layer(min_abs=1e12) is None
    assert profile.first_outlier_layer(min_ratio=1e12, aggregate="min") is None
    with pytest.raises(DlzoError, match="non-negative"):
        profile.first_outlier_layer(min_abs=-1)
    with pytest.raises(DlzoError, match="aggregate"):
        profile.first_outlier_layer(aggregate="median")
    summary = json.loads(profile.to_json())
    assert summary["first_outlier_layer"] == 1 and len(summary["layers"]) == 4


def test_empty_text_list_is_one_sentence(byte_tokenizer):
    with pytest.raises(DlzoError, match="calibration text list is empty"):
        profile_activations(tiny_model("llama"), byte_tokenizer, [])
    with pytest.raises(DlzoError, match="neither a list of texts nor an existing text file"):
        calibration_texts("/no/such/file.txt")


def test_calibration_sources(tmp_path):
    assert calibration_texts() == list(BUILTIN_TEXTS) and len(BUILTIN_TEXTS) == 10
    f = tmp_path / "t.txt"
    f.write_text("first passage\nstill first\n\nsecond passage\n")
    assert calibration_texts(str(f)) == ["first passage\nstill first", "second passage"]
    assert calibration_texts(["a", " ", "b"], n=1) == ["a"]


def test_mlp_channel_ranking_finds_planted_channel(byte_tokenizer):
    model = tiny_model("llama")
    with torch.no_grad():  # make intermediate channel 5 of layer 2 dominant
        model.model.layers[2].mlp.up_proj.weight[5].mul_(50)
        model.model.layers[2].mlp.gate_proj.weight[5].mul_(50)
    ranking = rank_mlp_channels(model, byte_tokenizer, 2, TEXTS)
    assert int(ranking["channel"].iloc[0]) == 5 and len(ranking) == 64
    assert top_mlp_channels(model, byte_tokenizer, 2, fraction=0.01, texts=TEXTS) == [5]
    with pytest.raises(DlzoError, match="out of range"):
        rank_mlp_channels(model, byte_tokenizer, 9, TEXTS)


@pytest.mark.real_model
def test_smollm2_strict_rule_layer_11_loose_rule_layer_2(smollm2):
    model, tokenizer = smollm2
    profile = profile_activations(model, tokenizer)
    assert profile.first_outlier_layer() == 11  # strict: top-1 > 100 and ratio > 1000
    assert profile.first_outlier_layer(min_abs=100, min_ratio=500) == 2  # the looser rule
    table = profile.table()
    assert int(table.loc[11, "channel"]) == 507 and int(table.loc[11, "token_pos"]) == 0
    assert table.loc[11, "top1"] > 10_000
