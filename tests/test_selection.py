"""Selection: what each declarative selection resolves to, and the one-sentence errors."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from zo_helpers import tiny_llama

from dlzo import DlzoError
from dlzo.selection import ChannelMask, LoraSpec, Selection


def short(name: str) -> str:
    return name.split("model.", 1)[-1] if "layers" in name else name


def test_whole_model_is_every_parameter_and_tied_weights_count_once():
    model = tiny_llama(tie_word_embeddings=True)
    selected = Selection().apply(model)
    assert selected.names == [n for n, _ in model.named_parameters()]
    assert "lm_head.weight" not in selected.names  # tied to the embedding, listed once
    assert selected.num_parameters == sum(p.numel() for p in model.parameters())
    assert selected.layers is None


def test_layers_modules_and_norms_pick_the_right_tensors():
    model = tiny_llama()
    names = [short(n) for n in Selection(layers=[1, -1]).apply(model).names]
    assert names[0] == "layers.1.self_attn.q_proj.weight" and len(names) == 18
    assert {n.split(".")[1] for n in names} == {"1", "3"}
    mlp = [short(n) for n in Selection(layers=2, modules=("mlp",), norms=False).apply(model).names]
    assert mlp == [f"layers.2.mlp.{m}.weight" for m in ("gate_proj", "up_proj", "down_proj")]
    attn = [short(n) for n in Selection(layers=[0], modules="attention").apply(model).names]
    assert attn == [f"layers.0.self_attn.{m}_proj.weight" for m in "qkvo"] + [
        "layers.0.input_layernorm.weight", "layers.0.post_attention_layernorm.weight"]
    norms_only = Selection(layers=[0], modules=(), norms=True).apply(model).names
    assert [short(n) for n in norms_only] == ["layers.0.input_layernorm.weight",
                                              "layers.0.post_attention_layernorm.weight"]


def test_unselected_parameters_are_frozen():
    model = tiny_llama()
    selected = Selection(layers=[2]).apply(model)
    chosen = set(selected.names)
    for name, param in model.named_parameters():
        assert param.requires_grad == (name in chosen)


def test_dominant_uses_the_given_layer_and_needs_a_tokenizer_otherwise():
    model = tiny_llama()
    assert Selection(layers="dominant").apply(model, dominant_layer=2).layers == [2]
    with pytest.raises(DlzoError, match="tokenizer"):
        Selection(layers="dominant").apply(model)


def test_channel_masks_llama_rows_of_gate_up_and_columns_of_down():
    model = tiny_llama()
    channels = [3, 7, 60]
    only = Selection(layers=[1], channels=ChannelMask(channels=channels)).apply(model)
    masks = {short(s.name): s.mask for s in only.params}
    assert set(masks) == {"layers.1.mlp.gate_proj.weight", "layers.1.mlp.up_proj.weight",
                          "layers.1.mlp.down_proj.weight"}
    for key in ("layers.1.mlp.gate_proj.weight", "layers.1.mlp.up_proj.weight"):
        rows = masks[key].any(dim=1).nonzero().flatten().tolist()
        assert rows == channels and masks[key][channels].all()
    down = masks["layers.1.mlp.down_proj.weight"]
    assert down.any(dim=0).nonzero().flatten().tolist() == channels and down[:, channels].all()
    assert only.num_parameters == 3 * len(channels) * 32

    frozen = Selection(layers=[1], channels=ChannelMask(channels=channels, mode="frozen")).apply(tiny_llama())
    fmasks = {short(s.name): s.mask for s in frozen.params}
    assert len(fmasks) == 9  # the whole layer
    assert torch.equal(fmasks["layers.1.mlp.down_proj.weight"], ~down)
    assert fmasks["layers.1.self_attn.q_proj.weight"] is None
    assert frozen.num_parameters == Selection(layers=[1]).apply(tiny_llama()).num_parameters - only.num_parameters


def test_channel_masks_gpt2_conv1d_are_transposed_and_include_the_input_bias():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_inner=32, n_positions=32))
    selected = Selection(layers=[1], channels=ChannelMask(channels=[1, 5])).apply(model)
    masks = {s.name: s.mask for s in selected.params}
    assert set(masks) == {"transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_fc.bias",
                          "transformer.h.1.mlp.c_proj.weight"}
    c_fc = masks["transformer.h.1.mlp.c_fc.weight"]  # [in=16, out=32]: channels are columns
    assert c_fc.shape == (16, 32) and c_fc.any(dim=0).nonzero().flatten().tolist() == [1, 5]
    c_proj = masks["transformer.h.1.mlp.c_proj.weight"]  # [in=32, out=16]: channels are rows
    assert c_proj.any(dim=1).nonzero().flatten().tolist() == [1, 5]
    assert masks["transformer.h.1.mlp.c_fc.bias"].nonzero().flatten().tolist() == [1, 5]


def test_sparse_keeps_the_smallest_magnitudes_of_each_matrix():
    model = tiny_llama()
    selected = Selection(sparse=0.25).apply(model)
    for s in selected.params:
        if s.param.ndim < 2:
            assert s.mask is None
            continue
        assert s.count == round(0.25 * s.param.numel())
        magnitude = s.param.detach().abs()
        assert magnitude[s.mask].max() <= magnitude[~s.mask].min()


def test_sparse_inside_a_channel_mask_keeps_a_fraction_of_the_masked_entries():
    selected = Selection(layers=[0], channels=ChannelMask(channels=list(range(8))), sparse=0.5).apply(tiny_llama())
    for s in selected.params:
        assert s.count == 8 * 32 // 2


def test_lora_selects_only_adapters_of_the_chosen_layers_deterministically():
    state = torch.random.get_rng_state()
    first = Selection(layers=[2], lora=LoraSpec(r=2, alpha=4)).apply(tiny_llama())
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    assert all("lora_" in n and ".layers.2." in n for n in first.names) and len(first.names) == 4
    second = Selection(layers=[2], lora=LoraSpec(r=2, alpha=4)).apply(tiny_llama())
    assert all(torch.equal(a.param, b.param) for a, b in zip(first.params, second.params, strict=True))
    trainable = {n for n, p in first.model.named_parameters() if p.requires_grad}
    assert trainable == set(first.names)
    everywhere = Selection(lora=LoraSpec(r=2)).apply(tiny_llama())
    assert len(everywhere.names) == 4 * 4


def test_selection_round_trips_through_a_dict():
    for selection in (Selection(), Selection(layers=[1, 3], modules=("mlp",), norms=False),
                      Selection(layers="dominant", channels=ChannelMask(0.05, "frozen", {1: [2, 3]}), sparse=0.5),
                      Selection(layers=[2], lora=LoraSpec(r=4, targets=["q_proj"]))):
        assert Selection.from_dict(selection.to_dict()) == selection


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Selection(layers=[4]).apply(tiny_llama()), "out of range"),
        (lambda: Selection(layers=[-5]).apply(tiny_llama()), "out of range"),
        (lambda: Selection(layers=[1], modules=("ffn",)), "Unknown module group"),
        (lambda: Selection(layers=[1], modules=(), norms=False).apply(tiny_llama()), "empty"),
        (lambda: Selection(layers=[]), "empty"),
        (lambda: Selection(layers="first"), "Unknown layer selection"),
        (lambda: Selection(modules=("mlp",)), "filters apply inside chosen layers"),
        (lambda: Selection(channels=ChannelMask(channels=[1])), "explicit layers"),
        (lambda: Selection(layers=[1], channels=ChannelMask(channels=[64])).apply(tiny_llama()), "0..63"),
        (lambda: Selection(layers=[1], channels=ChannelMask()).apply(tiny_llama()), "tokenizer"),
        (lambda: Selection(layers=[1], modules=("attention",), channels=ChannelMask(channels=[1])), "MLP"),
        (lambda: Selection(sparse=1.5), "sparse fraction"),
        (lambda: Selection(layers=[1], sparse=0.5, lora=LoraSpec()), "LoRA"),
        (lambda: Selection(lora=LoraSpec(targets=("nothing_here",))).apply(tiny_llama()), "LoraSpec.targets"),
    ],
)
def test_selection_errors_are_one_sentence(make, match):
    with pytest.raises(DlzoError, match=match) as info:
        make()
    message = str(info.value)
    assert message.endswith(".") and "\n" not in message


@pytest.mark.real_model
def test_dominant_layer_of_smollm2_is_11():
    from dlzo import load_model

    model, tokenizer = load_model("smollm2-135m")
    selected = Selection(layers="dominant").apply(model, tokenizer)
    assert selected.layers == [11]
    assert all(".layers.11." in n for n in selected.names) and len(selected.names) == 9
