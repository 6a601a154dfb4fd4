"""One cache of loaded models for the process, keyed on every parameter of the load.

Every KB that names the same model with the same load parameters (device, backend, batch size ...) shares
one loaded copy; two threads asking for the same key at once load it once (a per-key lock, so loading
one model never waits for another). A load that fails is not cached: the caller decides how long the
failure stands (a served KB generation keeps it for its life, so the next generation tries again).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ModelCache:
    def __init__(self) -> None:
        self._models: dict[tuple[str, Hashable], Any] = {}
        self._locks: dict[tuple[str, Hashable], threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, key: Hashable, load: Callable[[], T]) -> T:
        """The ``kind`` model loaded with parameters ``key``, loading it with ``load()`` the first time."""
        k = (kind, key)
        with self._lock:
            if k in self._models:
                return self._models[k]
            lock = self._locks.setdefault(k, threading.Lock())
        with lock:
            with self._lock:
                if k in self._models:
                    return self._models[k]
            model = load()
            with self._lock:
                self._models[k] = model
            return model

    def loaded(self, kind: str | None = None) -> list[tuple[str, Hashable]]:
        """The (kind, key) of every model loaded so far (of one kind, when given)."""
        with self._lock:
            return [k for k in self._models if kind is None or k[0] == kind]


MODELS = ModelCache()
