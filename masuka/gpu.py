"""The one way GPU work runs: slots shared by every thread and process, device choice, ZeroGPU, stop flags.

Gradio events that use the GPU share the concurrency group :data:`CONCURRENCY_ID`; inside, and for
background jobs and the CLI, :meth:`GPURunner.hold` takes one of ``slots`` lock files in the data dir, so
two jobs never use the GPU at once unless the configured memory plan allows more than one slot.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masuka.config import device_choice, on_zerogpu
from masuka.errors import Cancelled, GPUBusy, InvalidInput
from masuka.memory_plans import PLANS, plan_named

CONCURRENCY_ID = "gpu"
#: how a queued (background) job names itself in a slot's lock file
BACKGROUND_LABEL = "[queued]"


class GPURunner:
    """Cross-thread, cross-process GPU slots backed by ``flock`` on files in the data dir."""

    def __init__(self, lock_dir: Path, slots: int = 1):
        self.lock_dir = Path(lock_dir)
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        self.slots = max(1, slots)

    def _slot_path(self, index: int) -> Path:
        return self.lock_dir / f"gpu-{index}.lock"

    def holders(self) -> list[str]:
        """What holds each busy slot, as written by its holder (for messages)."""
        found = []
        for index in range(self.slots):
            path = self._slot_path(index)
            if not path.exists():
                continue
            with open(path, "a+") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(handle, fcntl.LOCK_UN)
                except BlockingIOError:
                    handle.seek(0)
                    found.append(handle.read().strip() or "another job")
        return found

    @contextmanager
    def hold(self, job: str, timeout: float | None = None, on_wait: Callable[[str], None] | None = None,
             private: bool = False, background: bool = False, cancelled: Callable[[], bool] | None = None
             ) -> Iterator[None]:
        """Hold a GPU slot for ``job``; wait up to ``timeout`` seconds (``None``: forever), else GPUBusy. While
        waiting, ``cancelled()`` is asked a few times a second: when it says yes, :class:`Cancelled` is raised.

        The refusal and the wait message name the jobs holding the GPU, unless ``private`` (a caller who may
        not know what other users run, nor stop them): then they say "another job" and do not offer to stop it.

        Interactive requests go first: while one waits, ``background`` holds (queued jobs) do not take a
        slot, and an interactive request waits past its timeout when only queued work holds the GPU (a
        queued job takes the slot one image at a time, so the wait is short).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        label = f"{BACKGROUND_LABEL} {job}" if background else job
        told = False
        wanted: Path | None = None
        try:
            while True:
                handle = None if background and self.interactive_waiting() else self._try_acquire(label)
                if handle is not None:
                    break
                if cancelled is not None and cancelled():
                    raise Cancelled(at="while it waited for the GPU")
                if not background and wanted is None:
                    wanted = self.lock_dir / f"wanted-{os.getpid()}-{threading.get_ident()}"
                    wanted.touch()
                holders = self.holders()
                busy = "another job" if private else ", ".join(holders) or "another job"
                only_queued = bool(holders) and all(h.startswith(BACKGROUND_LABEL) for h in holders)
                if deadline is not None and time.monotonic() >= deadline and not only_queued:
                    raise GPUBusy(f"The GPU is busy with {busy}. Try again when it finishes"
                                  + ("." if private else ", or stop it."))
                if on_wait and not told:
                    on_wait(f"waiting for the GPU ({busy})")
                    told = True
                time.sleep(0.2)
        finally:
            if wanted is not None:
                wanted.unlink(missing_ok=True)
        try:
            yield
        finally:
            try:
                handle.truncate(0)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()

    def interactive_waiting(self) -> bool:
        """Whether a live interactive request (any process) is waiting for a slot."""
        from masuka.store import process_alive

        for marker in self.lock_dir.glob("wanted-*"):
            pid = int(marker.name.split("-")[1])
            if pid == os.getpid() or process_alive(pid):
                return True
            marker.unlink(missing_ok=True)  # left by a process that died while waiting
        return False

    def _try_acquire(self, job: str):
        for index in range(self.slots):
            handle = open(self._slot_path(index), "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:  # a full disk must not leave the slot locked by a handle nobody will close
                handle.truncate(0)
                handle.write(f"{job} (pid {os.getpid()})")
                handle.flush()
            except BaseException:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
                raise
            return handle
        return None


@dataclass
class _Flag:
    """A stop flag and the work using it: clicks whose work waits in the queue, work running."""

    event: threading.Event = field(default_factory=threading.Event)
    waiting: list[str | None] = field(default_factory=list)  # the queue's event ids of the clicks (None: unnamed)
    running: int = 0


#: the attribute that names the tab whose Stop ends an event's work (:func:`stop_key`), set on the event's function
STOP_TAB = "masuka_stop_tab"


def stop_key(tab: str, session: str | None, user: str) -> str:
    """The key of ``tab``'s flags in :class:`StopFlags`: one per tab and browser session (else per user)."""
    return f"{tab}:{session or user}"


class StopFlags:
    """Per-session stop requests: the Stop button sets a key's flags, the work checks them. A flag is there from
    the queue's admission of the work (:meth:`arm`, before the work waits in Gradio's queue) or from the work's
    start (:meth:`start`) until the work ends (:meth:`disarm`; :meth:`armed` does both ends), so a Stop pressed
    while the work waits counts, and a Stop with nothing waiting or running stops nothing."""

    def __init__(self) -> None:
        self._flags: dict[str, list[_Flag]] = {}
        self._lock = threading.Lock()
        #: drops the arms of queued work that ended without taking them (:meth:`unarm`), called before a Stop
        #: answers; the app's queue sets it (:func:`masuka.guards.guard_queue`)
        self.forget_ended: Callable[[], None] = lambda: None

    def arm(self, key: str, work: str | None = None) -> threading.Event:
        """The flag of work just accepted into the queue (``work``: its event id there), which its :meth:`start`
        takes: the key's flag not yet stopped (one Stop ends the work waiting and running), else a new one. An arm
        its work never takes (Gradio refused the input before the work ran) must be :meth:`unarm`-ed once the work
        has ended, as :func:`masuka.guards.guard_queue` does, or a later Stop would set it for the key's next work."""
        with self._lock:
            flag = self._open(key)
            flag.waiting.append(work)
            return flag.event

    def unarm(self, key: str, event: threading.Event, work: str | None = None) -> None:
        """The arm of ``work`` (:meth:`arm`, which returned ``event``) if no :meth:`start` took it: the work was taken
        out of the queue, or ended without starting."""
        with self._lock:
            flags = self._flags.get(key, [])
            flag = next((flag for flag in flags if flag.event is event and work in flag.waiting), None)
            if flag is not None:
                flag.waiting.remove(work)
                if not flag.waiting and not flag.running:
                    flags.remove(flag)
            if not flags:
                self._flags.pop(key, None)

    def start(self, key: str) -> threading.Event:
        """The flag of work starting: the one armed as it was queued (set when a Stop came while it waited), else the
        key's flag not yet stopped, else a new one. :meth:`disarm` it when the work ends."""
        with self._lock:
            flag = next((flag for flag in self._flags.get(key, []) if flag.waiting), None)
            if flag is None:
                flag = self._open(key)
            else:  # the oldest arm: the queue starts the key's work in the order it armed it
                flag.waiting.pop(0)
            flag.running += 1
            return flag.event

    def disarm(self, key: str, event: threading.Event) -> None:
        """The work of ``event`` has ended: the flag is forgotten when no other work uses it."""
        with self._lock:
            flags = self._flags.get(key, [])
            for flag in flags:
                if flag.event is event:
                    flag.running -= 1
                    if not flag.running and not flag.waiting:
                        flags.remove(flag)
                    break
            if not flags:
                self._flags.pop(key, None)

    @contextmanager
    def armed(self, key: str) -> Iterator[threading.Event]:
        """The flag of the work done inside the ``with``: :meth:`start` on entry, disarmed however it ends."""
        event = self.start(key)
        try:
            yield event
        finally:
            self.disarm(key, event)

    def stop(self, key: str) -> bool:
        """Set the key's flags; whether any work was waiting or running to stop (not an arm left by work Gradio
        refused before it ran: :attr:`forget_ended` drops those first)."""
        self.forget_ended()
        with self._lock:
            flags = list(self._flags.get(key, []))
        for flag in flags:
            flag.event.set()
        return bool(flags)

    def _open(self, key: str) -> _Flag:
        """The key's newest flag when it is not set, else a new one (called with the lock held)."""
        flags = self._flags.setdefault(key, [])
        if not flags or flags[-1].event.is_set():
            flags.append(_Flag())
        return flags[-1]


def check_stop(event: threading.Event | None) -> None:
    """Raise :class:`Cancelled` when the stop flag is set."""
    if event is not None and event.is_set():
        raise Cancelled()


#: The plans ``auto`` picks from, fastest first: the ``automatic`` rows of :data:`masuka.memory_plans.PLANS`.
MEMORY_PLANS = tuple(plan.name for plan in PLANS if plan.automatic)
#: Free memory kept spare when choosing a plan (the CUDA context, fragmentation, the decode).
HEADROOM_GB = 1.0


@dataclass(frozen=True)
class DevicePlan:
    """Where and how a pipeline runs: device, dtype, memory plan and the fast path settings."""

    device: str
    dtype_name: str
    memory: str = "full"
    vae_tiling: bool = False
    fast: bool = False
    step_cache: float = 0.0

    @property
    def dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype_name)


def choose_memory_plan(free_gb: float, needs_gb: Mapping[str, float | None]) -> str:
    """The fastest plan whose peak memory (``needs_gb``: plan -> GB) fits in ``free_gb`` with headroom.

    A plan with no figure is skipped, except ``full`` when nothing is known (an unknown repo): then the
    model gets the whole GPU. When nothing fits, the smallest plan is the best chance.
    """
    if not any(needs_gb.get(name) for name in MEMORY_PLANS):
        return "full"
    for name in MEMORY_PLANS:
        need = needs_gb.get(name)
        if need is not None and need + HEADROOM_GB <= free_gb:
            return name
    return MEMORY_PLANS[-1]


def usable_device() -> str:
    """The device models run on: ``MASUKA_DEVICE``, ``auto`` picking CUDA, then MPS, then the CPU. CUDA or MPS asked
    for where torch finds none is :class:`InvalidInput` naming the variable (imports torch)."""
    import torch

    choice = device_choice()
    found = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if choice == "auto":
        return next((device for device, there in found.items() if there), "cpu")
    if not found.get(choice, True):
        raise InvalidInput(f"MASUKA_DEVICE={choice}, but torch {torch.__version__} finds no {choice.upper()} device "
                           "on this machine: set MASUKA_DEVICE=auto (or cpu), or install a torch build for it.")
    return choice


def device_plan(vram_needed_gb: float | None = None, *, memory: str = "auto",
                memory_needs_gb: Mapping[str, float | None] | None = None, fast: bool = False,
                step_cache: float = 0.0) -> DevicePlan:
    """Pick device, dtype and memory plan: CUDA bf16 (fp16 on older cards), Apple MPS fp16, CPU fp32.

    On CUDA, ``memory="auto"`` picks the fastest plan that fits the free memory, from the model's figures
    per plan (``memory_needs_gb``) or its full-GPU need; any plan the user names is used as named. VAE tiling
    and slicing come with every plan that offloads. Elsewhere the named plan is applied as far as it means
    anything there (``auto`` is ``full``), VAE tiling included.
    """
    import torch

    choice = usable_device()
    if choice == "cuda":
        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        if memory == "auto" and on_zerogpu():
            memory = "full"  # a 70 GB slice of an H200; CUDA is only emulated outside GPU functions
        elif memory == "auto":
            needs = dict(memory_needs_gb or {})
            needs.setdefault("full", vram_needed_gb)
            memory = choose_memory_plan(torch.cuda.mem_get_info()[0] / 1e9, needs)  # GB, as the figures
    else:
        dtype = "float16" if choice == "mps" else "float32"
        memory = "full" if memory == "auto" else memory
    return DevicePlan(choice, dtype, memory=memory, vae_tiling=plan_named(memory).placement != "device",
                      fast=fast, step_cache=step_cache)


def zerogpu(duration: int | Callable[..., int] = 60) -> Callable[[Callable], Callable]:
    """Run a GPU function through ``spaces.GPU`` on Hugging Face ZeroGPU Spaces (in its forked worker, see
    :func:`masuka.zerogpu.gpu_task`); a no-op everywhere else.

    ``duration`` may be a callable taking the function's arguments (an estimate from steps and size, see
    :func:`masuka.zerogpu.request_seconds`); it is evaluated before a GPU is asked for, so an estimate that
    refuses the request (raising) costs no GPU time and no quota.
    """

    def decorate(func: Callable) -> Callable:
        if not on_zerogpu() or importlib.util.find_spec("spaces") is None:
            return func
        from masuka.gpu_worker import gpu_task

        return gpu_task(func, duration)

    return decorate
