"""Evaluation under MeZO's protocol: accuracy by candidate scoring, F1/EM by greedy generation, and the
training loss on the same examples (MeZO selects checkpoints by dev loss).

Examples are processed longest first in batches (less padding; the largest batch comes first, so a batch size
that does not fit fails at once); results are reported in the input order. Everything runs forward-only under
``torch.inference_mode()``.
"""

from __future__ import annotations

import time
from collections import Counter

import pandas as pd
import torch

from .errors import DlzoError
from .generation import generate_answers
from .losses import classification_loss, lm_loss, loss_max_length
from .metrics import accuracy, exact_match, f1_score
from .progress import progress_bar
from .scoring import candidate_logprobs, target_logprobs
from .tasks import GENERATION, MEZO_NUM_TEST, Task, get_task, load_task_data


def evaluate(model, tokenizer, task: Task, examples: list[dict], batch_size: int = 16,
             calibrate: bool = False, max_length: int | None = None, with_loss: bool = True,
             progress: bool = False) -> dict:
    """Score ``examples`` of ``task`` (a :class:`Task` or its name).

    Returns ``{"task", "metric", "score" (0-100, the paper's scale), "n", "loss" (mean training loss on
    these examples, as one batch would give it), "calibrated", "predictions"}``, with ``"em"`` (0-100) for
    generation tasks and ``"prediction_shares"`` (fraction of predictions per candidate) for the others.
    ``calibrate`` applies SFC calibration to candidate scoring (MeZO supports none for generation tasks).
    Candidate scoring yields the loss for free; generation tasks need a second, teacher-forced forward for
    it, which ``with_loss=False`` skips (``"loss"`` is then None for them).
    """
    if isinstance(task, str):
        task = get_task(task)
    if not examples:
        raise DlzoError(f"No {task.name} examples to evaluate; check the split sizes.")
    if batch_size < 1:
        raise DlzoError(f"batch_size must be at least 1, not {batch_size}.")
    limit = loss_max_length(model, task, max_length)
    order = sorted(range(len(examples)), key=lambda i: -len(task.prompt(examples[i])))
    bar = progress_bar(total=len(examples), enabled=progress, desc=task.name, unit="ex")
    predictions: list = [None] * len(examples)
    loss_sum = loss_weight = 0.0  # batch losses weighted by examples (classification) or answer tokens (LM)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            batch = [examples[i] for i in index]
            if task.kind == GENERATION:
                prompts = [task.prompt(ex) for ex in batch]
                answers = generate_answers(model, tokenizer, prompts, max_length=max_length)
                if with_loss:
                    targets = [task.target(ex) for ex in batch]
                    sums, counts = target_logprobs(model, tokenizer, prompts, targets, limit)
                    loss_sum += lm_loss(sums, counts).item() * counts.sum().item()
                    loss_weight += counts.sum().item()
                for i, answer in zip(index, answers, strict=True):
                    predictions[i] = answer
            else:
                sums, counts = candidate_logprobs(model, tokenizer, task, batch, limit)
                labels = torch.tensor([task.label(ex) for ex in batch], device=sums.device)
                if task.loss_type == "classification":
                    loss_sum += classification_loss(sums, counts, labels).item() * len(batch)
                    loss_weight += len(batch)
                else:  # COPA: the LM loss on the correct choice
                    gold = torch.arange(len(batch), device=sums.device), labels
                    loss_sum += lm_loss(sums[gold], counts[gold]).item() * counts[gold].sum().item()
                    loss_weight += counts[gold].sum().item()
                scores = sums / counts
                if calibrate:
                    scores = sums - candidate_logprobs(model, tokenizer, task, batch, limit, sfc=True)[0]
                for i, best in zip(index, scores.argmax(dim=1).tolist(), strict=True):
                    predictions[i] = best
            bar.update(len(batch))
    bar.close()

    result = {"task": task.name, "metric": task.metric, "n": len(examples)}
    if task.kind == GENERATION:
        golds = [task.answers(ex) for ex in examples]
        pairs = list(zip(predictions, golds, strict=True))
        result["score"] = 100 * sum(f1_score(p, g) for p, g in pairs) / len(examples)
        result["em"] = 100 * sum(exact_match(p, g) for p, g in pairs) / len(examples)
    else:
        result["score"] = 100 * accuracy(predictions, [task.label(ex) for ex in examples])
        tally = Counter(predictions)
        result["prediction_shares"] = {name: tally[k] / len(examples)
                                       for k, name in enumerate(task.label_names)}
    result["loss"] = loss_sum / loss_weight if loss_weight else None
    result["calibrated"] = calibrate and task.kind != GENERATION
    result["predictions"] = predictions
    return result


def evaluate_tasks(model, tokenizer, tasks, seed: int = 0, data_dir=None,
                   num_test: int | dict = MEZO_NUM_TEST, batch_size: int = 16, calibrate: bool = False,
                   max_length: int | None = None, with_loss: bool = True,
                   progress: bool = False) -> pd.DataFrame:
    """Evaluate ``model`` on the MeZO test split (seed ``seed``) of each task; one row per task.

    ``num_test`` caps the test sets: one number for every task, or ``{task: number}`` (other tasks keep
    1000).

    Columns: task, metric, score, em (generation only), n, loss (None for generation tasks when
    ``with_loss=False``), seconds (wall time of the evaluation, data loading excluded), predicted (share of
    each predicted candidate), deviations (from MeZO's protocol, e.g. a fallback split or a capped test set;
    "; "-joined). ``DataFrame.attrs["results"]`` keeps each full :func:`evaluate` dict (predictions
    included).
    """
    names = [get_task(tasks).name] if isinstance(tasks, str) else [get_task(t).name for t in tasks]
    rows, results = [], []
    for name in names:
        cap = num_test.get(name, MEZO_NUM_TEST) if isinstance(num_test, dict) else num_test
        data = load_task_data(name, seed=seed, data_dir=data_dir, num_test=cap, progress=progress)
        start = time.perf_counter()
        result = evaluate(model, tokenizer, data.task, data.test, batch_size=batch_size, calibrate=calibrate,
                          max_length=max_length, with_loss=with_loss, progress=progress)
        result["seconds"] = time.perf_counter() - start
        result["deviations"] = list(data.deviations)
        result["source"] = data.source
        results.append(result)
        shares = result.get("prediction_shares", {})
        rows.append({
            "task": result["task"], "metric": result["metric"], "score": result["score"],
            "em": result.get("em"), "n": result["n"], "loss": result["loss"], "seconds": result["seconds"],
            "predicted": " / ".join(f"{k} {v:.0%}" for k, v in shares.items()),
            "deviations": "; ".join(data.deviations),
        })
    frame = pd.DataFrame(rows)
    frame.attrs["results"] = results
    return frame


def answer_loss(model, tokenizer, task: Task, examples: list[dict], batch_size: int = 16,
                max_length: int | None = None) -> float:
    """Mean answer-token loss (teacher forcing) of a generation task: its dev loss, without decoding."""
    limit = loss_max_length(model, task, max_length)
    total = weight = 0.0
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            sums, counts = target_logprobs(model, tokenizer, [task.prompt(ex) for ex in chunk],
                                           [task.target(ex) for ex in chunk], limit)
            total += lm_loss(sums, counts).item() * counts.sum().item()
            weight += counts.sum().item()
    return total / weight


def dev_eval_fn(tokenizer, task: Task, examples: list[dict], batch_size: int = 16, decode: bool = True):
    """``eval_fn(model) -> {"loss", "score"}`` on dev examples, as the training loops expect.

    The loss selects checkpoints (MeZO: lowest dev loss). Generation tasks get it by teacher forcing; their
    score needs greedy decoding, which ``decode=False`` skips (score None) to keep frequent evaluations cheap.
    """

    def eval_fn(model) -> dict:
        if task.kind == GENERATION:
            loss = answer_loss(model, tokenizer, task, examples, batch_size)
            score = None
            if decode:
                score = evaluate(model, tokenizer, task, examples, batch_size=batch_size, with_loss=False)["score"]
            return {"loss": loss, "score": score}
        result = evaluate(model, tokenizer, task, examples, batch_size=batch_size)
        return {"loss": result["loss"], "score": result["score"]}

    return eval_fn
