"""The one DuckDB door: only the given files can be read, and nothing can undo that."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.db import connect, duckdb_errors, sql_identifier, sql_string
from curate.errors import ConfigError, CurateError, InputError


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    allowed_dir = tmp_path / "allowed"
    allowed_dir.mkdir()
    pq.write_table(pa.table({"a": [1, 2, 3]}), allowed_dir / "x.parquet")
    single = tmp_path / "single.parquet"
    pq.write_table(pa.table({"a": [10]}), single)
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [99]}), other)
    (tmp_path / "secret.csv").write_text("user,password\nroot,hunter2\n")
    return {"dir": allowed_dir, "single": single, "other": other, "secret": tmp_path / "secret.csv"}


def test_given_files_and_folders_are_readable(files: dict[str, Path]):
    con = connect(read_paths=[files["dir"], files["single"]])
    glob = sql_string(files["dir"] / "*.parquet")
    assert con.execute(f"SELECT sum(a) FROM read_parquet({glob})").fetchone() == (6,)
    assert con.execute(f"SELECT a FROM read_parquet({sql_string(files['single'])})").fetchall() == [
        (10,)
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_csv({secret})",
        "SELECT * FROM read_parquet({other})",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM sniff_csv('/etc/passwd')",
        "COPY (SELECT 42) TO {out}",
        "ATTACH {db} AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET threads = 1",
        "RESET lock_configuration",
        "SET allowed_directories = ['/']",
    ],
)
def test_everything_else_fails(files: dict[str, Path], tmp_path: Path, statement: str):
    con = connect(read_paths=[files["dir"], files["single"]], threads=2)
    sql = statement.format(
        secret=sql_string(files["secret"]),
        other=sql_string(files["other"]),
        out=sql_string(tmp_path / "leak.csv"),
        db=sql_string(tmp_path / "other.duckdb"),
    )
    with pytest.raises(duckdb.Error):
        con.execute(sql)
    assert not (tmp_path / "leak.csv").exists()
    assert not (tmp_path / "other.duckdb").exists()
    # The connection still works and its settings are unchanged.
    assert con.execute("SELECT current_setting('threads')").fetchone() == (2,)
    assert con.execute("SELECT current_setting('enable_external_access')").fetchone() == (False,)


def test_path_tricks_do_not_escape_an_allowed_folder(files: dict[str, Path]):
    con = connect(read_paths=[files["dir"]])
    escape = sql_string(f"{files['dir']}/../other.parquet")
    with pytest.raises(duckdb.PermissionException):
        con.execute(f"SELECT * FROM read_parquet({escape})")


def test_settings_are_applied_before_the_lock():
    con = connect(memory_limit="512MB", threads=1)
    limit, threads = con.execute(
        "SELECT current_setting('memory_limit'), current_setting('threads')"
    ).fetchone()
    assert threads == 1
    assert limit.startswith("488") or "MiB" in limit  # DuckDB prints 512MB as 488.2 MiB


def test_bad_settings_are_user_errors():
    with pytest.raises(ConfigError, match="memory limit"):
        connect(memory_limit="lots")
    with pytest.raises(ConfigError, match="threads"):
        connect(threads=0)


def test_duckdb_errors_become_curate_errors_with_context(files: dict[str, Path], tmp_path: Path):
    con = connect(read_paths=[files["dir"], files["secret"]])
    with pytest.raises(InputError, match="reading x: DuckDB refused"), duckdb_errors("reading x"):
        con.execute("SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(ConfigError, match="comparing"), duckdb_errors("comparing"):
        con.execute("SELECT 'abc'::INTEGER")
    with pytest.raises(InputError, match="cannot read an input file"), duckdb_errors("reading"):
        con.execute(f"SELECT * FROM read_parquet({sql_string(files['dir'] / 'gone.parquet')})")
    with pytest.raises(CurateError, match="magic bytes"), duckdb_errors("reading"):
        con.execute(f"SELECT * FROM read_parquet({sql_string(files['secret'])})")
    # Bugs keep their own type.
    with pytest.raises(ZeroDivisionError), duckdb_errors("x"):
        raise ZeroDivisionError
    assert issubclass(InputError, CurateError)


def test_quoting_helpers():
    assert sql_string("a'b") == "'a''b'"
    assert sql_identifier('we"ird') == '"we""ird"'
    with pytest.raises(InputError):
        sql_string("nul\x00byte")
