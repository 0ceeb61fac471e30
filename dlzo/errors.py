"""User-facing errors.

Everything a user can cause (a wrong model key, a missing package, a layer out of range, a missing
data directory, malformed data, a diverging run) raises :class:`DlzoError` with one sentence that
names the fix. The CLI prints that sentence alone; library callers can catch the class.
"""

from __future__ import annotations


class DlzoError(Exception):
    """An error the user can fix; its message is one sentence that says how."""


def fail(message: str) -> DlzoError:
    """Build a :class:`DlzoError` (``raise fail(...) from None`` hides the internal traceback)."""
    return DlzoError(message)
