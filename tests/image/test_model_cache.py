"""The model cache: one resident model per GPU slot, each job's model its own while it holds the slot."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from masuka.config import Config
from masuka.image.generate import ImageRequest, generate_images
from masuka.model_cache import ModelCache
from masuka.studio import Studio


def test_sessions_get_their_own_copy_and_switching_frees_the_idle_one():
    cache, loaded = ModelCache(capacity=2), []

    def loader(name):
        return lambda: loaded.append(name) or object()

    with cache.session():
        first = cache.get(("m",), loader("m"))
        assert cache.get(("m",), loader("m")) is first  # a job's second ask: the same model
        other: dict = {}
        thread = threading.Thread(target=lambda: other.setdefault("model", _in_session(cache, ("m",), loader("m"))))
        thread.start()
        thread.join(10)
        assert other["model"] is not first and loaded == ["m", "m"]  # the second slot's job got its own copy
    with cache.session():
        assert cache.get(("m",), loader("m")) in (first, other["model"])  # idle copies are reused
        cache.get(("n",), loader("n"))  # full: a switch frees this job's model before loading
    assert loaded == ["m", "m", "n"] and cache.key == ("n",)
    cache.release()
    assert cache.key is None


def test_memory_is_given_back_only_after_a_drop_or_a_failed_load(monkeypatch):
    """A full collection costs a fifth of a second: a load with room skips it, a load that dropped a model
    (or failed) frees memory once."""
    cache, freed = ModelCache(capacity=2), []
    monkeypatch.setattr(cache, "_free_memory", lambda: freed.append(cache.key))
    cache.get(("m",), object)
    cache.get(("n",), object)  # a second slot: room, nothing dropped
    cache.get(("m",), object)  # resident
    assert freed == []
    cache.get(("o",), object)  # full: the idle ("n",) goes first
    assert freed == [("m",)]

    def failing() -> object:
        raise MemoryError

    with pytest.raises(MemoryError):
        cache.get(("p",), failing)
    assert len(freed) == 3  # a drop to make room, then what the failed load took


def test_a_job_waits_for_a_model_another_job_uses_when_every_slot_is_taken():
    cache = ModelCache(capacity=1)
    holding, done, order = threading.Event(), threading.Event(), []

    def first_job():
        with cache.session():
            cache.get(("a",), object)
            holding.set()
            done.wait(10)
            order.append("first done")

    thread = threading.Thread(target=first_job)
    thread.start()
    holding.wait(10)
    second = threading.Thread(target=lambda: order.append(("second got", _in_session(cache, ("b",), object))))
    second.start()
    second.join(0.5)
    assert second.is_alive()  # a model in use is not freed under its job
    done.set()
    thread.join(10)
    second.join(10)
    assert order[0] == "first done" and order[1][0] == "second got" and cache.key == ("b",)


def _in_session(cache: ModelCache, key: tuple, loader):
    with cache.session():
        return cache.get(key, loader)


def test_two_gpu_slots_never_share_a_pipeline_or_its_loras(tmp_path, tiny_model, tiny_lora):
    """Job A (no LoRA) paused after its first step while job B (same model, a LoRA) runs in the second slot:
    A's image is the plain one, and neither job breaks the other's scheduler."""
    studio = Studio.open(Config.from_env(data_dir=tmp_path / "d", auth="", gpu_concurrency=2))
    model, lora = tiny_model("flux"), str(tiny_lora("flux"))

    def request(loras=()):
        return ImageRequest(prompt="a castle", model=str(model), steps=4, width=64, height=64, seed=3,
                            loras=list(loras))

    def pixels(result) -> np.ndarray:
        return np.asarray(Image.open(result.path), dtype=np.int16)

    try:
        plain = pixels(generate_images(studio, request(), allow_any_path=True)[0])
        styled = pixels(generate_images(studio, request([(lora, 1.0)]), allow_any_path=True)[0])
        assert np.abs(plain - styled).mean() > 1.0
        paused, resume, out = threading.Event(), threading.Event(), {}

        def pause_after_first_step(_index, step, _total):
            if step == 1:
                paused.set()
                resume.wait(60)

        def job_a():
            out["a"] = pixels(generate_images(studio, request(), on_step=pause_after_first_step,
                                              allow_any_path=True)[0])

        thread = threading.Thread(target=job_a)
        thread.start()
        assert paused.wait(60)
        out["b"] = pixels(generate_images(studio, request([(lora, 1.0)]), allow_any_path=True)[0])
        resume.set()
        thread.join(120)
        assert np.array_equal(out["b"], styled) and np.array_equal(out["a"], plain)
        assert studio.models.loads == 2  # one pipeline per slot, each loaded once
    finally:
        studio.close()


def test_a_pinned_model_stays_and_a_forked_copy_of_the_cache_has_its_own_locks():
    cache = ModelCache(capacity=1)
    space = cache.get(("space",), object)
    cache.pin(("space",))
    other = cache.get(("other",), object)  # the pinned model is outside the capacity
    cache.release()
    assert cache.get(("space",), lambda: None) is space and other is not None and cache.loads == 2

    held, done = threading.Event(), threading.Event()

    def parent_thread():  # holds the lock and a model, as a thread of the app may when a worker is forked
        with cache._changed, cache.session():
            cache.get(("space",), object)
            held.set()
            done.wait(10)

    thread = threading.Thread(target=parent_thread)
    thread.start()
    held.wait(10)
    cache._pid = -1  # as in the forked worker, where that thread does not exist
    cache.in_this_process()
    with cache.session():
        assert cache.get(("space",), lambda: None) is space  # no wait on the lock or the holder
    done.set()
    thread.join(10)


def test_two_loads_at_once_never_leave_torch_patched():
    """diffusers loads inside accelerate's ``init_empty_weights``, which patches ``nn.Module.register_parameter``
    for the whole process: two loads in two GPU slots at once, the first ending first, would leave the second's
    patch (the first's patched method) in place, so every module built afterwards lands on ``meta``. Loads take
    turns (:func:`masuka.model_cache.building`)."""
    import torch
    from accelerate import init_empty_weights

    cache, original = ModelCache(capacity=2), torch.nn.Module.register_parameter
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with init_empty_weights():
            first_in.set()
            second_in.wait(1)  # the second load, were it let in meanwhile
        first_out.set()
        return "first"

    def second():
        with init_empty_weights():
            second_in.set()
            first_out.wait(1)
        return "second"

    def load_second():
        first_in.wait(10)
        _in_session(cache, ("b",), second)

    thread = threading.Thread(target=load_second)
    thread.start()
    try:
        _in_session(cache, ("a",), first)
        thread.join(10)
        assert torch.nn.Module.register_parameter is original
        assert torch.nn.Linear(2, 2).weight.device.type == "cpu"
    finally:
        torch.nn.Module.register_parameter = original


def test_a_forked_worker_can_load_while_the_parent_was_loading():
    """A ZeroGPU worker is forked from the app, maybe while one of its threads holds the building lock: the child
    gets a free one (that thread does not exist there), not a lock nobody will release."""
    import os

    from masuka import model_cache

    held, done = threading.Event(), threading.Event()

    def load():
        with model_cache.building():
            held.set()
            done.wait(10)

    thread = threading.Thread(target=load)
    thread.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: exit at once, with whether the lock was free
            os._exit(0 if model_cache._BUILDING.acquire(timeout=2) else 1)
        assert os.waitpid(pid, 0)[1] == 0
    finally:
        done.set()
        thread.join(10)
