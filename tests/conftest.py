"""Shared test set-up: the hypothesis profile, tiny seeded models, the session's finished digits run, and the rule
that a test which trains is marked ``slow``.

Profiles: ``fairadv`` (default, fast enough for every commit) and ``thorough`` (ten times the examples), chosen with
``FAIRADV_HYPOTHESIS_PROFILE=thorough``. The inner loop leaves the training tests out: ``pytest -m "not slow"``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import DIGITS, SESSION_RUN
from hypothesis import HealthCheck, settings
from torch import nn

import fairadv
from fairadv.train.engine import Trainer

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


_shared_training: list[bool] = []  # non-empty while digits_run trains (see pytest_runtest_call below)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A finished digits run folder (`helpers.SESSION_RUN`: 2 TRADES epochs), trained once per session for the
    tests that only read a finished run. Never write into it (use `digits_run_copy`); the session checks that."""
    out = tmp_path_factory.mktemp("session_run")
    _shared_training.append(True)  # may be first asked for inside a test (request.getfixturevalue)
    try:
        fairadv.run(fairadv.Recipe.load(DIGITS, SESSION_RUN), out=out)
    finally:
        _shared_training.pop()
    run = out / "trades_digits"
    before = _fingerprint(run)
    yield run
    assert _fingerprint(run) == before, f"a test changed the shared run folder {run}: copy it (digits_run_copy)"


@pytest.fixture
def digits_run_copy(digits_run: Path, tmp_path: Path) -> Path:
    """A copy of the session's digits run, ``<tmp_path>/runs/trades_digits``, for a test to write into."""
    return Path(shutil.copytree(digits_run, tmp_path / "runs" / digits_run.name))


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test that trains must be marked ``slow``: in any other test, running a training epoch fails it. Fixtures
    (set up before this call) may train, and so may `digits_run` wherever it is first asked for."""
    if item.get_closest_marker("slow") is not None:
        yield
        return
    run_epoch = Trainer._run_epoch

    def refuse(self: Trainer, epoch: int, progress: object) -> None:
        if _shared_training:
            return run_epoch(self, epoch, progress)
        pytest.fail(f"{item.nodeid} trains: mark it @pytest.mark.slow (or use the digits_run fixture)", pytrace=False)

    Trainer._run_epoch = refuse
    try:
        yield
    finally:
        Trainer._run_epoch = run_epoch
