"""What every local model shares: lazy loading, one loaded instance per process, bounded CPU work.

A local model's weights load once per process — on :meth:`LocalModel.warm` or on the first call,
whichever comes first — and every handle on that model shares them (the registry's factory may
build many handles; they never load twice). The first load happens under a lock, in a worker
thread, so concurrent first calls wait for one load instead of racing.

Inference never runs on the event loop: each model has a small thread pool per process, sized by
:attr:`LocalModel.max_concurrency`, so a burst of calls queues instead of oversubscribing the CPU
(several of these libraries already spread one call over every core).

A missing Python package or program raises :class:`~podium.errors.LocalModelUnavailable`,
naming the pip or Debian package to install. Nothing here downloads anything: every model's
weights ship inside its package.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar, cast

from podium.config import Settings
from podium.errors import BadModelRequest, LocalModelUnavailable
from podium.models.base import Model
from podium.models.catalog import ModelInfo, Price

EngineT = TypeVar("EngineT")
R = TypeVar("R")

PROVIDER = "local"

LOCAL_PRICES: tuple[Price, ...] = (
    Price(
        effective_from=date(2024, 1, 1),
        input=Decimal(0),
        output=Decimal(0),
        per_character=Decimal(0),
        per_image=Decimal(0),
        per_request=Decimal(0),
        source="local: runs on this machine, no per-call charge",
    ),
)
"""The price of every local model: zero on every unit."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """Something a local model needs installed: a Python module, or a program on ``PATH``.

    Checked before the first load, so a missing piece fails with the package to install rather
    than a bare ``ImportError`` or ``FileNotFoundError``.
    """

    module: str | None = None
    """Import name of a Python module (e.g. ``vaderSentiment.vaderSentiment``)."""
    pip: str | None = None
    """The PyPI distribution that provides ``module``."""
    program: str | None = None
    """An executable that must be on ``PATH`` (e.g. ``tesseract``)."""
    debian: str | None = None
    """The Debian package(s) that provide ``program`` (space-separated)."""

    def check(self, model: str) -> None:
        """Raise :class:`LocalModelUnavailable` when this requirement is not met."""
        if self.module is not None:
            import_module(self.module, pip=self.pip or self.module, model=model)
        if self.program is not None:
            require_program(self.program, debian=self.debian or self.program, model=model)


def import_module(name: str, *, pip: str, model: str) -> ModuleType:
    """Import ``name``, or raise :class:`LocalModelUnavailable` naming the pip package."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise LocalModelUnavailable(
            f"{model} needs the Python package {pip!r} (importing {name!r} failed: {exc}); "
            f"install it with `pip install {pip}`, or every local model with "
            "`pip install 'podium[local]'`",
            provider=PROVIDER,
            model=model,
        ) from exc


def require_program(name: str, *, debian: str, model: str) -> str:
    """The path of executable ``name``, or :class:`LocalModelUnavailable` naming its package."""
    path = shutil.which(name)
    if path is None:
        raise LocalModelUnavailable(
            f"{model} needs the program {name!r}, which is not on PATH; install the Debian "
            f"package: `sudo apt-get install {debian}`",
            provider=PROVIDER,
            model=model,
        )
    return path


def decode_image(data: bytes, *, model: str, index: int = 0) -> Any:
    """Decode image bytes with Pillow (a ``PIL.Image.Image``), or raise ``BadModelRequest``."""
    pil = import_module("PIL.Image", pip="pillow", model=model)
    try:
        image = pil.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError, pil.DecompressionBombError) as exc:
        raise BadModelRequest(
            f"image {index} is not a readable image ({exc})", provider=PROVIDER, model=model
        ) from exc
    return image


@dataclass(frozen=True, slots=True)
class LocalStats:
    """A snapshot of one local model's shared state in this process."""

    loaded: bool
    """Whether the weights are in memory now."""
    loads: int
    """How many times the weights were loaded (more than once only after a full ``close``)."""
    handles: int
    """Open handles using the shared instance."""
    in_flight: int
    """Calls running in a worker thread right now."""
    peak_in_flight: int
    """The most calls that ever ran at once (bounded by ``max_concurrency``)."""
    calls: int
    """Units of work run (a call may run several, e.g. one per translated text)."""


class _Shared:
    """One model's loaded instance and worker threads, shared by every handle in the process."""

    def __init__(self, limit: int, thread_name: str) -> None:
        self._limit = limit
        self._thread_name = thread_name
        self._state_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._instance: Any = None
        self._loaded = False
        self._executor: ThreadPoolExecutor | None = None
        self._handles = 0
        self._loads = 0
        self._in_flight = 0
        self._peak = 0
        self._calls = 0

    def acquire(self) -> ThreadPoolExecutor:
        """Register one more handle; the worker pool it will submit to."""
        with self._state_lock:
            self._handles += 1
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._limit, self._thread_name)
            return self._executor

    def executor(self) -> ThreadPoolExecutor:
        with self._state_lock:
            if self._executor is None:  # only between a release to zero and a new acquire
                self._executor = ThreadPoolExecutor(self._limit, self._thread_name)
            return self._executor

    def release(self) -> None:
        """Drop one handle; the last one frees the weights and the worker threads."""
        with self._state_lock:
            self._handles -= 1
            if self._handles > 0:
                return
            executor, self._executor = self._executor, None
        with self._load_lock, self._state_lock:
            self._instance, self._loaded = None, False
        if executor is not None:
            executor.shutdown(wait=False)  # queued and running work still completes

    def peek(self) -> tuple[bool, Any]:
        """Whether the instance is loaded, and the instance (``None`` when not)."""
        with self._state_lock:
            return self._loaded, self._instance

    def instance(self, load: Callable[[], Any]) -> Any:
        """The loaded instance, loading it (once, whoever asks first) if needed."""
        loaded, instance = self.peek()
        if loaded:
            return instance
        with self._load_lock:
            loaded, instance = self.peek()
            if not loaded:
                instance = load()
                with self._state_lock:
                    self._instance, self._loaded = instance, True
                    self._loads += 1
            return instance

    def call(self, load: Callable[[], Any], fn: Callable[[Any], R]) -> R:
        """Run ``fn(instance)`` in the calling worker thread, counting it."""
        instance = self.instance(load)
        with self._state_lock:
            self._in_flight += 1
            self._calls += 1
            self._peak = max(self._peak, self._in_flight)
        try:
            return fn(instance)
        finally:
            with self._state_lock:
                self._in_flight -= 1

    def stats(self) -> LocalStats:
        with self._state_lock:
            return LocalStats(
                loaded=self._loaded,
                loads=self._loads,
                handles=self._handles,
                in_flight=self._in_flight,
                peak_in_flight=self._peak,
                calls=self._calls,
            )


# The process-wide cache of loaded local models, one entry per model class (like a
# ``functools.cache`` of weights): it holds loaded state, never configuration.
_SHARED: dict[type[LocalModel[Any]], _Shared] = {}
_SHARED_LOCK = threading.Lock()


class LocalModel(Model, Generic[EngineT]):
    """Base of the local models: declare ``info``, ``requires`` and ``max_concurrency``,
    implement :meth:`load`, and run work on the loaded engine with :meth:`run`.

    Handles are cheap: build as many as you like; they share one loaded engine per process.
    ``close`` releases this handle; when the last handle closes, the engine is freed.
    """

    provider = PROVIDER
    info: ClassVar[ModelInfo]
    """The catalog entry this class serves."""
    requires: ClassVar[tuple[Requirement, ...]] = ()
    """Packages and programs checked before the first load."""
    max_concurrency: ClassVar[int] = 1
    """Calls of this model that may run at once in this process (its worker threads)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name or self.info.name)
        self.capabilities = self.info.capabilities
        self._acquired = False

    @classmethod
    def factory(cls, settings: Settings) -> LocalModel[Any]:
        """The registry's factory: a new handle (loading waits for ``warm`` or a first call)."""
        return cls()

    # -- what subclasses implement --------------------------------------------------------------

    def load(self) -> EngineT:
        """Load the engine (weights, sessions, program checks). Runs once, in a worker thread."""
        raise NotImplementedError

    def served_by(self, engine: EngineT) -> str:
        """The ``model_served`` of responses (default: the catalog's ``provider_model``)."""
        return self.info.provider_model

    # -- the machinery --------------------------------------------------------------------------

    def _shared(self) -> _Shared:
        cls = type(self)
        with _SHARED_LOCK:
            shared = _SHARED.get(cls)
            if shared is None:
                name = self.info.name.replace("/", "-")
                shared = _SHARED[cls] = _Shared(cls.max_concurrency, f"podium-{name}")
            return shared

    def _checked_load(self) -> EngineT:
        for requirement in self.requires:
            requirement.check(self.name)
        return self.load()

    def _executor(self, shared: _Shared) -> ThreadPoolExecutor:
        if self._acquired:
            return shared.executor()
        self._acquired = True
        return shared.acquire()

    async def run(self, fn: Callable[[EngineT], R]) -> tuple[R, str]:
        """Run ``fn(engine)`` in this model's worker pool; its result and ``model_served``."""
        shared = self._shared()
        executor = self._executor(shared)

        def work(engine: EngineT) -> tuple[R, str]:
            return fn(engine), self.served_by(engine)

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, shared.call, self._checked_load, work)

    async def engine(self) -> EngineT:
        """The loaded engine, loading it first (in the worker pool) if needed.

        For quick reads of what was loaded (e.g. the installed language pairs); inference goes
        through :meth:`run`, which bounds concurrency.
        """
        shared = self._shared()
        executor = self._executor(shared)
        loaded, instance = shared.peek()
        if loaded:
            return cast(EngineT, instance)
        loop = asyncio.get_running_loop()
        return cast(
            EngineT, await loop.run_in_executor(executor, shared.instance, self._checked_load)
        )

    async def warm(self) -> None:
        """Load the engine now (once per process), rather than on the first call."""
        await self.engine()

    async def close(self) -> None:
        """Release this handle; the last handle to close frees the engine and its threads."""
        if self._acquired:
            self._acquired = False
            self._shared().release()

    def stats(self) -> LocalStats:
        """Loads, handles and concurrency of this model in this process."""
        return self._shared().stats()
