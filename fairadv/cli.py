"""The ``fairadv`` command line: run, validate and list."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from fairadv.errors import FairadvError

err_console = Console(stderr=True)
out_console = Console()

KINDS = ("attacks", "objectives", "strategies", "distances", "models", "datasets", "optimizers", "schedules")


def _user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a FairadvError into one line on stderr and its exit status (2 for bad input)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except FairadvError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err_console.print("interrupted; continue the run with --resume")
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fairadv")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """fairadv: class-wise fair adversarial training (DAFA, FRL, CFA)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=err_console,
                                                                                 show_path=False)])


_set_option = click.option("--set", "overrides", multiple=True, metavar="TABLE.KEY=VALUE",
                           help="Override a recipe key (value in TOML syntax); repeatable.")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@_set_option
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output root (default: run.out).")
@click.option("--resume", is_flag=True, help="Continue the run from its last checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bar or tables.")
@_user_errors
def run(recipe: str, overrides: tuple[str, ...], out: str | None, resume: bool, quiet: bool) -> None:
    """Train and evaluate RECIPE; write the run folder."""
    from fairadv.engine import Trainer
    from fairadv.recipe import Recipe

    loaded = Recipe.load(recipe, overrides)
    Trainer(loaded, out=out, resume=resume, progress=not quiet, console=err_console).fit()


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@_set_option
@_user_errors
def validate(recipe: str, overrides: tuple[str, ...]) -> None:
    """Check RECIPE (keys, types, ranges, component names) without training."""
    from fairadv.recipe import Recipe

    loaded = Recipe.load(recipe, overrides)
    click.echo(f"{recipe}: ok ({loaded.data.name}, {loaded.model.name}, {loaded.objective.name}, "
                      f"strategy {loaded.strategy.name}, {loaded.train.epochs} epochs)")


@main.command(name="list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@_user_errors
def list_components(kind: str | None) -> None:
    """Show registered components (all kinds, or KIND) with their parameters and defaults."""
    from fairadv.recipe import component_registries
    from fairadv.registry import Param, broken_plugins

    registries = {r.plural: r for r in component_registries().values()}
    from fairadv.distances import DISTANCES

    registries["distances"] = DISTANCES
    for plural in [kind] if kind else KINDS:
        registry = registries[plural]
        table = Table(title=plural, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("parameters (defaults)")
        table.add_column("from")
        for name in registry.names():
            params = ", ".join(p.name if p.default is Param.REQUIRED else f"{p.name}={p.default!r}"
                               for p in registry.params(name))
            table.add_row(name, params or "-", registry.origin(name))
        out_console.print(table)
    for plugin, error in broken_plugins().items():
        out_console.print(f"[red]plugin {plugin!r} failed to load:[/] {error}", highlight=False)


if __name__ == "__main__":
    main()
