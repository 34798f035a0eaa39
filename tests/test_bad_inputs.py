"""A wider matrix of bad input, as a careless or hostile user would try it: every case exits 2 with exactly one line
on stderr, no traceback, and leaves every file as it was.

Families: recipe values (names that are paths, seeds, non-finite numbers, tables), module paths, image folders
(corrupt, empty and one-class), a model that cannot take the data, checkpoints given to ``eval`` (text, random
bytes, empty, damaged spec, wrong shapes), result files given to ``report`` and ``compare``, output locations, and
study files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import DIGITS, QUICK, SESSION_RUN, invoke, sets
from PIL import Image

from fairadv.cli import main


def images(root: Path, classes: tuple[str, ...] = ("a", "b"), bad: bytes | None = None) -> None:
    """An ImageFolder tree with 2 grey 8x8 images per class and split; ``bad`` replaces one training image."""
    for split in ("train", "test"):
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("L", (8, 8), color=40 * i).save(root / split / name / f"{i}.png")
    if bad is not None:
        (root / "train" / classes[0] / "0.png").write_bytes(bad)


NO_SERVER = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
FOLDER = sets("data.name=imagefolder", "data.root={tmp}/img", "data.image_size=8", "data.channels=1", *QUICK)


class FromRun:
    """A case's set-up on a real finished run folder: a copy of the session's digits run in ``<tmp>/runs`` (made
    before the snapshot), which ``edit(tmp, run)`` may then damage."""

    def __init__(self, edit: Callable[[Path, Path], None] | None = None):
        self.edit = edit

    def __call__(self, tmp: Path, session_run: Path) -> None:
        run = Path(shutil.copytree(session_run, tmp / "runs" / session_run.name))
        if self.edit is not None:
            self.edit(tmp, run)


def damaged_checkpoint(edit: Callable[[dict], None]) -> FromRun:
    def make(tmp: Path, run: Path) -> None:
        state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
        edit(state)
        torch.save(state, tmp / "ckpt.pt")
    return FromRun(make)


def damaged_summary(edit: Callable[[dict], None], name: str = "summary.json") -> FromRun:
    def make(tmp: Path, run: Path) -> None:
        if name == "eval.json":
            assert invoke("eval", run, "--n", "20", "--attack", "fgsm", catch_exceptions=True).exit_code == 0
        doc = json.loads((run / name).read_text())
        edit(doc)
        (run / name).write_text(json.dumps(doc))
    return FromRun(make)


def damaged_eval(edit: Callable[[dict], None]) -> FromRun:
    """The run evaluated under FGSM, then ``edit`` applied to the attacks of ``eval.json``'s format-2 entry."""
    def make(tmp: Path, run: Path) -> None:
        assert invoke("eval", run, "--n", "20", "--attack", "fgsm", catch_exceptions=True).exit_code == 0
        doc = json.loads((run / "eval.json").read_text())
        edit(doc["evaluations"][-1]["attacks"])
        (run / "eval.json").write_text(json.dumps(doc))
    return FromRun(make)


EVAL_AGAIN = ["eval", "{tmp}/runs/trades_digits", "--n", "20", "--attack", "pgd2"]  # keeps fgsm


def trackers_file(logged_through: str) -> FromRun:
    """The run with a ``trackers.json`` whose TensorBoard table says it logged through ``logged_through`` (JSON)."""
    def make(tmp: Path, run: Path) -> None:
        (run / "trackers.json").write_text(f'{{"tensorboard": {{"logged_through": {logged_through}}}}}')
    return FromRun(make)


RESUME_WITH_TENSORBOARD = ["run", DIGITS, *sets(*SESSION_RUN, "log.tensorboard=true"), "--out", "{tmp}/runs",
                           "--resume", "--quiet"]


def mlflow_study(parents: str, lost_run: bool = False) -> Callable[[Path], None]:
    """A one-cell study ``s.toml`` logging to the MLflow file store ``<tmp>/mlruns``, whose study folder already
    holds ``mlflow_parent.json`` with ``parents`` (``{store}`` stands for the store's key); ``lost_run``: the store
    exists, without the parent run the file names."""
    def make(tmp: Path) -> None:
        store = (tmp / "mlruns").as_uri()
        overrides = [*SESSION_RUN, f"log.mlflow.tracking_uri={json.dumps(store)}"]
        (tmp / "s.toml").write_text(f'[study]\nseeds = [0]\nset = {json.dumps(overrides)}\n[methods.a]\n'
                                    f'recipe = "{DIGITS}"\n')
        (tmp / "o" / "s").mkdir(parents=True)
        (tmp / "o" / "s" / "mlflow_parent.json").write_text(parents.replace("{store}", f"{store}#fairadv"))
        if lost_run:
            from mlflow.tracking import MlflowClient

            from fairadv.tracking.mlflow_tracker import resolved_uri  # allows MLflow's file store, as fairadv does
            MlflowClient(tracking_uri=resolved_uri(store)).create_experiment("fairadv")
    return make


def study_file(seeds: str = "[0]", method: str = "", study_set: tuple[str, ...] = SESSION_RUN
               ) -> Callable[[Path], None]:
    """A one-cell study ``<tmp>/s.toml`` of the digits recipe with ``seeds`` and ``study_set``; ``method``: more of
    its table."""
    def make(tmp: Path) -> None:
        (tmp / "s.toml").write_text(f'[study]\nseeds = {seeds}\nset = {json.dumps(study_set)}\n[methods.a]\n'
                                    f'recipe = "{DIGITS}"\n{method}')
    return make


NOT_UTF8 = os.fsdecode(b"r\xff.toml")  # a file name in Latin-1, as the command line receives it


def copied_recipe(name: str) -> Callable[[Path], None]:
    return lambda tmp: shutil.copy(DIGITS, tmp / name)


def shrink(state: dict) -> None:
    state["model"] = {k: v[:1] if v.ndim else v for k, v in state["model"].items()}


CASES: list[tuple[str, list[str], Callable[[Path], None] | FromRun | None, str]] = [
    # recipe values: validate and run must refuse them alike (both are tried for these)
    ("name with ..", ["validate", DIGITS, *sets('run.name="../../x"')], None, "expected a folder name"),
    ("absolute name", ["run", DIGITS, *sets('run.name="/tmp/abs"'), "--out", "{tmp}/o"], None, "a folder name"),
    ("empty name", ["run", DIGITS, *sets('run.name=""'), "--out", "{tmp}/o"], None, "a folder name"),
    ("seed too large", ["run", DIGITS, *sets("run.seed=9200000000000"), "--out", "{tmp}/o"], None, "run.seed"),
    ("negative seed", ["validate", DIGITS, *sets("run.seed=-1")], None, "run.seed = -1"),
    ("nan lr", ["validate", DIGITS, *sets("optimizer.lr=nan")], None, "expected a finite number"),
    ("inf beta", ["run", DIGITS, *sets("objective.beta=inf"), "--out", "{tmp}/o"], None, "a finite number"),
    ("nan in an untyped model key", ["validate", DIGITS, *sets("model.name=timm:resnet18", "model.drop_rate=nan")],
     None, "model.drop_rate = nan: expected a finite number"),
    ("nan inside a list", ["validate", DIGITS, *sets("schedule.name=multistep", "schedule.milestones=[1, nan]")],
     None, "schedule.milestones[1] = nan"),
    ("eval attack not a table", ["validate", DIGITS, *sets("eval.attack=0")], None, "expected a table"),
    ("unknown table", ["validate", DIGITS, *sets("trian.epochs=3")], None, "unknown table trian"),
    ("string for int", ["validate", DIGITS, *sets("train.epochs=ten")], None, "expected an integer"),
    # recipes that extend another
    ("extends a missing recipe", ["validate", "{tmp}/a.toml"],
     lambda t: (t / "a.toml").write_text('extends = "nope.toml"\n'), "a.toml: extends = 'nope.toml':"),
    ("extends a number", ["run", "{tmp}/a.toml", "--out", "{tmp}/o"],
     lambda t: (t / "a.toml").write_text("extends = 2\n"), "a.toml: extends = 2: expected a string"),
    ("extends cycle", ["run", "{tmp}/a.toml", "--out", "{tmp}/o"],
     lambda t: [(t / n).write_text(f'extends = "{p}"\n') for n, p in (("a.toml", "b.toml"), ("b.toml", "a.toml"))],
     "b.toml: extends = 'a.toml': a cycle"),
    ("unknown key in a parent", ["validate", "{tmp}/a.toml"],
     lambda t: [(t / n).write_text(x) for n, x in (("a.toml", 'extends = "b.toml"\n'),
                                                   ("b.toml", f'extends = "{DIGITS}"\n[train]\nepohcs = 2\n'))],
     "b.toml): unknown key train.epohcs"),
    ("empty MLflow experiment", ["run", DIGITS, *sets(*QUICK, 'log.mlflow.experiment=""'), "--out", "{tmp}/o"],
     None, "log.mlflow.experiment = '': expected a non-empty name"),
    ("blank W&B project", ["validate", DIGITS, *sets('log.wandb.project=" "')], None,
     "log.wandb.project = ' ': expected a non-empty name"),
    ("unreachable MLflow server", ["run", DIGITS, *sets(*QUICK, f"log.mlflow.tracking_uri={json.dumps(NO_SERVER)}"),
                                   "--out", "{tmp}", "--quiet"], None, "log.mlflow: cannot start mlflow: "),
    # module paths
    ("os:system as strategy", ["validate", DIGITS, *sets("strategy.name=os:system", "strategy.command=touch X")],
     None, "not a class"),
    ("attack class as strategy", ["validate", DIGITS, *sets("strategy.name=fairadv.attacks.pgd:PGD")], None,
     "expected a subclass of fairadv.strategies.base.FairnessStrategy"),
    ("PurePath as attack", ["run", DIGITS, *sets("attack.name=pathlib:PurePath"), "--out", "{tmp}/o"], None,
     "expected a subclass of fairadv.attacks.base.Attack"),
    ("module path data set", ["validate", DIGITS, *sets("data.name=os:system")], None, "cannot be named by module"),
    # image folders: every file checked before training
    ("corrupt image", ["run", DIGITS, *FOLDER, "--out", "{tmp}/o"],
     lambda t: images(t / "img", bad=b"\x89PNG\r\n\x1a\n not really"), "0.png: not a readable image"),
    ("zero-byte image", ["validate", DIGITS, *FOLDER], lambda t: images(t / "img", bad=b""), "not a readable image"),
    ("text file as image", ["validate", DIGITS, *FOLDER], lambda t: images(t / "img", bad=b"hello"), "0.png"),
    ("one class", ["run", DIGITS, *FOLDER, "--out", "{tmp}/o"], lambda t: images(t / "img", classes=("a",)),
     "at least 2 classes"),
    ("missing image folder", ["validate", DIGITS, *FOLDER], None, "not found"),
    # the model must take the data
    ("224-pixel ViT on 8x8 digits", ["run", DIGITS, *sets("model.name=timm:vit_tiny_patch16_224"), "--out",
                                     "{tmp}/o"], None, "cannot take data 'digits''s inputs of shape (1, 8, 8)"),
    # checkpoints given to eval
    ("text checkpoint", ["eval", "{tmp}/ckpt.pt"], lambda t: (t / "ckpt.pt").write_text("hello"),
     "not a file torch.save wrote"),
    ("random-byte checkpoint", ["eval", "{tmp}/ckpt.pt"],
     lambda t: (t / "ckpt.pt").write_bytes(hashlib.sha256(b"x").digest() * 40), "not a file torch.save wrote"),
    ("empty checkpoint", ["eval", "{tmp}/ckpt.pt"], lambda t: (t / "ckpt.pt").write_bytes(b""), "the file is empty"),
    ("damaged model_spec", ["eval", "{tmp}/ckpt.pt"],
     damaged_checkpoint(lambda s: s.update(model_spec={"num_classes": "ten"})), "model_spec = "),
    ("wrong weight shapes", ["eval", "{tmp}/ckpt.pt"], damaged_checkpoint(shrink), "size mismatch for"),
    # result files
    ("report: per_class not a list", ["report", "{tmp}/runs/trades_digits"],
     damaged_summary(lambda d: d.update(per_class=3)), "per_class = 3"),
    ("report: accuracy a string", ["report", "{tmp}/runs/trades_digits"],
     damaged_summary(lambda d: d.update(robust_accuracy="high")), "robust_accuracy = 'high'"),
    ("report: worst class out of range", ["report", "{tmp}/runs/trades_digits"],
     damaged_summary(lambda d: d.update(worst_class=99)), "worst_class = 99"),
    ("compare: row without robust", ["compare", "{tmp}/runs/trades_digits"],
     damaged_summary(lambda d: d["per_class"][0].pop("robust")), "per_class[0]"),
    ("compare: damaged eval.json", ["compare", "{tmp}/runs/trades_digits"],
     damaged_summary(lambda d: d["attacks"]["fgsm"].update(clean_accuracy=2.0), name="eval.json"),
     "eval.json (attack fgsm): clean_accuracy = 2.0"),
    # output locations, checked before anything is computed
    ("eval into /proc", ["eval", "{tmp}/runs/trades_digits", "--out", "/proc/eval.json"], FromRun(),
     "/proc: cannot write: no such file or directory"),
    ("eval into a missing folder", ["eval", "{tmp}/runs/trades_digits", "--out", "{tmp}/no/such/eval.json"],
     FromRun(), "its folder does not exist"),
    # a damaged eval.json that eval would merge into: refused before any attack runs
    ("eval.json: attack result not an object", EVAL_AGAIN, damaged_eval(lambda d: d.update(fgsm=3)),
     "(evaluations[0], attack fgsm): expected a JSON object of results, got int"),
    ("eval.json: odd-length predictions", EVAL_AGAIN, damaged_eval(lambda d: d["fgsm"].update(predictions="AA==")),
     "evaluations[0].attacks.fgsm.predictions = 'AA==': expected base64 of int16"),
    ("eval.json: no per_class", EVAL_AGAIN, damaged_eval(lambda d: d["fgsm"].pop("per_class")),
     "per_class = None: expected a non-empty list"),
    # a study's MLflow parent run, checked before any cell runs
    ("mlflow_parent.json not JSON", ["study", "{tmp}/s.toml", "--out", "{tmp}/o"], mlflow_study('{"x'),
     "mlflow_parent.json: not readable JSON"),
    ("mlflow_parent.json run id a number", ["study", "{tmp}/s.toml", "--out", "{tmp}/o"],
     mlflow_study('{"{store}": 3}'), "= 3: expected '<store>#<experiment>' = '<run id>'"),
    ("mlflow store lost the parent run", ["study", "{tmp}/s.toml", "--out", "{tmp}/o"],
     mlflow_study('{"{store}": "0123456789abcdef0123456789abcdef"}', lost_run=True),
     "the study's MLflow run 0123456789abcdef0123456789abcdef is not in"),
    # files that are not recipes or study files: refused before reading (a device or a FIFO was read forever)
    ("run: recipe name not UTF-8", ["run", f"{{tmp}}/{NOT_UTF8}", *sets(*QUICK), "--out", "{tmp}/o"],
     copied_recipe(NOT_UTF8), "r\\udcff.toml': the recipe file's name is not UTF-8"),
    ("validate: recipe name not UTF-8", ["validate", f"{{tmp}}/{NOT_UTF8}"], copied_recipe(NOT_UTF8),
     "the recipe file's name is not UTF-8"),
    ("validate /dev/zero", ["validate", "/dev/zero"], None, "/dev/zero: cannot read recipe file: not a regular file"),
    ("validate a FIFO", ["validate", "{tmp}/r.toml"], lambda t: os.mkfifo(t / "r.toml"), "not a regular file"),
    ("study file a FIFO", ["study", "{tmp}/s.toml", "--out", "{tmp}/o"], lambda t: os.mkfifo(t / "s.toml"),
     "s.toml: cannot read study file: not a regular file"),
    ("17 MiB recipe", ["validate", "{tmp}/r.toml"], lambda t: (t / "r.toml").write_bytes(b"#" * 17 * 2**20),
     "17825792 bytes, where a recipe file is at most 16777216"),
    ("a folder as recipe", ["validate", "{tmp}"], None, "cannot read recipe file: not a regular file"),
    # numbers past what the machinery holds (a process pool's semaphore, NumPy's seed)
    ("--jobs 3000000000", ["study", "{tmp}/s.toml", "--out", "{tmp}/o", "--jobs", "3000000000"], study_file(),
     "--jobs 3000000000: expected 1 to 1024"),
    ("eval --seed 1e20", ["eval", "{tmp}/runs/trades_digits", "--seed", "99999999999999999999"], FromRun(),
     "--seed 99999999999999999999: expected an integer from 0 to 4294967295"),
    ("run.seed 1e20", ["validate", DIGITS, *sets("run.seed=99999999999999999999")], None,
     "run.seed = 99999999999999999999"),
    ("study seed 2**32", ["study", "{tmp}/s.toml", "--out", "{tmp}/o"], study_file("[0, 4294967296]"),
     "study.seeds = [0, 4294967296]: expected a non-empty list of distinct integers from 0 to 4294967295"),
    ("study set misspelt", ["study", "{tmp}/s.toml", "--out", "{tmp}/o"],
     study_file(study_set=(*SESSION_RUN, "trian.epochs=1")), "s.toml: study.set[6] = 'trian.epochs=1': "),
    ("study --set misspelt", ["study", "{tmp}/s.toml", "--out", "{tmp}/o", "--set", "trian.epochs=1"],
     study_file(), "s.toml: --set 'trian.epochs=1': "),
    ("method set misspelt", ["study", "{tmp}/s.toml", "--out", "{tmp}/o"],
     study_file(method='set = ["trian.epochs=1"]'), "s.toml: methods.a (cell a-s0): "),
    ("study requires a relative module", ["study", "{tmp}/s.toml", "--report-only", "--out", "{tmp}/o"],
     study_file(method='requires = ".plugin"'), "methods.a.requires = '.plugin': expected an absolute module name"),
    # run-folder files of the trackers, read on --resume
    *[(f"trackers.json logged_through {value}", RESUME_WITH_TENSORBOARD, trackers_file(value),
       f"tensorboard.logged_through = {shown}: expected a whole number of epochs")
      for value, shown in (('"x"', "'x'"), ("null", "None"), ("1e400", "inf"), ("[1]", "[1]"))],
    # study files
    ("study with a bad seed list", ["study", "{tmp}/s.toml", "--out", "{tmp}/o"],
     lambda t: (t / "s.toml").write_text(f'[study]\nseeds = [0, 0]\n[methods.a]\nrecipe = "{DIGITS}"\n'),
     "study.seeds"),
    ("study naming a path as a method", ["study", "{tmp}/s.toml", "--out", "{tmp}/o"],
     lambda t: (t / "s.toml").write_text(f'[methods."../a"]\nrecipe = "{DIGITS}"\n'), "expected a name"),
]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("args,setup,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(request, tmp_path, args, setup, fragment):
    if isinstance(setup, FromRun):
        setup(tmp_path, request.getfixturevalue("digits_run"))
    elif setup is not None:
        setup(tmp_path)
    refused(tmp_path, args, fragment)


# torchrun's variables left in a shell or a batch script by another job
STALE_ENVIRONMENTS = [
    ({"WORLD_SIZE": "2", "RANK": "0"}, "WORLD_SIZE=2 without MASTER_ADDR"),
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc': expected a whole number of 1 or more"),
    ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"},
     "RANK='2': expected a whole number from 0 to 1"),
]


@pytest.mark.parametrize("environment,fragment", STALE_ENVIRONMENTS, ids=["no MASTER_ADDR", "abc", "rank 2 of 2"])
def test_stale_torchrun_variables_are_one_line_exit_2(tmp_path, monkeypatch, environment, fragment):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    refused(tmp_path, ["run", DIGITS, *sets(*QUICK), "--out", "{tmp}/o"], fragment)


def refused(tmp_path: Path, args: list[str], fragment: str) -> None:
    """The contract: exit 2, one line naming ``fragment``, no traceback, nothing in ``tmp_path`` written."""
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], lines
    assert "Traceback" not in result.output and "weights_only" not in result.stderr
    assert snapshot(tmp_path) == before
    assert not Path("/tmp/abs").exists() and not (tmp_path.parent / "x").exists()


def test_a_dotted_requires_runs_no_code_of_its_package(tmp_path):
    """``requires = "this.zen"``: finding ``this.zen`` imported ``this``, which prints the Zen of Python, even under
    --report-only. Only the top-level name is looked up now, and nothing is imported."""
    study_file(method='requires = "this.zen"')(tmp_path)
    assert "this" not in sys.modules
    result = CliRunner().invoke(main, ["study", str(tmp_path / "s.toml"), "--report-only", "--out", str(tmp_path)])
    assert "Beautiful is better than ugly" not in result.output and "this" not in sys.modules
    assert "no study folder yet" in result.stderr  # the method counts as available: its package is installed


def test_the_matrix_is_wide():
    assert len(CASES) >= 30
