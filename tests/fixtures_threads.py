"""A fixture that runs a test module's small torch models on one CPU thread: at a few hundred units the
intra-op threads only contend with each other (and with other jobs on a shared machine)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """torch.set_num_threads(1) for the module, restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
