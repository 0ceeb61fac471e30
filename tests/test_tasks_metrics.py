"""SQuAD-normalised F1 / EM (max over gold answers) and accuracy, on hand-checked cases."""

import pytest

from dlzo.metrics import accuracy, exact_match, f1_score, normalize_answer, token_f1


def test_normalisation():
    assert normalize_answer("  The  Denver Broncos! ") == "denver broncos"
    assert normalize_answer("An apple, a pear & the plum.") == "apple pear plum"
    assert normalize_answer("theory of Anne") == "theory of anne"  # articles only as whole words


def test_f1_hand_checked():
    assert token_f1("Denver Broncos", "the Denver Broncos.") == 1.0
    # prediction {denver, broncos, team}, gold {denver, broncos}: P = 2/3, R = 1, F1 = 0.8
    assert token_f1("the Denver Broncos team", "Denver Broncos") == pytest.approx(0.8)
    # repeated tokens count with multiplicity: pred {a1 a1 b}, gold {a1 b b}: overlap 2, P = R = 2/3
    assert token_f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert token_f1("Carolina Panthers", "Denver Broncos") == 0.0
    assert token_f1("", "Denver") == 0.0
    assert token_f1("the", "a") == 0.0  # both normalise to nothing: 0, as in SQuAD v1.1 and MeZO


def test_max_over_golds():
    golds = ["Denver Broncos", "Broncos", "the Denver Broncos of Colorado"]
    assert f1_score("Broncos", golds) == 1.0
    assert f1_score("Colorado", golds) == pytest.approx(2 * (1 * 0.25) / 1.25)  # P 1, R 1/4 against the third
    assert exact_match("broncos.", golds) == 1.0
    assert exact_match("Denver", golds) == 0.0


def test_accuracy():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    with pytest.raises(ValueError):
        accuracy([1], [1, 0])
