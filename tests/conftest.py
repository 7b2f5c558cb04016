import pytest
import torch


@pytest.fixture
def gen():
    """A seeded torch generator: every random test draws through it."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a whole test module (tiny products: threads only add contention on 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
