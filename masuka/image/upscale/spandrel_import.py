"""spandrel, imported whether or not torchvision is usable.

spandrel declares torchvision as a dependency, but only two of its architectures import it: LaMa (inpainting)
and RestoreFormer (face restoration), neither an upscaler. PyPI's torchvision is built for PyPI's CUDA torch: it
does not import beside a CPU-only torch, and an installed-but-broken torchvision also breaks transformers' image
processors. So MASUKA installs spandrel with ``--no-deps`` and, when torchvision cannot be imported, stands in for
those two architectures with ones that recognise no file; every upscaler architecture loads as usual.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Any

from masuka.errors import ModelUnavailable

#: spandrel's modules that import torchvision -> the architecture class each provides
NEEDS_TORCHVISION = {"spandrel.architectures.LaMa": "LaMaArch",
                     "spandrel.architectures.RestoreFormer": "RestoreFormerArch"}
INSTALL = 'pip install --no-deps "spandrel>=0.4.2,<0.5" && pip install "einops>=0.8,<1"'


def import_spandrel() -> ModuleType:
    """The ``spandrel`` module; raises :class:`ModelUnavailable` saying how to install it when it is missing."""
    if importlib.util.find_spec("spandrel") is None:
        raise ModelUnavailable(f"Model upscalers need the spandrel extra: {INSTALL}")
    try:
        return importlib.import_module("spandrel")
    except (ImportError, RuntimeError) as error:  # torchvision missing, or built for another torch
        if "torchvision" not in f"{getattr(error, 'name', '')} {error}":
            if isinstance(error, ModuleNotFoundError):
                raise ModelUnavailable(f"spandrel needs {error.name}: {INSTALL}") from None
            raise
    for name in [name for name in sys.modules if name == "spandrel" or name.startswith("spandrel.")]:
        del sys.modules[name]  # the half-imported package, so that it is imported again whole
    finder = _WithoutTorchvision()
    sys.meta_path.insert(0, finder)
    try:
        return importlib.import_module("spandrel")
    finally:
        sys.meta_path.remove(finder)


class _WithoutTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the modules of :data:`NEEDS_TORCHVISION` as architectures that never match a file."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        return importlib.util.spec_from_loader(name, self) if name in NEEDS_TORCHVISION else None

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        base = _architecture_base()
        arch_id = module.__name__.rpartition(".")[2]

        class Unavailable(base):  # type: ignore[misc, valid-type]  # spandrel's base, found at run time
            def __init__(self) -> None:
                super().__init__(id=arch_id, detect=lambda state_dict: False)

            def load(self, state_dict: Any) -> Any:
                raise ModelUnavailable(f"spandrel's {arch_id} architecture needs torchvision.")

        setattr(module, NEEDS_TORCHVISION[module.__name__], Unavailable)


def _architecture_base() -> Any:
    """spandrel's ``Architecture`` base class (its package is still being imported when this is asked for)."""
    return importlib.import_module("spandrel.__helpers.model_descriptor").Architecture
