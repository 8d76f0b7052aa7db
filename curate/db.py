"""The one door to DuckDB: every query of the project runs on a connection opened here.

`connect()` opens an in-memory database that can read only the files and folders it is given:
external access is disabled, extensions cannot be installed or loaded, and the configuration is
locked so that no later statement can undo any of it (`SET`, `RESET`, `ATTACH`, `INSTALL`,
`LOAD`, `COPY ... TO` outside the given folders and `read_csv('/etc/passwd')` all fail).

DuckDB's allow-list does not distinguish reading from writing: a folder given in `read_paths` could
be written by a `COPY ... TO` naming it. The project never runs SQL written by a user (recipe
predicates are parsed and re-emitted by `curate.predicate`), so this is a second line of defence,
not the first; pass files rather than folders where you can.

DuckDB errors that are the user's fault (a file that is not Parquet, a predicate comparing a number
with text, too little memory) become `CurateError`s through `duckdb_errors()`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb

from curate.errors import ConfigError, CurateError, InputError

#: Settings applied before the configuration is locked. The progress bar is ours (rich), not DuckDB's.
_BASE_CONFIG: dict[str, str | bool] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def sql_string(value: str | Path) -> str:
    """A SQL string literal for a trusted value such as one of our own paths.

    Values that come from users are bound as parameters instead; this is for table-function
    arguments (file lists) that DuckDB does not accept as parameters everywhere.

    >>> sql_string("it's")
    "'it''s'"
    """
    text = str(value)
    if "\x00" in text:
        raise InputError(f"path {text!r} contains a NUL byte")
    return "'" + text.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """A quoted SQL identifier.

    >>> sql_identifier('clip"score')
    '"clip""score"'
    """
    return '"' + name.replace('"', '""') + '"'


_MEMORY_RE = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)


def connect(
    *,
    read_paths: Sequence[Path] = (),
    memory_limit: str | None = None,
    threads: int | None = None,
    temp_directory: Path | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that can read only `read_paths` (files or folders).

    `memory_limit` is a DuckDB size such as "4GB"; `threads` defaults to DuckDB's choice (all
    cores); `temp_directory` is where large sorts spill (DuckDB's own temporary files are allowed
    even with external access disabled).

    >>> con = connect()
    >>> con.sql("SELECT 1 + 1").fetchone()
    (2,)
    """
    if memory_limit is not None and not _MEMORY_RE.match(memory_limit):
        raise ConfigError(
            f"memory limit {memory_limit!r} is not a size; use a number with a unit, e.g. 4GB"
        )
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1, found {threads}")
    files: list[str] = []
    folders: list[str] = []
    for path in read_paths:
        resolved = Path(path).expanduser().resolve()
        if resolved.is_dir():
            folders.append(str(resolved).rstrip("/") + "/")
        else:
            files.append(str(resolved))
    con = duckdb.connect(":memory:", config=dict(_BASE_CONFIG))
    try:
        con.execute("SET enable_progress_bar = false")
        if memory_limit is not None:
            con.execute(f"SET memory_limit = {sql_string(memory_limit)}")
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        if temp_directory is not None:
            con.execute(f"SET temp_directory = {sql_string(Path(temp_directory).resolve())}")
        # The allow-lists must be set while external access is still on; order matters.
        if files:
            con.execute(f"SET allowed_paths = [{', '.join(sql_string(f) for f in files)}]")
        if folders:
            con.execute(f"SET allowed_directories = [{', '.join(sql_string(f) for f in folders)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


@contextlib.contextmanager
def duckdb_errors(what: str) -> Iterator[None]:
    """Re-raise DuckDB errors that are the user's fault as `CurateError`s naming `what`.

    Internal errors and anything unexpected keep their type and traceback: they are bugs.
    """
    try:
        yield
    except duckdb.PermissionException as error:
        raise InputError(
            f"{what}: DuckDB refused to touch a file outside its inputs ({_first_line(error)})"
        ) from error
    except duckdb.IOException as error:
        raise InputError(f"{what}: cannot read an input file ({_first_line(error)})") from error
    except duckdb.OutOfMemoryException as error:
        raise CurateError(
            f"{what}: DuckDB ran out of memory ({_first_line(error)}); raise --memory-limit "
            "or free memory"
        ) from error
    except duckdb.InterruptException:
        raise KeyboardInterrupt from None
    except (
        duckdb.BinderException,
        duckdb.ConversionException,
        duckdb.InvalidInputException,
        duckdb.ParserException,
        duckdb.CatalogException,
        duckdb.OutOfRangeException,
        duckdb.TypeMismatchException,
    ) as error:
        raise ConfigError(f"{what}: {_first_line(error)}") from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
