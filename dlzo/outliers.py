"""Massive-activation profiling and the first-outlier-layer rule.

Definition used throughout dlzo (after Sun et al. 2024, "Massive Activations in LLMs"):

* For each calibration sequence and each decoder layer ``l``, take the layer's OUTPUT ``h`` (the
  residual stream, read by a forward hook, not ``output_hidden_states`` whose last entry is post-norm),
  restricted to the sequence's real tokens. Record the three largest ``|h|`` (with the token position
  and hidden dim of the largest), the median ``|h|``, and the per-dim maximum over tokens.
* Aggregate over sequences: ``mean`` (Sun et al.: average top-k and median, ratio = mean top-1 /
  mean median) or ``min`` (the smallest per-sequence top-1 and ratio: the outlier must be in every text).
* A layer *has an activation outlier* when top-1 > ``min_abs`` and ratio > ``min_ratio``; the
  strict rule is ``min_abs=100, min_ratio=1000``. The *first outlier layer* is the lowest index
  (0-based, ``decoder_layers(model)[i]``) that qualifies.

All reductions run on the model's device inside the hook; only a handful of numbers per layer and
sequence (plus one ``hidden``-sized max vector) reach the host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .calibration import calibration_texts
from .errors import DlzoError
from .layers import check_layer, decoder_layers, family, layer_output
from .paths import atomic_write_text
from .progress import progress_bar

STRICT_RULE = {"min_abs": 100.0, "min_ratio": 1000.0}
LOOSE_RULE = {"min_abs": 100.0, "min_ratio": 500.0}
RATIO_SCAN = (100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0, 5000.0)


def input_device(model) -> torch.device:
    return model.get_input_embeddings().weight.device


def _batches(texts: list[str], batch_size: int):
    for start in range(0, len(texts), batch_size):
        yield start, texts[start : start + batch_size]


def _tokenize(tokenizer, texts: list[str], max_length: int):
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "right"  # causal models: real tokens keep their positions
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    finally:
        tokenizer.padding_side = old_side
    return enc


@dataclass
class ActivationProfile:
    """Per-sequence and per-layer massive-activation statistics of one model on one text set."""

    model_name: str
    num_layers: int
    hidden_size: int
    per_sequence: pd.DataFrame  # one row per (sequence, layer)
    channel_max: np.ndarray  # [sequences, layers, hidden]: max |h| over tokens per hidden dim
    texts: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per layer: mean top-1/2/3 and median (Sun et al.), ratios, min over sequences, location."""
        df = self.per_sequence
        grouped = df.groupby("layer")
        out = grouped[["top1", "top2", "top3", "median"]].mean()
        out["ratio"] = out["top1"] / out["median"]
        out["top1_min"] = grouped["top1"].min()
        out["ratio_min"] = grouped["ratio"].min()
        # location of the largest activation: the sequence where it is largest
        best = df.loc[grouped["top1"].idxmax()].set_index("layer")
        out["channel"] = best["channel"]
        out["token_pos"] = best["token_pos"]
        out["token"] = best["token"]
        out["channel_share"] = grouped["channel"].agg(lambda s: float((s == s.mode().iloc[0]).mean()))
        return out.reset_index()

    def qualifying_layers(self, min_abs: float = 100.0, min_ratio: float = 1000.0, aggregate: str = "mean"):
        if aggregate not in ("mean", "min"):
            raise DlzoError(f"Unknown aggregate {aggregate!r}; use 'mean' or 'min'.")
        if min_abs < 0 or min_ratio < 0:
            raise DlzoError("Outlier thresholds must be non-negative numbers.")
        t = self.table()
        top, ratio = (t["top1"], t["ratio"]) if aggregate == "mean" else (t["top1_min"], t["ratio_min"])
        return [int(i) for i in t.loc[(top > min_abs) & (ratio > min_ratio), "layer"]]

    def first_outlier_layer(self, min_abs: float = 100.0, min_ratio: float = 1000.0, aggregate: str = "mean"):
        """The first layer whose output has an activation outlier, or ``None`` when no layer qualifies."""
        layers = self.qualifying_layers(min_abs, min_ratio, aggregate)
        return layers[0] if layers else None

    def threshold_scan(self, ratios=RATIO_SCAN, min_abs: float = 100.0) -> pd.DataFrame:
        """Which layer the rule picks as the ratio threshold varies (both aggregations)."""
        rows = []
        for r in ratios:
            rows.append(
                {
                    "min_abs": min_abs,
                    "min_ratio": r,
                    "first_layer_mean": self.first_outlier_layer(min_abs, r, "mean"),
                    "first_layer_min": self.first_outlier_layer(min_abs, r, "min"),
                }
            )
        return pd.DataFrame(rows).astype({"first_layer_mean": "Int64", "first_layer_min": "Int64"})

    def top_hidden_dims(self, layer: int, k: int = 5) -> pd.DataFrame:
        """Hidden dims of ``layer``'s output ranked by max |h| over tokens (mean over sequences)."""
        if not 0 <= layer < self.num_layers:
            raise DlzoError(f"Layer {layer} is out of range: the profile has layers 0..{self.num_layers - 1}.")
        scores = self.channel_max[:, layer, :].mean(axis=0)
        order = np.argsort(-scores, kind="stable")[:k]
        return pd.DataFrame({"dim": order, "max_abs": scores[order]})

    def summary(self, strict: dict | None = None, loose: dict | None = None) -> dict:
        strict = strict or STRICT_RULE
        loose = loose or LOOSE_RULE
        return {
            "model": self.model_name,
            "num_layers": self.num_layers,
            "num_texts": len(self.texts),
            "strict_rule": strict,
            "first_outlier_layer": self.first_outlier_layer(**strict),
            "loose_rule": loose,
            "first_outlier_layer_loose": self.first_outlier_layer(**loose),
        }

    def to_json(self, path: str | Path | None = None, strict: dict | None = None, loose: dict | None = None) -> str:
        """Serialise the profile (summary, layer table, threshold scan, per-sequence rows); written atomically."""
        payload = {
            **self.summary(strict, loose),
            "hidden_size": self.hidden_size,
            "layers": json.loads(self.table().to_json(orient="records")),
            "threshold_scan": json.loads(self.threshold_scan().to_json(orient="records")),
            "per_sequence": json.loads(self.per_sequence.to_json(orient="records")),
            "texts": self.texts,
        }
        text = json.dumps(payload, indent=1)
        if path is not None:
            atomic_write_text(path, text)
        return text


def first_outlier_layer(profile: ActivationProfile, min_abs: float = 100.0, min_ratio: float = 1000.0,
                        aggregate: str = "mean"):
    """The first (0-based) decoder layer whose output has top-1 |h| > min_abs and ratio > min_ratio."""
    return profile.first_outlier_layer(min_abs=min_abs, min_ratio=min_ratio, aggregate=aggregate)


@torch.inference_mode()
def profile_activations(
    model,
    tokenizer,
    texts=None,
    top_k: int = 3,
    max_length: int = 256,
    batch_size: int = 4,
    progress: bool = False,
) -> ActivationProfile:
    """Profile the massive activations of every decoder layer's output on ``texts``.

    ``texts`` is anything :func:`dlzo.calibration.calibration_texts` accepts (default: the built-in set).
    """
    texts = calibration_texts(texts)
    if top_k < 1:
        raise DlzoError("top_k must be at least 1.")
    layers = decoder_layers(model)
    n_layers = len(layers)
    device = input_device(model)
    state: dict = {}
    records: list[dict] = []
    channel_max: list[torch.Tensor] = []

    def make_hook(index: int):
        def hook(_module, _inputs, output):
            h = layer_output(output)
            lengths = state["lengths"]
            for b, length in enumerate(lengths):
                a = h[b, :length].detach().abs().float()  # [T, D]
                values, flat = a.flatten().topk(min(top_k, a.numel()))
                state["stats"].append(
                    (index, b, values, flat, a.flatten().median(), a.amax(dim=0))
                )
        return hook

    handles = [layer.register_forward_hook(make_hook(i)) for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        bar = progress_bar(total=len(texts), enabled=progress, desc="profiling", unit="text")
        for start, chunk in _batches(texts, batch_size):
            enc = _tokenize(tokenizer, chunk, max_length)
            lengths = enc["attention_mask"].sum(dim=1).tolist()
            state["lengths"] = lengths
            state["stats"] = []
            model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                  use_cache=False)
            hidden = None
            per_seq_max = {}
            for index, b, values, flat, median, cmax in state["stats"]:
                values = values.cpu()
                hidden = cmax.numel()
                flat = int(flat[0])
                token_pos, channel = divmod(flat, hidden)
                tops = values.tolist() + [float("nan")] * (top_k - values.numel())
                med = float(median)
                token_id = int(enc["input_ids"][b, token_pos])
                records.append(
                    {
                        "seq": start + b,
                        "layer": index,
                        **{f"top{j + 1}": tops[j] for j in range(max(3, top_k)) if j < len(tops)},
                        "median": med,
                        "ratio": tops[0] / med if med > 0 else float("inf"),
                        "channel": channel,
                        "token_pos": token_pos,
                        "token": tokenizer.decode([token_id]),
                        "seq_len": lengths[b],
                    }
                )
                per_seq_max[(b, index)] = cmax.cpu()
            for b in range(len(chunk)):
                channel_max.append(torch.stack([per_seq_max[(b, i)] for i in range(n_layers)]))
            bar.update(len(chunk))
        bar.close()
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    per_sequence = pd.DataFrame(records).sort_values(["seq", "layer"]).reset_index(drop=True)
    for col in ("top2", "top3"):
        if col not in per_sequence:
            per_sequence[col] = float("nan")
    return ActivationProfile(
        model_name=str(getattr(model, "dlzo_name", getattr(model.config, "_name_or_path", "model"))),
        num_layers=n_layers,
        hidden_size=int(hidden or 0),
        per_sequence=per_sequence,
        channel_max=torch.stack(channel_max).numpy(),
        texts=list(texts),
    )


@torch.inference_mode()
def rank_mlp_channels(model, tokenizer, layer: int, texts=None, max_length: int = 256, batch_size: int = 4,
                      progress: bool = False) -> pd.DataFrame:
    """Rank the MLP intermediate channels of ``layer`` by their largest |activation| (input of the down
    projection), averaged over calibration sequences. Returns columns ``channel, max_abs`` sorted."""
    texts = calibration_texts(texts)
    layer = check_layer(model, layer)
    fam = family(model)
    block = decoder_layers(model)[layer]
    target = block.get_submodule(fam.mlp_out)
    device = input_device(model)
    per_seq: list[torch.Tensor] = []
    state: dict = {}

    def pre_hook(_module, args):
        x = args[0]
        for b, length in enumerate(state["lengths"]):
            per_seq.append(x[b, :length].detach().abs().float().amax(dim=0).cpu())

    handle = target.register_forward_pre_hook(pre_hook)
    try:
        for _start, chunk in progress_bar(list(_batches(texts, batch_size)), enabled=progress, desc="channels"):
            enc = _tokenize(tokenizer, chunk, max_length)
            state["lengths"] = enc["attention_mask"].sum(dim=1).tolist()
            model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
                  use_cache=False)
    finally:
        handle.remove()
    scores = torch.stack(per_seq).mean(dim=0).numpy()
    order = np.argsort(-scores, kind="stable")
    return pd.DataFrame({"channel": order, "max_abs": scores[order]})


def top_mlp_channels(model, tokenizer, layer: int, fraction: float = 0.01, texts=None, **kwargs) -> list[int]:
    """The top ``fraction`` of ``layer``'s MLP intermediate channels by max |activation| (at least one)."""
    if not 0 < fraction <= 1:
        raise DlzoError(f"Channel fraction {fraction} must be in (0, 1].")
    ranking = rank_mlp_channels(model, tokenizer, layer, texts=texts, **kwargs)
    k = max(1, int(round(fraction * len(ranking))))
    return sorted(int(c) for c in ranking["channel"].iloc[:k])
