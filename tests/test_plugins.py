"""Plugins: entry points in the group ``fairadv.plugins`` (duplicates, broken imports) and ``module.path:Attr`` names.

Installed distributions are simulated with fake entry points whose modules live in ``tmp_path``; the registries and
the plugin loader's module-level state are restored after every test.
"""

from __future__ import annotations

import json
import sys
import textwrap
from types import SimpleNamespace

import pytest
from helpers import DIGITS, QUICK, invoke
from registry_state import isolated_registries

import fairadv
from fairadv import registry
from fairadv.errors import FairadvError


class FakeEntryPoint:
    """What `importlib.metadata.entry_points` yields, reduced to what fairadv reads: name, value, dist, load()."""

    group = registry.PLUGIN_GROUP

    def __init__(self, name: str, module: str, distribution: str):
        self.name, self.value = name, module
        self.dist = SimpleNamespace(name=distribution)

    def load(self):
        __import__(self.value)
        return sys.modules[self.value]


@pytest.fixture
def plugin_state(monkeypatch):
    """A list of fake entry points that fairadv's plugin loader sees instead of the installed ones (append to it).

    Every registry's entries, the loader's state and the modules imported meanwhile are restored afterwards.
    """

    with isolated_registries(monkeypatch, []) as installed:
        yield installed


@pytest.fixture
def plugins(plugin_state, monkeypatch, tmp_path):
    """``install(name, distribution, source)`` fakes an installed plugin distribution whose module has ``source``."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def install(name: str, distribution: str, source: str) -> None:
        module = f"fake_{name.replace('-', '_')}_{len(plugin_state)}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        plugin_state.append(FakeEntryPoint(name, module, distribution))

    return install


STRATEGY_SOURCE = """
    import attrs
    from fairadv.strategies import STRATEGIES, FairnessStrategy

    @STRATEGIES.register({name!r})
    @attrs.define
    class Twin(FairnessStrategy):
        '''A strategy that changes nothing.'''
"""


def test_a_plugin_is_listed_with_its_distribution(plugins):
    plugins("extra", "fairadv-extra", STRATEGY_SOURCE.format(name="extra"))
    result = invoke("list", "strategies")
    assert result.exit_code == 0
    assert "extra" in result.output and "fairadv-extra" in result.output


def test_two_distributions_registering_one_name_is_an_error_naming_both(plugins):
    plugins("twin-a", "fairadv-twin-a", STRATEGY_SOURCE.format(name="twin"))
    plugins("twin-b", "fairadv-twin-b", STRATEGY_SOURCE.format(name="twin"))
    with pytest.raises(FairadvError) as info:
        registry.load_plugins()
    message = str(info.value)
    assert "'twin' is registered twice" in message
    assert "fairadv-twin-a" in message and "fairadv-twin-b" in message


def test_the_cli_reports_a_duplicate_with_exit_2(plugins):
    plugins("twin-a", "fairadv-twin-a", STRATEGY_SOURCE.format(name="twin"))
    plugins("twin-b", "fairadv-twin-b", STRATEGY_SOURCE.format(name="twin"))
    result = invoke("list")
    assert result.exit_code == 2
    assert "fairadv-twin-a" in result.stderr and "fairadv-twin-b" in result.stderr


def test_a_plugin_cannot_take_a_built_in_name(plugins):
    plugins("impostor", "fairadv-impostor", STRATEGY_SOURCE.format(name="dafa"))
    with pytest.raises(FairadvError, match=r"'dafa' is registered twice: by fairadv and by plugin 'impostor' "
                                           r"\(distribution fairadv-impostor\)"):
        registry.load_plugins()


BROKEN_SOURCE = """
    import attrs
    import fairadv_missing_dependency  # not installed: the plugin fails to import
"""


def test_a_broken_plugin_does_not_break_list_and_is_named(plugins):
    plugins("fancy", "fairadv-fancy", BROKEN_SOURCE)
    plugins("extra", "fairadv-extra", STRATEGY_SOURCE.format(name="extra"))
    result = invoke("list", "strategies")
    assert result.exit_code == 0
    assert "extra" in result.output and "uniform" in result.output  # the others still load
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "plugin 'fancy' failed to load: ModuleNotFoundError: No module named 'fairadv_missing_dependency'" in output


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_recipe_that_needs_a_broken_plugin_fails_with_its_error(plugins, tmp_path, command):
    plugins("fancy", "fairadv-fancy", BROKEN_SOURCE)
    out = ("--out", str(tmp_path / "runs")) if command == "run" else ()
    result = invoke(command, DIGITS, *out, "--set", "strategy.name=fancy")
    assert result.exit_code == 2
    error = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error) == 1
    assert "unknown strategy 'fancy'" in error[0]
    assert "plugin 'fancy' failed to load: ModuleNotFoundError" in error[0]
    assert "fairadv_missing_dependency" in error[0]
    assert not (tmp_path / "runs").exists()


MODULE_SOURCE = """
    '''Quick experiment: a strategy used from a recipe as "{module}:HalfClean", without packaging.'''
    import attrs
    import torch
    from fairadv.policy import ClassPolicy
    from fairadv.strategies import FairnessStrategy
    from fairadv.validators import gt

    @attrs.define
    class HalfClean(FairnessStrategy):
        '''Weight the clean CE term of every class by ``weight`` from the first epoch on.'''

        weight: float = attrs.field(default=0.5, validator=gt(0))

        def on_fit_start(self, num_classes):
            return ClassPolicy.uniform(num_classes).evolve(ce_weight=torch.full((num_classes,), self.weight))
"""


@pytest.mark.slow
def test_a_module_path_component_runs_from_a_recipe(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "my_quick_strategy.py").write_text(textwrap.dedent(MODULE_SOURCE.format(module="my_quick_strategy")))
    monkeypatch.delitem(sys.modules, "my_quick_strategy", raising=False)
    recipe = fairadv.Recipe.load(DIGITS, overrides=("strategy.name=my_quick_strategy:HalfClean",
                                                    "strategy.weight=0.25", *QUICK))
    assert recipe.strategy.params == {"weight": 0.25}
    fairadv.run(recipe, out=tmp_path / "runs")
    policy = json.loads((tmp_path / "runs" / "trades_digits" / "policy.jsonl").read_text().splitlines()[0])
    assert policy["ce_weight"] == [0.25] * 10 and policy["kl_weight"] == [1.0] * 10
    sys.modules.pop("my_quick_strategy", None)


@pytest.mark.parametrize("name,fragment", [
    ("no_such_module_xyz:Thing", "cannot import module 'no_such_module_xyz'"),
    ("my_quick_strategy2:Nope", "module 'my_quick_strategy2' has no attribute 'Nope'"),
])
def test_bad_module_paths_are_one_line_errors(monkeypatch, tmp_path, name, fragment):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "my_quick_strategy2.py").write_text(textwrap.dedent(MODULE_SOURCE.format(module="x")))
    result = invoke("validate", DIGITS, "--set", f"strategy.name={name}")
    assert result.exit_code == 2 and fragment in result.stderr
    sys.modules.pop("my_quick_strategy2", None)


def test_module_path_keys_are_checked_like_registered_ones(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "my_quick_strategy3.py").write_text(textwrap.dedent(MODULE_SOURCE.format(module="x")))
    result = invoke("validate", DIGITS, "--set", "strategy.name=my_quick_strategy3:HalfClean",
                    "--set", "strategy.wieght=2")
    assert result.exit_code == 2 and "strategy.wieght (did you mean 'weight'?)" in result.stderr
    result = invoke("validate", DIGITS, "--set", "strategy.name=my_quick_strategy3:HalfClean",
                    "--set", "strategy.weight=-1")
    assert result.exit_code == 2 and "strategy.weight = -1" in result.stderr
    sys.modules.pop("my_quick_strategy3", None)
