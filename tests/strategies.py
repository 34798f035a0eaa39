"""Shared hypothesis strategies: small images, labels, logits, probability matrices, per-class weights and radii.

Every float is bounded float32 without NaN, infinities or subnormals: fairadv promises nothing for those inputs, so a
failure here is about the code under test and not about float edge cases.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

NUM_CLASSES = 3
IMAGE_SHAPE = (1, 6, 6)
MAX_BATCH = 4


def floats32(min_value: float, max_value: float) -> st.SearchStrategy[float]:
    """Bounded float32 values in [min_value, max_value] (bounds rounded inwards to float32): no NaN, no infinities,
    no subnormals."""
    low, high = np.float32(min_value), np.float32(max_value)
    if low < min_value:
        low = np.nextafter(low, np.float32(np.inf))
    if high > max_value:
        high = np.nextafter(high, np.float32(-np.inf))
    return st.floats(float(low), float(high), width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _tensor(draw: st.DrawFn, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    array = draw(hnp.arrays(np.float32, shape, elements=floats32(low, high)))
    return torch.from_numpy(np.array(array, copy=True))  # own the memory: hypothesis may reuse its arrays


@st.composite
def batch_sizes(draw: st.DrawFn, max_size: int = MAX_BATCH) -> int:
    return draw(st.integers(1, max_size))


@st.composite
def images(draw: st.DrawFn, batch: int | None = None, shape: tuple[int, ...] = IMAGE_SHAPE,
           low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """float32 images of shape (B, *shape) with values in [low, high] (default [0, 1])."""
    batch = draw(batch_sizes()) if batch is None else batch
    return _tensor(draw, (batch, *shape), low, high)


@st.composite
def labels(draw: st.DrawFn, batch: int, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """int64 labels of shape (B,) in [0, num_classes)."""
    return torch.tensor(draw(st.lists(st.integers(0, num_classes - 1), min_size=batch, max_size=batch)),
                        dtype=torch.int64)


@st.composite
def image_batches(draw: st.DrawFn, num_classes: int = NUM_CLASSES, shape: tuple[int, ...] = IMAGE_SHAPE,
                  low: float = 0.0, high: float = 1.0, max_batch: int = MAX_BATCH,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y): images in [low, high] and matching labels."""
    x = draw(images(batch=draw(batch_sizes(max_batch)), shape=shape, low=low, high=high))
    return x, draw(labels(len(x), num_classes))


@st.composite
def logits(draw: st.DrawFn, batch: int | None = None, num_classes: int = NUM_CLASSES,
           bound: float = 10.0) -> torch.Tensor:
    """float32 logits of shape (B, C) in [-bound, bound]."""
    batch = draw(batch_sizes()) if batch is None else batch
    return _tensor(draw, (batch, num_classes), -bound, bound)


@st.composite
def prob_matrices(draw: st.DrawFn, rows: int | None = None, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """float32 (rows, C) matrices with entries in (0, 1] whose rows sum to 1."""
    rows = draw(batch_sizes()) if rows is None else rows
    raw = _tensor(draw, (rows, num_classes), 1e-3, 1.0).double()
    return (raw / raw.sum(dim=1, keepdim=True)).float()


@st.composite
def class_weights(draw: st.DrawFn, num_classes: int = NUM_CLASSES, low: float = 0.25,
                  high: float = 4.0) -> torch.Tensor:
    """A strictly positive float32 per-class vector of shape (C,), e.g. a ClassPolicy field."""
    return _tensor(draw, (num_classes,), low, high)


@st.composite
def eps_vectors(draw: st.DrawFn, batch: int, low: float = 1e-3, high: float = 0.5) -> torch.Tensor:
    """Per-sample attack radii (or radius scales) of shape (B,) in [low, high]."""
    return _tensor(draw, (batch,), low, high)
