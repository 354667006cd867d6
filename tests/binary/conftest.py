"""binary's tests run tiny models: one torch thread is faster than two for them (thread start-up
dominates), and two OpenMP threads on a busy two-core machine spin-wait."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
