"""Reliability and security (issue 7): bad input, crashes, numerical faults, untrusted files, determinism.

Every test names the protection it covers; each fails when that protection is removed. What test_cli.py,
test_recipe.py and test_engine.py already cover (unknown keys, wrong types, unknown component names, a missing
recipe, resume after an exception, a pickled payload through the Python API) is not repeated here.

The bad-input cases run through the real command line (`fairadv.cli.main` under click's CliRunner) and check the
whole contract: exit status 2, exactly one non-empty line on stderr, no traceback, and not one file added, removed or
changed under the output folder and the test's own folder (size, mtime and hash of every entry, folders included, so
even a temporary file that was created and removed again shows up in its folder's mtime).

Sections follow the issue: 1 bad input (1b: --resume with a damaged, foreign or changed run), 2 crash safety,
3 numerical faults, 4 untrusted files (the pickled-payload cases of 1 and 1b: `model.init_from` and `--resume`),
5 determinism. Item 6 (memory) is benchmarks/memory.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytest
import torch

import fairadv
from fairadv.build import build_model
from fairadv.policy import ClassPolicy
from helpers import DIGITS as TRADES
from helpers import ROOT, SESSION_RUN, full_and_resumed, metrics
from helpers import invoke as helpers_invoke

DAFA = str(ROOT / "recipes" / "dafa_digits.toml")

# SESSION_RUN (helpers.py): the settings of the session's digits run, a copy of which the --resume cases damage.
# DAFA on digits, small enough for a subprocess: new class policies when epochs 2 and 4 end.
KILL = ["train.epochs=6", "train.batch_size=128", "model.width=8", "attack.steps=2", "eval.n=100",
        "eval.attack.steps=3", "schedule.name=constant", "strategy.warmup_epochs=2", "strategy.update_every=2"]
# Numerical-fault runs: 10 batches of 128 per epoch.
NUMERIC = ["train.epochs=3", "train.batch_size=128", "model.width=8", "attack.steps=1", "eval.n=50",
           "eval.attack.steps=1", "schedule.name=constant"]
PLUGIN = "fairadv_reliability_plugins"


def sets(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def invoke(*args: str):
    """`helpers.invoke`, catching what escapes the CLI: bad input must not raise, the result shows it if it does."""
    return helpers_invoke(*args, catch_exceptions=True)


def error_line(result) -> str:
    """The contract for bad input: exit 2, one non-empty stderr line starting 'error:', no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.stderr and "Traceback" not in result.output
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), lines[0]
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: folders by mtime, files by size, mtime and sha256."""
    if not root.exists():
        return {}
    out: dict[str, tuple] = {".": ("dir", root.stat().st_mtime_ns)}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if path.is_dir():
            out[rel] = ("dir", st.st_mtime_ns)
        else:
            out[rel] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def _refuse_non_finite(token: str) -> Any:
    raise AssertionError(f"non-finite number {token} written to a JSON file")


def strict_jsonl(path: Path) -> list[dict]:
    """Parse a .jsonl file, failing on NaN / Infinity (which json.dumps writes by default)."""
    if not path.exists():
        return []
    return [json.loads(line, parse_constant=_refuse_non_finite) for line in path.read_text().splitlines()]


def assert_finite_policy(policy: dict) -> None:
    for key, value in policy.items():
        if isinstance(value, list):
            assert torch.isfinite(torch.tensor(value)).all(), (key, value)


# --- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(digits_run, tmp_path_factory) -> dict[str, Path]:
    """The folder holding the session's finished trades_digits run (width 8; copy it before changing it), and the
    checkpoint the same run with width 16 would write: that run's own, with a width-16 model and recipe."""
    state = torch.load(digits_run / "checkpoints" / "last.pt", weights_only=True)
    wide = fairadv.Recipe.load(TRADES, [*SESSION_RUN, "model.width=16"])
    state.update(recipe=wide.to_toml(), model=build_model(wide, 10, (1, 8, 8)).state_dict())
    ckpt16 = tmp_path_factory.mktemp("w16") / "last.pt"
    torch.save(state, ckpt16)
    return {"out": digits_run.parent, "ckpt16": ckpt16}


PLUGIN_SOURCE = '''
"""Test-only components loaded through the documented `module:Class` form."""
import attrs
import torch

from fairadv.objectives.trades import TRADES
from fairadv.policy import ClassPolicy
from fairadv.strategies.base import FairnessStrategy


@attrs.define
class NanPolicyAt(FairnessStrategy):
    """Builds a ClassPolicy with NaN class weights when epoch `at` ends (ClassPolicy itself refuses it)."""
    at: int = 2

    def on_epoch_end(self, ctx):
        if ctx.epoch == self.at:
            return ClassPolicy.uniform(ctx.num_classes).evolve(ce_weight=[float("nan")] * ctx.num_classes)
        return None


@attrs.define
class MutatedPolicyAt(FairnessStrategy):
    """Returns a valid ClassPolicy whose vector it then sets non-finite in place, after ClassPolicy validated it."""
    at: int = 2
    hook: str = "end"

    def _bad(self, ctx):
        policy = ClassPolicy.uniform(ctx.num_classes)
        policy.ce_weight[0] = float("nan")
        policy.eps_scale[1] = float("inf")
        return policy

    def on_epoch_start(self, ctx):
        return self._bad(ctx) if self.hook == "start" and ctx.epoch == self.at else None

    def on_epoch_end(self, ctx):
        return self._bad(ctx) if self.hook == "end" and ctx.epoch == self.at else None


@attrs.define
class Counting(FairnessStrategy):
    """Stateful: class 0's weight is 1 + the number of epochs this strategy has seen, kept in its state_dict."""
    seen: int = attrs.field(default=0, init=False)

    def on_epoch_end(self, ctx):
        self.seen += 1
        weights = torch.ones(ctx.num_classes)
        weights[0] += self.seen
        return ClassPolicy.uniform(ctx.num_classes).evolve(ce_weight=weights)

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = int(state["seen"])


@attrs.frozen
class NanLossAt(TRADES):
    """TRADES whose loss is NaN at the `at`-th training batch of the run (1-based, counted over epochs)."""
    at: int = 13
    calls: list = attrs.field(factory=lambda: [0], init=False, eq=False)

    def __call__(self, model, x, y, attack, policy):
        out = super().__call__(model, x, y, attack, policy)
        self.calls[0] += 1
        return attrs.evolve(out, loss=out.loss * float("nan")) if self.calls[0] == self.at else out
'''


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory) -> Path:
    """A folder on sys.path holding `fairadv_reliability_plugins` (also put on PYTHONPATH for subprocesses)."""
    folder = tmp_path_factory.mktemp("plugins")
    (folder / f"{PLUGIN}.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(PLUGIN, None)


# --- 1. bad input through the command line -------------------------------------------------------------------------


def _directory(tmp: Path) -> None:
    (tmp / "adir").mkdir()


def _bad_utf8(tmp: Path) -> None:
    (tmp / "latin1.toml").write_bytes(b"[data]\nname = 'd\xefgits'\n[model]\nname = 'small_cnn'\n")


def _json(tmp: Path) -> None:
    (tmp / "recipe.json.toml").write_text(json.dumps({"data": {"name": "digits"}, "model": {"name": "small_cnn"}}))


def _corrupt_cifar(tmp: Path) -> None:
    folder = tmp / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(random.Random(name).randbytes(64) + b"garbage, not a pickle")


def _regular_file(tmp: Path) -> None:
    (tmp / "file.txt").write_text("a regular file, not a folder\n")


def _malicious_init(tmp: Path) -> None:
    _payload_checkpoint(tmp / "init.pt", tmp / "init_marker")



# (id, args after "run", fragments the one line must contain, files to create in tmp first). "{tmp}" is tmp_path.
BAD_INPUT = [
    # Out-of-range values not covered elsewhere (protection: attrs validators / strategy.check_recipe).
    ("eval eps negative", [TRADES, *sets(["eval.attack.eps=-0.1"])], ["eval.attack.eps = -0.1", "> 0"], None),
    ("dafa floor 0", [DAFA, *sets(["strategy.floor=0"])], ["dafa_digits.toml", "strategy.floor = 0", "(0, 1]"], None),
    ("dafa floor negative", [DAFA, *sets(["strategy.floor=-0.5"])], ["strategy.floor = -0.5"], None),
    ("dafa lam negative", [DAFA, *sets(["strategy.lam=-1"])], ["strategy.lam = -1", ">= 0"], None),
    ("epochs 0 via run", [TRADES, *sets(["train.epochs=0"])], ["train.epochs = 0", "> 0"], None),
    ("warm-up beyond last epoch", [TRADES, *sets(["strategy.name=dafa", "strategy.warmup_epochs=40"])],
     ["trades_digits.toml", "strategy.warmup_epochs = 40", "train.epochs = 30"], None),
    ("warm-up at last epoch", [DAFA, *sets(["strategy.warmup_epochs=30"])], ["strategy.warmup_epochs = 30"], None),
    ("optimizer lr 0", [TRADES, *sets(["optimizer.lr=0"])], ["optimizer.lr"], None),
    ("optimizer lr negative", [TRADES, *sets(["optimizer.lr=-1"])], ["optimizer.lr"], None),
    ("optimizer momentum negative", [TRADES, *sets(["optimizer.momentum=-0.5"])], ["optimizer.momentum"],
     None),
    ("attack eps inf", [TRADES, *sets(["attack.eps=inf", "train.epochs=1", "attack.steps=1", "eval.n=20"])],
     ["attack.eps"], None),
    ("optimizer lr nan", [TRADES, *sets(["optimizer.lr=nan", "train.epochs=1", "attack.steps=1", "eval.n=20"])],
     ["optimizer.lr"], None),
    # Unreadable / non-TOML recipe files through the CLI (protection: Recipe.load's error handling).
    ("recipe not UTF-8", ["{tmp}/latin1.toml"], ["latin1.toml", "cannot read recipe"], _bad_utf8),
    ("recipe not TOML", ["{tmp}/recipe.json.toml"], ["recipe.json.toml", "not valid TOML"], _json),
    # (click's own path checks used to answer these two with a 3-line usage error.)
    ("recipe is a folder", ["{tmp}/adir"], ["adir", "cannot read recipe"], _directory),
    # Data (protection: open_torchvision's checks).
    ("cifar missing, root exists", [TRADES, *sets(["data.name=cifar10", "data.root='{tmp}'"])],
     ["CIFAR-10 not found", "cifar-10-batches-py"], None),
    ("cifar corrupt files", [TRADES, *sets(["data.name=cifar10", "data.root='{tmp}/cifar'"])],
     ["cifar-10-batches-py", "corrupt"], _corrupt_cifar),
    # Factory checks (data set, model) must name the file and table.key too (protection: build._named_errors).
    ("digits bad fraction names file and key", [TRADES, *sets(["data.test_fraction=2"])],
     ["trades_digits.toml", "data.test_fraction = 2"], None),
    ("model bad width names file and key", [TRADES, *sets(["model.width=0"])],
     ["trades_digits.toml", "model.width = 0"], None),
    # --set with a bad path or value (protection: apply_override and the loader, through the CLI).
    ("set without table", [TRADES, "--set", "epochs=3"], ["--set 'epochs=3'", "table.key=value"], None),
    ("set without value", [TRADES, "--set", "train.epochs"], ["--set 'train.epochs'", "table.key=value"], None),
    ("set empty part", [TRADES, "--set", "train..epochs=1"], ["train..epochs=1", "table.key=value"], None),
    ("set through a value", [TRADES, "--set", "data.name.x=3"], ["data.name is a value, not a table"], None),
    ("set unknown table", [TRADES, "--set", "trian.epochs=3"], ["unknown table trian", "did you mean 'train'"], None),
    ("set list for int", [TRADES, "--set", "train.batch_size=[1, 2]"],
     ["--set train.batch_size=[1, 2]", "train.batch_size = [1, 2]", "expected an integer"], None),
    ("set float for int", [TRADES, "--set", "train.batch_size=1e3"], ["train.batch_size = 1000.0"], None),
    ("set bad choice", [TRADES, "--set", "train.precision=fp8"], ["train.precision = 'fp8'", "one of"], None),
    ("set negative seed", [TRADES, "--set", "run.seed=-1"], ["run.seed = -1"], None),
    ("fold_bn with compile", [TRADES, "--set", "train.fold_bn=true", "--set", "train.compile=true"],
     ["trades_digits.toml", "train.fold_bn = True", "with compile = true"], None),
    # Output folder (protection: _prepare_run_dir's OSError -> FairadvError). Root ignores permissions, so the folder
    # is made unwritable by putting it under a regular file.
    ("out under a regular file", [TRADES, *sets(SESSION_RUN), "--out", "{tmp}/file.txt/runs"],
     ["file.txt/runs/trades_digits", "cannot write the run folder"], _regular_file),
    ("out is a regular file", [TRADES, *sets(SESSION_RUN), "--out", "{tmp}/file.txt"],
     ["file.txt/trades_digits", "cannot write the run folder"], _regular_file),
    # Untrusted starting weights (protection: load_checkpoint's weights_only=True on the init_from path).
    ("init_from pickled payload", [TRADES, *sets([*SESSION_RUN, "model.init_from='{tmp}/init.pt'"])],
     ["init.pt", "pickled Python objects", "nothing was executed"], _malicious_init),
]


def _case_params():
    for case_id, args, fragments, extra in BAD_INPUT:
        prepare, marks = None, ()
        for item in extra if isinstance(extra, tuple) else (extra,):
            if isinstance(item, pytest.MarkDecorator):
                marks = (item,)
            elif item is not None:
                prepare = item
        yield pytest.param(args, fragments, prepare, id=case_id, marks=marks)


@pytest.mark.parametrize("args,fragments,prepare", list(_case_params()))
def test_bad_input_exits_2_with_one_line_and_touches_no_file(tmp_path, args, fragments, prepare):
    if prepare is not None:
        prepare(tmp_path)
    out = tmp_path / "runs"
    (out / "another_run").mkdir(parents=True)
    (out / "another_run" / "keep.txt").write_text("an earlier run's file\n")
    before = snapshot(tmp_path)  # the output folder and every input file the case made
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(out)]
    line = error_line(invoke("run", *args))
    for fragment in fragments:
        assert fragment.replace("{tmp}", str(tmp_path)) in line, line
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "init_marker").exists(), "the init_from payload was executed"


def test_brackets_in_error_messages_are_printed(tmp_path):
    """Protection: the CLI escapes error text before rich prints it; as markup, '[model]' and '[data]' vanished
    ('missing table ; it needs ...', 'set download = true in  or ...')."""
    recipe = tmp_path / "no_model.toml"
    recipe.write_text("[data]\nname = 'digits'\n")
    line = error_line(invoke("validate", str(recipe)))
    assert "missing table [model]" in line, line


# --- 1b. --resume with a damaged, foreign or changed run ----------------------------------------------------------


def _payload_checkpoint(path: Path, marker: Path) -> None:
    """A torch file whose unpickling would run a shell command creating ``marker``."""

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"format": 1, "epoch": 1, "model": Payload()}, path)


def _edit(**changes: Any) -> Callable[[Path, dict], None]:
    def damage(ckpt: Path, ctx: dict) -> None:
        state = torch.load(ckpt, weights_only=True)
        for key, value in changes.items():
            state[key] = value(state, ctx) if callable(value) else value
        torch.save(state, ckpt)

    return damage


def _raw(data: Callable[[bytes], bytes]) -> Callable[[Path, dict], None]:
    def damage(ckpt: Path, ctx: dict) -> None:
        ckpt.write_bytes(data(ckpt.read_bytes()))

    return damage


def _foreign_width(keep_own_recipe: bool) -> Callable[[Path, dict], None]:
    def damage(ckpt: Path, ctx: dict) -> None:
        other = torch.load(ctx["ckpt16"], weights_only=True)
        if keep_own_recipe:  # get past the recipe comparison: only the weights do not fit
            other["recipe"] = torch.load(ckpt, weights_only=True)["recipe"]
        torch.save(other, ckpt)

    return damage


def _five_class_model(state: dict, ctx: dict) -> dict:
    recipe = fairadv.Recipe.load(TRADES, SESSION_RUN)
    return build_model(recipe, 5, (1, 8, 8)).state_dict()


RESUME_CASES = [
    # Protection: load_checkpoint (torch.load errors -> FairadvError).
    pytest.param(_raw(lambda b: b[: len(b) // 2]), ["last.pt", "not a readable fairadv checkpoint"], id="truncated"),
    pytest.param(_raw(lambda b: b""), ["last.pt", "not a readable fairadv checkpoint"], id="empty"),
    pytest.param(_raw(lambda b: random.Random(0).randbytes(4096)), ["last.pt", "not a readable"], id="random-bytes"),
    pytest.param(lambda ckpt, ctx: torch.save(torch.zeros(3), ckpt), ["last.pt", "expected a dict"], id="tensor"),
    # Protection: _restore's try/except around load_state_dict & co.
    pytest.param(_edit(model=None), ["last.pt", "does not match this recipe"], id="no-model"),
    pytest.param(_edit(policy={"ce_weight": [1.0]}), ["last.pt", "does not match this recipe"], id="bad-policy"),
    pytest.param(_edit(epoch="one"), ["last.pt", "does not match this recipe"], id="epoch-not-int"),
    # Protection: _check_same_recipe (the width-16 checkpoint carries its own recipe) ...
    pytest.param(_foreign_width(False), ["changed recipe", "model.width: 16 -> 8"], id="other-model"),
    # ... and load_state_dict when the stored recipe was made to match (different architecture, same recipe text).
    pytest.param(_foreign_width(True), ["last.pt", "does not match this recipe", "SmallCNN"],
                 id="other-model-same-recipe"),
    pytest.param(_edit(model=_five_class_model), ["last.pt", "does not match this recipe"], id="other-class-count"),
    # Untrusted file (protection: weights_only=True; the payload would create the marker).
    pytest.param(lambda ckpt, ctx: _payload_checkpoint(ckpt, ctx["marker"]),
                 ["last.pt", "pickled Python objects", "nothing was executed"], id="pickled-payload"),
    # Right container, wrong contents: everything inside _restore's check (class count, epoch range, stored
    # recipe type, any exception from loading a part) must become the one-line error.
    pytest.param(_edit(policy=lambda s, c: ClassPolicy.uniform(5).to_dict()), ["last.pt", "5 classes"],
                 id="policy-other-class-count"),  # used to resume, then die with IndexError mid-epoch
    pytest.param(_edit(policy=lambda s, c: ClassPolicy.uniform(12).to_dict()), ["last.pt", "12 classes"],
                 id="policy-more-classes"),  # used to train silently with the wrong policy
    pytest.param(_edit(stats=[1, 2]), ["last.pt"], id="stats-not-a-dict"),  # was an AttributeError traceback
    pytest.param(_edit(recipe=5), ["last.pt", "not text"], id="recipe-not-text"),  # was an AttributeError traceback
    pytest.param(_edit(epoch=-1), ["last.pt", "epoch"], id="epoch-negative"),  # used to retrain epochs 0 and 1
    pytest.param(_edit(epoch=3), ["last.pt", "epoch"], id="epoch-beyond-the-run"),
]


@pytest.mark.parametrize("damage,fragments", RESUME_CASES)
def test_resume_with_a_bad_checkpoint_exits_2_and_touches_no_file(tmp_path, template, damage, fragments):
    out = tmp_path / "out"
    shutil.copytree(template["out"], out)
    ckpt = out / "trades_digits" / "checkpoints" / "last.pt"
    ctx = {"ckpt16": template["ckpt16"], "marker": tmp_path / "marker"}
    damage(ckpt, ctx)
    before = snapshot(out)
    line = error_line(invoke("run", TRADES, *sets(SESSION_RUN), "--out", str(out), "--resume"))
    for fragment in fragments:
        assert fragment in line, line
    assert snapshot(out) == before
    assert not ctx["marker"].exists(), "the checkpoint's payload was executed"


@pytest.mark.parametrize("data", [random.Random(0).randbytes(4096), b"garbage" * 100], ids=["random", "text"])
def test_a_corrupt_checkpoint_is_not_reported_as_a_pickled_payload(tmp_path, data):
    """Protection: the refusal message tells corruption (truncated, garbled) apart from a pickled payload."""
    from fairadv.checkpoint import load_checkpoint

    (tmp_path / "last.pt").write_bytes(data)
    with pytest.raises(fairadv.FairadvError, match="not a readable fairadv checkpoint") as info:
        load_checkpoint(tmp_path / "last.pt")
    assert "pickled Python objects" not in str(info.value), str(info.value)


@pytest.mark.parametrize("change,fragment", [
    (["attack.steps=2"], "attack.steps: 1 -> 2"),
    (["train.epochs=3"], "train.epochs: 2 -> 3"),
    # Only the first three differences (alphabetical) are named: here DAFA's parameters, not strategy.name itself.
    (["strategy.name=dafa", "strategy.warmup_epochs=1", "train.epochs=2"], "strategy."),
])
def test_resume_with_a_changed_recipe_exits_2_and_touches_no_file(tmp_path, template, change, fragment):
    """Protection: Trainer._check_same_recipe, through the CLI (the API path is in test_engine.py)."""
    out = tmp_path / "out"
    shutil.copytree(template["out"], out)
    before = snapshot(out)
    line = error_line(invoke("run", TRADES, *sets([*SESSION_RUN, *change]), "--out", str(out), "--resume"))
    assert "changed recipe" in line and fragment in line, line
    assert snapshot(out) == before


def test_resume_before_the_first_checkpoint_with_a_changed_recipe(tmp_path, template):
    """Protection: the recipe.toml comparison when a run stopped before its first checkpoint."""
    out = tmp_path / "out"
    shutil.copytree(template["out"], out)
    (out / "trades_digits" / "checkpoints" / "last.pt").unlink()
    before = snapshot(out)
    line = error_line(invoke("run", TRADES, *sets([*SESSION_RUN, "attack.steps=3"]), "--out", str(out), "--resume"))
    assert "recipe.toml" in line and "attack.steps: 1 -> 3" in line, line
    assert snapshot(out) == before


@pytest.mark.slow
@pytest.mark.parametrize("leftover", [
    "checkpoints/",
    ".recipe.toml.k1ll3d.tmp",
])
def test_a_run_killed_before_its_recipe_was_written_is_no_dead_end(tmp_path, leftover):
    """Protection: a run folder without recipe.toml (killed before it was written: empty folders, maybe the
    temporary file of that write) can be started: `run` used to say 'already exists; continue it with --resume'
    while `run --resume` said 'nothing to resume; run without --resume'. Whichever command the error points to
    must work."""
    run_dir = tmp_path / "out" / "trades_digits"
    run_dir.mkdir(parents=True)
    if leftover.endswith("/"):
        (run_dir / leftover).mkdir()
    else:
        (run_dir / leftover).write_text("[run]\nna")
    args = ["run", TRADES, *sets(SESSION_RUN), "--out", str(tmp_path / "out"), "--quiet"]
    result = invoke(*args)
    if result.exit_code != 0:
        assert "--resume" in result.stderr, result.stderr
        result = invoke(*args, "--resume")
    assert result.exit_code == 0, result.stderr
    assert (run_dir / "summary.json").exists()


# --- 2. crash safety -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, Any]:
    """An uninterrupted in-process run of the KILL recipe, and how long it trained (recipe.toml to summary.json)."""
    out = tmp_path_factory.mktemp("reference")
    fairadv.run(fairadv.Recipe.load(DAFA, KILL), out=out)
    run_dir = out / "dafa_digits"
    window = (run_dir / "summary.json").stat().st_mtime - (run_dir / "recipe.toml").stat().st_mtime
    return {"run_dir": run_dir, "seconds": window}


def assert_same_run(run_dir: Path, ref_dir: Path) -> None:
    """Bit-identical results: metrics (minus wall-clock timing), policies, summary, final weights, strategy state."""
    assert metrics(run_dir) == metrics(ref_dir)
    assert (run_dir / "policy.jsonl").read_text() == (ref_dir / "policy.jsonl").read_text()
    assert (run_dir / "summary.json").read_text() == (ref_dir / "summary.json").read_text()
    a = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(ref_dir / "checkpoints" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] and a["recipe"] == b["recipe"] and a["policy"] == b["policy"]
    assert a["strategy"] == b["strategy"]
    for part in ("model", "optimizer"):
        flat_a, flat_b = _flatten(a[part]), _flatten(b[part])
        assert flat_a.keys() == flat_b.keys()
        for key in flat_a:
            va, vb = flat_a[key], flat_b[key]
            assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, (part, key)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flatten(sub, f"{prefix}{key}.").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, sub in enumerate(tree) for k, v in _flatten(sub, f"{prefix}{i}.").items()}
    return {prefix: tree}


def _env(*paths: Path) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _cli(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fairadv", "run", DAFA, *sets(KILL), "--out", str(out), "--quiet", *extra]


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume_gives_the_uninterrupted_run(tmp_path, reference):
    """Protections: per-epoch reseeding, atomic checkpoints, log trimming on resume, the policy and the strategy's
    state in the checkpoint. A process killed with SIGKILL at a random moment of its training is resumed and must
    end bit-identical to the uninterrupted run. A stale temporary checkpoint (what a kill inside torch.save leaves)
    is planted first: resuming must not trip over it."""
    rng = random.Random(int(os.environ.get("FAIRADV_KILL_SEED", "7")))  # the seed varies it for stress runs
    run_dir = tmp_path / "cut" / "dafa_digits"
    for attempt in range(8):
        shutil.rmtree(tmp_path / "cut", ignore_errors=True)
        proc = subprocess.Popen(_cli(tmp_path / "cut"), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, cwd=ROOT)
        while proc.poll() is None and not (run_dir / "recipe.toml").exists():  # imports done, training begins
            time.sleep(0.005)
        time.sleep(rng.uniform(0, reference["seconds"]))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = proc.returncode == -signal.SIGKILL
        assert killed or proc.returncode == 0, proc.stderr.read().decode()
        proc.stderr.close()
        if killed and not (run_dir / "summary.json").exists():
            break
    else:
        pytest.fail("no SIGKILL landed mid-run in 8 attempts")
    done = [row["epoch"] for row in metrics(run_dir)] if (run_dir / "metrics.jsonl").exists() else []
    assert done == list(range(1, len(done) + 1))  # whole lines only, in order (checkpoint may lag by one)
    print(f"killed on attempt {attempt + 1} after {len(done)} finished epochs; temporary files left by the kill: "
          f"{sorted(p.name for p in run_dir.rglob('*.tmp'))}")

    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "checkpoints" / ".last.pt.deadbeef.tmp").write_bytes(b"half a checkpoint")
    resumed = subprocess.run(_cli(tmp_path / "cut", "--resume"), env=_env(), capture_output=True, text=True,
                             cwd=ROOT)
    assert resumed.returncode == 0, (attempt, done, resumed.stderr)
    assert_same_run(run_dir, reference["run_dir"])
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["strategy"]["computed_at"] == 4  # DAFA's own state (weights, epoch) travels in the checkpoint
    assert state["strategy"]["weights"] == pytest.approx(state["policy"]["ce_weight"])


class Killed(BaseException):
    """Stands in for SIGKILL inside torch.save (a BaseException, like KeyboardInterrupt and SystemExit)."""


@pytest.mark.slow
def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, reference, monkeypatch):
    """Protections: save_atomic (temporary file + rename) and log trimming on resume, deterministically. The process
    dies halfway through writing epoch 2's checkpoint: after epoch 2's metrics line and DAFA's new policy line were
    appended. last.pt must still be epoch 1's, whole; resuming must drop the orphaned log lines and end exactly
    like the uninterrupted run."""
    import io

    import fairadv.checkpoint

    real_save = torch.save
    calls = []

    def dying_save(obj, handle, *args, **kwargs):
        calls.append(obj.get("epoch") if isinstance(obj, dict) else None)
        if len(calls) < 2:
            return real_save(obj, handle, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise Killed

    monkeypatch.setattr(fairadv.checkpoint.torch, "save", dying_save)
    with pytest.raises(Killed):
        fairadv.run(fairadv.Recipe.load(DAFA, KILL), out=tmp_path)
    monkeypatch.setattr(fairadv.checkpoint.torch, "save", real_save)
    run_dir = tmp_path / "dafa_digits"
    assert calls == [1, 2]
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    assert [row["epoch"] for row in metrics(run_dir)] == [1, 2]  # epoch 2 was logged, not checkpointed
    assert [row["epoch"] for row in strict_jsonl(run_dir / "policy.jsonl")] == [0, 2]
    fairadv.run(fairadv.Recipe.load(DAFA, KILL), out=tmp_path, resume=True)
    assert_same_run(run_dir, reference["run_dir"])


@pytest.mark.slow
def test_strategy_state_is_checkpointed_and_restored(tmp_path, plugin_dir, monkeypatch):
    """Protection: the strategy's state_dict in the checkpoint. `Counting` derives each policy from how many epochs
    it has seen; if its state were not restored, the resumed run's policies would differ."""
    recipe = fairadv.Recipe.load(TRADES, [*NUMERIC, f"strategy.name={PLUGIN}:Counting"])
    full, cut = full_and_resumed(recipe, tmp_path, monkeypatch)
    assert (cut / "policy.jsonl").read_text() == (full / "policy.jsonl").read_text()
    assert [row["ce_weight"][0] for row in strict_jsonl(cut / "policy.jsonl")] == [1.0, 2.0, 3.0, 4.0]
    assert metrics(cut) == metrics(full)


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", [
    "kept",
    "none yet",
])
def test_resume_removes_stale_temporary_files(tmp_path, checkpoint):
    """Protection: --resume deletes the temporary files of atomic writes a kill cut short (save_atomic cleans up
    after exceptions only; a SIGKILL inside torch.save leaves a full-size .last.pt.*.tmp)."""
    recipe = fairadv.Recipe.load(TRADES, SESSION_RUN)
    fairadv.run(recipe, out=tmp_path)
    run_dir = tmp_path / "trades_digits"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.pt"]  # no leak in a normal run
    if checkpoint == "none yet":
        (run_dir / "checkpoints" / "last.pt").unlink()
    (run_dir / "checkpoints" / ".last.pt.k1ll3d.tmp").write_bytes(b"x" * 1000)
    (run_dir / ".metrics.jsonl.k1ll3d.tmp").write_text("{}\n")
    fairadv.run(recipe, out=tmp_path, resume=True)
    assert not list(run_dir.rglob("*.tmp"))


@pytest.mark.slow
def test_resume_survives_a_torn_last_log_line(tmp_path):
    """Protection: log trimming on --resume drops a line torn by a crash or a full disk mid-append (_append_jsonl is
    not atomic) instead of dying with JSONDecodeError."""
    recipe = fairadv.Recipe.load(TRADES, SESSION_RUN)
    fairadv.run(recipe, out=tmp_path)
    log = tmp_path / "trades_digits" / "metrics.jsonl"
    whole = log.read_text()
    log.write_text(whole + '{"epoch": 2, "lr": 0.0')
    result = invoke("run", TRADES, *sets(SESSION_RUN), "--out", str(tmp_path), "--resume", "--quiet")
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert log.read_text() == whole


# --- 3. numerical faults -------------------------------------------------------------------------------------------


def _numeric_run(tmp_path: Path, *overrides: str):
    out = tmp_path / "out"
    result = invoke("run", TRADES, *sets([*NUMERIC, *overrides]), "--out", str(out), "--quiet")
    return result, out / "trades_digits"


def _assert_nothing_non_finite(run_dir: Path) -> None:
    for row in strict_jsonl(run_dir / "policy.jsonl"):
        assert_finite_policy(row)
    strict_jsonl(run_dir / "metrics.jsonl")
    ckpt = run_dir / "checkpoints" / "last.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        assert_finite_policy(state["policy"])
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def _exit_3(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 3, (result.exit_code, result.stderr, result.exception)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.slow
def test_diverging_recipe_stops_with_exit_3_naming_epoch_and_batch(tmp_path):
    """Protection: the engine's non-finite-loss check (NumericalError). lr = 1e12 diverges in the first epoch."""
    result, run_dir = _numeric_run(tmp_path, "optimizer.lr=1e12")
    line = _exit_3(result)
    assert re.search(r"non-finite training loss at epoch 1, batch \d+", line), line
    assert "no checkpoint yet" in line
    assert not (run_dir / "checkpoints" / "last.pt").exists()
    assert not strict_jsonl(run_dir / "metrics.jsonl")  # no epoch finished, none reported
    _assert_nothing_non_finite(run_dir)


@pytest.mark.slow
def test_loss_going_nan_later_keeps_the_last_good_checkpoint(tmp_path, plugin_dir):
    """Protection: the non-finite-loss check stops before metrics and the checkpoint of the bad epoch are written.
    The loss turns NaN at the 13th batch of the run: epoch 2, batch 3 (10 batches per epoch)."""
    result, run_dir = _numeric_run(tmp_path, f"objective.name={PLUGIN}:NanLossAt", "objective.at=13")
    line = _exit_3(result)
    assert "non-finite training loss at epoch 2, batch 3" in line, line
    assert str(run_dir / "checkpoints" / "last.pt") in line  # names the checkpoint it kept
    assert [row["epoch"] for row in metrics(run_dir)] == [1]
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    _assert_nothing_non_finite(run_dir)
    model = fairadv.load_model(run_dir)  # the kept checkpoint is usable
    assert torch.isfinite(model(torch.rand(4, 1, 8, 8))).all()


@pytest.mark.slow
def test_nan_policy_from_a_strategy_stops_with_exit_3(tmp_path, plugin_dir):
    """Protection: _checked_policy turns an invalid policy into NumericalError (exit 3) before anything is written."""
    result, run_dir = _numeric_run(tmp_path, f"strategy.name={PLUGIN}:NanPolicyAt", "strategy.at=2")
    line = _exit_3(result)
    assert "invalid policy at epoch 2" in line and "non-finite" in line, line
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    assert [row["epoch"] for row in metrics(run_dir)] == [1]
    _assert_nothing_non_finite(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("hook", ["end", "start"])
def test_policy_made_non_finite_after_validation_is_never_written(tmp_path, plugin_dir, hook):
    """Protection: _checked_policy validates a returned policy again, on a private copy. ClassPolicy's tensors are
    mutable after its own validation; unchecked, NaN / inf reached policy.jsonl ('NaN', 'Infinity') and last.pt,
    then ClassPolicy.to() raised a bare ValueError (exit 1, traceback)."""
    result, run_dir = _numeric_run(tmp_path, f"strategy.name={PLUGIN}:MutatedPolicyAt", "strategy.at=2",
                                   f"strategy.hook={hook}")
    line = _exit_3(result)
    assert "invalid policy at epoch 2" in line, line
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    _assert_nothing_non_finite(run_dir)


# --- 5. determinism ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_same_recipe_and_seed_give_bit_identical_results(tmp_path, reference):
    """Protections: the run seed (seed_everything before the model is built) and the seeded shuffling generator and
    attack starts. A second run of the DAFA recipe in the same process, global RNGs already advanced by the first,
    must match it bit for bit. (Per-epoch reseeding, which exact resume needs, is what the crash tests cover.)"""
    fairadv.run(fairadv.Recipe.load(DAFA, KILL), out=tmp_path)
    assert_same_run(tmp_path / "dafa_digits", reference["run_dir"])
