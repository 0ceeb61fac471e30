"""Calibration text for activation profiling.

Sun et al. (2024) find massive activations with ~10 natural-text sequences. dlzo ships its own small
set of plain English passages, written for this project (no licence strings attached), and accepts a
user's texts, a local text file, or the inputs of a benchmark task instead.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DlzoError

BUILTIN_TEXTS: tuple[str, ...] = (
    "The morning train was late again, so most of the passengers stood on the platform with their coffee "
    "and watched the fog lift slowly from the river. Nobody seemed surprised. A conductor walked past and "
    "promised that the next service would leave in ten minutes.",
    "Bread is one of the oldest prepared foods. Early bakers mixed crushed grain with water and cooked the "
    "paste on hot stones. Leavened bread came later, when people noticed that dough left in a warm place "
    "would rise and give a lighter loaf.",
    "She opened the letter carefully, as if the paper might break. It was from her grandfather, written "
    "forty years earlier, and it described the small farm where he had grown up, the orchard behind the "
    "barn, and the dog that followed him to school every day.",
    "In a simple electric circuit, the current that flows through a resistor is proportional to the "
    "voltage across it. This relation is known as Ohm's law. Doubling the voltage doubles the current, "
    "as long as the resistance stays the same.",
    "The city council met on Tuesday to discuss the new bicycle lanes. Some members argued that the lanes "
    "would make the streets safer for children, while others worried about the loss of parking spaces for "
    "the shops along the main road.",
    "Mountains shape the weather around them. Moist air that is pushed up a slope cools as it rises, and "
    "the water it carries falls as rain or snow. The far side of the range is often much drier, a pattern "
    "that geographers call a rain shadow.",
    "After three weeks of practice, the team finally won a match. The players laughed and shouted in the "
    "locker room, and the coach, who rarely smiled, told them that she had never been prouder of a group "
    "of students in her life.",
    "A good recipe for tomato soup needs only a few things: ripe tomatoes, an onion, a little butter, salt, "
    "and time. Cook the onion slowly until it is soft, add the tomatoes, and let the pot simmer for half "
    "an hour before you blend it.",
    "The library closes at eight in the evening during the week and at noon on Saturdays. Books may be "
    "borrowed for three weeks and renewed twice, unless another reader has asked for them. Late returns "
    "are charged a small fee for each day.",
    "Honeybees tell each other where to find food by dancing. A bee that returns from a rich patch of "
    "flowers walks in a figure of eight, and the angle and length of the straight part of the dance show "
    "the direction and distance of the flowers.",
)


def calibration_texts(source=None, n: int | None = None, data_dir=None, seed: int = 0) -> list[str]:
    """Return calibration passages.

    ``source`` is ``None`` (the built-in passages), a list of strings, a path to a text file (passages
    separated by blank lines; a file without blank lines is split by line), or ``"task:<name>"`` for the
    prompts of a benchmark task's validation split (needs :mod:`dlzo.tasks` and a data directory).
    ``n`` keeps the first ``n`` passages.
    """
    if source is None:
        texts = list(BUILTIN_TEXTS)
    elif isinstance(source, (list, tuple)):
        texts = [str(t) for t in source]
    elif isinstance(source, str) and source.startswith("task:"):
        from .tasks import get_task

        task = get_task(source.split(":", 1)[1])
        examples = task.load_split("validation", data_dir=data_dir)
        texts = [task.prompt(ex) for ex in examples[: n or 10]]
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise DlzoError(
                f"Calibration source {str(source)!r} is neither a list of texts nor an existing text file; "
                "pass texts, a file path, or 'task:<name>'."
            )
        raw = path.read_text(encoding="utf-8")
        blocks = [b.strip() for b in raw.replace("\r\n", "\n").split("\n\n")]
        texts = [b for b in blocks if b]
        if len(texts) <= 1:
            texts = [line.strip() for line in raw.splitlines() if line.strip()]
    texts = [t for t in texts if t.strip()]
    if n is not None:
        texts = texts[:n]
    if not texts:
        raise DlzoError("The calibration text list is empty; pass at least one non-empty passage.")
    return texts
