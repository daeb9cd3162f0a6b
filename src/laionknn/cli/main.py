"""Entry point: a click group whose subcommands are imported only when used.

Errors of the package's own types become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys

import click

from laionknn import __version__
from laionknn.errors import LaionKnnError, one_line

# name -> (module, attribute); a module is imported only when its command runs or help lists it
COMMANDS: dict[str, tuple[str, str]] = {
    "datasets": ("laionknn.cli.datasets", "datasets"),
    "synth": ("laionknn.cli.synth", "synth"),
    "stats": ("laionknn.cli.synth", "stats"),
    "prepare": ("laionknn.cli.prepare", "prepare"),
    "gold": ("laionknn.cli.gold", "gold"),
    "project": ("laionknn.cli.projections", "project"),
    "baselines": ("laionknn.cli.projections", "baselines"),
    "search": ("laionknn.cli.search", "search"),
    "results": ("laionknn.cli.evaluation", "results"),
    "eval": ("laionknn.cli.evaluation", "eval_cmd"),
    "report": ("laionknn.cli.evaluation", "report"),
    "run": ("laionknn.cli.run", "run"),
    "export": ("laionknn.cli.export", "export"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if importlib.util.find_spec(COMMANDS[name][0]) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        if importlib.util.find_spec(module) is None:
            return None
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="laionknn")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or chatter (for scripts).")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.option("--catalog", "catalogs", multiple=True, type=click.Path(dir_okay=False),
              help="Extra catalog TSV (shared catalog columns); also $LAIONKNN_CATALOG.")
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: int, catalogs: tuple[str, ...]) -> None:
    """k-NN search on the LAION2B CLIP embeddings of the SISAP indexing challenges."""
    from laionknn.progress import set_quiet

    set_quiet(quiet)
    configure_logging(verbose, quiet)
    ctx.ensure_object(dict)
    ctx.obj["catalogs"] = list(catalogs)
    ctx.obj["quiet"] = quiet


def click_message(exc: click.ClickException) -> str:
    """click's usage error (four lines: usage, hint, blank, error) as one line with the help hint."""
    message = one_line(exc.format_message())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        message += f" (see `{ctx.command_path} --help`)"
    return message


def configure_logging(verbose: int, quiet: bool) -> None:
    """``-v`` / ``-vv`` raise laionknn's own loggers to INFO / DEBUG; other libraries' loggers (faiss's
    loader, numba, dask) stay at the root's WARNING unless ``-vvv``. ``-q`` keeps warnings only.

    Only the ``laionknn`` logger's level moves: its records still propagate to the root's handler
    (a propagated record is not checked against the root's level), so the console shows laionknn's
    INFO lines without the faiss loader's."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if verbose >= 3 and not quiet:
        logging.getLogger().setLevel(logging.DEBUG)
    pkg_level = logging.NOTSET if quiet or verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.getLogger("laionknn").setLevel(pkg_level)


#: the group's own options, accepted after the subcommand too (``laionknn search ... --quiet``)
GLOBAL_FLAGS = re.compile(r"^(-q|--quiet|-v+|--verbose)$")
GLOBAL_VALUED = ("--catalog",)


def hoist_globals(args: list[str]) -> list[str]:
    """``args`` with the group's options that follow the subcommand moved before it, so that
    ``laionknn search --catalog my.tsv -q ...`` means ``laionknn --catalog my.tsv -q search ...``."""
    head: list[str] = []
    i = 0
    while i < len(args):  # the group's own options, up to the subcommand's name
        arg = args[i]
        if not arg.startswith("-") or arg == "--":
            break
        head.append(arg)
        if arg in GLOBAL_VALUED and i + 1 < len(args):
            head.append(args[i + 1])
            i += 1
        i += 1
    if i >= len(args) or args[i] == "--":
        return args
    moved: list[str] = []
    rest: list[str] = [args[i]]
    tail = args[i + 1:]
    j = 0
    while j < len(tail):
        arg = tail[j]
        if arg == "--":
            rest += tail[j:]
            break
        if GLOBAL_FLAGS.match(arg):
            moved.append(arg)
        elif arg in GLOBAL_VALUED and j + 1 < len(tail):
            moved += [arg, tail[j + 1]]
            j += 1
        elif arg.partition("=")[0] in GLOBAL_VALUED:
            moved.append(arg)
        else:
            rest.append(arg)
        j += 1
    return head + moved + rest


def main(argv: list[str] | None = None) -> None:
    argv = hoist_globals(list(sys.argv[1:] if argv is None else argv))
    try:
        cli.main(args=argv, prog_name="laionknn", standalone_mode=False)
    except LaionKnnError as exc:
        click.echo(f"error: {one_line(exc)}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {click_message(exc)}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as exc:
        # file-system problems users cause (permissions, disk full, missing folders)
        from laionknn.fsutil import explain_os_error

        click.echo(f"error: {explain_os_error(exc)}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
