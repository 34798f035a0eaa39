"""``python -m fairadv`` (also what ``torchrun -m fairadv`` runs)."""

from fairadv.cli import main

if __name__ == "__main__":
    main()
