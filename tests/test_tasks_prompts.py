"""Golden prompts: for the first validation row of every task, the exact prompt and candidate strings that
MeZO's templates produce (hand-written from docs/mezo-protocol.md and MeZO's templates.py)."""

import pytest
from tasks_support import first_validation_row

from dlzo.tasks import TASK_NAMES, get_task


def test_the_nine_paper_tasks_and_their_kinds():
    assert TASK_NAMES == ("sst2", "rte", "cb", "boolq", "wsc", "multirc", "copa", "squad", "drop")
    kinds = {n: (get_task(n).kind, get_task(n).metric, get_task(n).loss_type) for n in TASK_NAMES}
    assert kinds["sst2"] == ("classification", "accuracy", "classification")
    assert kinds["copa"] == ("multiple_choice", "accuracy", "lm")
    assert kinds["squad"] == kinds["drop"] == ("generation", "f1", "lm")
    assert [get_task(n).hub_id for n in TASK_NAMES] == [
        "glue/sst2", "super_glue/rte", "super_glue/cb", "super_glue/boolq", "super_glue/wsc.fixed",
        "super_glue/multirc", "super_glue/copa", "squad", "drop"]


def test_sst2_golden():
    task, row = get_task("sst2"), first_validation_row("sst2")
    assert task.prompt(row) == "it 's a charming and often affecting journey . It was"
    assert task.candidates(row) == [" terrible", " great"]
    assert task.label(row) == 1
    assert task.sfc_prompt(row) == "It was"


def test_rte_golden():
    task, row = get_task("rte"), first_validation_row("rte")
    assert task.prompt(row) == (
        "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44, "
        "according to the Christopher Reeve Foundation.\n"
        'Does this mean that "Christopher Reeve had an accident." is true? Yes or No?\n')
    assert task.candidates(row) == ["Yes", "No"]
    assert task.label(row) == 1  # not_entailment -> "No"
    assert task.sfc_prompt(row) == ""


def test_cb_golden():
    task, row = get_task("cb"), first_validation_row("cb")
    assert task.prompt(row) == (
        "Suppose Valence the void-brain, Valence the virtuous valet. Why couldn't the figger choose his own "
        "portion of titanic anatomy to shaft? Did he think he was helping? "
        'Can we infer that "Valence was helping"? Yes, No, or Maybe?\n')
    assert task.candidates(row) == ["Yes", "No", "Maybe"]
    assert task.label(row) == 1  # contradiction -> "No"


def test_boolq_golden():
    task, row = get_task("boolq"), first_validation_row("boolq")
    assert row["passage"].startswith("Ethanol fuel -- All biomass goes through")
    # the question is capitalised and gets a "?"; the prompt ends in a newline (MeZO's BoolQTemplateV3)
    assert task.prompt(row) == row["passage"] + " Does ethanol take more energy make that produces?\n"
    assert task.candidates(row) == ["No", "Yes"]
    assert task.label(row) == 0


def test_wsc_golden():
    task, row = get_task("wsc"), first_validation_row("wsc")
    assert task.prompt(row) == (
        "Bernard , who had not told the government official that he was less than 21 when he filed for a "
        "homestead claim, did not consider that he had done anything dishonest. Still, anyone who knew that "
        "he was 19 years old could take his claim away from him .\n"
        'In the previous sentence, does the pronoun "him" refer to anyone? Yes or No?\n')
    assert task.candidates(row) == ["No", "Yes"]
    assert task.label(row) == 0
    mark = {"text": "Mark told Pete lies. He lied.", "span1_text": "Mark", "span2_text": "He", "label": 1}
    assert '"he" refer to Mark?' in task.prompt(mark)  # the pronoun is lower-cased, the noun is not


def test_multirc_golden():
    task, row = get_task("multirc"), first_validation_row("multirc")
    assert row["paragraph"].startswith("What causes a change in motion?")
    assert row["paragraph"].endswith("force. ")  # the trailing space stays inside the prompt
    assert task.prompt(row) == row["paragraph"] + (
        "\nQuestion: Would the mass of a baseball affect how much force you have to use to pick it up?\n"
        'I found this answer "No". Is that correct? Yes or No?\n')
    assert task.candidates(row) == ["No", "Yes"]
    assert task.label(row) == 0


def test_copa_golden():
    task, row = get_task("copa"), first_validation_row("copa")
    # premise without its final ".", " so " for an effect; MeZO strips the trailing space off the prompt and
    # the candidate starts with it; the choice's first word is lower-cased
    assert task.prompt(row) == "The man turned on the faucet so"
    assert task.candidates(row) == [" the toilet filled with water.", " water flowed from the spout."]
    assert task.label(row) == 1
    assert task.target(row) == " water flowed from the spout."
    assert task.sfc_prompt(row) == "so"
    cause = {"premise": "I was tired.", "choice1": "I slept.", "choice2": "The Sun rose.",
             "question": "cause", "label": 0}
    assert task.prompt(cause) == "I was tired because"
    assert task.candidates(cause) == [" I slept.", " the Sun rose."]  # "I" keeps its capital


def test_squad_golden():
    task, row = get_task("squad"), first_validation_row("squad")
    assert row["context"].startswith("Super Bowl 50 was an American football game")
    assert task.prompt(row) == ("Title: Super_Bowl_50\nContext: " + row["context"]
                                + "\nQuestion: Which NFL team represented the AFC at Super Bowl 50?\nAnswer:")
    assert task.answers(row) == ["Denver Broncos"] * 3
    assert task.target(row) == " Denver Broncos\n"


def test_drop_golden():
    task, row = get_task("drop"), first_validation_row("drop")
    assert row["passage"].startswith("On 2 July Lord John Russell, 1st Earl of Bedford's initial force")
    assert task.prompt(row) == ("Passage: " + row["passage"] + "\nQuestion: How many days after reaching "
                                "Honiton were the forces blocked at Fenny Bridges?\nAnswer:")
    assert task.answers(row) == ["26"]
    assert task.target(row) == " 26\n"


def test_wic_golden():
    task, row = get_task("wic"), first_validation_row("wic")
    assert task.prompt(row) == (
        'Does the word "class" have the same meaning in these two sentences? Yes, No?\n'
        "An emerging professional class.\n"
        "Apologizing for losing your temper, even though you were badly provoked, showed real class.\n")
    assert task.candidates(row) == ["No", "Yes"]


@pytest.mark.parametrize("name", ["squad", "drop"])
def test_generation_tasks_have_no_candidates_or_calibration(name):
    task, row = get_task(name), first_validation_row(name)
    with pytest.raises(ValueError):
        task.candidates(row)
    with pytest.raises(ValueError):
        task.sfc_prompt(row)
