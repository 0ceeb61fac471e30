"""The benchmark tasks under MeZO's protocol: prompts, candidates, labels, answers, training targets.

Templates and verbalizers are those of MeZO (princeton-nlp/MeZO, ``large_models/templates.py``; see
``docs/mezo-protocol.md``). MeZO strips spaces (``strip(" ")``, not newlines) from both ends of the prompt
and of prompt+candidate before tokenising them. Here ``prompt(ex)`` is the stripped prompt and each
candidate is the text that follows it, so ``prompt(ex) + candidate`` is exactly the string MeZO tokenises
for that candidate: SST-2's candidates are " terrible" / " great" (leading space), COPA's are " " + the
lower-cased choice, and the newline-terminated prompts (RTE, CB, BoolQ, WSC, MultiRC, WiC) take "Yes" /
"No" / "Maybe" without a space.

Rows follow the Hugging Face ``datasets`` schema of each hub id, with integer label ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import DlzoError

CLASSIFICATION = "classification"
MULTIPLE_CHOICE = "multiple_choice"
GENERATION = "generation"


@dataclass(frozen=True)
class Task:
    """One benchmark: where its data lives, how an example becomes a prompt, and how it is scored.

    ``kind`` is ``"classification"`` (fixed verbalizer), ``"multiple_choice"`` (COPA: the candidates are the
    example's choices) or ``"generation"`` (SQuAD, DROP: greedy answer, scored by F1).
    """

    name: str
    hub_id: str  # "path/config" for datasets.load_dataset, e.g. "super_glue/rte"
    kind: str
    fields: tuple[str, ...]  # text fields every row must have
    template: Callable[[dict], str]  # the prompt as MeZO's template writes it (before strip(" "))
    verbalizer: tuple[str, ...] = ()  # classification: candidate text for each label id
    sfc_template: Callable[[dict], str] | None = None  # the prompt with the input removed (SFC calibration)
    answers_field: tuple[str, str] | None = None  # generation: (field, key) of the gold answer list
    group_field: str | None = None  # rows sharing this field never straddle a fallback train/test split

    @property
    def metric(self) -> str:
        """``"f1"`` for generation tasks, else ``"accuracy"``."""
        return "f1" if self.kind == GENERATION else "accuracy"

    @property
    def loss_type(self) -> str:
        """MeZO's training loss: ``"classification"`` (cross-entropy over the candidates' length-normalised
        log-likelihoods, ``--train_as_classification``) for classification tasks; ``"lm"`` (token
        cross-entropy on the answer tokens only, ``--only_train_option``) for COPA, SQuAD and DROP."""
        return "classification" if self.kind == CLASSIFICATION else "lm"

    @property
    def hub_path(self) -> tuple[str, str | None]:
        path, _, config = self.hub_id.partition("/")
        return path, config or None

    def prompt(self, example: dict) -> str:
        """The text the model conditions on (MeZO's ``template.encode(ex).strip(" ")``)."""
        return self.template(example).strip(" ")

    def sfc_prompt(self, example: dict) -> str:
        """The calibration prompt: the template with the input removed (MeZO's
        ``encode_sfc(ex).strip(" ")``)."""
        if self.sfc_template is None:
            raise ValueError(f"{self.name} has no calibration prompt (MeZO has no SFC for generation tasks)")
        return self.sfc_template(example).strip(" ")

    def candidates(self, example: dict) -> list[str]:
        """The texts scored after the prompt: the verbalizer, or COPA's two choices."""
        if self.kind == CLASSIFICATION:
            return list(self.verbalizer)
        if self.kind == MULTIPLE_CHOICE:
            return [copa_candidate(example["choice1"]), copa_candidate(example["choice2"])]
        raise ValueError(f"{self.name} is a generation task: it has answers, not candidates")

    @property
    def label_names(self) -> tuple[str, ...]:
        """Short names of the candidate positions, for prediction summaries."""
        if self.kind == CLASSIFICATION:
            return tuple(v.strip() for v in self.verbalizer)
        return ("choice1", "choice2")

    def label(self, example: dict) -> int:
        """The index of the gold candidate."""
        return int(example["label"])

    def answers(self, example: dict) -> list[str]:
        """The gold answers of a generation example (F1/EM take the max over them)."""
        field, key = self.answers_field
        return list(example[field][key])

    def target(self, example: dict) -> str:
        """The text after the prompt that the LM loss is computed on (answer tokens only).

        COPA: the correct candidate. SQuAD / DROP: " {first gold answer}\\n" (MeZO's verbalized training
        example ends "Answer: {answer}\\n").
        """
        if self.kind == MULTIPLE_CHOICE:
            return self.candidates(example)[self.label(example)]
        if self.kind == GENERATION:
            return f" {self.answers(example)[0]}\n"
        raise ValueError(f"{self.name} trains as classification: it has no LM target")

    def check(self, row: dict) -> None:
        """Raise ``ValueError`` with a short reason when ``row`` does not fit this task's schema."""
        if not isinstance(row, dict):
            raise ValueError("the row is not a JSON object")
        for name in self.fields:
            if name not in row:
                raise ValueError(f"missing field {name!r}")
            if not isinstance(row[name], str):
                raise ValueError(f"field {name!r} must be a string")
        if self.kind == GENERATION:
            if not _answer_list(row, *self.answers_field):
                raise ValueError("the example has no gold answer")
            return
        if self.kind == MULTIPLE_CHOICE and row["question"] not in ("cause", "effect"):
            raise ValueError(f"field 'question' must be 'cause' or 'effect', not {row['question']!r}")
        num_labels = len(self.verbalizer) if self.kind == CLASSIFICATION else 2
        label = row.get("label")
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_labels:
            raise ValueError(f"bad label {label!r} (expected an integer id 0..{num_labels - 1}, the HF "
                             "schema)")

    def load_split(self, split: str, data_dir=None, progress: bool = False) -> list[dict]:
        """All rows of ``split`` ("train" or "validation"); see :func:`dlzo.tasks.data.read_split`."""
        from .data import read_split

        rows, source = read_split(self, split, data_dir=data_dir, progress=progress)
        if rows is None:
            raise DlzoError(f"{source} has no {split} split for {self.name}; add {split}.jsonl there.")
        return rows


def _answer_list(row: dict, field: str, key: str) -> list:
    value = row.get(field)
    if not isinstance(value, dict) or key not in value:
        raise ValueError(f"missing field {field}.{key}")
    answers = value[key]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise ValueError(f"field {field}.{key} must be a list of strings")
    return answers


# --- prompts (MeZO templates; the comments name MeZO's class) ---------------------------------------------

def sst2_prompt(ex: dict) -> str:  # SST2Template
    return f"{ex['sentence'].strip()} It was"


def rte_prompt(ex: dict) -> str:  # RTETemplate
    return f'{ex["premise"]}\nDoes this mean that "{ex["hypothesis"]}" is true? Yes or No?\n'


def cb_prompt(ex: dict) -> str:  # CBTemplate
    return f'Suppose {ex["premise"]} Can we infer that "{ex["hypothesis"]}"? Yes, No, or Maybe?\n'


def boolq_prompt(ex: dict) -> str:  # BoolQTemplateV3, MeZO's default for BoolQ
    question = ex["question"]
    if not question.endswith("?"):
        question += "?"
    question = question[:1].upper() + question[1:]
    return f"{ex['passage']} {question}\n"


def wsc_prompt(ex: dict) -> str:  # WSCTemplate
    return (f'{ex["text"]}\nIn the previous sentence, does the pronoun "{ex["span2_text"].lower()}" refer to '
            f'{ex["span1_text"]}? Yes or No?\n')


def multirc_prompt(ex: dict) -> str:  # MultiRCTemplate
    return (f'{ex["paragraph"]}\nQuestion: {ex["question"]}\nI found this answer "{ex["answer"]}". '
            'Is that correct? Yes or No?\n')


def wic_prompt(ex: dict) -> str:  # WICTemplate
    return (f'Does the word "{ex["word"]}" have the same meaning in these two sentences? Yes, No?\n'
            f'{ex["sentence1"]}\n{ex["sentence2"]}\n')


def copa_connective(ex: dict) -> str:  # also CopaTemplate.encode_sfc
    return " so " if ex["question"] == "effect" else " because "


def copa_prompt(ex: dict) -> str:  # CopaTemplate: the premise without its final "." and " so " / " because "
    premise = ex["premise"].rstrip()
    if premise.endswith("."):
        premise = premise[:-1]
    return premise + copa_connective(ex)


def copa_candidate(choice: str) -> str:
    """A COPA choice as it follows the prompt: a space, then the choice with its first word lower-cased
    unless that word is "I" (CopaTemplate, capitalization="correct"); trailing spaces stripped as MeZO
    does."""
    words = choice.split(" ")
    if words[0] != "I":
        words[0] = words[0].lower()
    return (" " + " ".join(words)).rstrip(" ")


def squad_prompt(ex: dict) -> str:  # SQuADv2Template (used for SQuAD v1.1)
    return f"Title: {ex['title']}\nContext: {ex['context']}\nQuestion: {ex['question'].strip()}\nAnswer:"


def drop_prompt(ex: dict) -> str:  # DROPTemplate
    return f"Passage: {ex['passage']}\nQuestion: {ex['question'].strip()}\nAnswer:"


def sst2_sfc_prompt(ex: dict) -> str:  # SST2Template.encode_sfc
    return " It was"


def no_input(ex: dict) -> str:  # encode_sfc of the templates whose prompt is all input
    return ""


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("sst2", "glue/sst2", CLASSIFICATION, fields=("sentence",), template=sst2_prompt,
             verbalizer=(" terrible", " great"), sfc_template=sst2_sfc_prompt),
        Task("rte", "super_glue/rte", CLASSIFICATION, fields=("premise", "hypothesis"), template=rte_prompt,
             verbalizer=("Yes", "No"), sfc_template=no_input),
        Task("cb", "super_glue/cb", CLASSIFICATION, fields=("premise", "hypothesis"), template=cb_prompt,
             verbalizer=("Yes", "No", "Maybe"), sfc_template=no_input),
        Task("boolq", "super_glue/boolq", CLASSIFICATION, fields=("question", "passage"),
             template=boolq_prompt, verbalizer=("No", "Yes"), sfc_template=no_input, group_field="passage"),
        Task("wsc", "super_glue/wsc.fixed", CLASSIFICATION, fields=("text", "span1_text", "span2_text"),
             template=wsc_prompt, verbalizer=("No", "Yes"), sfc_template=no_input),
        Task("multirc", "super_glue/multirc", CLASSIFICATION, fields=("paragraph", "question", "answer"),
             template=multirc_prompt, verbalizer=("No", "Yes"), sfc_template=no_input),
        Task("copa", "super_glue/copa", MULTIPLE_CHOICE, fields=("premise", "choice1", "choice2", "question"),
             template=copa_prompt, sfc_template=copa_connective),
        Task("squad", "squad", GENERATION, fields=("title", "context", "question"), template=squad_prompt,
             answers_field=("answers", "text"), group_field="title"),
        Task("drop", "drop", GENERATION, fields=("passage", "question"), template=drop_prompt,
             answers_field=("answers_spans", "spans")),
        Task("wic", "super_glue/wic", CLASSIFICATION, fields=("word", "sentence1", "sentence2"),
             template=wic_prompt, verbalizer=("No", "Yes"), sfc_template=no_input),
    ]
}

# The nine tasks of the paper (MeZO's Table 1 minus WiC and ReCoRD); WiC is available by name.
TASK_NAMES: tuple[str, ...] = ("sst2", "rte", "cb", "boolq", "wsc", "multirc", "copa", "squad", "drop")


def get_task(name: str) -> Task:
    """The task called ``name`` (case-insensitive); an unknown name is a one-sentence :class:`DlzoError`."""
    key = str(name).strip().lower()
    if key not in TASKS:
        raise DlzoError(f"Unknown task {name!r}; valid tasks are {', '.join(TASKS)}.")
    return TASKS[key]
