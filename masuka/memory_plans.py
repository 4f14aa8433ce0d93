"""The memory plans: where a pipeline's weights live and in what precision, one row each in :data:`PLANS`.

Every reader asks the rows: the CLI's and the Image tab's choices and help, validation, the automatic choice
(:func:`masuka.gpu.choose_memory_plan`), placement (:func:`masuka.image.memory.apply_memory_plan`), the 8-bit text
encoder and the 4-bit transformers (:mod:`masuka.image.quantized`). Importable without torch or Gradio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from masuka.errors import InvalidInput

#: ``device``: everything on the device; ``model_offload``: each model moves to the GPU only while it runs;
#: ``group_offload``: leaf layers stream to the GPU one at a time (the VAE stays on the device).
Placement = Literal["device", "model_offload", "group_offload"]


@dataclass(frozen=True)
class MemoryPlan:
    """One memory plan. Plans that do not keep everything on the device also tile and slice the VAE decode."""

    name: str
    help: str
    placement: Placement
    #: the denoisers' weights stored in fp8, upcast layer by layer (not on Apple MPS)
    fp8_storage: bool = False
    #: the profile's big text encoder loaded in 8-bit through bitsandbytes, on CUDA, when it is installed
    encoder_8bit: bool = False
    #: the transformer loaded in 4 bits from the model's files, as :mod:`masuka.image.quantized` builds it
    quantized: Literal["nf4", "gguf"] | None = None
    #: the package the plan cannot run without (an extra of requirements-extras.txt)
    package: str | None = None
    #: whether ``auto`` may pick it, from the model's peak-memory figure for it (rows listed fastest first)
    automatic: bool = False

    @property
    def install(self) -> str | None:
        """The line that installs :attr:`package` (for the refusal)."""
        from masuka.extras import install_line

        return install_line(self.package) if self.package else None

    @property
    def fusable(self) -> bool:
        """Whether QKV fusion and torch.compile work: no per-layer hooks (fp8 storage and group offloading hook
        every layer at load, a fused layer made later would escape them, and the hooks break compiled graphs), and
        no 4-bit layers."""
        return self.placement != "group_offload" and not self.fp8_storage and self.quantized is None


#: Every plan, the automatic ones from the fastest (everything on the GPU) to the smallest footprint.
PLANS: tuple[MemoryPlan, ...] = (
    MemoryPlan("full", "everything on the GPU, fastest", "device", automatic=True),
    MemoryPlan("model_offload", "each model moves to the GPU only while it runs", "model_offload", automatic=True),
    MemoryPlan("fp8_offload", "the denoiser's weights stored in fp8, and model offload", "model_offload",
               fp8_storage=True, encoder_8bit=True, automatic=True),
    MemoryPlan("group_offload", "layers stream to the GPU one at a time, for the smallest cards", "group_offload",
               encoder_8bit=True, automatic=True),
    MemoryPlan("nf4_offload", "a 4-bit NF4 transformer and text encoder (bitsandbytes, CUDA) and model offload",
               "model_offload", quantized="nf4", package="bitsandbytes"),
    MemoryPlan("gguf_offload", "the transformer from a .gguf file ($MASUKA_GGUF_FILE, needs gguf) and model offload",
               "model_offload", encoder_8bit=True, quantized="gguf", package="gguf"),
)


def plan_names() -> list[str]:
    """The names of every plan, in table order (``auto`` is not one: it picks one of them)."""
    return [plan.name for plan in PLANS]


def find_plan(name: str) -> MemoryPlan | None:
    """The plan called ``name``; ``None`` for ``auto`` or an unknown name."""
    return next((plan for plan in PLANS if plan.name == name), None)


def plan_named(name: str) -> MemoryPlan:
    """The plan called ``name``; an unknown name is :class:`InvalidInput` listing the choices."""
    plan = find_plan(name)
    if plan is None:
        raise InvalidInput(f"Unknown memory plan {name!r}: use auto, {', '.join(plan_names())}.")
    return plan
