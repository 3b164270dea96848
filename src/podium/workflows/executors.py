"""Step executors: where step bodies run. The engine only talks to the ``StepExecutor`` seam,
so a distributed executor (Ray tasks, with PostgreSQL as the shared journal) can replace the
in-process one without touching the patterns."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


class InlineExecutor:
    """Runs coroutine functions on the event loop and plain functions in a thread pool."""

    def __init__(self, threads: int = 32) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="podium-step")
        self._kinds: dict[Any, bool] = {}

    async def run(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        is_async = self._kinds.get(fn)
        if is_async is None:
            is_async = self._kinds[fn] = _is_async(fn)
        if is_async:
            return await fn(**kwargs)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._pool, functools.partial(fn, **kwargs))
        if inspect.isawaitable(result):
            result = await result
        return result

    def close(self) -> None:
        """Stop the thread pool (running steps finish first)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
