"""``name = "module.path:Class"`` in a recipe: imported, checked to subclass the table's interface, never called
otherwise, and every other kind of object is a one-line error with exit status 2."""

from __future__ import annotations

import sys
import textwrap

import pytest
from helpers import DIGITS, invoke

SPY = '''
from pathlib import Path

def strategy(command="", marker=""):
    Path(marker).write_text("called")     # what os:system would do: act on the recipe's keys

class NotAStrategy:
    def __init__(self, marker=""):
        Path(marker).write_text("called")
'''

CASES = [
    (["strategy.name=os:system", "strategy.command=touch {tmp}/F"], "is a builtin_function_or_method, not a class"),
    (["strategy.name=spy_module:strategy", "strategy.marker={tmp}/F"], "is a function, not a class"),
    (["strategy.name=spy_module:NotAStrategy", "strategy.marker={tmp}/F"],
     "is the class spy_module.NotAStrategy; expected a subclass of fairadv.strategies.base.FairnessStrategy"),
    (["strategy.name=collections:OrderedDict"], "is the class collections.OrderedDict"),
    (["strategy.name=fairadv.attacks.pgd:PGD"], "is the class fairadv.attacks.pgd.PGD; expected a subclass"),
    (["attack.name=pathlib:PurePath"], "expected a subclass of fairadv.attacks.base.Attack"),
    (["objective.name=fairadv.strategies.dafa:DAFA"], "expected a subclass of fairadv.objectives.base.Objective"),
    (["model.name=collections:OrderedDict"], "expected a subclass of torch.nn.Module"),
    (["optimizer.name=torch.nn:Linear"], "expected a subclass of torch.optim.Optimizer"),
    (["data.name=spy_module:strategy"], "a dataset cannot be named by module path"),
    (["schedule.name=math:cos"], "a schedule cannot be named by module path"),
]


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("overrides,fragment", CASES, ids=[c[0][0] for c in CASES])
def test_a_module_path_is_checked_before_anything_is_called(monkeypatch, tmp_path, command, overrides, fragment):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "spy_module.py").write_text(textwrap.dedent(SPY))
    monkeypatch.delitem(sys.modules, "spy_module", raising=False)
    args = [arg for o in overrides for arg in ("--set", o.replace("{tmp}", str(tmp_path)))]
    out = ["--out", str(tmp_path / "runs")] if command == "run" else []
    result = invoke(command, DIGITS, *args, *out)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr, lines
    assert not (tmp_path / "F").exists(), "the recipe's object was called"
    assert not (tmp_path / "runs").exists()
