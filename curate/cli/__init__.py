"""The `curate` command: a thin Typer shell over the library.

Each command group lives in its own module of this package with a `register(app)` function. A
command parses options, calls one library function and prints; a `CurateError` becomes one line
on stderr and exit code 1. Heavy libraries (torch, transformers) are imported inside the commands
that need them, so `curate mix` never loads torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import typer

from curate import __version__
from curate.errors import CurateError

#: Modules of this package that add commands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "ingest",
    "mix",
    "score",
    "train",
    "evaluate",
    "report",
    "demo",
)

app = typer.Typer(
    name="curate",
    help=(
        "Curate data for universal multimodal embedding models: ingest corpora into typed "
        "manifests, mix them by recipe, train and evaluate an embedder per mixture, and report "
        "how composition moves retrieval."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"curate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Curate data for universal multimodal embedding models."""


def _register_all() -> None:
    for module in COMMAND_MODULES:
        qualified = f"curate.cli.{module}"
        # A command module not written yet is skipped; one that fails to import is a bug.
        if importlib.util.find_spec(qualified) is not None:
            importlib.import_module(qualified).register(app)


_register_all()


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 1."""
    try:
        # Without standalone mode a command's `typer.Exit(code)` comes back as the return
        # value instead of exiting, so it is passed on here.
        code = app(standalone_mode=False)
    except CurateError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as error:
        # The machine said no (a read-only workspace, a full disk, a missing permission): the
        # user can act on one line naming the file; a traceback would bury it.
        where = f": {error.filename}" if error.filename else ""
        typer.echo(
            f"error: {error.strerror or error}{where}; check that the workspace and the files "
            "named are writable and the disk has room",
            err=True,
        )
        sys.exit(1)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except typer.TyperException as error:
        # Typer vendors click, so its usage errors (unknown option, bad value) are not
        # `click.ClickException`; in standalone_mode=False they arrive here.
        format_message = getattr(error, "format_message", None)
        if format_message is None:
            raise
        message = format_message()
        if not message:  # no arguments: the help was printed, which is what was asked for
            sys.exit(0)
        typer.echo(f"error: {message}{_help_hint(error)}", err=True)
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)


def _help_hint(error: Exception) -> str:
    """` (see `curate CMD --help`)` for a usage error that knows its command, else ''."""
    context = getattr(error, "ctx", None)
    if context is None or not getattr(context, "command_path", ""):
        return ""
    return f" (see `{context.command_path} --help`)"


__all__ = ["app", "main"]
