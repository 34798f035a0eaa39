"""The ``fairadv`` command line: run, validate, list, eval, report, compare and study.

Results (tables, JSON) go to stdout; progress, logs and "wrote ..." lines to stderr, so ``fairadv run R.toml >
results.txt`` captures the results alone.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fairadv.errors import FairadvError
from fairadv.run_folder import EVAL, checkpoint_relpath

err_console = Console(stderr=True, soft_wrap=True)  # a status line stays one line in a log, however long
out_console = Console()

KINDS = ("attacks", "objectives", "strategies", "distances", "models", "datasets", "optimizers", "schedules")
SINGULAR = {"attack": "attacks", "objective": "objectives", "strategy": "strategies", "distance": "distances",
            "model": "models", "dataset": "datasets", "optimizer": "optimizers", "schedule": "schedules"}


class _ConsoleLogHandler(logging.Handler):
    """Log records as single lines on stderr ("warning: ..."), above any live progress bar, never wrapped."""

    def emit(self, record: logging.LogRecord) -> None:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        style = "yellow" if record.levelno == logging.WARNING else "red" if record.levelno > logging.WARNING else ""
        err_console.print(Text(level + self.format(record), style=style), soft_wrap=True, highlight=False)


# What Ctrl-C leaves and how to go on, by command (eval, report and compare write nothing until they finish).
INTERRUPTED = {"run": "interrupted; continue the run with --resume",
               "study": "interrupted; run the same fairadv study command again to continue (finished cells are kept, "
                        "interrupted ones resume)"}


def _user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a FairadvError into one line on stderr and its exit status (2 for bad input)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except FairadvError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err_console.print(INTERRUPTED.get(command.__name__, "interrupted"), highlight=False)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fairadv")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """fairadv: class-wise fair adversarial training (DAFA, FRL, CFA)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(message)s", handlers=[_ConsoleLogHandler()])


_set_option = click.option("--set", "overrides", multiple=True, metavar="TABLE.KEY=VALUE",
                           help="Override a recipe key (value in TOML syntax); repeatable.")


@main.command()
@click.argument("recipe")
@_set_option
@click.option("--out", default=None, help="Output root (default: run.out).")
@click.option("--resume", is_flag=True, help="Continue the run from its last checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bar or epoch lines (the final table still goes to stdout).")
@_user_errors
def run(recipe: str, overrides: tuple[str, ...], out: str | None, resume: bool, quiet: bool) -> None:
    """Train and evaluate RECIPE; write the run folder."""
    from fairadv.distributed import leave_process_group
    from fairadv.recipe import Recipe
    from fairadv.train.engine import Trainer

    if quiet:  # W&B prints about 35 lines of its own otherwise (a user's own setting is kept)
        os.environ.setdefault("WANDB_SILENT", "true")
    loaded = Recipe.load(recipe, overrides)
    Trainer(loaded, out=out, resume=resume, progress=not quiet, console=err_console, results=out_console,
            preemptible=True).fit()
    leave_process_group()


@main.command()
@click.argument("recipe")
@_set_option
@_user_errors
def validate(recipe: str, overrides: tuple[str, ...]) -> None:
    """Check RECIPE as run would at start-up (keys, types, ranges, component names, data, model) without training."""
    from fairadv.distributed import DistInfo
    from fairadv.recipe import Recipe
    from fairadv.train.components import build_components, training_device

    loaded = Recipe.load(recipe, overrides)
    build_components(loaded, training_device(loaded.run.device, DistInfo()), DistInfo())  # writes nothing
    click.echo(f"{recipe}: ok ({loaded.data.name}, {loaded.model.name}, {loaded.objective.name}, "
                      f"strategy {loaded.strategy.name}, {loaded.train.epochs} epochs)")


@main.command(name="list")
@click.argument("kind", required=False, type=click.Choice(KINDS + tuple(SINGULAR)), metavar="[KIND]")
@_user_errors
def list_components(kind: str | None) -> None:
    """Show registered components (all kinds, or KIND: attacks, objectives, strategies, distances, models,
    datasets, optimizers or schedules; singular works too) with their parameters and defaults."""
    kind = SINGULAR.get(kind, kind) if kind else None
    from fairadv.recipe import component_registries
    from fairadv.registry import DISTANCES, Param, broken_plugins

    registries = {r.plural: r for r in component_registries().values()}
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
        err_console.print(f"[red]plugin {plugin!r} failed to load:[/] {error}", highlight=False)


@main.command(name="eval")
@click.argument("target", metavar="RUN_DIR|CHECKPOINT|robustbench:NAME")
@click.option("--attack", "attacks", multiple=True, metavar="PRESET",
              help="pgd<K> (e.g. pgd20), cw<K>, fgsm, autoattack or recipe; repeatable (default: pgd20).")
@click.option("--n", "n", type=int, default=0, help="Evaluate a class-stratified subset of N test images (0: all).")
@click.option("--batch-size", type=int, default=None, help="Evaluation batch size (default: the recipe's).")
@click.option("--recipe", "recipe_path", default=None, metavar="R.toml",
              help="Recipe for the data set (replaces the checkpoint's [data]); needed for a bare state dict.")
@click.option("--model", "model_name", default=None, metavar="NAME",
              help="Model architecture, for a checkpoint without a recipe (e.g. resnet18).")
@click.option("--eps", default=None, metavar="EPS",
              help="Attack radius, e.g. 0.031 or 8/255 (default: the recipe's eval.attack eps; RobustBench's).")
@click.option("--counting", type=click.Choice(["any_iterate", "last_iterate"]), default=None,
              help="Robust if correct at every iterate and clean, or at the last iterate (default: the recipe's).")
@click.option("--seed", type=int, default=0, help="Seed of the subset and of the attacks' random starts.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
@click.option("--out", default=None, help=f"Write the results here (default: {EVAL} beside the run).")
@click.option("--checkpoint", "which", default="last", show_default=True, metavar="last|best",
              help=f"For a run folder: {checkpoint_relpath('last')}, or {checkpoint_relpath('best')} (the best "
                   "validation epoch).")
@click.option("--dataset", default=None, help="robustbench: the zoo's data set, cifar10 or cifar100 (default cifar10).")
@click.option("--threat-model", default=None, help="robustbench: Linf or L2 (default Linf).")
@click.option("--model-dir", default=None, help="robustbench: weights in its layout, DIR/DATASET/THREAT/NAME.pt "
                                                 "(default ./models; downloaded there when missing and online).")
@click.option("--data-root", default=None, help="robustbench: the folder holding the data set (default ./data).")
@click.option("--model-info", default=None, help="robustbench: RobustBench's model_info folder, for its listed "
                                                  "figures (default ./model_info).")
@click.option("--baseline", default=None, metavar="RUN", help=f"Print rho_nat and rho_rob against this run's {EVAL} "
              "(same threat model) with 95 % intervals, paired by image where both saw the same images.")
@_set_option
@_user_errors
def eval_command(target: str, attacks: tuple[str, ...], n: int, batch_size: int | None, recipe_path: str | None,
                 model_name: str | None, eps: str | None, counting: str | None, seed: int, device: str,
                 out: str | None, which: str, overrides: tuple[str, ...], baseline: str | None,
                 **zoo: str | None) -> None:
    """Per-class clean and robust accuracy of a run folder, a checkpoint or a RobustBench zoo model under each
    attack, and the worst case over them; writes eval.json.

    ``--set`` overrides the run's recipe as for ``run`` (e.g. ``--set data.root=/data`` or
    ``--set eval.attack.step_size=0.01``); earlier results in eval.json are kept, one entry per setup.
    """
    from fairadv.evaluation.eval_command import run_eval
    from fairadv.evaluation.eval_options import EvalOptions

    options = EvalOptions(target, attacks, n=n, batch_size=batch_size, eps=eps, seed=seed, device=device,
                          checkpoint=which, counting=counting, recipe_path=recipe_path, model_name=model_name,
                          overrides=overrides, out=out, zoo={k: v for k, v in zoo.items() if v is not None},
                          baseline=baseline)
    run_eval(options, console=out_console, progress=err_console)


@main.command()
@click.argument("run_dir", metavar="RUN_DIR")
@click.option("--baseline", default=None, metavar="RUN", help="Add rho_nat and rho_rob against this run with 95 % "
              "intervals (paired by image where both runs were evaluated on the same images).")
@_user_errors
def report(run_dir: str, baseline: str | None) -> None:
    """Write RUN_DIR/report.md: recipe, how the run was made, per-class table with 95 % intervals, plots, eval.json
    results, policy changes; print how the run was made."""
    from fairadv.evaluation.report import provenance_block, write_report

    path = write_report(run_dir, baseline)
    for line in provenance_block(run_dir):
        click.echo(line)
    click.echo(f"wrote {path}", err=True)


@main.command()
@click.argument("runs", nargs=-1, metavar="RUN...")
@click.option("--baseline", default=None, metavar="RUN", help="Add the fairness scores rho_nat and rho_rob "
              "and each group's paired difference from this run's group (p-values, Holm over the groups); "
              "per-class deltas are then against it.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--resamples", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap resamples over test images for the intervals and tests.")
@click.option("--bootstrap-seed", type=int, default=0, show_default=True,
              help="Seed of the bootstrap (stored in the JSON; the same seed gives the same output).")
@click.option("--allow-mixed", is_flag=True, help="Show figures measured under different threat models or attacks "
              "(eps, norm, steps, step size, counting) side by side, marked with what differs; refused otherwise.")
@_user_errors
def compare(runs: tuple[str, ...], baseline: str | None, as_json: bool, resamples: int,
            bootstrap_seed: int, allow_mixed: bool) -> None:
    """Runs side by side: clean, robust and worst-class robust accuracy, per-class deltas, eval.json results.

    Runs whose recipes differ only in run.seed and run.name (and in which seed of one setting they fine-tune or
    distil from) are pooled into mean ± sample std, with a 95 % interval for the mean over seeds and test images.
    """
    from fairadv.evaluation.compare import run_compare
    from fairadv.evaluation.compare_statistics import Settings

    text = run_compare(runs, baseline, as_json=as_json, console=out_console,
                       settings=Settings(resamples=resamples, seed=bootstrap_seed), allow_mixed=allow_mixed)
    if text is not None:
        click.echo(text)


@main.command()
@click.argument("study_file", metavar="STUDY.toml")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="Cells to run at once on this machine; the cores are shared among them.")
@click.option("--out", default=None, help="Root of the study folder (default: the study's out, runs/studies).")
@click.option("--set", "overrides", multiple=True, metavar="TABLE.KEY=VALUE",
              help="Override a key of every cell's recipe, after the study's own set; repeatable.")
@click.option("--methods", default=None, metavar="A,B", help="Run and report only these methods of the study.")
@click.option("--seeds", default=None, metavar="0,1", help="Run and report only these of the study's seeds.")
@click.option("--report-only", is_flag=True, help="Run nothing: rebuild the tables and figures from finished cells.")
@click.option("--allow-mixed", is_flag=True, help="Write tables whose columns hold cells measured under different "
              "threat models or attacks, each such table saying what differs (refused otherwise).")
@click.option("--launcher", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="Where cells run: a local process pool, or one Slurm job each (needs fairadv[slurm]).")
@click.option("--partition", default=None, help="Slurm partition (--launcher slurm).")
@click.option("--gpus-per-job", type=int, default=0, show_default=True,
              help="GPUs per Slurm job; more than one trains the cell under torchrun.")
@click.option("--cpus-per-job", type=int, default=2, show_default=True, help="CPUs per Slurm job.")
@click.option("--time", "time_limit", default="12:00:00", show_default=True, help="Slurm time limit per job.")
@click.option("--account", default=None, help="Slurm account to charge (--launcher slurm).")
@click.option("--qos", default=None, help="Slurm quality of service (--launcher slurm).")
@click.option("--mem", default=None, metavar="SIZE", help="Slurm memory per job's node, e.g. 32G (--launcher slurm).")
@click.option("--constraint", default=None, help="Slurm node features, e.g. a100 (--launcher slurm).")
@click.option("--setup", multiple=True, metavar="COMMAND",
              help="A shell command each Slurm job runs first, e.g. 'module load cuda'; repeatable.")
@click.option("--plan-seeds", type=float, default=None, metavar="POINTS",
              help="Run nothing: the seeds needed to detect POINTS of worst-class accuracy at 80% power, and the "
                   "smallest difference the study's seeds detect (from its finished baseline cells).")
@click.option("--plan-sd", type=float, default=None, metavar="POINTS",
              help="With --plan-seeds: the worst-class std over seeds to assume (e.g. from a paper) instead of the "
                   "finished baseline cells'.")
@click.option("--dry-run", is_flag=True, help="Leaderboards: print the size (targets, images, attacks) and the "
              "estimated cost, and run nothing.")
@click.option("--sort", type=click.Choice(["average", "worst", "rho"]), default="worst", show_default=True,
              help="Leaderboards: rank by robust average, robust worst class or rho_rob against the reference.")
@_user_errors
def study(study_file: str, jobs: int, out: str | None, report_only: bool, launcher: str, partition: str | None,
          gpus_per_job: int, cpus_per_job: int, time_limit: str, plan_seeds: float | None,
          plan_sd: float | None, overrides: tuple[str, ...], methods: str | None, seeds: str | None, allow_mixed: bool,
          account: str | None, qos: str | None, mem: str | None, constraint: str | None,
          setup: tuple[str, ...], dry_run: bool, sort: str) -> None:
    """Run every cell of STUDY.toml (methods x axes x seeds), then write table.md/.tex/.csv, study.json and figures.

    Finished cells are skipped and interrupted ones resume, so running a study again continues it. A leaderboard
    file ([leaderboard] and [targets]: existing models, docs/leaderboard.md) evaluates each target instead and
    writes leaderboard.md/.tex/.csv, study.json and its figures.
    """
    from fairadv.study.spec import Shape
    from fairadv.study.targets import is_leaderboard

    if is_leaderboard(study_file):
        from fairadv.study.leaderboard_runner import run_leaderboard
        from fairadv.study.runner import SlurmOptions

        if overrides or methods or seeds or plan_seeds is not None or plan_sd is not None or allow_mixed:
            raise FairadvError(f"{study_file}: a leaderboard takes none of --set, --methods, --seeds, --plan-seeds, "
                               "--plan-sd, --allow-mixed (they shape training studies)")
        doc = run_leaderboard(study_file, out=out, jobs=jobs, launcher=launcher, report_only=report_only,
                              slurm=SlurmOptions(partition=partition, gpus=gpus_per_job, time=time_limit,
                                                 cpus=cpus_per_job, account=account, qos=qos, mem=mem,
                                                 constraint=constraint, setup=setup),
                              console=err_console, sort=sort, dry_run=dry_run)
        if not dry_run:
            from fairadv.study.leaderboard_render import markdown as board_markdown

            click.echo(board_markdown(doc))
        return
    if dry_run:
        raise FairadvError(f"{study_file}: --dry-run is for leaderboard files ([leaderboard] and [targets])")
    shape = Shape.from_options(overrides, methods, seeds)
    if plan_seeds is not None or plan_sd is not None:
        from fairadv.study.plan import plan_seeds as plan

        if plan_seeds is None:
            raise FairadvError("--plan-sd needs --plan-seeds POINTS (the worst-class difference to detect)")
        click.echo(plan(study_file, plan_seeds, plan_sd, out=out, shape=shape))
        return
    from fairadv.study.runner import SlurmOptions, run_study

    doc = run_study(study_file, out=out, jobs=jobs, launcher=launcher, report_only=report_only,
                    slurm=SlurmOptions(partition=partition, gpus=gpus_per_job, time=time_limit, cpus=cpus_per_job,
                                       account=account, qos=qos, mem=mem, constraint=constraint, setup=setup),
                    console=err_console, shape=shape, allow_mixed=allow_mixed)
    from fairadv.study.render import markdown

    click.echo(markdown(doc))


if __name__ == "__main__":
    main()
