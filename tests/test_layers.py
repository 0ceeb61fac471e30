import pytest
import torch
import transformers
from helpers import FAMILIES, tiny_model

from dlzo.errors import DlzoError
from dlzo.layers import check_layer, decoder_layers, layer_prefix, num_layers, parameter_groups


@pytest.mark.parametrize("family", FAMILIES)
def test_decoder_layers_resolves_every_family(family):
    model = tiny_model(family)
    layers = decoder_layers(model)
    assert isinstance(layers, torch.nn.ModuleList)
    assert len(layers) == num_layers(model) == 4
    prefix = layer_prefix(model, 2)
    names = [n for n, _ in model.named_parameters() if n.startswith(prefix)]
    assert names, f"no parameters under {prefix}"
    assert all(p is not None for p in layers[2].parameters())
    groups = parameter_groups(model, 2)
    assert set(groups) == set(names)
    assert {"attention", "mlp", "norm"} <= set(groups.values()), groups


def test_qwen3_attention_norms_count_as_norms():
    groups = parameter_groups(tiny_model("qwen3"), 0)
    assert groups["model.layers.0.self_attn.q_norm.weight"] == "norm"
    assert groups["model.layers.0.self_attn.q_proj.weight"] == "attention"
    assert groups["model.layers.0.mlp.down_proj.weight"] == "mlp"


def test_layer_index_out_of_range_is_one_sentence():
    model = tiny_model("llama")
    assert check_layer(model, -1) == 3
    with pytest.raises(DlzoError, match=r"Layer 4 is out of range: this model has 4 decoder layers \(0\.\.3\)"):
        check_layer(model, 4)
    with pytest.raises(DlzoError, match="not an integer"):
        check_layer(model, "2")


def test_non_decoder_model_names_supported_families():
    torch.manual_seed(0)
    bert = transformers.BertModel(transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                          num_attention_heads=4, intermediate_size=64))
    with pytest.raises(DlzoError) as info:
        decoder_layers(bert)
    message = str(info.value)
    assert "'bert' is not a supported decoder family" in message
    assert "llama" in message and "gpt_neox" in message and "\n" not in message


def test_peft_wrapped_model_resolves():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model("llama"), LoraConfig(r=2, target_modules=["q_proj"]))
    assert len(decoder_layers(model)) == 4
    assert layer_prefix(model, 1).endswith("model.layers.1.")
    groups = parameter_groups(model, 1)
    lora = [n for n in groups if "lora_A" in n]
    assert lora and all(groups[n] == "attention" for n in lora)
