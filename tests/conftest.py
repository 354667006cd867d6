"""Hypothesis profiles: ``dev`` (fast, local) and ``ci`` (>= 200 examples, derandomized).

Choose with the HYPOTHESIS_PROFILE environment variable; ``.ci/run`` sets ``ci``. A red CI run
replays exactly on any machine with ``HYPOTHESIS_PROFILE=ci``.
"""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=200,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Two threads match the CI machine; fewer threads also keep tiny models fast.
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def int8_calls(monkeypatch):
    """Every call of the evaluation engine's int8 op in this test: whether it ran in int8."""
    import funcspace.evaluation.stacked as stacked

    calls = []
    real = stacked.int8_linear

    def recording(h, weight, *, row):
        out = real(h, weight, row=row)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(stacked, "int8_linear", recording)
    return calls
