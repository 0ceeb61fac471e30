"""The training losses MeZO optimises, one callable per task: ``loss_fn(examples) -> 0-dim tensor``.

- SST-2, RTE, CB, BoolQ, WSC, MultiRC, WiC ("train as classification"): the cross-entropy of the gold label
  under a softmax over the candidates' length-normalised log-likelihoods (mean token log-probability),
  averaged over the batch.
- COPA, SQuAD, DROP (``--only_train_option``): the token cross-entropy on the answer tokens only (COPA: the
  correct choice; SQuAD/DROP: " {first answer}\\n"), averaged over all answer tokens of the batch (MeZO's
  ``CrossEntropyLoss`` over the flattened batch).

The callable runs one forward per batch, uses no random state, and leaves gradient mode to the caller: the
ZO engine calls it under ``torch.inference_mode()``, a first-order baseline with autograd on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import DlzoError
from .generation import MAX_NEW_TOKENS
from .scoring import (
    PackedSequences,
    candidate_sequences,
    context_length,
    logprobs_from_logits,
    pack_sequences,
    packed_logits,
    sums_from_logprobs,
    target_sequences,
)
from .tasks import GENERATION, Task


def classification_loss(sums: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``labels`` over the candidates' mean log-probabilities ``sums / counts``."""
    return F.cross_entropy(sums / counts, labels)


def lm_loss(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Mean negative log-probability per answer token, over every answer token of the batch."""
    return -sums.sum() / counts.sum()


def loss_max_length(model, task: Task, max_length: int | None = None) -> int:
    """The input length the loss sees: the context, less MeZO's 50-token answer budget for generation tasks
    (MeZO truncates their training inputs like their generation prompts)."""
    limit = context_length(model, max_length)
    return limit - MAX_NEW_TOKENS if task.kind == GENERATION else limit


@dataclass
class PackedBatch:
    """A training batch ready for the forward: the packed sequences, and the gold labels of a classification
    batch (``[B]``; ``None`` for an LM loss) with its number of candidates per example."""

    sequences: PackedSequences
    labels: torch.Tensor | None = None
    width: int = 1

    @property
    def shape_key(self) -> tuple:
        return (self.sequences.shape_key, None if self.labels is None else tuple(self.labels.shape), self.width)

    def padded(self) -> PackedBatch:
        return PackedBatch(self.sequences.padded(), self.labels, self.width)

    def to(self, device) -> PackedBatch:
        labels = None if self.labels is None else self.labels.to(device, non_blocking=True)
        return PackedBatch(self.sequences.to(device), labels, self.width)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = self.sequences.tensors()
        if self.labels is not None:
            out["labels"] = self.labels
        return out


class TaskLoss:
    """The MeZO training loss of a task (module docstring), as ``loss_fn(batch) -> 0-dim float32 tensor``.

    It is two halves, so a caller can prepare a batch once and run the forward several times (the ZO step's
    ± passes, CUDA graphs): :meth:`pack` (host side: tokenise, pack, no model) and :meth:`compute` (device
    side: one forward and the loss, pure tensor code). ``loss_fn(batch) == loss_fn.compute(loss_fn.pack(batch))``.
    """

    def __init__(self, model, tokenizer, task: Task, max_length: int | None = None):
        self.model, self.tokenizer, self.task = model, tokenizer, task
        self.limit = loss_max_length(model, task, max_length)
        self.__doc__ = f"MeZO's {task.loss_type} loss on {task.name} examples (one forward)."

    def pack(self, batch: list[dict]) -> PackedBatch:
        if self.task.loss_type == "classification":
            sequences, width = candidate_sequences(self.tokenizer, self.task, batch, self.limit)
            labels = torch.tensor([self.task.label(ex) for ex in batch])
            return PackedBatch(pack_sequences(sequences), labels, width)
        sequences = target_sequences(self.tokenizer, [self.task.prompt(ex) for ex in batch],
                                     [self.task.target(ex) for ex in batch], self.limit)
        return PackedBatch(pack_sequences(sequences))

    def loss_from_logits(self, logits: torch.Tensor, packed: PackedBatch, half: int = 0) -> torch.Tensor:
        """The loss of ``packed`` read from the points' ``logits`` (``half=1``: the − half of a paired forward)."""
        sums, counts = sums_from_logprobs(logprobs_from_logits(logits, packed.sequences, half), packed.sequences)
        if packed.labels is None:
            return lm_loss(sums, counts)
        shape = (-1, packed.width)
        return classification_loss(sums.view(shape), counts.view(shape), packed.labels.to(sums.device))

    def compute(self, packed: PackedBatch) -> torch.Tensor:
        return self.loss_from_logits(packed_logits(self.model, packed.sequences), packed)

    def compute_pair(self, packed: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Both losses of a paired forward (:class:`~dlzo.paired.PairedPasses` active): the model returns the
        θ+εz rows first and the θ−εz rows after them."""
        logits = packed_logits(self.model, packed.sequences)
        if logits.shape[0] != 2 * len(packed.sequences.point_row):
            raise DlzoError("compute_pair needs a paired forward; run it inside PairedPasses.")
        return self.loss_from_logits(logits, packed), self.loss_from_logits(logits, packed, half=1)

    def __call__(self, batch: list[dict]) -> torch.Tensor:
        return self.compute(self.pack(batch))


def make_loss_fn(model, tokenizer, task: Task, max_length: int | None = None) -> TaskLoss:
    """The MeZO training loss of ``task`` for ``model`` (module docstring): ``loss_fn(batch)`` returns a 0-dim
    float32 tensor on the model's device."""
    return TaskLoss(model, tokenizer, task, max_length)
