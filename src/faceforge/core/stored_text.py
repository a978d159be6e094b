"""Characters that text we store (names, notes, external ids, sources) never holds, and why."""

from __future__ import annotations

import unicodedata

# Control characters: PostgreSQL refuses a NUL in text, SQLite cuts a LIKE pattern at one, and the
# others have no place in a name. Lone surrogates (half of a UTF-16 pair, which a JSON body may escape
# as "\ud800"): UTF-8 has no encoding for them, so no database can store one.
_NEVER = frozenset({"Cc", "Cs"})
# Names become model labels, one per line of labels.txt.
_LINE_BREAKS = frozenset({"Zl", "Zp"})


def has_lone_surrogate(text: str) -> bool:
    return any(unicodedata.category(c) == "Cs" for c in text)


def never_stored(text: str, *, line_breaks: bool = False) -> bool:
    """Whether ``text`` holds a character no stored text holds (with ``line_breaks``, Unicode's line
    and paragraph separators too); a filter or lookup with one can match nothing."""
    refused = _NEVER | _LINE_BREAKS if line_breaks else _NEVER
    return any(unicodedata.category(c) in refused for c in text)
