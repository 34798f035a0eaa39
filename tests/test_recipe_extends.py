"""Recipe composition (`fairadv.recipe_extends`): ``extends`` merges a parent recipe under the child's changes when
the file is read, so the resolved recipe (a run's ``recipe.toml``, ``--resume``'s comparison) never holds it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from helpers import RECIPES, invoke, sets, stderr_lines

from fairadv.errors import FairadvError
from fairadv.recipe import Recipe
from fairadv.run_folder import recipe_changes

BASE = """
[run]
name = "base_run"
seed = 3

[data]
name = "gaussian"
num_classes = 4
close_pairs = [[0, 1], [2, 3]]

[model]
name = "mlp"
hidden = 32

[strategy]
name = "dafa"
lam = 2.0
warmup_epochs = 1

[schedule]
name = "multistep"
milestones = [5, 8]

[train]
epochs = 10
batch_size = 32
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def load_error(path: Path, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(FairadvError) as info:
        Recipe.load(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_child_merges_over_its_parent_key_by_key(tmp_path):
    write(tmp_path / "base", "base.toml", BASE)
    child = write(tmp_path, "child.toml", 'extends = "base/base.toml"\n[model]\nhidden = 64\n'
                                          '[schedule]\nmilestones = [7]\n[train]\nepochs = 12\n')
    recipe = Recipe.load(child)
    assert recipe.model.params["hidden"] == 64 and recipe.model.params["depth"] == 2  # the child's key wins
    assert (recipe.train.epochs, recipe.train.batch_size, recipe.run.seed) == (12, 32, 3)  # the rest is the parent's
    assert recipe.schedule.params["milestones"] == (7,)  # arrays replace, they do not append
    assert recipe.data.params["close_pairs"] == ((0, 1), (2, 3))
    assert recipe.run.name == "child"  # named after the file that is run, not the parent's run.name
    whole = Recipe.load(write(tmp_path, "whole.toml", BASE.replace('name = "base_run"', 'name = "child"')
                              .replace("hidden = 32", "hidden = 64").replace("[5, 8]", "[7]")
                              .replace("epochs = 10", "epochs = 12")))
    assert recipe.to_dict() == whole.to_dict()


def test_chains_resolve_and_each_extends_is_relative_to_its_own_file(tmp_path):
    write(tmp_path / "a" / "b", "base.toml", BASE)
    write(tmp_path / "a", "middle.toml", 'extends = "b/base.toml"\n[strategy]\nlam = 1.5\n')
    top = write(tmp_path / "c", "top.toml", 'extends = "../a/middle.toml"\n[train]\nepochs = 4\n')
    recipe = Recipe.load(top)
    assert (recipe.strategy.params["lam"], recipe.strategy.params["warmup_epochs"]) == (1.5, 1)
    assert (recipe.train.epochs, recipe.model.params["hidden"], recipe.run.name) == (4, 32, "top")


def test_a_table_naming_another_component_replaces_the_parents(tmp_path):
    write(tmp_path, "base.toml", BASE)
    child = write(tmp_path, "plain.toml", 'extends = "base.toml"\n[strategy]\nname = "uniform"\n')
    recipe = Recipe.load(child)  # DAFA's lam and warmup_epochs would be unknown keys of uniform
    assert recipe.strategy.name == "uniform" and recipe.strategy.params == {}
    same = write(tmp_path, "same.toml", 'extends = "base.toml"\n[strategy]\nname = "dafa"\nlam = 1.0\n')
    assert Recipe.load(same).strategy.params["warmup_epochs"] == 1  # the same component: merged


def test_the_resolved_recipe_has_no_extends_and_compares_as_the_whole_file(tmp_path):
    shipped = RECIPES / "dafa_digits.toml"
    assert "extends" in tomllib.loads(shipped.read_text())  # the shipped recipes use it
    recipe = Recipe.load(shipped, ["train.epochs=3"])
    stored = tmp_path / "recipe.toml"
    recipe.dump(stored)
    text = stored.read_text()
    assert "extends" not in text and tomllib.loads(text)["strategy"]["name"] == "dafa"
    assert Recipe.load(stored) == recipe
    assert recipe_changes(tomllib.loads(text), Recipe.load(shipped, ["train.epochs=3"]).to_dict()) == ""
    assert recipe_changes(tomllib.loads(text), recipe.override("train.epochs=4").to_dict()) == \
        "train.epochs: 3 -> 4"


def test_set_and_validate_work_on_an_extending_recipe(tmp_path):
    write(tmp_path, "base.toml", BASE)
    child = write(tmp_path, "child.toml", 'extends = "base.toml"\n[train]\nepochs = 4\n')
    recipe = Recipe.load(child, ["strategy.name=uniform", "train.epochs=2"])  # the parent's DAFA keys drop out
    assert recipe.strategy.params == {} and recipe.train.epochs == 2
    assert invoke("validate", child, *sets("train.epochs=2")).exit_code == 0
    result = invoke("validate", child, *sets("train.epochs=-1"))
    assert result.exit_code == 2 and "(--set train.epochs=-1)" in stderr_lines(result)[0]


def test_errors_in_a_parent_name_the_file_that_set_the_value(tmp_path):
    write(tmp_path, "base.toml", BASE.replace("lam = 2.0", "lam = -1.0").replace("hidden = 32", "hiden = 32"))
    write(tmp_path, "middle.toml", 'extends = "base.toml"\n[model]\nhidden = 8\n')
    child = write(tmp_path, "child.toml", 'extends = "middle.toml"\n')
    message = load_error(child)  # the model's typo is overridden nowhere: named as the parent's
    assert message.startswith(f"{child} (set in {tmp_path / 'base.toml'}, via {tmp_path / 'middle.toml'}): ")
    assert "unknown key model.hiden (did you mean 'hidden'?)" in message
    write(tmp_path, "base.toml", BASE.replace("lam = 2.0", "lam = -1.0"))
    message = load_error(child)
    assert message.startswith(f"{child} (set in {tmp_path / 'base.toml'}, via {tmp_path / 'middle.toml'}): ")
    assert "strategy.lam = -1.0" in message
    write(tmp_path, "base.toml", BASE)
    assert load_error(write(tmp_path, "other.toml", 'extends = "base.toml"\n[train]\nepohs = 3\n')) \
        .startswith(f"{tmp_path / 'other.toml'}: unknown key train.epohs")  # the child's own key: the child
    message = load_error(child, ("strategy.lam=-2",))
    assert "(--set strategy.lam=-2)" in message  # a --set over a parent's value names the --set


@pytest.mark.parametrize("files,top,fragments", [
    ({"a.toml": 'extends = "b.toml"\n', "b.toml": 'extends = "a.toml"\n'}, "a.toml",
     ["a.toml -> ", "b.toml: extends = 'a.toml': a cycle", "a.toml -> ", "b.toml -> "]),
    ({"a.toml": 'extends = "a.toml"\n'}, "a.toml", ["a.toml: extends = 'a.toml': a cycle"]),
    ({"a.toml": 'extends = "nope.toml"\n'}, "a.toml", ["a.toml: extends = 'nope.toml':", "nope.toml is not a file"]),
    ({"a.toml": 'extends = "b.toml"\n', "b.toml": 'extends = "c.toml"\n'}, "a.toml",
     ["a.toml -> ", "b.toml: extends = 'c.toml':", "c.toml is not a file"]),
    ({"a.toml": "extends = 3\n"}, "a.toml", ["a.toml: extends = 3: expected a string, the path of the recipe"]),
    ({"a.toml": 'extends = ["b.toml"]\n'}, "a.toml", ["a.toml: extends = ['b.toml']: expected a string"]),
    ({"a.toml": 'extends = "b.toml"\n', "b.toml": "[data\n"}, "a.toml", ["a.toml -> ", "b.toml: not valid TOML"]),
], ids=["cycle", "itself", "missing", "missing grandparent", "number", "list", "broken parent"])
def test_bad_extends_is_one_line_naming_the_chain_and_the_key(tmp_path, files, top, fragments):
    for name, text in files.items():
        write(tmp_path, name, text)
    message = load_error(tmp_path / top)
    assert message.startswith(str(tmp_path / top))
    for fragment in fragments:
        assert fragment in message, message
