import json

import pytest

from dlzo import models
from dlzo.errors import DlzoError
from dlzo.models import OFFLINE_MODELS, OfflineModel, load_model, resolve_dtype


def test_unknown_model_key_suggests_the_right_one():
    with pytest.raises(DlzoError, match="Unknown model key 'smollm2-136m'; did you mean 'smollm2-135m'"):
        load_model("smollm2-136m")


def test_missing_local_path_is_one_sentence(tmp_path):
    with pytest.raises(DlzoError, match="does not exist"):
        load_model(str(tmp_path / "nope.gguf"))
    with pytest.raises(DlzoError, match="has no config.json"):
        load_model(str(tmp_path))


def test_unreachable_hub_id_names_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DlzoError) as info:
        load_model("nobody-here/not-a-model-xyz")
    message = str(info.value)
    assert message.startswith("Could not load model 'nobody-here/not-a-model-xyz'")
    assert "smollm2-135m" in message and "HF_HUB_OFFLINE=1" in message


def test_missing_package_gives_the_pip_command(monkeypatch):
    fake = OfflineModel(key="fake-1m", description="", parts=(("dlzo-no-such-dist", "x.gguf"),), sha256="0",
                        install="pip install dlzo-no-such-dist==1.0")
    monkeypatch.setitem(OFFLINE_MODELS, "fake-1m", fake)
    with pytest.raises(DlzoError, match=r"not installed: run `pip install dlzo-no-such-dist==1.0`"):
        load_model("fake-1m")


def test_every_offline_key_has_an_install_command():
    for key, spec in OFFLINE_MODELS.items():
        assert spec.install.startswith("pip install"), key
        assert len(spec.sha256) == 64, key


def test_dtype_names():
    import torch

    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype(None) == "auto"
    with pytest.raises(DlzoError, match="Unknown dtype"):
        resolve_dtype("float8")


@pytest.mark.real_model
def test_default_model_loads_from_the_safetensors_cache(smollm2):
    model, tokenizer = smollm2
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert tokenizer.pad_token is not None and not model.training
    gguf = models.offline_gguf_path("smollm2-135m")
    folder = models.cache_dir() / "models" / models._sha256_of(gguf)[:24]
    config = json.loads((folder / "config.json").read_text())
    assert config["dlzo_source"]["sha256"] == OFFLINE_MODELS["smollm2-135m"].sha256
    assert "quantization_config" not in config


def test_the_gguf_conversion_bar_follows_the_progress_switch():
    # transformers' GGUF loader calls its module's own tqdm, which hf_logging.disable_progress_bar() misses
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    with models._gguf_conversion_bar(progress=False):
        assert gguf_utils.tqdm(range(3)).disable
    assert gguf_utils.tqdm is original
    with models._gguf_conversion_bar(progress=True):
        assert gguf_utils.tqdm is original
    with pytest.raises(RuntimeError), models._gguf_conversion_bar(progress=False):
        raise RuntimeError("a failed conversion")
    assert gguf_utils.tqdm is original  # restored even then


def test_layer_count_reads_the_config_without_loading_weights(tmp_path, monkeypatch):
    from transformers import AutoConfig
    from zo_helpers import forbid_weight_loading, tiny_llama

    from dlzo.layers import num_layers

    model = tiny_llama(num_hidden_layers=5)
    model.save_pretrained(tmp_path / "five")
    assert num_layers(model) == 5
    forbid_weight_loading(monkeypatch)
    assert models.layer_count(str(tmp_path / "five")) == 5
    # a multimodal config counts its text model's layers (Gemma 3's text_config, as in get_text_config)
    config = AutoConfig.for_model("gemma3", text_config={"num_hidden_layers": 7})
    config.save_pretrained(tmp_path / "gemma3")
    assert models.layer_count(str(tmp_path / "gemma3")) == 7


def test_layer_count_errors_are_one_sentence(tmp_path, monkeypatch):
    with pytest.raises(DlzoError, match="Unknown model key 'smollm2-136m'; did you mean 'smollm2-135m'"):
        models.layer_count("smollm2-136m")
    with pytest.raises(DlzoError, match="has no config.json"):
        models.layer_count(str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DlzoError, match="^Could not load model 'nobody-here/not-a-model-xyz'"):
        models.layer_count("nobody-here/not-a-model-xyz")


@pytest.mark.real_model
def test_layer_count_of_the_default_model_matches_its_loaded_layers(monkeypatch):
    from zo_helpers import forbid_weight_loading

    load_model("smollm2-135m")  # the GGUF is converted once into the cache; layer_count reads that config
    forbid_weight_loading(monkeypatch)
    assert models.layer_count("smollm2-135m") == 30
