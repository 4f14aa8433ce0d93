"""One resident model at a time: pipelines and captioners load on first use and stay for the next request.

Asking for a different model frees the previous one first, so switching never holds two in memory.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from typing import Any


class ModelCache:
    """Keeps the last loaded model keyed by what it was loaded from and how."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._model: Any = None
        self._lock = threading.RLock()
        self.loads = 0

    def get(self, key: tuple, loader: Callable[[], Any]) -> Any:
        """Return the cached model for ``key``, or free the current one and call ``loader``."""
        with self._lock:
            if self._key == key and self._model is not None:
                return self._model
            self.release()
            self._model = loader()
            self._key = key
            self.loads += 1
            return self._model

    @property
    def key(self) -> tuple | None:
        return self._key

    def release(self) -> None:
        """Drop the resident model and give its memory back."""
        with self._lock:
            if self._model is None:
                return
            self._model = None
            self._key = None
            gc.collect()
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
