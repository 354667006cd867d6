"""The test setup of this package (conftest.py): one torch thread, module fixtures included."""

import torch


def test_module_fixtures_are_built_on_one_thread(threads_at_module_setup):
    assert threads_at_module_setup == 1
    assert torch.get_num_threads() == 1
