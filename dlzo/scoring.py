"""Candidate scoring: the log-probability of each candidate's tokens after the prompt (MeZO).

Tokenisation follows MeZO's ``encode_prompt``: the prompt and prompt+candidate are tokenised separately,
with the tokenizer's special tokens (a BOS where the tokenizer adds one, as Gemma's does; SmolLM2 and Qwen
add none); the candidate is the last ``len(enc(prompt + candidate)) - len(enc(prompt))`` tokens of
``enc(prompt + candidate)``. So the scored tokens are exactly those the model sees at the end of the
concatenation, leading space included (" great" is one token "Ġgreat", not "Ġ" + "great"). Inputs longer
than ``max_length`` lose tokens on the left, after the leading special tokens (MeZO keeps the BOS the same
way).

MeZO's score is the MEAN log-probability of the candidate's tokens and the prediction is the argmax. With
SFC calibration (``calibrate=True``, Holtzman et al. 2021) MeZO scores
``sum log p(c | prompt) - sum log p(c | sfc prompt)``, the sfc prompt being the template with the input
removed; we do the same. MeZO runs one forward per candidate (:func:`score_candidates_one_by_one`
reproduces that); :func:`score_candidates` packs all examples and candidates of a batch into one
right-padded forward, with candidates whose model input is identical (single-token verbalizers after the
same prompt) sharing one row, which is exact: a causal LM's prediction at a position depends only on the
tokens before it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .errors import DlzoError
from .tasks import Task

DEFAULT_MAX_LENGTH = 2048  # MeZO's --max_length


def context_length(model, max_length: int | None = None) -> int:
    """The longest input scored: ``max_length`` (default MeZO's 2048), capped at the model's context."""
    limit = max_length or DEFAULT_MAX_LENGTH
    positions = getattr(model.config, "max_position_embeddings", None)
    return min(limit, positions) if positions else limit


def num_leading_special(tokenizer) -> int:
    """How many special tokens (BOS) the tokenizer puts before any text."""
    return len(tokenizer("")["input_ids"])


def truncate_left(ids: list[int], max_length: int, keep_first: int) -> list[int]:
    """Keep the first ``keep_first`` ids (BOS) and the last ``max_length - keep_first`` of the rest."""
    if len(ids) <= max_length:
        return ids
    return ids[:keep_first] + ids[len(ids) - (max_length - keep_first):]


def encode_continuations(tokenizer, context: str, continuations: list[str],
                         max_length: int) -> list[tuple[list[int], int]]:
    """For each continuation: (token ids of context + continuation, number of trailing ids that are the
    continuation), as MeZO's ``encode_prompt`` computes them (module docstring).

    A continuation with nothing before it (SFC with an empty calibration prompt and a tokenizer that adds no
    BOS) gets the tokenizer's BOS, else its EOS, as context: a first token cannot be scored from nothing.
    Encodings are memoised per tokenizer (a ZO run scores the same examples again and again).
    """
    return [(list(ids), n) for ids, n in _encode(tokenizer, context, tuple(continuations), max_length)]


@functools.lru_cache(maxsize=16384)
def _encode(tokenizer, context: str, continuations: tuple[str, ...], max_length: int):
    context_len = len(tokenizer(context)["input_ids"])
    keep_first = num_leading_special(tokenizer)
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    encoded = []
    for continuation in continuations:
        ids = tokenizer(context + continuation)["input_ids"]
        n = len(ids) - context_len
        if n <= 0:
            raise DlzoError(f"The continuation {continuation!r} adds no token after {context[-40:]!r}; "
                            "use a candidate text that tokenises to at least one token.")
        if n == len(ids):
            ids = [start, *ids]
        if n > max_length - keep_first - 1:
            raise DlzoError(f"A continuation of {n} tokens does not fit max_length={max_length}; "
                            "raise max_length.")
        encoded.append((tuple(truncate_left(ids, max_length, keep_first)), n))
    return tuple(encoded)


@dataclass
class PackedSequences:
    """The tensors of one scoring forward (host or device), built by :func:`pack_sequences`.

    ``rows`` right-padded model inputs (``input_ids``, ``attention_mask``: ``[R, W]``); the positions the model
    keeps after its last layer (``keep``: ``[K]``, the union over rows); the ``P`` *points* (row, position) whose
    hidden state is projected onto the vocabulary (``point_row``, ``point_column`` into ``keep``: ``[P]``); one
    entry per scored token (``point``, ``target`` id, ``owner`` sequence: ``[T]``); and the token count of each
    of the ``S`` sequences (``lengths``: ``[S]``). Padding added by :meth:`padded` scores token 0 at point 0
    for a dummy owner ``S`` that the sums drop, so padded and unpadded packs give the same sums.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    keep: torch.Tensor
    point_row: torch.Tensor
    point_column: torch.Tensor
    point: torch.Tensor
    target: torch.Tensor
    owner: torch.Tensor
    lengths: torch.Tensor

    FIELDS = ("input_ids", "attention_mask", "keep", "point_row", "point_column", "point", "target", "owner",
              "lengths")

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self.FIELDS}

    @property
    def shape_key(self) -> tuple:
        """Every tensor's shape: packs with equal keys can share one captured CUDA graph."""
        return tuple(tuple(t.shape) for t in self.tensors().values())

    def to(self, device) -> PackedSequences:
        return PackedSequences(**{k: v.to(device, non_blocking=True) for k, v in self.tensors().items()})

    def padded(self, width: int = 32, rows: int = 8, keep: int = 16, tokens: int = 16) -> PackedSequences:
        """The same pack with R, W, K, P and T rounded up to multiples of ``rows``, ``width``, ``keep`` and
        ``tokens`` (P and T both to ``tokens``; static shapes for CUDA graphs). Sums are unchanged: a pad token's
        log-probability goes to the dropped owner ``S``; padding positions come after every real token (right
        padding, causal model)."""
        r, w = self.input_ids.shape
        k, p, t = len(self.keep), len(self.point_row), len(self.point)
        up = lambda n, m: -(-n // m) * m  # noqa: E731
        R, W, K, P, T = up(r, rows), up(w, width), up(k, keep), up(p, tokens), up(t, tokens)
        input_ids = torch.zeros((R, W), dtype=self.input_ids.dtype)
        attention_mask = torch.zeros((R, W), dtype=self.attention_mask.dtype)
        input_ids[:r, :w], attention_mask[:r, :w] = self.input_ids, self.attention_mask
        attention_mask[r:, 0] = 1  # padding rows see one token, so no attention row is empty
        keep_ = torch.cat([self.keep, self.keep[-1:].expand(K - k)])

        def extend(x, size, value):
            return torch.cat([x, torch.full((size - len(x),), value, dtype=x.dtype)])
        return PackedSequences(input_ids, attention_mask, keep_, extend(self.point_row, P, 0),
                               extend(self.point_column, P, 0), extend(self.point, T, 0), extend(self.target, T, 0),
                               extend(self.owner, T, len(self.lengths)), self.lengths)


def pack_sequences(sequences: list[tuple[list[int], int]]) -> PackedSequences:
    """The host tensors of the one forward that scores the last ``n`` tokens of each ``(ids, n)`` sequence.

    Sequences are right-padded rows, so position ids need no adjustment and no real token ever sees a pad
    (whose id, 0, is therefore irrelevant); sequences whose model input ``ids[:-1]`` is identical share a row;
    only the positions that predict a scored token are kept for the vocabulary projection.
    """
    rows: list[list[int]] = []
    row_of: dict[tuple[int, ...], int] = {}
    for ids, _ in sequences:
        key = tuple(ids[:-1])
        if key not in row_of:
            row_of[key] = len(rows)
            rows.append(ids[:-1])
    width = max(len(row) for row in rows)
    input_ids = torch.zeros((len(rows), width), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        input_ids[r, : len(row)] = torch.tensor(row)
        attention_mask[r, : len(row)] = 1
    # token ids[t] is predicted at position t - 1; a point is one (row, position) whose logits are needed
    points: dict[tuple[int, int], int] = {}
    point, targets, owner = [], [], []
    for s, (ids, n) in enumerate(sequences):
        r = row_of[tuple(ids[:-1])]
        for position in range(len(ids) - 1 - n, len(ids) - 1):
            point.append(points.setdefault((r, position), len(points)))
        targets += ids[len(ids) - n:]
        owner += [s] * n
    keep = sorted({position for _, position in points})
    column = {p: k for k, p in enumerate(keep)}
    return PackedSequences(
        input_ids, attention_mask, torch.tensor(keep), torch.tensor([r for r, _ in points]),
        torch.tensor([column[p] for _, p in points]), torch.tensor(point), torch.tensor(targets),
        torch.tensor(owner), torch.tensor([n for _, n in sequences]))


def packed_logits(model, packed: PackedSequences) -> torch.Tensor:
    """The model's logits at the points of ``packed``, ``[P, vocab]`` (``[2P, vocab]``, the + half first, under
    :class:`~dlzo.paired.PairedPasses`, whose forward returns ``2R`` rows).

    The model keeps the positions ``keep`` of every row after its last layer (``logits_to_keep``), and a
    pre-hook on its output embedding picks the points' hidden states from those ``[R, K]`` before the
    vocabulary projection, so the head projects only what is scored (for SST-2, 16 of 256 kept states) and
    the model's own post-processing of logits (e.g. Gemma's soft-capping) still applies.
    """
    packed = packed.to(model.device)
    rows = packed.input_ids.shape[0]

    def gather(_module, args):
        hidden = args[0]
        copies = hidden.shape[0] // rows
        point_row = torch.cat([packed.point_row + i * rows for i in range(copies)]) if copies > 1 else packed.point_row
        return (hidden[point_row, packed.point_column.repeat(copies)][None], *args[1:])

    handle = model.get_output_embeddings().register_forward_pre_hook(gather)
    try:
        logits = model(input_ids=packed.input_ids, attention_mask=packed.attention_mask,
                       logits_to_keep=packed.keep, use_cache=False).logits
    finally:
        handle.remove()
    return logits[0]


def logprobs_from_logits(logits: torch.Tensor, packed: PackedSequences, half: int = 0) -> torch.Tensor:
    """The log-probability of every scored token of ``packed``, ``[T]`` float32, read from the points' logits
    (:func:`packed_logits`); ``half=1`` reads the second (θ−εz) half of a paired forward's ``[2P, vocab]``."""
    point = packed.point.to(logits.device)
    if half:
        point = point + half * len(packed.point_row)
    picked = logits[point].float()
    return picked.log_softmax(-1).gather(1, packed.target.to(logits.device)[:, None])[:, 0]


def sums_from_logprobs(logprobs: torch.Tensor, packed: PackedSequences) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability and token count of each sequence (1-D tensors on the logprobs' device). The sums
    are one float64 matrix product with the owner one-hot matrix (deterministic on every device, unlike an
    atomic scatter-add, and exact enough that the order of the terms does not show in float32)."""
    lengths = packed.lengths.to(logprobs.device)
    slots = torch.arange(len(lengths), device=logprobs.device)
    owners = (packed.owner.to(logprobs.device)[None, :] == slots[:, None]).double()
    return (owners @ logprobs.double()).to(logprobs.dtype), lengths


def packed_logprobs(model, packed: PackedSequences) -> torch.Tensor:
    """The log-probability of every scored token of ``packed`` (on the model's device): ``[T]`` float32.

    A pure tensor computation (no host reads), so it can be captured in a CUDA graph. Differentiable: runs
    with autograd unless the caller disables it."""
    return logprobs_from_logits(packed_logits(model, packed), packed)


def packed_sums(model, packed: PackedSequences) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability and token count of each sequence (:func:`sums_from_logprobs`), one forward."""
    return sums_from_logprobs(packed_logprobs(model, packed), packed)


def continuation_logprobs(model, sequences: list[tuple[list[int], int]]) -> list[torch.Tensor]:
    """Log-probabilities of the last ``n`` tokens of each ``(ids, n)`` sequence, from ONE forward
    (:func:`pack_sequences`): one float32 tensor of ``n`` log-probabilities per sequence."""
    return list(packed_logprobs(model, pack_sequences(sequences)).split([n for _, n in sequences]))


def continuation_sums(model, sequences: list[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability and token count of each sequence's continuation, from one forward."""
    return packed_sums(model, pack_sequences(sequences))


def candidate_sequences(tokenizer, task: Task, examples: list[dict], max_length: int,
                        sfc: bool = False) -> tuple[list[tuple[list[int], int]], int]:
    """Every candidate of every example as an ``(ids, n)`` sequence, and the number of candidates per example."""
    sequences, width = [], None
    for ex in examples:
        candidates = task.candidates(ex)
        width = width or len(candidates)
        if len(candidates) != width:
            raise ValueError(f"{task.name}: examples with different numbers of candidates in one batch")
        prompt = task.sfc_prompt(ex) if sfc else task.prompt(ex)
        sequences += encode_continuations(tokenizer, prompt, candidates, max_length)
    return sequences, width


def target_sequences(tokenizer, prompts: list[str], targets: list[str],
                     max_length: int) -> list[tuple[list[int], int]]:
    """Each target after its prompt as an ``(ids, n)`` sequence."""
    return [encode_continuations(tokenizer, prompt, [target], max_length)[0]
            for prompt, target in zip(prompts, targets, strict=True)]


def candidate_logprobs(model, tokenizer, task: Task, examples: list[dict], max_length: int | None = None,
                       sfc: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability and token count of every candidate: two ``[len(examples), num_candidates]``
    tensors (float32 sums on the model's device, int64 counts on the same device). One forward.

    ``sfc=True`` scores the candidates after the calibration prompt instead of the prompt.
    """
    sequences, width = candidate_sequences(tokenizer, task, examples, context_length(model, max_length), sfc)
    sums, counts = continuation_sums(model, sequences)
    return sums.view(len(examples), width), counts.view(len(examples), width)


def target_logprobs(model, tokenizer, prompts: list[str], targets: list[str],
                    max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability and token count of each ``target`` after its prompt (1-D tensors); one
    forward."""
    return continuation_sums(model, target_sequences(tokenizer, prompts, targets, context_length(model, max_length)))


def score_candidates(model, tokenizer, task: Task, examples: list[dict], max_length: int | None = None,
                     calibrate: bool = False) -> torch.Tensor:
    """MeZO's candidate scores, ``[len(examples), num_candidates]``: mean token log-probability, or with
    ``calibrate`` the SFC difference of sums. Batched (one forward, two with calibration)."""
    sums, counts = candidate_logprobs(model, tokenizer, task, examples, max_length)
    if calibrate:
        return sums - candidate_logprobs(model, tokenizer, task, examples, max_length, sfc=True)[0]
    return sums / counts


@torch.inference_mode()
def score_candidates_one_by_one(model, tokenizer, task: Task, examples: list[dict],
                                max_length: int | None = None, calibrate: bool = False) -> torch.Tensor:
    """The same scores as :func:`score_candidates`, computed as MeZO does: one unpadded forward per candidate,
    log-softmax over every position, the last ``n`` token log-probabilities kept. The reference for tests."""
    max_length = context_length(model, max_length)

    def token_logprobs(ids: list[int], n: int) -> torch.Tensor:
        input_ids = torch.tensor([ids], device=model.device)
        logprobs = model(input_ids=input_ids).logits[0, :-1].float().log_softmax(-1)
        return logprobs.gather(1, input_ids[0, 1:, None])[:, 0][-n:]

    scores = []
    for ex in examples:
        row = []
        for candidate in task.candidates(ex):
            [encoded] = encode_continuations(tokenizer, task.prompt(ex), [candidate], max_length)
            logprobs = token_logprobs(*encoded)
            if calibrate:
                [sfc] = encode_continuations(tokenizer, task.sfc_prompt(ex), [candidate], max_length)
                row.append(logprobs.sum() - token_logprobs(*sfc).sum())
            else:
                row.append(logprobs.mean())
        scores.append(torch.stack(row))
    return torch.stack(scores)
