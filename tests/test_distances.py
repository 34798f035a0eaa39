"""Class distances: every registered one gives a finite, non-negative [C, C] similarity; each built-in on a hand
example."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from fairadv.distances import DISTANCES
from fairadv.errors import FairadvError
from fairadv.stats import ClassStats, EpochStats
from strategies import floats32, labels, logits

FEATURES = 5


class Head(nn.Module):
    """Just enough of a fairadv model for the ``classifier`` distance."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.classifier = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.classifier.weight.copy_(weight)


@st.composite
def epoch_statistics(draw: st.DrawFn) -> tuple[EpochStats, nn.Module]:
    """Statistics of a random epoch (adversarial logits, labels, features) and a model with a random classifier."""
    c = draw(st.integers(2, 5))
    batch = draw(st.integers(1, 12))
    y = draw(labels(batch, c))
    stats = ClassStats(c)
    features = torch.tensor(draw(st.lists(floats32(-3, 3), min_size=batch * FEATURES, max_size=batch * FEATURES)))
    stats.update(y, draw(logits(batch, c)), features_adv=features.view(batch, FEATURES))
    weight = torch.tensor(draw(st.lists(floats32(-1, 1), min_size=c * FEATURES, max_size=c * FEATURES)))
    return stats.compute(), Head(weight.view(c, FEATURES))


@pytest.mark.parametrize("name", DISTANCES.names())
@given(data=epoch_statistics())
def test_every_distance_gives_a_finite_nonnegative_square_matrix(name, data):
    stats, model = data
    distance = DISTANCES.create(name)
    assert set(getattr(distance, "needs", frozenset())) <= {"features", "model"}
    s = distance.similarity(stats, model)
    c = stats.num_classes
    assert s.shape == (c, c)
    assert torch.isfinite(s).all()
    assert (s >= 0).all()
    easiness = getattr(distance, "easiness", None)
    if easiness is not None:
        e = easiness(stats)
        assert e.shape == (c,) and torch.isfinite(e).all() and (e >= 0).all() and (e <= 1 + 1e-12).all()


def test_softmax_is_the_mean_adversarial_softmax_per_true_class():
    stats = ClassStats(2)
    y = torch.tensor([0, 0, 1])
    logits_adv = torch.log(torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7]]))
    stats.update(y, logits_adv)
    distance = DISTANCES.create("softmax")
    expected = torch.tensor([[0.6, 0.4], [0.3, 0.7]], dtype=torch.float64)
    torch.testing.assert_close(distance.similarity(stats.compute()), expected)
    torch.testing.assert_close(distance.easiness(stats.compute()), torch.tensor([0.6, 0.7], dtype=torch.float64))
    assert distance.needs == frozenset() and distance.row_stochastic is True


def test_confusion_counts_hard_labels_under_attack():
    stats = ClassStats(2)
    y = torch.tensor([0, 0, 1])
    stats.update(y, torch.log(torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7]])))
    distance = DISTANCES.create("confusion")
    expected = torch.tensor([[0.5, 0.5], [0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(distance.similarity(stats.compute()), expected)
    torch.testing.assert_close(distance.easiness(stats.compute()), torch.tensor([0.5, 1.0], dtype=torch.float64))
    assert distance.needs == frozenset() and distance.row_stochastic is True


def _stats(c: int, features: torch.Tensor | None = None) -> EpochStats:
    eye = torch.eye(c, dtype=torch.float64)
    return EpochStats(counts=torch.ones(c), clean_accuracy=None, robust_accuracy=torch.ones(c), prob_matrix=eye,
                      confusion=eye, feature_means=features)


# Centred rows (1, 0), (1, 1), (-2, -1) (they sum to zero): classes 0 and 1 are 45 degrees apart, class 2 points
# away from both (clamped to 0). Any common offset added to every row must give the same similarity.
CENTRED = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-2.0, -1.0]], dtype=torch.float64)
C45 = 2**-0.5
EXPECTED = torch.tensor([[1, C45, 0], [C45, 1, 0], [0, 0, 1]], dtype=torch.float64)


@pytest.mark.parametrize("offset", [(0.0, 0.0), (10.0, 10.0), (-3.0, 7.0)])
def test_centroid_is_clamped_cosine_of_centred_class_feature_means(offset):
    s = DISTANCES.create("centroid").similarity(_stats(3, CENTRED + torch.tensor(offset, dtype=torch.float64)))
    torch.testing.assert_close(s, EXPECTED)
    assert DISTANCES.create("centroid").needs == frozenset({"features"})
    assert DISTANCES.create("centroid").row_stochastic is False


def test_centroid_of_post_relu_features_still_tells_classes_apart():
    # Non-negative features: raw cosines are all high (0.9+), centred ones single out the close pair.
    features = torch.tensor([[5.0, 1.0, 1.0], [5.0, 1.5, 1.0], [1.0, 1.0, 5.0]], dtype=torch.float64)
    s = DISTANCES.create("centroid").similarity(_stats(3, features))
    assert s[0, 1] > 0.5 and s[0, 2] == 0 and s[1, 2] == 0


def test_centroid_without_features_says_so():
    with pytest.raises(FairadvError, match="feature means"):
        DISTANCES.create("centroid").similarity(_stats(3))


def test_classifier_is_clamped_cosine_of_centred_weight_rows():
    weight = (CENTRED + torch.tensor([0.5, -0.3], dtype=torch.float64)).float()  # a shift no softmax can see
    s = DISTANCES.create("classifier").similarity(_stats(3), Head(weight))
    torch.testing.assert_close(s, EXPECTED)
    wrapped = nn.Module()
    wrapped.module = Head(weight)  # the DistributedDataParallel layout
    torch.testing.assert_close(DISTANCES.create("classifier").similarity(_stats(3), wrapped), s)
    assert DISTANCES.create("classifier").needs == frozenset({"model"})


@pytest.mark.parametrize("model, match", [
    (None, "needs the model"),
    (nn.Sequential(nn.Linear(2, 3)), "linear `classifier` layer"),
    (Head(torch.ones(4, 2)), "4 rows"),
])
def test_classifier_errors_name_the_problem(model, match):
    with pytest.raises(FairadvError, match=match):
        DISTANCES.create("classifier").similarity(_stats(3), model)
