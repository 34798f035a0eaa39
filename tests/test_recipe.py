"""Recipe loading: defaults, round trip, overrides, and one-line errors that name file, key, value and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairadv.coercion import coerce
from fairadv.errors import FairadvError
from fairadv.recipe import Recipe

ROOT_RECIPES = Path(__file__).parent.parent / "recipes"
RECIPES = sorted(ROOT_RECIPES.glob("*.toml"))

MINIMAL = """
[data]
name = "digits"
[model]
name = "small_cnn"
"""


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_recipe_fills_defaults(tmp_path):
    recipe = Recipe.load(write(tmp_path, MINIMAL))
    assert recipe.run.name == "r"
    assert recipe.objective.name == "trades" and recipe.objective.params == {"beta": 6.0, "order": None}
    assert recipe.attack.params["eps"] == 0.031 and recipe.attack.params["steps"] == 10
    assert recipe.strategy.name == "uniform"
    assert recipe.eval.attack.params["steps"] == 20 and recipe.eval.attack.params["stop_on_success"] is True
    assert recipe.eval.counting == "any_iterate"  # so PGD stops on success: the same counts, less work


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_round_trip(path, tmp_path):
    recipe = Recipe.load(path)
    out = tmp_path / "resolved.toml"
    recipe.dump(out)
    again = Recipe.load(out)
    assert again == recipe
    assert again.to_dict() == recipe.to_dict()


def test_overrides_apply_and_keep_types(tmp_path):
    recipe = Recipe.load(write(tmp_path, MINIMAL), ["train.epochs=5", "strategy.name=uniform", "attack.eps=0.05",
                                                   "eval.attack.steps=7", "run.name=x"])
    assert recipe.train.epochs == 5 and recipe.attack.params["eps"] == 0.05
    assert recipe.eval.attack.params["steps"] == 7 and recipe.run.name == "x"
    assert recipe.override("train.epochs=3").train.epochs == 3


PAPER_RECIPES = [p for p in RECIPES if p.stem.endswith(("_cifar10", "_cifar100", "_stl10"))]


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=lambda p: p.name)
def test_paper_setting_recipes_train_in_fp32_as_the_official_code(path):
    assert Recipe.load(path).train.precision == "fp32"  # "auto" would be bf16 on CUDA
    assert Recipe.load(path, ["train.precision=auto"]).train.precision == "auto"  # the documented opt-in


def test_paper_recipes_take_the_official_hold_outs_and_models():
    frl = Recipe.load(ROOT_RECIPES / "frl_cifar10.toml")
    assert (frl.data.holdout, frl.data.val_per_class, frl.model.name) == ("last", 300, "preact_resnet18_frl")
    scratch = Recipe.load(ROOT_RECIPES / "frl_scratch_cifar10.toml")
    assert (scratch.data.holdout, scratch.data.val_per_class) == ("last", 300)
    cfa = Recipe.load(ROOT_RECIPES / "cfa_cifar10.toml")
    assert (cfa.data.holdout, cfa.data.val_per_class) == ("first", 100)


def test_dafa_pgd_at_recipe_is_dafa_cifar10_with_pgd_at_and_a_normal_start():
    at = Recipe.load(ROOT_RECIPES / "dafa_pgdat_cifar10.toml")
    assert at.objective.name == "pgd_at" and at.strategy.name == "dafa"
    assert at.attack.params["random_start"] == "normal" and at.attack.params["loss"] == "ce"  # madry_loss's start
    assert at.attack.params["second_step"] == at.attack.params["step_size"] == 0.007  # madry_loss's second step
    trades = Recipe.load(ROOT_RECIPES / "dafa_cifar10.toml", ["objective.name=pgd_at", "run.name=dafa_pgdat_cifar10",
                                                              "attack.second_step=0.007"])
    assert at.to_dict() == trades.to_dict()


def test_switching_a_component_with_set_drops_the_replaced_components_keys():
    dafa = ROOT_RECIPES / "dafa_digits.toml"
    recipe = Recipe.load(dafa, ["strategy.name=uniform"])
    assert recipe.strategy.name == "uniform" and recipe.strategy.params == {}
    assert Recipe.load(dafa, ["objective.name=pgd_at"]).objective.params == {}
    with pytest.raises(FairadvError, match="unknown key strategy.lam"):  # a key given with --set is still checked
        Recipe.load(dafa, ["strategy.name=uniform", "strategy.lam=2"])
    with pytest.raises(FairadvError, match="unknown key strategy.lam"):  # without a switch, the file is checked
        Recipe.load(dafa, ["strategy.warmup_epochs=5"]).override("strategy.name=frl", "strategy.lam=1")


def test_int_is_accepted_for_float_but_not_bool_for_int():
    assert coerce(1, float) == 1.0 and isinstance(coerce(1, float), float)
    with pytest.raises(TypeError):
        coerce(True, int)
    assert coerce([1, 2], tuple[int, ...]) == (1, 2)


BAD = [
    ("[train]\nepoch = 5", ["r.toml", "train.epoch", "did you mean 'epochs'"]),
    ("[train]\nepochs = 'ten'", ["r.toml", "train.epochs = 'ten'", "expected an integer"]),
    ("[train]\nepochs = 0", ["r.toml", "train.epochs = 0", "expected a number > 0"]),
    ("[attack]\neps = -0.1", ["r.toml", "attack.eps = -0.1", "expected a number > 0"]),
    ("[attack]\nnorm = 'l3'", ["r.toml", "attack.norm = 'l3'", "expected one of"]),
    ("[attack]\nsteps = 2.5", ["r.toml", "attack.steps = 2.5", "expected an integer"]),
    ("[strategy]\nname = 'dafaa'", ["r.toml", "strategy.name = 'dafaa'", "unknown strategy"]),
    ("[objective]\nname = 'trade'", ["r.toml", "objective.name", "did you mean 'trades'"]),
    ("[objective]\nbeta = 6\ngamma = 1", ["r.toml", "objective.gamma", "expected one of: beta"]),
    ("[trian]\nepochs = 5", ["r.toml", "unknown table trian", "did you mean 'train'"]),
    ("[eval.attack]\nsteps = 0", ["r.toml", "eval.attack.steps = 0", "expected a number > 0"]),
    ("[run]\ndevice = 'gpu'", ["r.toml", "run.device = 'gpu'", "expected"]),
    ("train = 3", ["r.toml", "train = 3", "expected a table"]),
]


@pytest.mark.parametrize("extra,fragments", BAD, ids=[b[0].splitlines()[-1] for b in BAD])
def test_bad_recipes_give_one_line_naming_file_key_and_expectation(tmp_path, extra, fragments):
    # A top-level key must come before the first table, or TOML puts it inside that table.
    path = write(tmp_path, MINIMAL + extra + "\n" if extra.startswith("[") else extra + "\n" + MINIMAL)
    with pytest.raises(FairadvError) as info:
        Recipe.load(path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_data_holdout_defaults_to_random_and_rejects_other_values(tmp_path):
    from click.testing import CliRunner

    from fairadv.cli import main

    assert Recipe.load(write(tmp_path, MINIMAL)).data.holdout == "random"
    path = write(tmp_path, MINIMAL.replace('name = "digits"', 'name = "digits"\nholdout = "last"'))
    assert Recipe.load(path).data.holdout == "last"
    bad = write(tmp_path, MINIMAL.replace('name = "digits"', 'name = "digits"\nholdout = "middle"'), "bad.toml")
    with pytest.raises(FairadvError) as info:
        Recipe.load(bad)
    message = str(info.value)
    assert message.startswith(str(bad)) and "\n" not in message
    assert "data.holdout = 'middle': expected one of 'random', 'first', 'last'" in message
    with pytest.raises(FairadvError, match=r"--set data.holdout=3.*data.holdout = 3: expected a string"):
        Recipe.load(path, ["data.holdout=3"])
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2 and "data.holdout = 'middle'" in result.stderr


def test_missing_tables_and_bad_files(tmp_path):
    with pytest.raises(FairadvError, match=r"missing table \[model\]"):
        Recipe.load(write(tmp_path, "[data]\nname = 'digits'\n"))
    with pytest.raises(FairadvError, match="not valid TOML"):
        Recipe.load(write(tmp_path, "[data\nname=", "broken.toml"))
    with pytest.raises(FairadvError, match="recipe file not found"):
        Recipe.load(tmp_path / "nope.toml")
    write(tmp_path, "\xff\xfe", "binary.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(FairadvError, match="binary.toml"):
        Recipe.load(tmp_path / "binary.toml")


def test_bad_override_is_named(tmp_path):
    path = write(tmp_path, MINIMAL)
    with pytest.raises(FairadvError, match=r"--set train.epochs=-1.*train.epochs = -1"):
        Recipe.load(path, ["train.epochs=-1"])
    with pytest.raises(FairadvError, match="expected table.key=value"):
        Recipe.load(path, ["epochs=3"])
    with pytest.raises(FairadvError, match="is a value, not a table"):
        Recipe.load(path, ["data.name.x=3"])
    with pytest.raises(FairadvError, match=r"--set train.epoch=3.*unknown key train.epoch"):
        Recipe.load(path, ["train.epoch=3"])


def test_an_unknown_key_of_a_component_without_keys_says_so(tmp_path):
    recipe = Recipe.load(write(tmp_path, MINIMAL))
    assert recipe.strategy.name == "uniform"
    with pytest.raises(FairadvError, match=r"unknown key strategy.lamda; strategy 'uniform' takes no keys besides "
                                           r"name$"):
        recipe.override("strategy.lamda=1")


def test_override_takes_strings_or_lists_of_them(tmp_path):
    recipe = Recipe.load(write(tmp_path, MINIMAL)).override(["train.epochs=2"], "train.batch_size=8")
    assert (recipe.train.epochs, recipe.train.batch_size) == (2, 8)


def test_last_iterate_counting_rejects_stop_on_success(tmp_path):
    path = write(tmp_path, MINIMAL + '\n[eval]\ncounting = "last_iterate"\n\n[eval.attack]\nname = "pgd"\n'
                                     'stop_on_success = true\n')
    with pytest.raises(FairadvError, match=r"eval.attack.stop_on_success = True: expected false or unset with "
                                           r"eval.counting = 'last_iterate'"):
        Recipe.load(path)
    recipe = Recipe.load(write(tmp_path, MINIMAL + '\n[eval]\ncounting = "last_iterate"\n'))
    assert recipe.eval.counting == "last_iterate" and recipe.eval.attack.params["stop_on_success"] is False


# --- the paper settings against the official code (issue 31, item 6) -----------------------------------------------

STUDIES = Path(__file__).parent.parent / "studies"


def paper_cells(study: str) -> dict[str, Recipe]:
    """Seed 0's cell recipe of each method of ``studies/<study>.toml``, by method."""
    from fairadv.study.spec import load_study
    cells = load_study(STUDIES / f"{study}.toml").recipes()
    return {name.rsplit("-", 1)[0]: recipe for name, recipe in cells.items() if name.endswith("-s0")}


def test_paper_recipes_run_the_forward_passes_and_count_the_hold_out_as_their_code():
    order = {name: Recipe.load(ROOT_RECIPES / f"{name}.toml").objective.params.get("order")
             for name in ("trades_cifar10", "trades_cifar100", "trades_stl10", "dafa_cifar10", "dafa_cifar100",
                          "dafa_stl10", "frl_cifar10", "frl_scratch_cifar10", "cfa_cifar10")}
    assert order == {"trades_cifar10": "adv_clean", "trades_cifar100": "adv_clean", "trades_stl10": "adv_clean",
                     "dafa_cifar10": "adv_clean", "dafa_cifar100": "adv_clean", "dafa_stl10": "adv_clean",
                     "frl_cifar10": "clean_adv_clean", "frl_scratch_cifar10": "clean_adv_clean",
                     "cfa_cifar10": "clean_adv_clean"}  # DAFA's losses.py; utils_frl2.py; CFA's attack.py
    for name in ("frl_cifar10", "frl_scratch_cifar10", "cfa_cifar10"):
        assert Recipe.load(ROOT_RECIPES / f"{name}.toml").strategy.params["val_counting"] == "last_iterate", name
    assert "order" not in Recipe.load(ROOT_RECIPES / "trades_digits.toml").to_toml()  # unset stays unwritten


@pytest.mark.parametrize("study", ["paper_cifar10", "paper_cifar100", "paper_stl10"])
def test_paper_study_rows_follow_their_codes(study):
    cells = paper_cells(study)
    orders = {m: r.objective.params.get("order") for m, r in cells.items() if r.objective.name == "trades"}
    own_setting = {"trades_wrn": "adv_clean", "csr": "clean_adv"} if study == "paper_cifar10" else {}
    assert orders == {"trades": "adv_clean", "dafa": "adv_clean", "frl": "clean_adv_clean",
                      "cfa": "clean_adv_clean", "wat": "clean_adv", **own_setting}
    assert cells["frl"].strategy.params["val_counting"] == "last_iterate"
    cfa = cells["cfa"].strategy.params
    if study == "paper_cifar10":  # FAWA at CFA's CIFAR-10 threshold, its gate counted at the last iterate
        assert cfa["fawa"] and cfa["fawa_threshold"] == 0.24 and cfa["val_counting"] == "last_iterate"
    else:  # no worst class reaches CIFAR-10's 0.24 here: FAWA is off, and says so
        assert not cfa["fawa"]
    for method, cell in cells.items():  # every row on DAFA's TRADES setting, BAT's included
        if method in ("csr", "absld", "fair_ard"):  # the methods since DAFA, each on its own paper's setting
            continue
        assert (cell.train.epochs, cell.schedule.name, cell.optimizer.params["weight_decay"]) == (110, "bag_of_tricks",
                                                                                                  5e-4)


def test_paper_rows_since_dafa_run_their_own_settings_under_the_tables_threat_model():
    from fairadv.study.mixed import check_planned
    from fairadv.study.spec import load_study
    study = load_study(STUDIES / "paper_cifar10.toml")
    check_planned(study, study.recipes(), allow_mixed=False)  # one threat model and attack per column: not mixed
    cells = paper_cells("paper_cifar10")
    assert {m: (c.train.epochs, c.model.name) for m, c in cells.items() if m in ("csr", "absld", "fair_ard")} == {
        "csr": (2, "wideresnet"), "absld": (300, "resnet18"), "fair_ard": (200, "resnet18")}
    assert cells["trades_wrn"].model.name == "wideresnet"
    wiring = {m.name: (m.init_from, m.teacher_from) for m in study.methods}
    assert (wiring["csr"], wiring["absld"], wiring["fair_ard"]) == ((
        "trades_wrn", None), (None, "trades_wrn"), (None, "trades_wrn"))


def test_paper_hold_outs_are_the_official_splits():
    c10, c100 = paper_cells("paper_cifar10"), paper_cells("paper_cifar100")
    split = {m: (r.data.holdout, r.data.val_per_class) for m, r in c10.items() if m in ("frl", "wat", "cfa")}
    assert split == {"frl": ("last", 300), "wat": ("last", 300), "cfa": ("first", 100)}
    split = {m: (r.data.holdout, r.data.val_per_class) for m, r in c100.items() if m in ("frl", "wat", "cfa")}
    assert split == {"frl": ("last", 30), "wat": ("last", 30), "cfa": ("first", 25)}  # WAT's and CFA's code


def test_paper_bat_row_is_bat_on_the_trades_setting():
    bat = paper_cells("paper_cifar10")["bat"]
    assert bat.objective.name == "bat"
    assert bat.objective.params == {"beta": 6.0, "patience": 1, "separate_walks": True}
    trades = paper_cells("paper_cifar10")["trades"]
    assert (bat.optimizer, bat.attack, bat.eval) == (trades.optimizer, trades.attack, trades.eval)
