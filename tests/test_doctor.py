"""``doctor``'s device line and its word on GPU-only extras; install lines quoted from requirements-extras.txt."""

from __future__ import annotations

import importlib.util
import json

import pytest

from masuka.cli import main
from masuka.compat import installed
from masuka.errors import InvalidInput
from masuka.extras import install_line
from masuka.memory_plans import plan_named


def test_doctor_says_what_models_run_on_and_that_a_cuda_only_extra_has_no_cuda(capsys, monkeypatch):
    import torch

    monkeypatch.setenv("MASUKA_DEVICE", "auto")
    assert main(["doctor", "--json"]) in (0, 2)  # its exit code is the install's, not the device's
    report = json.loads(capsys.readouterr().out)
    bnb = next(extra for extra in report["extras"] if extra["name"] == "bitsandbytes")
    if torch.cuda.is_available():
        card = torch.cuda.get_device_properties(torch.cuda.current_device())
        assert report["device"] == f"cuda: {card.name}, {card.total_memory / 2**30:.0f} GB"
        assert bnb["unusable"] is None
    elif not torch.backends.mps.is_available():
        assert report["device"] == "cpu (no CUDA or MPS found: generation will be slow)"
        assert bnb["unusable"] == ("needs CUDA, not found" if installed("bitsandbytes") else None)
    main(["doctor"])
    lines = capsys.readouterr().out.splitlines()
    assert f"device           {report['device']}" in lines
    [line] = [line for line in lines if line.startswith("extra bitsandbytes")]
    assert line.endswith("(installed; needs CUDA, not found)") == bool(bnb["unusable"])


def test_a_missing_optimizer_s_install_line_is_the_extras_file_s_as_the_memory_plans_say_it(monkeypatch):
    from masuka.training.options import TrainOptions, check_options, fill_defaults

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "bitsandbytes"
                        else real(name, *rest))
    assert install_line("bitsandbytes") == "pip install 'bitsandbytes>=0.46.1,<1'" == plan_named("nf4_offload").install
    assert plan_named("gguf_offload").install == "pip install 'gguf>=0.10,<1'"
    options = fill_defaults(TrainOptions(dataset="d", base="b", optimizer="adamw8bit"), "flux")
    with pytest.raises(InvalidInput) as refused:
        check_options(options, "flux", 16)
    assert str(refused.value) == ("The adamw8bit optimizer needs the 'bitsandbytes' package: pip install "
                                  "'bitsandbytes>=0.46.1,<1' (see requirements-extras.txt), or choose adamw.")
