"""Inner losses an attack maximises, each per sample (shape (B,)).

Every loss takes ``(logits, y, clean_probs)``; only ``kl`` uses ``clean_probs`` (the softmax of the model on the
clean input, computed once per attack call by `Attack`). Objectives reuse them for their own terms (TRADES' KL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

AttackLoss = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
LossName = Literal["ce", "kl", "cw"]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, clean_probs: torch.Tensor | None) -> torch.Tensor:
    """CE(f(x'), y): the PGD-AT inner loss (Madry et al., 2018)."""
    return F.cross_entropy(logits, y, reduction="none")


def kl_to_clean(logits: torch.Tensor, y: torch.Tensor, clean_probs: torch.Tensor | None) -> torch.Tensor:
    """KL(softmax(f(x)) || softmax(f(x'))): the TRADES inner loss (Zhang et al., 2019)."""
    assert clean_probs is not None
    log_probs = F.log_softmax(logits, dim=1)
    return F.kl_div(log_probs, clean_probs, reduction="none").sum(dim=1)


def cw_margin(logits: torch.Tensor, y: torch.Tensor, clean_probs: torch.Tensor | None) -> torch.Tensor:
    """Carlini-Wagner margin: max_{j != y} f_j(x') - f_y(x'); positive once the sample is misclassified."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return others.max(dim=1).values - true


LOSSES: dict[LossName, AttackLoss] = {"ce": cross_entropy, "kl": kl_to_clean, "cw": cw_margin}
NEEDS_CLEAN_PROBS = frozenset({"kl"})
