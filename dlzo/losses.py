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

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .generation import MAX_NEW_TOKENS
from .scoring import candidate_logprobs, context_length, target_logprobs
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


def make_loss_fn(model, tokenizer, task: Task,
                 max_length: int | None = None) -> Callable[[list[dict]], torch.Tensor]:
    """The MeZO training loss of ``task`` for ``model`` (module docstring): ``loss_fn(batch)`` returns a 0-dim
    float32 tensor on the model's device."""
    limit = loss_max_length(model, task, max_length)

    if task.loss_type == "classification":
        def loss_fn(batch: list[dict]) -> torch.Tensor:
            sums, counts = candidate_logprobs(model, tokenizer, task, batch, limit)
            labels = torch.tensor([task.label(ex) for ex in batch], device=sums.device)
            return classification_loss(sums, counts, labels)
    else:
        def loss_fn(batch: list[dict]) -> torch.Tensor:
            sums, counts = target_logprobs(model, tokenizer, [task.prompt(ex) for ex in batch],
                                           [task.target(ex) for ex in batch], limit)
            return lm_loss(sums, counts)

    loss_fn.__doc__ = f"MeZO's {task.loss_type} loss on {task.name} examples (one forward)."
    return loss_fn
