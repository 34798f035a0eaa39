"""The documentation's executable parts: the plugin tutorial is built and run, and the generated references cover
every recipe key.

The tutorial (docs/tutorial-plugin.md) is the source: every fenced code block with ``title="path"`` is a file (blocks
with the same title are concatenated), written to ``tmp_path``. The package is then "installed" the way pip would
expose it to fairadv (its source folder on ``sys.path`` and the entry points its pyproject.toml declares), its own
tests are run, and the documented commands and outputs are checked.
"""

from __future__ import annotations

import importlib.util
import re
import runpy
import sys
import tomllib

import attrs
import pytest
from click.testing import CliRunner

import fairadv
from fairadv.cli import main
from fairadv.recipe import Recipe
from helpers import QUICK, ROOT
from test_plugins import FakeEntryPoint, plugin_state  # noqa: F401 - plugin_state is a fixture

TUTORIAL = ROOT / "docs" / "tutorial-plugin.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def code_blocks(markdown: str) -> list[tuple[str, dict[str, str], str]]:
    """(language, {attribute: value}, body) for every fenced block, in order."""
    return [(lang, dict(re.findall(r'(\w+)="([^"]*)"', header)), body)
            for lang, header, body in FENCE.findall(markdown)]


def tutorial_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for _, attributes, body in code_blocks(TUTORIAL.read_text()):
        if "title" in attributes:
            files[attributes["title"]] = files.get(attributes["title"], "") + body
    return files


@pytest.fixture
def tutorial(tmp_path, monkeypatch, plugin_state):
    """The tutorial's files written to tmp_path (the working directory) and its package 'installed'."""
    files = tutorial_files()
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    project = tomllib.loads(files["fairadv-hardclass/pyproject.toml"])
    src = tmp_path / "fairadv-hardclass" / project["tool"]["setuptools"]["packages"]["find"]["where"][0]
    monkeypatch.syspath_prepend(str(src))
    for name, module in project["project"]["entry-points"]["fairadv.plugins"].items():
        plugin_state.append(FakeEntryPoint(name, module, project["project"]["name"]))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_tutorial_has_the_files_it_promises():
    files = tutorial_files()
    for name in ("pyproject.toml", "src/fairadv_hardclass/__init__.py", "src/fairadv_hardclass/strategy.py",
                 "recipes/hard_class_digits.toml", "tests/test_hard_class.py"):
        assert f"fairadv-hardclass/{name}" in files, name
    tree = next(body for lang, _, body in code_blocks(TUTORIAL.read_text()) if lang == "text")
    for name in ("pyproject.toml", "__init__.py", "strategy.py", "hard_class_digits.toml", "test_hard_class.py"):
        assert name in tree


def test_the_tutorial_plugin_is_listed_with_its_distribution(tutorial):
    result = CliRunner().invoke(main, ["list", "strategies"], catch_exceptions=False)
    assert result.exit_code == 0
    output = " ".join(result.output.split())
    documented = next(body for lang, _, body in code_blocks(TUTORIAL.read_text())
                      if lang == "text" and "│ hard_class" in body)
    for cell in (c.strip() for c in documented.strip().strip("│").split("│")):
        for word in cell.split():
            assert word in output, (word, output)


def test_the_tutorial_plugin_passes_its_own_tests(tutorial):
    spec = importlib.util.spec_from_file_location("tutorial_tests", tutorial / "fairadv-hardclass" / "tests"
                                                  / "test_hard_class.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [getattr(module, name) for name in dir(module) if name.startswith("test_")]
    assert len(tests) >= 2
    for test in tests:
        test()


def test_the_documented_validation_error_is_what_fairadv_prints(tutorial):
    blocks = code_blocks(TUTORIAL.read_text())
    command = next(body for lang, _, body in blocks if lang == "bash" and "fairadv validate" in body).split()
    documented = next(body for lang, _, body in blocks if lang == "text" and body.startswith("error:")).strip()
    result = CliRunner().invoke(main, command[1:], catch_exceptions=False)
    assert result.exit_code == 2
    assert " ".join(result.stderr.split()) == documented


def test_the_tutorial_recipe_is_trades_digits_but_for_its_strategy(tutorial):
    """The page says the two runs compare directly: the same threat model, data, model and schedule."""
    ours = Recipe.load(tutorial / "fairadv-hardclass" / "recipes" / "hard_class_digits.toml").to_dict()
    shipped = Recipe.load(ROOT / "recipes" / "trades_digits.toml").to_dict()
    assert ours.pop("strategy")["name"] == "hard_class"
    shipped.pop("strategy")
    assert ours["run"].pop("name") == "hard_class_digits"  # named after its file
    shipped["run"].pop("name")
    assert ours == shipped


@pytest.mark.slow
def test_the_tutorial_recipe_runs_from_python(tutorial, monkeypatch, capsys):
    run = fairadv.run

    def shortened(recipe, **kwargs):  # the documented run, made fast: fewer attack steps, a smaller model
        assert recipe.strategy.name == "hard_class"
        return run(recipe.override(*QUICK, "train.epochs=2", "strategy.warmup_epochs=1"), **kwargs)

    monkeypatch.setattr(fairadv, "run", shortened)
    runpy.run_path(str(tutorial / "run_hard_class.py"), run_name="__main__")
    assert "robust" in capsys.readouterr().out
    policies = (tutorial / "runs" / "hard_class_digits" / "policy.jsonl").read_text().splitlines()
    assert len(policies) == 2  # uniform, then hard_class's weights from epoch 2


# --- generated references -------------------------------------------------------------------------------------------


def load_hook():
    spec = importlib.util.spec_from_file_location("docs_reference_hook", ROOT / "docs" / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipe_reference_lists_every_key_with_its_range():
    from fairadv.recipe import DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig, component_registries

    text = load_hook().recipe_reference()
    for cls in (RunConfig, TrainConfig, DataConfig, ModelConfig, EvalConfig):
        for field in attrs.fields(cls):
            if field.name not in ("name", "params", "attack"):
                assert f"| `{field.name}` |" in text, (cls.__name__, field.name)
    for table, registry in component_registries().items():
        for name in registry.names():
            assert f"### {table} `{name}`" in text or table == "eval.attack"
            for param in registry.params(name):
                assert f"| `{param.name}` |" in text, (table, name, param.name)
    assert "| `eps` | number | `0.031` | a number > 0 |" in text  # type, default and the validator's range
    assert "| `epochs` | integer | `10` | a number > 0 |" in text


def test_the_cli_reference_documents_every_command():
    text = load_hook().cli_reference()
    for name in main.commands:
        assert f"## `fairadv {name}`" in text and f"Usage: fairadv {name}" in text


def test_getting_started_shows_the_readme_commands():
    body = load_hook().readme_quickstart()
    readme = (ROOT / "README.md").read_text()
    assert body.strip() in readme and "fairadv run" in body and "pytest" in body
    assert "<!-- fairadv:readme-quickstart -->" in (ROOT / "docs" / "getting-started.md").read_text()


def test_the_generated_pages_are_complete_when_read_raw():
    """getting-started.md and the reference pages hold their generated text, current with the code, so they are not
    empty placeholders on a code host (the site build regenerates them too)."""
    from importlib.metadata import entry_points

    plugins = {e.name for e in entry_points(group="fairadv.plugins")}
    if plugins != {"wat"}:
        pytest.skip(f"the recipe reference is written with the WAT plugin alone installed; here: {sorted(plugins)}")
    hook = load_hook()
    for page in ("getting-started.md", "reference/cli.md", "reference/recipe.md"):
        text = (ROOT / "docs" / page).read_text()
        assert hook.end_marker(next(m for m in hook.GENERATORS if m in text)) in text, page
    stale = [str(p.relative_to(ROOT)) for p in hook.write_pages(check=True)]
    assert not stale, f"{stale}: run python docs/hooks/reference.py"


def test_every_page_in_the_nav_is_linked_and_every_page_is_in_the_nav():
    nav = re.findall(r":\s*([\w/-]+\.md)\s*$|^\s*-\s*([\w/-]+\.md)\s*$",
                     (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    listed = {a or b for a, b in nav}
    mine = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert mine <= listed, sorted(mine - listed)


def api_directives() -> list[tuple[str, str, list[str] | None]]:
    """(page, module, members or None) for every ``::: module`` on the API pages."""
    found = []
    for page in sorted((ROOT / "docs" / "api").glob("*.md")):
        for match in re.finditer(r"^::: ([\w.]+)\n((?:    .*\n)*)", page.read_text(), re.MULTILINE):
            options = " ".join(match.group(2).split())
            members = re.search(r"members: \[([^\]]*)\]", options)
            listed = [m.strip() for m in members.group(1).split(",")] if members else None
            found.append((page.name, match.group(1), [] if "members: false" in options else listed))
    return found


def test_no_object_is_documented_twice_in_the_api_reference():
    """mkdocstrings shows a module's ``__all__`` re-exports too (fairadv.api's Recipe was documented twice)."""
    pytest.importorskip("fairadv_wat", reason="the API pages document the WAT plugin")
    seen: dict[int, str] = {}
    for page, module_name, members in api_directives():
        module = importlib.import_module(module_name)
        names = members if members is not None else getattr(module, "__all__", None) or [
            n for n, v in vars(module).items() if not n.startswith("_") and getattr(v, "__module__", None) == module_name]
        for name in names:
            obj = getattr(module, name)
            if not callable(obj) or not hasattr(obj, "__module__"):
                continue
            where = f"{page}: {module_name}.{name}"
            assert id(obj) not in seen, f"{where} is also documented as {seen[id(obj)]}"
            seen[id(obj)] = where


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
