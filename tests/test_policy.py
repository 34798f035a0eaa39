"""ClassPolicy: validation on construction and on evolve, the uniform policy, the dict round trip, equality."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import class_weights

from fairadv.policy import VECTORS, ClassPolicy


@st.composite
def policies(draw: st.DrawFn) -> ClassPolicy:
    c = draw(st.integers(1, 6))
    vectors = [draw(class_weights(c, low=1e-3, high=1e3)) for _ in VECTORS]
    return ClassPolicy(*vectors, reduction=draw(st.sampled_from(["batch", "weights"])))


def valid(c: int = 3, **changes: object) -> dict[str, object]:
    kwargs: dict[str, object] = {name: [1.0] * c for name in VECTORS}
    kwargs.update(changes)
    return kwargs


@pytest.mark.parametrize("field", VECTORS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, -1e-30])
def test_rejects_non_finite_and_non_positive_values(field, bad):
    with pytest.raises(ValueError, match=field):
        ClassPolicy(**valid(3, **{field: [1.0, bad, 1.0]}))


@pytest.mark.parametrize("field", VECTORS)
@pytest.mark.parametrize("shape", [(), (0,), (3, 1), (1, 3), (2, 2)])
def test_rejects_anything_but_a_non_empty_vector(field, shape):
    with pytest.raises(ValueError, match=field):
        ClassPolicy(**valid(3, **{field: torch.ones(shape)}))


@pytest.mark.parametrize("field", VECTORS)
def test_rejects_vectors_of_different_lengths(field):
    with pytest.raises(ValueError, match="one length"):
        ClassPolicy(**valid(3, **{field: [1.0, 1.0]}))


def test_rejects_an_unknown_reduction():
    with pytest.raises(ValueError, match="reduction"):
        ClassPolicy(**valid(3), reduction="mean")


@pytest.mark.parametrize("c", [1, 2, 10, 100])
def test_uniform_is_all_ones(c):
    policy = ClassPolicy.uniform(c)
    assert policy.num_classes == c and policy.reduction == "batch" and policy.is_uniform()
    for name in VECTORS:
        value = getattr(policy, name)
        assert value.dtype == torch.float32 and torch.equal(value, torch.ones(c))
    assert not policy.evolve(eps_scale=[1.0] * (c - 1) + [2.0]).is_uniform()


@given(policy=policies())
def test_dict_round_trip_is_exact_and_json_ready(policy):
    data = policy.to_dict()
    assert set(data) == {*VECTORS, "reduction"}
    again = ClassPolicy.from_dict(json.loads(json.dumps(data)))
    assert again == policy
    for name in VECTORS:
        assert torch.equal(getattr(again, name), getattr(policy, name))


@given(policy=policies(), data=st.data())
def test_evolve_replaces_one_field_validates_and_leaves_the_original(policy, data):
    c = policy.num_classes
    field = data.draw(st.sampled_from(VECTORS))
    new = data.draw(class_weights(c))
    before = policy.to_dict()
    evolved = policy.evolve(**{field: new})
    assert torch.equal(getattr(evolved, field), new)
    assert all(torch.equal(getattr(evolved, n), getattr(policy, n)) for n in VECTORS if n != field)
    assert policy.to_dict() == before

    bad = new.clone()
    bad[data.draw(st.integers(0, c - 1))] = data.draw(st.sampled_from([math.nan, math.inf, 0.0, -1.0]))
    with pytest.raises(ValueError, match=field):
        policy.evolve(**{field: bad})
    with pytest.raises(ValueError):
        policy.evolve(**{field: torch.ones(c + 1)})
    with pytest.raises(ValueError):
        policy.evolve(reduction="sum")


def test_does_not_alias_the_callers_tensors():
    weight = torch.tensor([1.0, 2.0, 3.0])
    policy = ClassPolicy(weight, weight, weight, weight)
    weight[0] = -5.0  # would be an invalid policy, had it been shared
    assert policy.ce_weight.tolist() == [1.0, 2.0, 3.0]


def test_equality():
    base = ClassPolicy([1.0, 2.0], [1.0, 1.0], [0.5, 1.5], [1.0, 1.0])
    same = ClassPolicy(torch.tensor([1.0, 2.0]), (1, 1), [0.5, 1.5], [1.0, 1.0])
    assert base == same
    assert base != base.evolve(reduction="weights")
    assert base != base.evolve(eps_scale=[0.5, 1.25])
    assert base != ClassPolicy.uniform(2)
    assert base != ClassPolicy.uniform(3)  # different lengths compare unequal, not raise
    assert base != base.to_dict()  # not a ClassPolicy: not equal (NotImplemented, not an exception)
    assert base.to("cpu") == base
