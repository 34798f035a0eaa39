"""Shared test set-up: the hypothesis profile and tiny seeded models.

Profiles: ``fairadv`` (default, fast enough for every commit) and ``thorough`` (ten times the examples), chosen with
``FAIRADV_HYPOTHESIS_PROFILE=thorough``.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings
from torch import nn

# deadline=None: the first call of a torch op is slow (lazy init), which would read as a flaky deadline.
# function_scoped_fixture is suppressed on purpose: the model fixtures are only read by hypothesis tests (attacks run
# in eval mode, never step the parameters, and the tests assert exactly that), so sharing one across examples is safe.
settings.register_profile(
    "fairadv", deadline=None, max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile("thorough", parent=settings.get_profile("fairadv"), max_examples=300)
settings.load_profile(os.environ.get("FAIRADV_HYPOTHESIS_PROFILE", "fairadv"))

# The test tensors are tiny: on a small CPU, thread hand-off costs 10-20x the arithmetic (measured on 2 cores).
torch.set_num_threads(1)

NUM_CLASSES = 3
INPUT_SHAPE = (1, 6, 6)


class TinyCNN(nn.Module):
    """Conv(1->4, 3x3, no bias: BN follows) - BatchNorm - ReLU - flatten - Linear(64 -> 3), for 1x6x6 inputs."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def make_tiny_model(seed: int = 0) -> TinyCNN:
    """A freshly initialised TinyCNN; seeded without touching the global RNG the tests seed themselves."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TinyCNN()


def synthetic_batch(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable 3-class task on 1x6x6 images: class 0 has a bright top-left, class 1 a bright bottom-right
    3x3 corner, class 2 neither; noise in [0, 0.4] everywhere."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % NUM_CLASSES
    x = 0.4 * torch.rand(n, *INPUT_SHAPE, generator=g)
    x[y == 0, :, :3, :3] += 0.55
    x[y == 1, :, 3:, 3:] += 0.55
    return x.clamp(0, 1), y


@pytest.fixture(scope="session")
def _trained_state() -> dict[str, torch.Tensor]:
    model = make_tiny_model(1)
    x, y = synthetic_batch(96)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(60):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(name="synthetic_batch")
def synthetic_batch_fixture():
    """`synthetic_batch(n, seed)`: labelled images the trained model mostly gets right."""
    return synthetic_batch


@pytest.fixture
def tiny_model() -> TinyCNN:
    """A seeded, untrained TinyCNN in train mode (a fresh one per test)."""
    return make_tiny_model(0)


@pytest.fixture
def trained_tiny_model(_trained_state: dict[str, torch.Tensor]) -> TinyCNN:
    """A TinyCNN trained briefly on `synthetic_batch` (about 100 % clean train accuracy), in train mode."""
    model = TinyCNN()
    model.load_state_dict(_trained_state)
    return model
