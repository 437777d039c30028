"""Error messages as records store them: capped, so one runaway message cannot bloat a stream,
a results JSON or a report.

A record keeps a backend's message once, in ``error_message``, cut to :data:`MAX_MESSAGE_CHARS`
(head and tail kept, ``[... N characters cut ...]`` between them); its ``detail`` holds the
message only when it is short, else a shorter cut of it (:data:`DETAIL_CHARS`).
"""

from __future__ import annotations

#: The most characters of a message a record keeps (``error_message``).
MAX_MESSAGE_CHARS = 4000
#: The most characters of a message repeated in a record's ``detail``.
DETAIL_CHARS = 500


def cap_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` if it has at most ``limit`` characters, else its head and tail around a
    ``[... N characters cut ...]`` marker (about ``limit`` characters in all)."""
    if len(text) <= limit:
        return text
    keep = max(limit - 40, 2)
    head, tail = keep - keep // 3, keep // 3
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut:,} characters cut ...]\n{text[len(text) - tail :]}"


def detail_text(prefix: str, message: str) -> str:
    """A record's ``detail`` for ``message``: ``prefix`` and the message, cut to
    :data:`DETAIL_CHARS` (the full, capped message is the record's ``error_message``)."""
    return prefix + cap_text(message, DETAIL_CHARS)
