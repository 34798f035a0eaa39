"""The ``bhattacharyya`` distance: hand example, contract, and use from fairadv's DAFA."""

from __future__ import annotations

import math

import torch

from fairadv.distances import DISTANCES
from fairadv.stats import ClassStats
from fairadv.strategies import STRATEGIES
from fairadv_wat import BhattacharyyaDistance


def stats_from(prob_rows: list[list[float]], labels: list[int]):
    stats = ClassStats(len(prob_rows[0]))
    stats.update(torch.tensor(labels), torch.log(torch.tensor(prob_rows)))
    return stats.compute()


def test_hand_example():
    # p_0 = (0.5, 0.5), p_1 = (0, 1): BC = sqrt(0.5 * 0) + sqrt(0.5 * 1) = 0.7071.
    stats = stats_from([[0.5, 0.5], [1e-30, 1.0]], [0, 1])
    distance = DISTANCES.create("bhattacharyya")
    assert isinstance(distance, BhattacharyyaDistance)
    s = distance.similarity(stats)
    torch.testing.assert_close(s, torch.tensor([[1.0, math.sqrt(0.5)], [math.sqrt(0.5), 1.0]], dtype=torch.float64))
    torch.testing.assert_close(distance.easiness(stats), torch.tensor([0.5, 1.0], dtype=torch.float64))
    assert distance.needs == frozenset() and distance.row_stochastic is False


def test_symmetric_bounded_and_a_missing_class_is_similar_to_nothing():
    g = torch.Generator().manual_seed(0)
    stats = ClassStats(4)
    y = torch.tensor([0, 0, 1, 2, 2, 2])  # class 3 has no sample
    stats.update(y, torch.randn(6, 4, generator=g))
    s = DISTANCES.create("bhattacharyya").similarity(stats.compute())
    assert torch.allclose(s, s.T) and (s >= 0).all() and (s <= 1).all()
    assert (s[3] == 0).all() and (s[:, 3] == 0).all()
    torch.testing.assert_close(s.diagonal()[:3], torch.ones(3, dtype=torch.float64))


def test_dafa_accepts_the_plugin_distance():
    dafa = STRATEGIES.create("dafa", distance="bhattacharyya", lam=1.0, warmup_epochs=1)
    stats = stats_from([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.1, 0.1, 0.8]], [0, 1, 2])
    weights = dafa.class_weights(stats)
    assert weights.shape == (3,) and torch.isfinite(weights).all()
    assert int(weights.argmax()) == 1  # the hardest class gains weight
