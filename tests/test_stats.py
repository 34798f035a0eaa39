"""ClassStats: the vectorised running sums against a plain per-sample loop, the state_dict round trip, unseen classes,
and one hand-computed epoch."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import labels, logits

from fairadv.stats import ClassStats


@st.composite
def epochs(draw: st.DrawFn) -> tuple[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]]:
    """(C, batches of (y, logits_adv, logits_clean or None)); small integer-valued logits are mixed in so that
    argmax ties (first index wins) occur."""
    c = draw(st.integers(2, 5))
    batches = []
    for _ in range(draw(st.integers(1, 4))):
        b = draw(st.integers(1, 6))
        y = draw(labels(b, c))
        adv = draw(logits(b, c)).round() if draw(st.booleans()) else draw(logits(b, c))
        clean = draw(st.none() | logits(b, c))
        batches.append((y, adv, clean))
    return c, batches


def reference(c: int, batches: list) -> dict[str, object]:
    """A plain loop over samples in Python floats."""
    counts = [0] * c
    clean_seen, clean_correct = [0] * c, [0] * c
    prob_sum = [[0.0] * c for _ in range(c)]
    confusion = [[0] * c for _ in range(c)]
    for y, adv, clean in batches:
        for b in range(len(y)):
            label, row = int(y[b]), [float(v) for v in adv[b]]
            counts[label] += 1
            top = max(row)
            exps = [math.exp(v - top) for v in row]
            for j in range(c):
                prob_sum[label][j] += exps[j] / sum(exps)
            confusion[label][row.index(top)] += 1  # first maximum, like torch.argmax
            if clean is not None:
                clean_row = [float(v) for v in clean[b]]
                clean_seen[label] += 1
                clean_correct[label] += int(clean_row.index(max(clean_row)) == label)
    seen = [max(n, 1) for n in counts]
    return {
        "counts": counts,
        "clean_accuracy": None if sum(clean_seen) == 0 else
        [clean_correct[i] / max(clean_seen[i], 1) for i in range(c)],
        "robust_accuracy": [confusion[i][i] / seen[i] for i in range(c)],
        "prob_matrix": [[prob_sum[i][j] / seen[i] for j in range(c)] for i in range(c)],
        "confusion": [[confusion[i][j] / seen[i] for j in range(c)] for i in range(c)],
    }


def assert_matches(stats, expected: dict[str, object]) -> None:
    def t(value: object) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.float64)

    torch.testing.assert_close(stats.counts, t(expected["counts"]), rtol=0, atol=0)
    torch.testing.assert_close(stats.robust_accuracy, t(expected["robust_accuracy"]), rtol=0, atol=1e-12)
    torch.testing.assert_close(stats.prob_matrix, t(expected["prob_matrix"]), rtol=0, atol=1e-9)
    torch.testing.assert_close(stats.confusion, t(expected["confusion"]), rtol=0, atol=1e-12)
    if expected["clean_accuracy"] is None:
        assert stats.clean_accuracy is None
    else:
        torch.testing.assert_close(stats.clean_accuracy, t(expected["clean_accuracy"]), rtol=0, atol=1e-12)


@given(epoch=epochs())
def test_update_over_batches_equals_a_plain_loop(epoch):
    c, batches = epoch
    stats = ClassStats(c)
    for y, adv, clean in batches:
        stats.update(y, adv, clean)
    result = stats.compute()
    assert_matches(result, reference(c, batches))

    seen = result.counts > 0
    for matrix in (result.prob_matrix, result.confusion):
        assert matrix.shape == (c, c) and matrix.dtype == torch.float64 and torch.isfinite(matrix).all()
        torch.testing.assert_close(matrix[seen].sum(dim=1), torch.ones(int(seen.sum()), dtype=torch.float64))
        assert (matrix[~seen] == 0).all()  # a class never seen: zeros, not NaN from 0 / 0
    assert torch.isfinite(result.robust_accuracy).all()
    assert result.clean_accuracy is None or torch.isfinite(result.clean_accuracy).all()


@given(epoch=epochs(), split=st.integers(0, 4))
def test_state_dict_round_trip_resumes_exactly(epoch, split):
    c, batches = epoch
    split = min(split, len(batches))
    uninterrupted = ClassStats(c)
    for batch in batches:
        uninterrupted.update(*batch)

    first = ClassStats(c)
    for batch in batches[:split]:
        first.update(*batch)
    state = first.state_dict()
    resumed = ClassStats(c)
    resumed.update(*batches[0])  # stale sums that the load must replace
    resumed.load_state_dict(state)
    for batch in batches[split:]:
        resumed.update(*batch)

    for name, value in uninterrupted.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    assert all(s.dtype == torch.float64 for s in resumed.sums())
    state["counts"] += 1  # state_dict hands out copies
    assert not torch.equal(first.counts, state["counts"])


@given(epoch=epochs())
def test_reset_forgets_the_epoch(epoch):
    c, batches = epoch
    stats = ClassStats(c)
    for batch in batches:
        stats.update(*batch)
    stats.reset()
    assert all((s == 0).all() for s in stats.sums())
    result = stats.compute()
    assert result.clean_accuracy is None and (result.counts == 0).all()
    assert torch.isfinite(result.prob_matrix).all() and torch.isfinite(result.robust_accuracy).all()


def test_update_does_not_track_gradients():
    adv = torch.randn(4, 3, requires_grad=True)
    stats = ClassStats(3)
    stats.update(torch.tensor([0, 1, 2, 0]), adv * 2, adv * 3)
    assert not any(s.requires_grad for s in stats.sums())


def test_hand_computed_epoch_with_an_unseen_class():
    """C = 3, class 2 never seen. Two batches:
    batch 1: y = (0, 1), adversarial logits (0, 0, 0) -> probs 1/3 each, argmax 0 (first);
             (ln 3, 0, 0) -> probs (3/5, 1/5, 1/5), argmax 0; clean logits predict (0, 1): both right.
    batch 2: y = (0,), adversarial logits (0, ln 2, 0) -> probs (1/4, 1/2, 1/4), argmax 1; no clean pass."""
    stats = ClassStats(3)
    stats.update(torch.tensor([0, 1]), torch.tensor([[0.0, 0.0, 0.0], [math.log(3), 0.0, 0.0]]),
                 torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    stats.update(torch.tensor([0]), torch.tensor([[0.0, math.log(2), 0.0]]))
    r = stats.compute()
    f64 = torch.float64
    torch.testing.assert_close(r.counts, torch.tensor([2.0, 1.0, 0.0], dtype=f64))
    torch.testing.assert_close(r.clean_accuracy, torch.tensor([1.0, 1.0, 0.0], dtype=f64))  # 1 of 1 seen for class 0
    torch.testing.assert_close(r.robust_accuracy, torch.tensor([0.5, 0.0, 0.0], dtype=f64))
    row0 = [(1 / 3 + 1 / 4) / 2, (1 / 3 + 1 / 2) / 2, (1 / 3 + 1 / 4) / 2]
    torch.testing.assert_close(r.prob_matrix, torch.tensor([row0, [0.6, 0.2, 0.2], [0.0, 0.0, 0.0]], dtype=f64),
                               rtol=0, atol=1e-7)
    torch.testing.assert_close(r.confusion, torch.tensor([[0.5, 0.5, 0], [1, 0, 0], [0, 0, 0]], dtype=f64))
    assert r.num_classes == 3
