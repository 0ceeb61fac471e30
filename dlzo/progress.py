"""Progress bars with an off switch.

``tqdm.auto`` renders a widget even under headless papermill and ignores ``TQDM_DISABLE``, so every
long loop in dlzo takes ``progress: bool`` and calls :func:`progress_bar`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, enabled: bool = True, **kwargs) -> tqdm:
    """A ``tqdm.auto`` bar, or a silent one when ``enabled`` is false."""
    return tqdm(iterable, disable=not enabled, dynamic_ncols=True, **kwargs)
