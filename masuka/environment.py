"""The ``MASUKA_*`` variables that their own modules read when first used (each service's base URL, the timing
of remote calls, the prompt optimizer's timeout, fal's upload hosts, the device and compile backend, the ZeroGPU
settings), checked together so that ``serve`` and ``doctor`` report a bad value before the app starts, not at
someone's first request."""

from __future__ import annotations

from masuka.config import compile_backend, device_choice, env_url, on_zerogpu, public_space, zerogpu_aoti
from masuka.image.prompt_optimizer import timeout_s
from masuka.keys import services
from masuka.remote.timing import RemoteSettings
from masuka.training.backends.fal import CDN_URL, STORAGE_URL
from masuka.zerogpu import max_seconds, space_spec


def check_environment(probe_device: bool = False) -> None:
    """Read every such variable; :class:`~masuka.errors.InvalidInput` names the first bad one. With
    ``probe_device`` (``doctor``), a device named in ``MASUKA_DEVICE`` (CUDA, MPS) must be there too, which imports
    torch (not on ZeroGPU, where only GPU functions get a GPU); ``serve`` leaves that to the first model load, to
    start without torch."""
    if device_choice() in ("cuda", "mps") and probe_device and not on_zerogpu():
        from masuka.gpu import usable_device

        usable_device()
    compile_backend()
    public_space()
    zerogpu_aoti()
    max_seconds()
    for service in services().values():
        service.base_url()
    for setting in (STORAGE_URL, CDN_URL):
        env_url(*setting)
    RemoteSettings.from_env()
    timeout_s()
    space_spec()
