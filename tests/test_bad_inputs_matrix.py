"""The new surfaces tried as a careless or hostile user would (issue 30's own matrix, beyond its listed cases): every
case exits 2 with exactly one line on stderr naming the file or option and what was expected, no traceback, and
leaves every file as it was (`test_bad_inputs.refused`, the same contract).

Families: study files and the study command's options, a study folder's files, recipes that extend another, the
result files (summary.json, eval.json format 2), runs that are not runs, tracker settings, the Slurm launcher's
options, and checkpoints (``eval``, ``--resume``, ``model.init_from``). Rows marked "was:" found a defect.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import DIGITS, QUICK, SESSION_RUN, invoke, sets
from test_bad_inputs import refused

from fairadv.run_folder import EVAL, PROVENANCE, SUMMARY

Setup = Callable[[Path, Path], object]  # (the case's tmp folder, a finished run evaluated under FGSM)

HEAD = f'[study]\nseeds = [0]\nevaluate = ["fgsm"]\nn = 20\nset = {json.dumps(list(SESSION_RUN))}\n'
A = f'[methods.a]\nrecipe = "{DIGITS}"\n'
STUDY = ["study", "{tmp}/s.toml", "--out", "{tmp}/o"]
REPORT_ONLY = [*STUDY, "--report-only"]
SLURM = [*REPORT_ONLY, "--launcher", "slurm"]  # the options are checked under --report-only too, nothing submitted
RUN = "{tmp}/runs/trades_digits"


def study(text: str) -> Setup:
    """The study file ``<tmp>/s.toml`` with ``text``."""
    return lambda tmp, run: (tmp / "s.toml").write_text(text)


def on_study(edit: Callable[[Path, Path], object]) -> Setup:
    """A one-cell study (``HEAD`` + method a) whose finished cell ``a-s0`` is the evaluated run, then ``edit(study
    folder, cell folder)``."""
    def make(tmp: Path, run: Path) -> None:
        (tmp / "s.toml").write_text(HEAD + A)
        cell = Path(shutil.copytree(run, tmp / "o" / "s" / "runs" / "a-s0"))
        edit(cell.parent.parent, cell)
    return make


def unevaluated(edit_logs: Callable[[Path], object]) -> Callable[[Path, Path], None]:
    """An edit of a study's cell: trained but not evaluated (a study would only evaluate it), then
    ``edit_logs(<study>/logs)``."""
    def edit(study_dir: Path, cell: Path) -> None:
        (cell / EVAL).unlink()
        (study_dir / "logs").mkdir()
        edit_logs(study_dir / "logs")
    return edit


def on_run(edit: Callable[[Path, Path], object] | None = None) -> Setup:
    """The evaluated run copied to ``<tmp>/runs/trades_digits``, then ``edit(tmp, run)``."""
    def make(tmp: Path, run: Path) -> None:
        copy = Path(shutil.copytree(run, tmp / "runs" / "trades_digits"))
        if edit is not None:
            edit(tmp, copy)
    return make


def edited(name: str, change: Callable[[dict], object]) -> Callable[[Path, Path], None]:
    """An edit that applies ``change`` to the run's JSON file ``name``."""
    def edit(tmp: Path, run: Path) -> None:
        doc = json.loads((run / name).read_text())
        change(doc)
        (run / name).write_text(json.dumps(doc))
    return edit


def fgsm(doc: dict) -> dict:
    """The FGSM result of eval.json's latest format-2 entry."""
    return doc["evaluations"][-1]["attacks"]["fgsm"]


def other_classes(doc: dict) -> None:
    """eval.json's latest FGSM result cut to 3 classes, without the intervals that would also say so."""
    fgsm(doc).update(per_class=fgsm(doc)["per_class"][:3])
    fgsm(doc).pop("intervals", None)


def three_classes(tmp: Path, run: Path) -> None:
    """A copy of the run at ``<tmp>/b`` whose results hold 3 classes (a baseline of another data set)."""
    other = Path(shutil.copytree(run, tmp / "b"))
    edited(EVAL, lambda d: fgsm(d).update(per_class=fgsm(d)["per_class"][:3]))(tmp, other)
    edited(SUMMARY, lambda d: d.update(per_class=d["per_class"][:3]))(tmp, other)


def extends_chain(length: int) -> Setup:
    """``r0.toml`` extends ``r1.toml`` ... extends the digits recipe: ``length`` recipes in a chain."""
    def make(tmp: Path, run: Path) -> None:
        for i in range(length):
            (tmp / f"r{i}.toml").write_text(f'extends = "r{i + 1}.toml"\n')
        (tmp / f"r{length}.toml").write_text(f'extends = "{DIGITS}"\n')
    return make


def recipe(text: str, **others: str | bytes) -> Setup:
    """``<tmp>/r.toml`` with ``text``, beside the files ``others`` (name with ``_`` for ``.``: bytes or text)."""
    def make(tmp: Path, run: Path) -> None:
        for name, content in others.items():
            path = tmp / name.replace("_", ".")
            path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        (tmp / "r.toml").write_text(text)
    return make


def cut(path: Path, size: int = 5000) -> None:
    path.write_bytes(path.read_bytes()[:size])


def replace_by_file(folder: Path) -> None:
    shutil.rmtree(folder)
    folder.write_text("not a folder")


VALIDATE_R = ["validate", "{tmp}/r.toml"]
INIT_FROM = ["validate", DIGITS, *sets(*QUICK, "model.init_from={tmp}/x")]
B_METHOD = f'[methods.b]\nrecipe = "{DIGITS}"\nlabel = "X"\n'

CASES: list[tuple[str, list[str], Setup | None, str]] = [
    # study files: types the TOML allows and the study does not
    ("study.set a string", STUDY, study('[study]\nset = "train.epochs=1"\n' + A),
     "study.set = 'train.epochs=1': expected a list of strings"),
    ("axis value a string", STUDY, study(A + '[axes.d]\nx = "train.epochs=1"\n'),
     "axes.d.x = 'train.epochs=1': expected a list of strings"),
    ("axis value a table", STUDY, study(A + "[axes.d.x]\ny = 1\n"), "axes.d.x = {'y': 1}: expected a list of strings"),
    ("evaluate a string", STUDY, study('[study]\nevaluate = "pgd20"\n' + A),
     "study.evaluate = 'pgd20': expected a list of strings"),
    ("seeds a number", STUDY, study("[study]\nseeds = 3\n" + A), "study.seeds = 3: expected a list of integers"),
    ("seeds [true]", STUDY, study("[study]\nseeds = [true]\n" + A), "study.seeds = [True]: expected a list of"),
    ("n a fraction", STUDY, study("[study]\nn = 1.5\n" + A), "study.n = 1.5: expected an integer"),
    ("out empty", STUDY[:2], study('[study]\nout = ""\n' + A), "study.out = '': expected a folder path"),
    ("methods a number", STUDY, study("methods = 3\n"), "methods = 3: expected a table [methods]"),
    ("method without recipe", STUDY, study("[methods.a]\nset = []\n"), "missing key methods.a.recipe"),
    ("recipe is the study file", STUDY, study(HEAD + '[methods.a]\nrecipe = "s.toml"\n'),
     "s.toml: unknown table study"),
    ("label a number", STUDY, study(A + "label = 3\n"), "methods.a.label = 3: expected a string"),
    ("init_from a number", STUDY, study(A + "init_from = 3\n"), "methods.a.init_from = 3: expected a string"),
    # was: two rows shown as "X" in every table, which no reader could tell apart
    ("two methods with one label", STUDY, study(A + 'label = "X"\n' + B_METHOD),
     "methods.a.label = 'X': expected a label no other method shows"),
    # the study command's options
    ("--seeds 1e3", [*STUDY, "--seeds", "1e3"], study(A), "--seeds '1e3': expected integers separated by commas"),
    ("--methods 'a b'", [*STUDY, "--methods", "a b"], study(A), "--methods 'a b': expected methods of the study"),
    ("--set not an integer", [*STUDY, "--set", "train.epochs=ten"], study(A),
     "train.epochs = 'ten': expected an integer"),
    ("--plan-seeds nan", [*STUDY, "--plan-seeds", "nan"], study(A), "--plan-seeds nan: expected a positive"),
    # was: exit 0, "detecting a difference of inf points" / "of 250.0 points" / "sd from --plan-sd inf"
    ("--plan-seeds inf", [*STUDY, "--plan-seeds", "inf"], study(A), "--plan-seeds inf: expected a positive"),
    ("--plan-seeds 250", [*STUDY, "--plan-seeds", "250"], study(A), "worst-class accuracy, at most 100"),
    ("--plan-sd inf", [*STUDY, "--plan-seeds", "2", "--plan-sd", "inf"], study(A), "--plan-sd inf: expected a"),
    ("--plan-sd 0", [*STUDY, "--plan-seeds", "2", "--plan-sd", "0"], study(A), "--plan-sd 0: expected a positive"),
    # a study folder's own files
    ("origin.json a list", REPORT_ONLY, on_study(lambda s, c: (s / "origin.json").write_text("[1]")),
     "origin.json: expected a JSON object"),
    ("origin.json cut short", REPORT_ONLY, on_study(lambda s, c: (s / "origin.json").write_text('{"study_')),
     "origin.json: not readable JSON"),
    # was: the cell read as not started; --report-only overwrote the study's tables with an empty one, exit 0
    ("cell folder a file", REPORT_ONLY, on_study(lambda s, c: replace_by_file(c)), "a-s0 is a file, not a folder"),
    ("runs folder a file", REPORT_ONLY, on_study(lambda s, c: replace_by_file(s / "runs")),
     "runs is a file, not a folder"),
    ("cell recipe.toml damaged", REPORT_ONLY, on_study(lambda s, c: (c / "recipe.toml").write_text("[train\n")),
     "recipe.toml: the recipe stored in the checkpoint is not valid TOML"),
    # was: a worker met these after the pool had started, and the cell failed (exit 1, origin.json written)
    ("threads.json a list", STUDY, on_study(unevaluated(lambda logs: (logs / "a-s0.threads.json").write_text("[2]"))),
     "a-s0.threads.json: expected a JSON object"),
    ("threads.json of 0 threads", STUDY,
     on_study(unevaluated(lambda logs: (logs / "a-s0.threads.json").write_text('{"threads": 0}'))),
     "threads: expected a positive integer, got 0"),
    ("cell log a folder", STUDY, on_study(unevaluated(lambda logs: (logs / "a-s0.log").mkdir())),
     "a-s0.log: not a file; expected cell a-s0's log"),
    # recipes that extend another
    # was: a RecursionError traceback (a chain of 1000; 400 passed)
    ("extends chain of 1000", ["validate", "{tmp}/r0.toml"], extends_chain(1000),
     "r0.toml: extends: a chain of more than 64 recipes"),
    ("extends a folder", VALIDATE_R, lambda t, r: ((t / "d").mkdir(), (t / "r.toml").write_text('extends = "d"\n')),
     "r.toml: extends = 'd': "),
    ("extends a study file", VALIDATE_R, recipe('extends = "s.toml"\n', s_toml=HEAD + A),
     "s.toml): unknown table study"),
    ("extends a non-UTF-8 file", VALIDATE_R, recipe('extends = "p.toml"\n', p_toml=b"# \xff\xfe\n"),
     "p.toml: cannot read recipe file: not UTF-8 text"),
    ("extends itself through a symlink", VALIDATE_R,
     lambda t, r: ((t / "l.toml").symlink_to(t / "r.toml"), (t / "r.toml").write_text('extends = "l.toml"\n')),
     "extends = 'l.toml': a cycle"),
    ("extends a FIFO", VALIDATE_R, lambda t, r: (os.mkfifo(t / "p.toml"), (t / "r.toml").write_text(
        'extends = "p.toml"\n')), "extends = 'p.toml': "),
    ("extends with a NUL byte", VALIDATE_R, recipe('extends = "a\\u0000b"\n'), "extends = 'a\\x00b': "),
    # was: OSError: [Errno 36] File name too long, a traceback
    ("extends a name too long", VALIDATE_R, recipe(f'extends = "{"a" * 300}.toml"\n'), "File name too long"),
    ("extends inside a table", VALIDATE_R, recipe(f'extends = "{DIGITS}"\n[train]\nextends = "x"\n'),
     "unknown key train.extends"),
    # result files: summary.json, eval.json format 2
    ("report: summary.json cut short", ["report", RUN], on_run(lambda t, r: (r / SUMMARY).write_text('{"clean')),
     "summary.json: not readable JSON"),
    ("compare: per_class clean a string", ["compare", RUN],
     on_run(edited(SUMMARY, lambda d: d["per_class"][0].update(clean="x"))), "summary.json: per_class[0] = "),
    # was: report.md written with a class of -5 images; compare printed its intervals (exit 0)
    ("report: negative count in summary.json", ["report", RUN],
     on_run(edited(SUMMARY, lambda d: d["per_class"][0].update(count=-5))), "per_class[0].count = -5: expected"),
    ("compare: negative count in eval.json", ["compare", RUN],
     on_run(edited(EVAL, lambda d: fgsm(d)["per_class"][0].update(count=-5))), "per_class[0].count = -5: expected"),
    ("compare: eval.json with fewer classes", ["compare", RUN],
     on_run(edited(EVAL, lambda d: fgsm(d).update(per_class=fgsm(d)["per_class"][:3]))), "with 3 classes"),
    # was: exit 0, compare and report setting an evaluation of 3 classes beside the run's 10
    ("compare: eval.json of other classes", ["compare", RUN], on_run(edited(EVAL, other_classes)),
     "per_class has 3 classes: expected the 10 of the run's summary.json"),
    ("report: eval.json of other classes", ["report", RUN], on_run(edited(EVAL, other_classes)),
     "per_class has 3 classes: expected the 10"),
    # was: a newer fairadv's eval.json read as format 2 by compare, and rewritten as format 2 by eval
    ("compare: eval.json format 3", ["compare", RUN], on_run(edited(EVAL, lambda d: d.update(format=3))),
     "eval.json: format = 3: expected 1 to 2"),
    ("eval into an eval.json of format 3", ["eval", RUN, "--n", "20", "--attack", "pgd2"],
     on_run(edited(EVAL, lambda d: d.update(format=3))), "eval.json: format = 3: expected 1 to 2"),
    ("compare: eval.json cut short", ["compare", RUN],
     on_run(lambda t, r: (r / EVAL).write_text('{"format": 2, "evalu')), "eval.json: not readable JSON"),
    ("report: evaluations an object", ["report", RUN], on_run(edited(EVAL, lambda d: d.update(evaluations={}))),
     "eval.json: evaluations: expected a list of setups"),
    ("compare: per_class row a number", ["compare", RUN],
     on_run(edited(EVAL, lambda d: fgsm(d)["per_class"].__setitem__(0, 7))), "attack fgsm): per_class[0] = 7"),
    # runs that are not runs
    ("compare an empty folder", ["compare", "{tmp}/e"], lambda t, r: (t / "e").mkdir(), "e/summary.json: not found"),
    ("compare a file", ["compare", "{tmp}/f"], lambda t, r: (t / "f").write_text("x"), "f: no such run folder"),
    ("compare summary.json itself", ["compare", RUN, f"{RUN}/{SUMMARY}"], on_run(), "summary.json: no such run"),
    ("compare a run without summary.json", ["compare", RUN], on_run(lambda t, r: (r / SUMMARY).unlink()),
     "summary.json: not found (the run has not finished"),
    ("report --baseline an empty folder", ["report", RUN, "--baseline", "{tmp}/e"],
     on_run(lambda t, r: (t / "e").mkdir()), "e/summary.json: not found"),
    ("report --baseline a file", ["report", RUN, "--baseline", "{tmp}/f"],
     on_run(lambda t, r: (t / "f").write_text("x")), "f: no such run folder"),
    ("eval --baseline an empty folder", ["eval", RUN, "--n", "20", "--attack", "fgsm", "--baseline", "{tmp}/e"],
     on_run(lambda t, r: (t / "e").mkdir()), "e/summary.json: not found"),
    ("report --baseline with other classes", ["report", RUN, "--baseline", "{tmp}/b"], on_run(three_classes),
     "b/summary.json: intervals.clean = "),
    # provenance.json, read by report
    ("report: provenance.json cut short", ["report", RUN], on_run(lambda t, r: (r / PROVENANCE).write_text('{"se')),
     "provenance.json: not readable JSON"),
    ("report: provenance.json sessions a number", ["report", RUN],
     on_run(edited(PROVENANCE, lambda d: d.update(sessions=3))), "provenance.json: sessions: expected a non-empty"),
    # tracker settings
    ("log.tensorboard a string", ["validate", DIGITS, *sets('log.tensorboard="yes"')], None,
     "log.tensorboard = 'yes': expected true or false"),
    ("log.wandb true", ["validate", DIGITS, *sets("log.wandb=true")], None,
     "log.wandb = True: expected a table [log.wandb]"),
    ("log.mlflow.tracking_uri a number", ["validate", DIGITS, *sets("log.mlflow.tracking_uri=3")], None,
     "log.mlflow.tracking_uri = 3: expected a string"),
    ("log.wandb.mode unknown", ["validate", DIGITS, *sets('log.wandb.mode="x"')], None,
     "log.wandb.mode = 'x': expected one of"),
    ("tensorboard folder a file", ["run", DIGITS, *sets(*SESSION_RUN, "log.tensorboard=true"), "--out",
                                   "{tmp}/runs", "--resume", "--quiet"],
     on_run(lambda t, r: (r / "tensorboard").write_text("x")), "log.tensorboard: cannot start tensorboard"),
    # the Slurm launcher's options. was: --time 0 (Slurm's "no limit") became 1 minute, 1:99:00 2h39, a 20-digit
    # time or GPU count went to sbatch after the study folder was made
    ("--time 0", [*SLURM, "--time", "0"], study(A), "--time '0': expected"),
    ("--time 1:99:00", [*SLURM, "--time", "1:99:00"], study(A), "--time '1:99:00': expected"),
    ("--time 20 digits", [*SLURM, "--time", "9" * 20], study(A), "from 1 minute to 365 days"),
    ("--gpus-per-job 20 digits", [*SLURM, "--gpus-per-job", "9" * 20], study(A), "at most 64"),
    ("--mem 0.5G", [*SLURM, "--mem", "0.5G"], study(A), "--mem '0.5G': expected"),
    # checkpoints
    ("eval a cut .pt", ["eval", "{tmp}/c.pt"],
     on_run(lambda t, r: (shutil.copy(r / "checkpoints" / "last.pt", t / "c.pt"), cut(t / "c.pt"))),
     "c.pt: not a readable fairadv checkpoint"),
    ("eval a zip of garbage", ["eval", "{tmp}/c.pt"],
     lambda t, r: zipfile.ZipFile(t / "c.pt", "w").writestr("a/data.pkl", b"garbage"),
     "c.pt: not a readable fairadv checkpoint"),
    ("--resume from a cut last.pt", ["run", DIGITS, *sets(*SESSION_RUN, "train.epochs=3"), "--out", "{tmp}/runs",
                                     "--resume", "--quiet"],
     on_run(lambda t, r: cut(r / "checkpoints" / "last.pt")), "last.pt: not a readable fairadv checkpoint"),
    ("eval as a model it is not", ["eval", f"{RUN}/checkpoints/last.pt", "--model", "resnet18"], on_run(),
     "model 'resnet18' needs images of at least 25x25 pixels"),
    ("init_from a run of another width", [*INIT_FROM, *sets("model.width=16", f"model.init_from={RUN}")], on_run(),
     "model.init_from = "),
    ("init_from a run with other classes", [*INIT_FROM, *sets("data.name=gaussian", f"model.init_from={RUN}")],
     on_run(), "size mismatch for fc.weight"),
    # was: the file's error without the key that named it
    ("init_from an empty folder", INIT_FROM, lambda t, r: (t / "x").mkdir(), "model.init_from = '"),
    ("init_from a text file", INIT_FROM, lambda t, r: (t / "x").write_text("x"), "model.init_from = '"),
]


@pytest.fixture(scope="module")
def evaluated_run(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's digits run, copied and evaluated under FGSM on 20 images (as the study's cells are)."""
    run = Path(shutil.copytree(digits_run, tmp_path_factory.mktemp("matrix") / "trades_digits"))
    assert invoke("eval", run, "--n", "20", "--attack", "fgsm").exit_code == 0
    return run


@pytest.mark.parametrize("args,setup,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(request, tmp_path, args, setup, fragment):
    if setup is not None:
        setup(tmp_path, request.getfixturevalue("evaluated_run"))
    refused(tmp_path, args, fragment)


def test_the_matrix_is_wide():
    assert len(CASES) >= 30
