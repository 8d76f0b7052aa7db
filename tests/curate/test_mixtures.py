"""Built mixtures: references, listing, composition and diffs (on a hand-built pair)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curate.cli import app
from curate.errors import ConfigError, NotFoundError
from curate.mix import build_mixture
from curate.mixtures import (
    MixtureWriteError,
    composition,
    diff_mixtures,
    list_mixtures,
    load_mixture,
    parse_ref,
)
from curate.workspace import Workspace
from tests.curate.mix_fixtures import rows, write_manifest, write_recipe

ONE_STAGE = """
name = "{name}"
seed = {seed}
[[stages]]
name = "s"
target = "all"
[[stages.components]]
name = "picked"
sources = {sources}
weight = 1
"""


@pytest.fixture()
def ws(workspace: Workspace) -> Workspace:
    write_manifest(
        workspace, "text", rows("a", 10, "t2t") + rows("b", 20, "t2t") + rows("c", 30, "t2t")
    )
    write_manifest(workspace, "images", rows("b", 5, "t2i"))
    return workspace


def make(ws: Workspace, name: str, sources: list[str], seed: int = 0):
    write_recipe(
        ws.mixtures, name, ONE_STAGE.format(name=name, seed=seed, sources=json.dumps(sources))
    )
    return build_mixture(ws, name)


def test_refs_resolve_to_the_latest_or_a_unique_version_prefix(ws: Workspace):
    first = make(ws, "m", ["a"])
    second = make(ws, "m", ["a"], seed=1)
    assert load_mixture(ws, "m").version == second.version  # the latest build
    assert load_mixture(ws, f"m@{first.version[:6]}").version == first.version
    assert load_mixture(ws, f"m@{first.version}").path == first.path
    # Two versions sharing a prefix make that prefix ambiguous.
    twin = ws.mixtures / "m" / (first.version[:4] + "f" * 12)
    shutil.copytree(first.path, twin)
    meta = json.loads((twin / "mixture.json").read_text())
    meta["version"] = twin.name
    (twin / "mixture.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="ambiguous"):
        load_mixture(ws, f"m@{first.version[:4]}")
    with pytest.raises(NotFoundError, match="no version starting with 'abc'"):
        load_mixture(ws, "m@abc")
    with pytest.raises(NotFoundError, match=r"build it with `curate mix --recipe zz`"):
        load_mixture(ws, "zz")
    with pytest.raises(ConfigError, match="not a hex version"):
        parse_ref("m@xyz")
    with pytest.raises(ConfigError, match="empty version"):
        parse_ref("m@")
    with pytest.raises(ConfigError, match="invalid mixture name"):
        parse_ref("../m")


def test_rebuilding_an_earlier_recipe_state_makes_its_version_current_again(ws: Workspace):
    first = make(ws, "m", ["a"])
    edited = make(ws, "m", ["a", "b"])  # the recipe file edited: a new version, now current
    assert load_mixture(ws, "m").version == edited.version
    back = make(ws, "m", ["a"])  # the edit undone: the first version, built before
    assert not back.built and back.version == first.version
    assert load_mixture(ws, "m").version == first.version
    assert (ws.mixtures / "m" / "CURRENT").read_text() == first.version + "\n"
    listed = CliRunner().invoke(app, ["mixtures", "list", "--workspace", str(ws.root), "--json"])
    assert {m["version"]: m["current"] for m in json.loads(listed.output)} == {
        first.version: True, edited.version: False,
    }  # fmt: skip
    shown = CliRunner().invoke(app, ["mix", "--recipe", "m", "--workspace", str(ws.root)])
    assert "already built" in shown.output
    # A dry run changes nothing; a CURRENT naming a version that is gone falls back to the newest.
    make_dry = build_mixture(ws, "m", seed=9, dry_run=True)
    assert not make_dry.built and load_mixture(ws, "m").version == first.version
    shutil.rmtree(first.path)
    assert load_mixture(ws, "m").version == edited.version
    (ws.mixtures / "m" / "CURRENT").write_text("not a version\n")
    assert load_mixture(ws, "m").version == edited.version


def deny_current_writes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Make renaming onto any CURRENT fail as on a read-only workspace (chmod does not stop
    root); returns the CURRENT paths a write was tried on."""
    real_replace = os.replace
    tried: list[Path] = []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == "CURRENT":
            tried.append(Path(dst))
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return tried


def pointer_temps(ws: Workspace, name: str) -> list[str]:
    return sorted(p.name for p in (ws.mixtures / name).glob("*CURRENT*"))


def test_rebuilding_the_current_version_writes_nothing(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
):
    first = make(ws, "m", ["a"])
    tried = deny_current_writes(monkeypatch)
    again = build_mixture(ws, "m")
    assert not again.built and again.version == first.version
    assert again.warnings == [] and tried == []  # CURRENT already said so: not even tried
    assert load_mixture(ws, "m").version == first.version


def test_current_that_cannot_be_written_warns_on_a_rebuild_and_fails_a_build(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
):
    first = make(ws, "m", ["a"])
    edited = make(ws, "m", ["a", "b"])
    tried = deny_current_writes(monkeypatch)
    # A rebuild of an existing version has its answer: it succeeds, saying CURRENT is unchanged.
    back = make(ws, "m", ["a"])
    assert not back.built and back.version == first.version and tried
    [warning] = back.warnings
    assert f"could not make m@{first.version} current" in warning and "\n" not in warning
    assert "Permission denied" in warning and "writable" in warning
    assert warning.endswith(f"`m` still resolves to m@{edited.version}")
    assert back.plan.notes[-1] == warning  # what `curate mix` prints
    assert load_mixture(ws, "m").version == edited.version
    shown = CliRunner().invoke(app, ["mix", "--recipe", "m", "--workspace", str(ws.root)])
    assert shown.exit_code == 0, shown.output
    assert "note: could not make m@" in shown.output and "already built" in shown.output
    # A real build wrote its version, so failing to make it current is a one-line error.
    with pytest.raises(MixtureWriteError) as caught:
        make(ws, "m", ["c"])
    message = str(caught.value)
    assert message.startswith("wrote m@") and "could not make m@" in message
    assert "then rerun `curate mix --recipe m`" in message and "\n" not in message
    assert load_mixture(ws, "m").version == edited.version
    assert pointer_temps(ws, "m") == ["CURRENT"]  # no `.CURRENT.<pid>` left behind
    # Writable again, the rerun the message asks for makes the new version current.
    monkeypatch.undo()
    rerun = build_mixture(ws, "m")
    assert not rerun.built and rerun.warnings == []
    assert load_mixture(ws, "m").version == rerun.version not in (first.version, edited.version)


def test_a_directory_named_current(ws: Workspace):
    first = make(ws, "m", ["a"])
    current = ws.mixtures / "m" / "CURRENT"
    current.unlink()
    current.mkdir()
    assert load_mixture(ws, "m").version == first.version  # not a valid CURRENT: the newest
    again = make(ws, "m", ["a"])
    [warning] = again.warnings
    assert not again.built and f"remove the directory {current}" in warning
    assert pointer_temps(ws, "m") == ["CURRENT"]
    with pytest.raises(MixtureWriteError, match=r"^wrote m@.*remove the directory .*CURRENT"):
        make(ws, "m", ["b"])
    assert pointer_temps(ws, "m") == ["CURRENT"]
    current.rmdir()
    assert build_mixture(ws, "m").version == load_mixture(ws, "m").version != first.version


def test_list_and_composition(ws: Workspace):
    make(ws, "ab", ["a", "b"])
    make(ws, "bc", ["b", "c"])
    found = list_mixtures(ws)
    assert [(m.name, m.rows) for m in found] == [("ab", 35), ("bc", 55)]
    mixture = load_mixture(ws, "ab")
    table = pq.read_table(mixture.stages["s"], columns=["pair", "source"])
    pairs = Counter(table.column("pair").to_pylist())
    by_pair = {(r.stage, r.key): (r.rows, r.share) for r in composition(mixture)}
    assert by_pair == {
        ("s", "t2t"): (pairs["t2t"], pairs["t2t"] / 35),
        ("s", "t2i"): (5, 5 / 35),
        ("all", "t2t"): (30, 30 / 35),
        ("all", "t2i"): (5, 5 / 35),
    }
    by_source = {(r.stage, r.key): r.rows for r in composition(mixture, by="source")}
    assert by_source == {("s", "b"): 25, ("s", "a"): 10, ("all", "b"): 25, ("all", "a"): 10}
    with pytest.raises(ConfigError):
        composition(mixture, by="colour")


def test_diff_on_a_hand_built_pair(ws: Workspace):
    make(ws, "ab", ["a", "b"])  # a: 10 rows, b: 20 t2t + 5 t2i
    make(ws, "bc", ["b", "c"])  # b: 25 rows, c: 30
    diff = diff_mixtures(ws, "ab", "bc")
    rows_by_stage = {r.stage: (r.rows_a, r.rows_b, r.added, r.removed, r.kept) for r in diff.rows}
    assert rows_by_stage == {"s": (35, 55, 30, 10, 25), "all": (35, 55, 30, 10, 25)}
    sources = {(s.stage, s.key): (s.share_a, s.share_b) for s in diff.shares if s.by == "source"}
    assert sources[("all", "a")] == pytest.approx((10 / 35, 0.0))
    assert sources[("all", "b")] == pytest.approx((25 / 35, 25 / 55))
    assert sources[("all", "c")] == pytest.approx((0.0, 30 / 55))
    pairs = {(s.stage, s.key): s.delta_pp for s in diff.shares if s.by == "pair"}
    assert pairs[("s", "t2i")] == pytest.approx(100 * (5 / 55 - 5 / 35))
    # A mixture compared with itself changes nothing.
    same = diff_mixtures(ws, "ab", "ab")
    assert all(r.added == r.removed == 0 and r.kept == r.rows_a for r in same.rows)
    assert json.loads(json.dumps(same.to_dict()))["rows"][0]["kept"] == 35


def test_commands_print_tables_and_json(ws: Workspace):
    make(ws, "ab", ["a", "b"])
    make(ws, "bc", ["b", "c"])
    runner = CliRunner()
    base = ["--workspace", str(ws.root)]
    listed = runner.invoke(app, ["mixtures", "list", *base, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [m["name"] for m in json.loads(listed.output)] == ["ab", "bc"]
    shown = runner.invoke(app, ["mixtures", "show", "ab", *base])
    assert shown.exit_code == 0 and "t2t" in shown.output and "30 (85.7%)" in shown.output
    diffed = runner.invoke(app, ["mixtures", "diff", "ab", "bc", *base, "--json"])
    assert diffed.exit_code == 0
    assert json.loads(diffed.output)["rows"][-1] == {
        "stage": "all", "rows_a": 35, "rows_b": 55, "added": 30, "removed": 10, "kept": 25,
    }  # fmt: skip
    dry = runner.invoke(app, ["mix", "--recipe", "ab", *base, "--dry-run", "--seed", "5"])
    assert dry.exit_code == 0 and "picked" in dry.output
    assert "dry run: would write ab@" in dry.output
    again = runner.invoke(app, ["mix", "--recipe", "ab", *base, "--dry-run"])
    assert "is already built at" in again.output
    assert len(list_mixtures(ws)) == 2  # the dry runs wrote nothing


@pytest.mark.parametrize(
    "command",
    [["mix"], ["mixtures", "list"], ["mixtures", "show"], ["mixtures", "diff"], ["export"]],
)
def test_every_command_has_help_with_an_example(command: list[str]):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.output and "curate " in result.output
