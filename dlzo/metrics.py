"""Metrics as MeZO computes them: accuracy, and SQuAD's token F1 / exact match (max over gold answers).

Answers are normalised the SQuAD v1.1 way: lower-case, remove punctuation, remove the articles a/an/the,
collapse whitespace. F1 is 0 when prediction and gold share no token (also when either normalises to
nothing). DROP uses the same F1, as in MeZO. Every function returns a fraction in [0, 1]; reports multiply
by 100.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop articles, collapse whitespace (SQuAD v1.1 ``normalize_answer``)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, gold: str) -> float:
    """Token-level F1 between one prediction and one gold answer, after normalisation."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, golds: Sequence[str]) -> float:
    """The best token F1 of ``prediction`` against any gold answer."""
    return max(token_f1(prediction, gold) for gold in golds)


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when ``prediction`` equals some gold answer after normalisation, else 0.0."""
    return float(any(normalize_answer(prediction) == normalize_answer(gold) for gold in golds))


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """The fraction of predictions equal to their label."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    return sum(int(p == y) for p, y in zip(predictions, labels, strict=True)) / len(labels)
