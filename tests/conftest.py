import pytest
import torch


@pytest.fixture
def gen():
    """A seeded torch generator: every random test draws through it."""
    return torch.Generator().manual_seed(0)
