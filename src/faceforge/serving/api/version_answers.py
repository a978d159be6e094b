"""Answers that depend only on a model version and the address a client used, kept encoded: the
legacy model info lists every person, and every phone asks for it on every start, so encoding it
once per version (not once per request) is what keeps it cheap at 10,000 people."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

ANSWERS_KEPT = 16  # a few versions times the addresses the service is reached at


class VersionAnswers:
    def __init__(self, size: int = ANSWERS_KEPT) -> None:
        self.size = size
        self._answers: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...], encode: Callable[[], bytes]) -> bytes:
        """The answer for ``key`` (which must include the version), encoded on first use."""
        with self._lock:
            answer = self._answers.get(key)
            if answer is not None:
                self._answers.move_to_end(key)
                return answer
        answer = encode()
        with self._lock:
            self._answers[key] = answer
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
        return answer
