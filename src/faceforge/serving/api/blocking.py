"""The one way an ``async def`` route runs blocking work (vision, database, files): on the thread pool.

An ``async def`` route runs on the event loop, which every other request of the process shares: a
photo analysed or a database row read there stalls ``/healthz``, model info and every other client
until it is done. Plain ``def`` routes need none of this (FastAPI runs them on the pool); routes that
must be asynchronous (to read a form whose field names are not known in advance, or, like identify,
to have FastAPI check their answer on the loop rather than hand it to one more pool thread) await
their blocking part through ``run_blocking``. Vision work also passes the vision gate, inside the services
(``serving.services.vision_gate``), whichever route asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

P = ParamSpec("P")
T = TypeVar("T")


async def run_blocking(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(*args, **kwargs)`` on the thread pool, awaited from the event loop."""
    return await run_in_threadpool(function, *args, **kwargs)
