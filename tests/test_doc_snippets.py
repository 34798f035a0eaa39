"""Every code snippet in README.md and docs/ runs as written (docs/api/ and docs/reference/ are generated: skipped).

Each fenced block is checked by its language:

- ``python``: the page's blocks run in page order in one namespace (a later block may use an earlier one's names),
  in a temporary working directory that links the repository's ``recipes/``, ``studies/``, ``plugins/`` and
  ``benchmarks/``, so a snippet that writes ``runs/`` writes it there. A top-level script the page creates
  (``title="run_hard_class.py"``) runs there too, in its place in the page.
- ``toml``: parsed. A recipe (only recipe tables) is validated with `fairadv.Recipe`: a whole one as it is; a
  fragment (e.g. only ``[strategy]``) merged onto the shipped recipes, preferring those that name the same
  components, and it must load onto at least one, so an unknown key, type, value or name fails. A study file
  (``[study]``) is validated with `fairadv.study.spec.load_study`, every cell's recipe included.
- ``bash``, ``sh``, ``shell``, ``console`` (``$ `` lines only): each command of each line (``&&``, ``;``, ``|``
  split, ``\\`` continuations joined, comments, redirections and ``VAR=value`` prefixes dropped). A ``fairadv``
  command (also ``.venv/bin/fairadv``, ``python -m fairadv``, ``torchrun ... -m fairadv``) is parsed by the click
  CLI, so an unknown command or option fails; its recipe (with its ``--set``) or study file is loaded. The cheap
  ones (``fairadv validate``, ``fairadv list``) really run and must exit 0, or 2 with the documented message when the
  next block is a ``text`` block starting with ``error:``. In every command, an argument that names a repository
  path (``recipes/``, ``studies/``, ``plugins/``, ``benchmarks/``...), a file the page creates, or any ``.toml``
  file must exist. Training commands (``fairadv run``, ``eval``, ``study``...) are parsed, not run.
- ``title="path"``: a path in the repository makes the block an excerpt of that file: a TOML excerpt must agree with
  the file (with the resolved recipe, for a recipe), a Python excerpt's lines must appear in the file in order
  (``...`` and whole-line comments are the page's own). Any other path is a file the page creates, written to the
  working directory before anything runs (blocks with one title are concatenated, as tests/test_docs_tutorial.py
  reads them); a ``pyproject.toml`` among them is "installed": its ``fairadv.plugins`` entry points are loaded.

Ignored languages (output listings and citations): ``text``, ``bibtex`` and blocks without a language; a new
language fails `test_every_block_has_a_checked_or_ignored_language` until it is added to one list.

``name = "my_experiment:HardClass"`` snippets get a ``my_experiment.py`` in the working directory: the tutorial's
strategy module without its registering decorator (the class needs none for a module path).
"""

from __future__ import annotations

import copy
import glob
import importlib.metadata
import importlib.util
import itertools
import os
import re
import runpy
import shlex
import sys
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
import torch
from click.testing import CliRunner
from registry_state import isolated_registries
from test_plugins import FakeEntryPoint

from fairadv import registry
from fairadv.cli import main
from fairadv.distances import DISTANCES
from fairadv.errors import FairadvError
from fairadv.recipe import Recipe, component_registries, read_recipe
from fairadv.study.spec import load_study
from fairadv.study.targets import is_leaderboard, load_leaderboard

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("api", "reference")  # docs/ folders written by mkdocstrings and docs/hooks/reference.py
PAGES = [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").rglob("*.md")
                                      if p.relative_to(ROOT / "docs").parts[0] not in GENERATED)
REPO_DIRS = ("recipes", "studies", "plugins", "benchmarks")  # linked into every working directory
REPO_PATH_PREFIXES = (*REPO_DIRS, "fairadv", "tests", "docs")  # a title under these names a shipped file

SHELL = ("bash", "sh", "shell", "console")
CHECKED = ("python", "toml", *SHELL)
IGNORED = ("text", "bibtex", "")
RECIPE_TABLES = ("run", "data", "model", "objective", "attack", "strategy", "optimizer", "schedule", "train", "eval")
COMPONENT_TABLES = ("data", "model", "objective", "attack", "strategy", "optimizer", "schedule")
CHEAP = ("validate", "list")  # fairadv commands that finish in seconds: really run

# What a documented run must achieve beyond running: the README's Python example trains 5 epochs of TRADES on digits
# and must learn (chance is 0.1 on digits' 10 classes).
EXPECTED = {
    "README.md": lambda ns: ns["summary"]["clean_accuracy"] > 0.5,
}

# Before any test: import the built-in components and the installed plugins, so that the registries `plugin_state`
# restores after each test hold them.
for _registry in (*component_registries().values(), DISTANCES):
    _registry.names()
INSTALLED_PLUGINS = list(importlib.metadata.entry_points(group=registry.PLUGIN_GROUP))


# --- the blocks ----------------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")


@dataclass
class Block:
    page: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    lang: str
    attrs: dict[str, str]
    body: str
    next_block: Block | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def title(self) -> str | None:
        return self.attrs.get("title")

    @property
    def excerpt_of(self) -> Path | None:
        """The shipped file this block quotes, if its title names one."""
        title = self.title
        if title and title.split("/")[0] in REPO_PATH_PREFIXES:
            return ROOT / title
        return None


def blocks_of(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, in order; the body is dedented by the fence's indentation."""
    page = path.relative_to(ROOT).as_posix()
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].strip()
        end = i + 1
        closing = re.compile(re.escape(fence[0]) + f"{{{len(fence)},}}")
        while end < len(lines) and not closing.fullmatch(lines[end].strip()):
            end += 1
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line.lstrip()
                         for line in lines[i + 1:end])
        lang = info.split()[0].lower() if info else ""
        out.append(Block(page, i + 1, lang, dict(re.findall(r'(\w+)="([^"]*)"', info)), body + "\n"))
        i = end + 1
    for block, following in itertools.pairwise(out):
        block.next_block = following
    return out


BLOCKS = [block for page in PAGES for block in blocks_of(page)]
BY_PAGE: dict[str, list[Block]] = {}
for _block in BLOCKS:
    BY_PAGE.setdefault(_block.page, []).append(_block)


def page_files(page: str) -> dict[str, str]:
    """{path: text} of the files a page creates (titled blocks that are not excerpts of shipped files)."""
    files: dict[str, str] = {}
    for block in BY_PAGE.get(page, []):
        if block.title and block.excerpt_of is None:
            files[block.title] = files.get(block.title, "") + block.body
    return files


def my_experiment_module() -> str:
    """The tutorial's strategy module without ``@STRATEGIES.register(...)``: what ``my_experiment:HardClass`` names."""
    source = page_files("docs/tutorial-plugin.md")["fairadv-hardclass/src/fairadv_hardclass/strategy.py"]
    return "\n".join(line for line in source.splitlines() if not line.startswith("@STRATEGIES.register(")) + "\n"


# --- the working directory -----------------------------------------------------------------------------------------


@pytest.fixture
def plugin_state(monkeypatch, tmp_path):
    """The entry points fairadv's plugin loader sees (the installed ones; append fakes), with every registry and the
    loader restored afterwards, and the modules imported from ``tmp_path`` (a page's plugin, ``my_experiment``)
    or run as a page's snippets forgotten.

    Like tests/test_plugins.py's fixture of the same name, but it keeps every other module a test imported: dropping
    those (matplotlib's and fontTools' lazily imported parts, torch's) breaks the next import of them.
    """
    def forget(name: str, module: Any) -> bool:
        origin = getattr(module, "__file__", None) or ""
        return name.startswith("doc_snippets_") or Path(origin).is_relative_to(tmp_path)

    with isolated_registries(monkeypatch, list(INSTALLED_PLUGINS), forget) as installed:
        yield installed


@pytest.fixture
def workspace(tmp_path, monkeypatch, plugin_state):
    """``enter(page)``: a working directory for the page's snippets, with the repository's folders linked in, the
    page's own files written and its plugins "installed"; registries and the page's modules are restored after."""

    def enter(page: str) -> Path:
        for name in REPO_DIRS:
            (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
        files = page_files(page)
        for name, text in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
        if "my_experiment:" in (ROOT / page).read_text():
            (tmp_path / "my_experiment.py").write_text(my_experiment_module())
        for name, text in files.items():  # `pip install -e <folder>` of a plugin the page creates
            if Path(name).name != "pyproject.toml":
                continue
            project = tomllib.loads(text)
            where = project.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {}).get("where",
                                                                                                         ["."])
            monkeypatch.syspath_prepend(str(tmp_path / Path(name).parent / where[0]))
            for ep_name, module in project["project"].get("entry-points", {}).get(registry.PLUGIN_GROUP, {}).items():
                plugin_state.append(FakeEntryPoint(ep_name, module, project["project"]["name"]))
        monkeypatch.syspath_prepend(str(tmp_path))  # `python -m fairadv` imports from the current folder
        monkeypatch.chdir(tmp_path)
        return tmp_path

    return enter


# --- python ----------------------------------------------------------------------------------------------------------


def _runnable(block: Block) -> bool:
    if block.lang != "python":
        return False
    if block.title is None:
        return True
    return block.excerpt_of is None and "/" not in block.title  # a top-level script the page creates


PYTHON_PAGES = [page for page, blocks in BY_PAGE.items() if any(_runnable(b) for b in blocks)]


@pytest.fixture
def all_cores():
    """Training snippets use every core (conftest.py sets one thread for the tiny test tensors)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(threads)


# Pages whose snippets train a model (conftest.py fails a test that trains unmarked, so a new one shows itself).
TRAINING_PAGES = {"README.md", "docs/getting-started.md", "docs/tutorial-plugin.md"}


@pytest.mark.parametrize("page", [pytest.param(p, marks=[pytest.mark.slow] if p in TRAINING_PAGES else [])
                                  for p in PYTHON_PAGES],
                         ids=[f"{p}:{','.join(str(b.line) for b in BY_PAGE[p] if _runnable(b))}" for p in PYTHON_PAGES])
def test_python_snippets_run(page, workspace, all_cores):
    cwd = workspace(page)
    module = types.ModuleType("doc_snippets_" + re.sub(r"\W", "_", page))
    sys.modules[module.__name__] = module  # attrs and typing resolve a class's annotations through its module
    namespace = module.__dict__
    for block in (b for b in BY_PAGE[page] if _runnable(b)):
        if block.title is None:
            # Padded so that a traceback's line numbers are the page's.
            code = compile("\n" * block.line + block.body, str(ROOT / page), "exec")
            exec(code, namespace)  # noqa: S102 - the documentation's own code
        else:
            namespace.update(runpy.run_path(str(cwd / block.title), run_name="__main__"))
    if page in EXPECTED:
        assert EXPECTED[page](namespace), f"{page}: the documented result does not hold: " \
                                          f"{ {k: v for k, v in namespace.get('summary', {}).items() if 'acc' in k} }"


# --- excerpts of shipped files -------------------------------------------------------------------------------------

EXCERPTS = [b for b in BLOCKS if b.excerpt_of is not None]


def _leaves(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*prefix, k))]
    return [(prefix, value)]


def _get(tree: dict, key: tuple[str, ...]) -> Any:
    node: Any = tree
    for part in key:
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


@pytest.mark.parametrize("block", EXCERPTS, ids=[b.id for b in EXCERPTS])
def test_excerpts_agree_with_the_file_they_quote(block):
    path = block.excerpt_of
    assert path.is_file(), f"{block.id}: title names {block.title}, which does not exist"
    if block.lang == "toml":
        excerpt = tomllib.loads(block.body)
        whole = tomllib.loads(path.read_text())
        if _is_recipe(whole):
            Recipe.from_dict(excerpt, source=block.id)  # the excerpt is a valid recipe on its own
            whole = Recipe.load(path).to_dict()  # and agrees with the file once its defaults are filled in
        wrong = [(key, value, _get(whole, key)) for key, value in _leaves(excerpt) if _get(whole, key) != value]
        assert not wrong, f"{block.id}: differs from {block.title}: " + "; ".join(
            f"{'.'.join(k)} = {v!r} here, {'missing' if w is KeyError else repr(w)} there" for k, v, w in wrong)
    elif block.lang == "python":
        lines = [line.rstrip() for line in path.read_text().splitlines()]
        at = 0
        for quoted in block.body.splitlines():
            if not quoted.strip() or quoted.strip() == "..." or quoted.lstrip().startswith("#"):
                continue
            try:
                at = lines.index(quoted.rstrip(), at) + 1
            except ValueError:
                pytest.fail(f"{block.id}: {quoted.strip()!r} is not in {block.title} (after line {at})")
    else:
        pytest.fail(f"{block.id}: excerpts are checked for toml and python blocks, not {block.lang!r}")


# --- toml ------------------------------------------------------------------------------------------------------------

TOML_BLOCKS = [b for b in BLOCKS if b.lang == "toml" and b.excerpt_of is None]


def _is_recipe(raw: dict) -> bool:
    return bool(raw) and set(raw) - {"extends"} <= set(RECIPE_TABLES)  # a recipe may extend another


def _shipped_recipes() -> list[Path]:
    return sorted((ROOT / "recipes").glob("*.toml")) + sorted((ROOT / "plugins").glob("*/recipes/*.toml"))


def _merge(base: dict, fragment: dict) -> dict:
    """``fragment`` over ``base``; a component table that names another component replaces the base's table."""
    out = copy.deepcopy(base)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and value.get("name", out[key].get("name")) \
                == out[key].get("name"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _shared_names(base: dict, fragment: dict) -> int:
    return sum(1 for t in COMPONENT_TABLES if "name" in fragment.get(t, {})
               and fragment[t]["name"] == base.get(t, {}).get("name"))


def check_recipe_fragment(fragment: dict, where: str) -> None:
    """A fragment is valid when it loads merged onto some shipped recipe (those naming its components first)."""
    bases = [(path, read_recipe(path)) for path in _shipped_recipes()]  # with what each extends merged in
    bases.sort(key=lambda pb: -_shared_names(pb[1], fragment))  # stable: file order among equals
    first_error = None
    for path, base in bases:
        try:
            Recipe.from_dict(_merge(base, fragment), source=f"{where} over {path.relative_to(ROOT)}")
            return
        except FairadvError as exc:
            first_error = first_error or exc
    raise AssertionError(f"{where}: loads onto no shipped recipe; onto the closest: {first_error}")


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=[b.id for b in TOML_BLOCKS])
def test_toml_snippets_are_valid(block, workspace):
    cwd = workspace(block.page)
    raw = tomllib.loads(block.body)
    if block.title is not None:  # a file the page creates
        if _is_recipe(raw):
            Recipe.load(cwd / block.title)
        return
    if "study" in raw:
        folder = cwd / "doc_snippet"  # one level down, so the study's "../recipes/..." paths resolve
        folder.mkdir()
        (folder / "study.toml").write_text(block.body)
        study = load_study(folder / "study.toml")
        assert study.recipes()
    elif _is_recipe(raw):
        if "data" in raw and "model" in raw:
            Recipe.from_dict(raw, source=block.id)
        else:
            check_recipe_fragment(raw, block.id)
    # other TOML (a pyproject.toml part, ...): parsing is all there is to check


# --- shell -----------------------------------------------------------------------------------------------------------

_OPERATORS = {"&&", "||", ";", "|", "&"}
_REDIRECTS = {">", ">>", "<", "2>", "&>"}


@dataclass
class Command:
    block: Block
    line: int
    words: list[str]

    part: int = 0  # the n-th command on its line (``a && b``), from 1 when there are several

    @property
    def id(self) -> str:
        return f"{self.block.page}:{self.line}" + (f"-{self.part}" if self.part else "")


def commands_of(block: Block) -> list[Command]:
    """The commands of a shell block, with the line each starts on."""
    out = []
    pending, start = "", None
    for offset, raw in enumerate(block.body.splitlines(), start=block.line + 1):
        text = raw
        if block.lang == "console":
            if not text.startswith("$ ") and start is None:
                continue
            text = text.removeprefix("$ ")
        if start is None:
            start = offset
        if text.rstrip().endswith("\\"):
            pending += text.rstrip()[:-1] + " "
            continue
        pending += text
        lexer = shlex.shlex(pending, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for word in [*lexer, ";"]:
            if word in _OPERATORS:
                while words and re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]):
                    words.pop(0)  # VAR=value prefixes
                if words:
                    out.append(Command(block, start, words))
                words = []
            else:
                words.append(word)
        pending, start = "", None
    for command in out:
        same_line = [c for c in out if c.line == command.line]
        if len(same_line) > 1:
            command.part = same_line.index(command) + 1
    return [_without_redirects(c) for c in out]


def _without_redirects(command: Command) -> Command:
    words, skip = [], False
    for word in command.words:
        if skip:
            skip = False
        elif word in _REDIRECTS:
            skip = True
        else:
            words.append(word)
    return Command(command.block, command.line, words, command.part)


def fairadv_args(words: list[str]) -> list[str] | None:
    """The arguments after ``fairadv`` if this command runs fairadv, else None."""
    if Path(words[0]).name == "fairadv":
        return words[1:]
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] == "fairadv" and Path(words[0]).name in ("python", "python3",
                                                                                       "torchrun"):
            return words[i + 2:]
    return None


def path_arguments(words: list[str], created: set[str]) -> list[str]:
    """The arguments that name a file: in a repository folder, in a folder the page creates, or a .toml file."""
    out = []
    for word in words[1:]:
        value = word.split("=", 1)[1] if word.startswith("--") and "=" in word else word
        first = value.split("/")[0]
        if value.startswith(("-", "/", "$", "~", "[")) or "://" in value:
            continue
        if first in REPO_DIRS or first in created or value.endswith(".toml"):
            out.append(value)
    return out


def parse_cli(args: list[str]) -> tuple[str, click.Context]:
    """Parse ``fairadv ARGS`` as the CLI would, without running it: (command name, its context)."""
    ctx = main.make_context("fairadv", list(args))
    protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args  # click < 8.2
    rest = [*protected, *ctx.args]
    assert rest, "no fairadv command"
    name, command, command_args = main.resolve_command(ctx, rest)
    return name, command.make_context(name, command_args, parent=ctx)


SHELL_COMMANDS = [c for b in BLOCKS if b.lang in SHELL for c in commands_of(b)
                  if fairadv_args(c.words) is not None or path_arguments(c.words, set(page_files(b.page)) | {
                      n.split("/")[0] for n in page_files(b.page)})]


@pytest.mark.parametrize("command", SHELL_COMMANDS, ids=[c.id for c in SHELL_COMMANDS])
def test_shell_commands_parse_and_their_files_exist(command, workspace):
    cwd = workspace(command.block.page)
    created = {name.split("/")[0] for name in page_files(command.block.page)}
    for path in path_arguments(command.words, created):
        assert glob.glob(path) or (cwd / path).exists(), f"{command.id}: {path} does not exist"
    args = fairadv_args(command.words)
    if args is None:
        return
    try:
        name, ctx = parse_cli(args)
    except click.UsageError as exc:
        pytest.fail(f"{command.id}: fairadv {' '.join(args)}: {exc.format_message()}")
    params = ctx.params
    if name in CHEAP:
        documented = command.block.next_block
        refused = (documented is not None and documented.lang == "text" and documented.body.startswith("error:")
                   and len(commands_of(command.block)) == 1)
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        if refused:
            assert result.exit_code == 2, result.output
            assert " ".join(result.stderr.split()) == " ".join(documented.body.split())
        else:
            assert result.exit_code == 0, f"{command.id}: exit {result.exit_code}: {result.output}"
    elif name == "run":
        Recipe.load(params["recipe"], params["overrides"])
    elif name == "study" and is_leaderboard(params["study_file"]):
        load_leaderboard(params["study_file"])
    elif name == "study":
        load_study(params["study_file"]).recipes()
    elif name == "eval" and params.get("recipe_path"):
        Recipe.load(params["recipe_path"])


# --- the inventory ---------------------------------------------------------------------------------------------------


def test_every_block_has_a_checked_or_ignored_language():
    unknown = sorted({f"{b.id} ({b.lang!r})" for b in BLOCKS if b.lang not in CHECKED + IGNORED})
    assert not unknown, f"add these languages to CHECKED (with a check) or IGNORED: {unknown}"


def test_the_snippets_were_found():
    counts = {lang: sum(b.lang == lang for b in BLOCKS) for lang in CHECKED}
    assert counts["python"] >= 5 and counts["toml"] >= 10 and counts["bash"] >= 10, counts
    assert any(c.block.page == "README.md" and fairadv_args(c.words) for c in SHELL_COMMANDS)


def test_the_parser_rejects_what_the_cli_rejects():
    """The shell check is only as good as the parsing: an unknown option or command must fail it."""
    with pytest.raises(click.UsageError):
        parse_cli(["run", "recipes/trades_digits.toml", "--epochs", "5"])
    with pytest.raises(click.UsageError):
        parse_cli(["train", "recipes/trades_digits.toml"])
    name, ctx = parse_cli(["-v", "run", "recipes/trades_digits.toml", "--set", "train.epochs=5"])
    assert name == "run" and ctx.params["overrides"] == ("train.epochs=5",)
    block = Block("x.md", 1, "bash", {}, "A=1 fairadv list \\\n  strategies && ls recipes > out.txt  # note\n")
    assert [c.words for c in commands_of(block)] == [["fairadv", "list", "strategies"], ["ls", "recipes"]]
    with pytest.raises(AssertionError, match="loads onto no shipped recipe"):
        check_recipe_fragment({"strategy": {"name": "dafa", "lamda": 1.0}}, "x.md:1")


# --- the site: offline ------------------------------------------------------------------------------------------------


def test_the_site_loads_nothing_from_the_network():
    """No script, stylesheet or web font from another host: the site must work offline (formulas are MathML)."""
    pytest.importorskip("mkdocs", reason="needs the docs extra: pip install -e '.[docs]'")
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    for key in ("extra_javascript", "extra_css"):
        for item in config.get(key) or []:
            path = item if isinstance(item, str) else item.get("path", "")
            assert not re.match(r"^([a-z][a-z0-9+.-]*:)?//", path, re.IGNORECASE), f"{key}: {path} is remote"
            assert (ROOT / config.get("docs_dir", "docs") / path).is_file(), f"{key}: {path} is not in docs/"
    assert config["theme"].get("font") is False, "theme.font: false, or Material loads Google Fonts"
    assert "docs/hooks/mathml.py" in config["hooks"]


def test_every_formula_becomes_mathml():
    """Every $...$ and $$...$$ of the docs converts, with no command latex2mathml does not know."""
    markdown = pytest.importorskip("markdown", reason="needs the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("pymdownx", reason="needs the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("latex2mathml", reason="needs the docs extra: pip install -e '.[docs]'")
    spec = importlib.util.spec_from_file_location("docs_mathml_hook", ROOT / "docs" / "hooks" / "mathml.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    formulas = 0
    for path in sorted((ROOT / "docs").rglob("*.md")):
        html = markdown.markdown(path.read_text(), extensions=["pymdownx.arithmatex", "pymdownx.superfences",
                                                                "admonition", "attr_list", "tables"],
                                 extension_configs={"pymdownx.arithmatex": {"generic": True}})
        formulas += html.count('class="arithmatex"')
        out = hook.render_math(html, where=str(path.relative_to(ROOT)))
        assert out.count("<math ") == html.count('class="arithmatex"'), path
    assert formulas > 100
    with pytest.raises(hook.MathError, match=r"\\foo"):
        hook.render_math('<span class="arithmatex">\\(\\foo x\\)</span>')


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
