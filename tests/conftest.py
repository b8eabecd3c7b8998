import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see ecodiff_bench/__init__.py
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(2)
    yield


FAKE_NVML = Path(__file__).parent / "fakes" / "pynvml.py"


@pytest.fixture
def nvml(monkeypatch):
    """A fresh fake NVML (tests/fakes/pynvml.py) installed as ``pynvml``, with CUDA_VISIBLE_DEVICES unset."""
    spec = importlib.util.spec_from_file_location("pynvml", FAKE_NVML)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return mod


@pytest.fixture
def fake_from_pretrained(monkeypatch):
    """Every family's pipeline class replaced by tests/fakes/pipeline.py; returns its list of calls."""
    from fakes.pipeline import FakePipeline

    from ecodiff_bench.models import families

    FakePipeline.calls = []
    monkeypatch.setattr(families.Family, "pipeline_cls", lambda self: FakePipeline)
    return FakePipeline.calls
