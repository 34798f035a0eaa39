"""Per-class statistics of a training epoch, accumulated on the device from logits the step already computed.

Follows ignite's Metric triple: `reset` at epoch start, `update` under no_grad every batch, `compute` at epoch end.
Everything is kept as sums (counts, correct counts, probability sums), so statistics are exact over the whole epoch,
can be summed across processes, and survive a resume through `state_dict`.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F


@attrs.frozen(eq=False)
class EpochStats:
    """Class statistics of one epoch (float64, CPU).

    Attributes:
        counts: [C] training samples seen per class.
        clean_accuracy: [C] accuracy on clean inputs (train mode), or None if the objective has no clean pass.
        robust_accuracy: [C] accuracy on the training adversarial examples.
        prob_matrix: [C, C], row i = mean softmax over adversarial examples of true class i (DAFA's p_i(j)).
        confusion: [C, C], row i = how often adversarial examples of class i were predicted as j (row-normalised).
        feature_means: [C, D] mean penultimate feature of each class's adversarial examples, when collected.
        adv_loss: [C] mean cross-entropy on the training adversarial examples (ABSLD's class losses).
        clean_loss: [C] mean cross-entropy on clean inputs, or None if the objective has no clean pass.
        kappa: [C] mean number of training-attack iterates classified correctly (GAIRAT's geometry value, Fair-ARD's
            class difficulty), or None if the objective reports none.
    """

    counts: torch.Tensor
    clean_accuracy: torch.Tensor | None
    robust_accuracy: torch.Tensor
    prob_matrix: torch.Tensor
    confusion: torch.Tensor
    feature_means: torch.Tensor | None = None
    adv_loss: torch.Tensor | None = None
    clean_loss: torch.Tensor | None = None
    kappa: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return self.counts.numel()


class ClassStats:
    """Running sums over an epoch; see `EpochStats` for what `compute` returns."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu"):
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.reset()

    def reset(self) -> None:
        """Zero every sum (the engine calls this at the start of each epoch)."""
        c, dev = self.num_classes, self.device
        self.counts = torch.zeros(c, dtype=torch.float64, device=dev)
        self.clean_correct = torch.zeros(c, dtype=torch.float64, device=dev)
        self.clean_seen = torch.zeros(c, dtype=torch.float64, device=dev)
        self.adv_prob_sum = torch.zeros(c, c, dtype=torch.float64, device=dev)
        self.adv_confusion = torch.zeros(c, c, dtype=torch.float64, device=dev)
        self.adv_loss_sum = torch.zeros(c, dtype=torch.float64, device=dev)  # cross-entropy sums
        self.clean_loss_sum = torch.zeros(c, dtype=torch.float64, device=dev)
        self.kappa_sum = torch.zeros(c, dtype=torch.float64, device=dev)  # correct attack iterates
        self.kappa_seen = torch.zeros(c, dtype=torch.float64, device=dev)
        self.feature_sum: torch.Tensor | None = None  # [C, D], allocated on the first update that has features

    @torch.no_grad()
    def update(self, y: torch.Tensor, logits_adv: torch.Tensor, logits_clean: torch.Tensor | None = None,
               features_adv: torch.Tensor | None = None, kappa: torch.Tensor | None = None) -> None:
        """Add one batch. No host-device synchronisation: only on-device scatter-adds."""
        c = self.num_classes
        ones = torch.ones_like(y, dtype=torch.float64)
        self.counts.index_add_(0, y, ones)
        self.adv_prob_sum.index_add_(0, y, torch.softmax(logits_adv.detach().double(), dim=1))
        pred = logits_adv.detach().argmax(dim=1)
        self.adv_confusion.view(-1).index_add_(0, y * c + pred, ones)
        self.adv_loss_sum.index_add_(0, y, F.cross_entropy(logits_adv.detach().double(), y, reduction="none"))
        if logits_clean is not None:
            self.clean_seen.index_add_(0, y, ones)
            self.clean_loss_sum.index_add_(0, y, F.cross_entropy(logits_clean.detach().double(), y, reduction="none"))
            self.clean_correct.index_add_(0, y, (logits_clean.detach().argmax(dim=1) == y).double())
        if kappa is not None:
            self.kappa_seen.index_add_(0, y, ones)
            self.kappa_sum.index_add_(0, y, kappa.detach().double())
        if features_adv is not None:
            if self.feature_sum is None:
                self.feature_sum = torch.zeros(c, features_adv.shape[1], dtype=torch.float64, device=self.device)
            self.feature_sum.index_add_(0, y, features_adv.detach().double())

    def compute(self) -> EpochStats:
        """Means and rates from the sums so far, on the CPU in float64."""
        counts = self.counts.cpu()
        denom = counts.clamp_min(1)
        confusion = self.adv_confusion.cpu()
        clean_seen = self.clean_seen.cpu()
        kappa_seen = self.kappa_seen.cpu()
        return EpochStats(
            counts=counts,
            clean_accuracy=(self.clean_correct.cpu() / clean_seen.clamp_min(1)) if clean_seen.sum() > 0 else None,
            robust_accuracy=confusion.diagonal() / denom,
            prob_matrix=self.adv_prob_sum.cpu() / denom[:, None],
            confusion=confusion / denom[:, None],
            feature_means=None if self.feature_sum is None else self.feature_sum.cpu() / denom[:, None],
            adv_loss=self.adv_loss_sum.cpu() / denom,
            clean_loss=(self.clean_loss_sum.cpu() / clean_seen.clamp_min(1)) if clean_seen.sum() > 0 else None,
            kappa=(self.kappa_sum.cpu() / kappa_seen.clamp_min(1)) if kappa_seen.sum() > 0 else None,
        )

    def sums(self) -> list[torch.Tensor]:
        """The running sums, e.g. for an all_reduce across processes."""
        sums = [self.counts, self.clean_correct, self.clean_seen, self.adv_prob_sum, self.adv_confusion,
                self.adv_loss_sum, self.clean_loss_sum, self.kappa_sum, self.kappa_seen]
        return sums + ([self.feature_sum] if self.feature_sum is not None else [])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The sums, for a checkpoint."""
        names = ("counts", "clean_correct", "clean_seen", "adv_prob_sum", "adv_confusion", "adv_loss_sum",
                 "clean_loss_sum", "kappa_sum", "kappa_seen", "feature_sum")
        return {n: t.cpu().clone() for n, t in zip(names, self.sums())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore sums saved by `state_dict`."""
        for name, value in state.items():
            setattr(self, name, value.to(self.device, torch.float64))
