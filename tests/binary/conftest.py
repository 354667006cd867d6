"""binary's tests run tiny models: one torch thread is faster than two for them (thread start-up
dominates), and two OpenMP threads on a busy two-core machine spin-wait.

The setting is package-scoped: pytest sets up higher-scoped fixtures first, so it is in place
before the module-scoped fixtures of every test module here (trained solutions, data sets) are
built, and it is restored once the last test of this package has run.
"""

import pytest
import torch


@pytest.fixture(scope="package", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def threads_at_module_setup():
    """The number of torch threads a module-scoped fixture of this package is built with."""
    return torch.get_num_threads()
