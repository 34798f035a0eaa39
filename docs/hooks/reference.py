"""MkDocs hook: the recipe reference and the CLI reference, generated from fairadv's own code so they cannot drift.

A page asks for a generated section with a marker line:

- ``<!-- fairadv:recipe-reference -->``: every recipe table and key, from the attrs classes of `fairadv.recipe` and the
  fields / keyword arguments of every registered component (plugins included): type, default, allowed range (as
  the field's validator states it) and the description from the docstring's ``Args:`` / ``Attributes:`` section;
- ``<!-- fairadv:cli-reference -->``: the ``--help`` text of ``fairadv`` and each of its commands;
- ``<!-- fairadv:readme-quickstart -->``: the body of the README's "two commands" section, so the getting-started
  page shows exactly the commands the README (and CI) use.

The generated text is also written into the pages themselves, between the marker and its end marker
(``<!-- end fairadv:... -->``), so that a page read raw on a code host is complete: ``python docs/hooks/reference.py``
rewrites them (``--check`` only says whether they are current; tests/test_docs_tutorial.py checks it), and the build
regenerates them, so the site always matches the installed code.

`recipe_reference()` and `cli_reference()` are plain functions; the tests call them too (tests/test_docs_tutorial.py).
"""

from __future__ import annotations

import inspect
import math
import re
import sys
import typing
from pathlib import Path
from typing import Any

RECIPE_MARKER = "<!-- fairadv:recipe-reference -->"
CLI_MARKER = "<!-- fairadv:cli-reference -->"
QUICKSTART_MARKER = "<!-- fairadv:readme-quickstart -->"
QUICKSTART_HEADING = re.compile(r"^## .*two commands.*$", re.IGNORECASE | re.MULTILINE)
ROOT = Path(__file__).resolve().parents[2]

# Component tables in recipe order; eval.attack draws from the same registry as attack.
COMPONENT_TABLES = ("data", "model", "objective", "attack", "strategy", "optimizer", "schedule")


# --- mkdocs hook entry points --------------------------------------------------------------------------------------


def on_config(config: Any, **kwargs: Any) -> Any:
    """Make the repository's ``fairadv`` importable when it is not installed (e.g. ``PYTHONPATH`` unset)."""
    if str(ROOT) not in sys.path:
        try:
            import fairadv  # noqa: F401
        except ImportError:
            sys.path.insert(0, str(ROOT))
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """Regenerate the marked sections of a page."""
    return fill(markdown)


def end_marker(marker: str) -> str:
    """``<!-- end fairadv:x -->`` for ``<!-- fairadv:x -->``."""
    return marker.replace("<!-- ", "<!-- end ", 1)


def fill(markdown: str) -> str:
    """``markdown`` with the section after each marker (up to its end marker, or nothing) generated anew."""
    for marker, generate in GENERATORS.items():
        start = markdown.find(marker)
        if start < 0:
            continue
        end = markdown.find(end_marker(marker), start)
        stop = end + len(end_marker(marker)) if end >= 0 else start + len(marker)
        body = generate().strip("\n")
        markdown = f"{markdown[:start]}{marker}\n\n{body}\n\n{end_marker(marker)}{markdown[stop:]}"
    return markdown


def write_pages(check: bool = False) -> list[Path]:
    """Regenerate the marked sections of every page under docs/ in place (only report them with ``check``); returns
    the pages that were (or would be) changed."""
    changed = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        text = page.read_text()
        if any(marker in text for marker in GENERATORS) and fill(text) != text:
            changed.append(page)
            if not check:
                page.write_text(fill(text))
    return changed


def readme_quickstart(readme: Path = ROOT / "README.md") -> str:
    """The README's "... two commands" section, without its heading, up to the next ``## `` heading."""
    text = readme.read_text()
    heading = QUICKSTART_HEADING.search(text)
    if heading is None:
        raise ValueError(f"{readme}: no '## ... two commands' section to show on the getting-started page")
    body = text[heading.end():]
    following = re.search(r"^## ", body, re.MULTILINE)
    return (body[:following.start()] if following else body).strip() + "\n"


# --- docstrings ----------------------------------------------------------------------------------------------------

_SECTION = re.compile(r"^(Args|Arguments|Attributes|Parameters):\s*$")
_ENTRY = re.compile(r"^ {4}(\w+)(?: \([^)]*\))?:\s*(.*)$")


def param_docs(obj: Any) -> dict[str, str]:
    """{name: description} from the Google-style ``Args:`` / ``Attributes:`` sections of ``obj``'s docstring."""
    doc = inspect.getdoc(obj) or ""
    out: dict[str, str] = {}
    in_section, current = False, None
    for line in doc.splitlines():
        if _SECTION.match(line):
            in_section, current = True, None
            continue
        if line and not line.startswith(" "):
            in_section, current = False, None
            continue
        if not in_section or not line.strip():
            continue
        entry = _ENTRY.match(line)
        if entry:
            current = entry.group(1)
            out[current] = entry.group(2).strip()
        elif current is not None and line.startswith(" " * 8):
            out[current] += " " + line.strip()
    return out


def summary_line(obj: Any) -> str:
    """The first paragraph of ``obj``'s docstring, on one line."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


# --- types, defaults, ranges ---------------------------------------------------------------------------------------


def type_hints(target: Any) -> dict[str, Any]:
    """Resolved annotations of an attrs class or a function; {} when they cannot be resolved."""
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - an unresolvable annotation only loses the type column
        return {}


def describe_type(hint: Any) -> str:
    """A TOML-level name for a type hint: ``number``, ``integer``, ``list of number``, ``one of 'a', 'b'``..."""
    from fairadv.coercion import describe

    if hint is None or hint is Any:
        return "any"
    text = describe(hint)
    return re.sub(r"\b(a|an) (?=number|integer|string|list|table)", "", text)


def toml_value(value: Any) -> str:
    """``value`` as it would be written in a recipe, on one line (``unset`` for None: TOML has no null)."""
    import json

    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0
                                                                                          else "-inf"))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def allowed_range(validator: Any, attribute: Any = None) -> str:
    """What a field's validator accepts, in the words of its own error message.

    fairadv's validators (`fairadv.validators.gt`, ``ge``, ``between``, ``one_of``) carry their ``expected`` text;
    attrs' ``in_`` its options; any other validator is asked once with an invalid probe and its `InvalidValue`
    message is read. Empty when nothing is stated.
    """
    from fairadv.validators import InvalidValue

    if validator is None:
        return ""
    parts = getattr(validator, "_validators", None) or getattr(validator, "validators", None)
    if isinstance(parts, (tuple, list)):
        return "; ".join(filter(None, (allowed_range(v, attribute) for v in parts)))
    options = getattr(validator, "options", None)
    if options is not None:
        return "one of " + ", ".join(toml_value(o) for o in options)
    try:
        expected = inspect.getclosurevars(validator).nonlocals.get("expected")
    except TypeError:
        expected = None
    if isinstance(expected, str):
        return expected
    for probe in (float("nan"), "\x00"):
        try:
            validator(None, attribute, probe)
        except InvalidValue as exc:
            return exc.expected
        except Exception:  # noqa: BLE001 - a validator that cannot judge the probe states nothing
            continue
    return ""


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def fields_table(target: Any, params: list[Any] | None = None, skip: tuple[str, ...] = ()) -> str:
    """A markdown table of the recipe keys of an attrs class or a factory: key, type, default, allowed, meaning."""
    import attrs

    from fairadv.registry import Param, signature_params

    hints = type_hints(target)
    docs = param_docs(target)
    fields = {f.alias or f.name: f for f in attrs.fields(target)} if attrs.has(target) else {}
    rows = []
    for p in params if params is not None else signature_params(target):
        if p.name in skip:
            continue
        field = fields.get(p.name)
        default = "required" if p.default is Param.REQUIRED else _code(toml_value(p.default))
        hint = hints.get(p.name, p.annotation if not isinstance(p.annotation, str) else None)
        if p.annotation is inspect.Parameter.empty and p.name not in hints:
            hint = None
        kind = describe_type(hint)
        allowed = allowed_range(field.validator, field) if field is not None else ""
        if allowed == kind:  # a Literal type already lists its values
            allowed = ""
        rows.append(f"| `{p.name}` | {_cell(kind)} | {_cell(default)} | {_cell(allowed)} | "
                    f"{_cell(docs.get(p.name, ''))} |")
    if not rows:
        return "No keys.\n"
    head = "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n"
    return head + "\n".join(rows) + "\n"


# --- the recipe reference ------------------------------------------------------------------------------------------


def _default_recipe() -> Any:
    """The smallest valid recipe: its component names and [eval.attack] are the defaults."""
    from fairadv.recipe import Recipe

    return Recipe.from_dict({"data": {"name": "digits"}, "model": {"name": "small_cnn"}}, source="<defaults>")


def _origin_note(registry: Any, name: str) -> str:
    origin = registry.origin(name)
    return "" if origin == "fairadv" else f" <small>from {origin}</small>"


def recipe_reference() -> str:
    """Markdown for every recipe table and key, generated from the code (see the module docstring)."""
    import attrs

    from fairadv.distances import DISTANCES
    from fairadv.recipe import Recipe, component_registries
    from fairadv.recipe_tables import (DataConfig, EvalConfig, LogConfig, MlflowConfig, ModelConfig, TeacherConfig,
                                       WandbConfig)

    registries = component_registries()
    defaults = _default_recipe()
    out: list[str] = []
    plain = {"run": Recipe.__attrs_attrs__.run.type, "train": Recipe.__attrs_attrs__.train.type}
    hints = typing.get_type_hints(Recipe)
    for table in [f.name for f in attrs.fields(Recipe) if f.name != "source"]:
        if table in ("run", "train"):
            cls = hints[table] if isinstance(plain[table], str) else plain[table]
            out += [f"## `[{table}]`", "", summary_line(cls), "", fields_table(cls)]
        elif table == "eval":
            out += ["## `[eval]`", "", summary_line(EvalConfig), "", fields_table(EvalConfig, skip=("attack",))]
            attack = defaults.eval.attack
            params = ", ".join(f"{k} = {toml_value(v)}" for k, v in attack.params.items())
            out += ["### `[eval.attack]`", "",
                    f"The evaluation attack: any attack below under [`[attack]`](#attack), chosen with `name`. "
                    f"Default: `name = {toml_value(attack.name)}`, `{params}`.", ""]
        elif table == "teacher":
            out += ["## `[teacher]`", "", summary_line(TeacherConfig), "", fields_table(TeacherConfig, skip=("model",)),
                    "", "### `[teacher.model]`", "",
                    "The teacher as a model table: the keys of [`[model]`](#model), for the data's classes and shape.",
                    ""]
        elif table == "log":
            out += ["## `[log]`", "", summary_line(LogConfig), "", fields_table(LogConfig), ""]
            for key, cls in (("wandb", WandbConfig), ("mlflow", MlflowConfig)):
                out += [f"### `[log.{key}]`", "", summary_line(cls), "", fields_table(cls), ""]
        else:
            registry = registries[table]
            section = {"data": DataConfig, "model": ModelConfig}.get(table)
            out += [f"## `[{table}]`", "",
                    f"`name` picks a registered {registry.kind} (below), or `module.path:Name` for a component "
                    f"defined in an importable module (this imports and runs that module). "
                    + (f"Default: `name = {toml_value(getattr(defaults, table).name)}`. "
                       if table not in ("data", "model") else "Required. ")
                    + f"The other keys are the chosen {registry.kind}'s own parameters"
                    + (", plus:" if section is not None else "."), ""]
            if section is not None:
                out += [fields_table(section, skip=("name", "params")), ""]
            if table == "model":
                out += ["`name = \"timm:<model>\"` builds any timm model; its keyword arguments are passed through.",
                        ""]
            for name in registry.names():
                target = registry.get(name)
                out += [f"### {table} `{name}`{_origin_note(registry, name)}", "", summary_line(target), "",
                        fields_table(target, registry.params(name)), ""]
    out += ["## Class distances", "",
            "Not a table of their own: strategies that compare classes name one, e.g. DAFA's "
            "`strategy.distance`.", ""]
    for name in DISTANCES.names():
        out += [f"### distance `{name}`{_origin_note(DISTANCES, name)}", "", summary_line(DISTANCES.get(name)), "",
                fields_table(DISTANCES.get(name), DISTANCES.params(name)), ""]
    return "\n".join(out)


# --- the CLI reference ---------------------------------------------------------------------------------------------


def cli_reference() -> str:
    """Markdown with the ``--help`` of ``fairadv`` and of each command, as click prints it."""
    import click

    from fairadv.cli import main

    width = 100
    settings = {"terminal_width": width, "max_content_width": width, **main.context_settings}
    root = click.Context(main, info_name="fairadv", **settings)
    out = ["## `fairadv`", "", "```text", main.get_help(root), "```", ""]
    for name in sorted(main.commands):
        command = main.commands[name]
        ctx = click.Context(command, info_name=name, parent=root, terminal_width=width, max_content_width=width)
        out += [f"## `fairadv {name}`", "", "```text", command.get_help(ctx), "```", ""]
    return "\n".join(out)


GENERATORS = {RECIPE_MARKER: lambda: recipe_reference(), CLI_MARKER: lambda: cli_reference(),
              QUICKSTART_MARKER: lambda: readme_quickstart()}


if __name__ == "__main__":
    stale = write_pages(check="--check" in sys.argv[1:])
    for path in stale:
        print(f"{'stale' if '--check' in sys.argv[1:] else 'rewrote'}: {path.relative_to(ROOT)}")
    sys.exit(1 if stale and "--check" in sys.argv[1:] else 0)
