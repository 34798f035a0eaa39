"""Attacks: the `Attack` interface, its registry `ATTACKS`, and the built-in FGSM and PGD."""

from fairadv.attacks.base import ATTACKS, Attack
from fairadv.attacks.fgsm import FGSM
from fairadv.attacks.pgd import PGD

__all__ = ["ATTACKS", "Attack", "FGSM", "PGD"]
