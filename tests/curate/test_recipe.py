"""Recipe files: validation with clear errors, canonical form, lookup, and the shipped recipes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from curate.errors import ConfigError, NotFoundError
from curate.recipe import (
    SHIPPED_RECIPES,
    available_recipes,
    check_recipe_owns_name,
    find_recipe,
    load_recipe,
    recipe_from_dict,
)
from curate.workspace import Workspace

MINIMAL = """
name = "tiny"
[[stages]]
name = "s1"
[[stages.components]]
name = "it"
pairs = ["t2i"]
weight = 1
"""


def write(tmp_path: Path, text: str, name: str = "r") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_minimal_recipe_gets_documented_defaults(tmp_path: Path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    assert recipe.name == "tiny" and recipe.seed == 0 and recipe.batching is None
    stage = recipe.stages[0]
    assert stage.target == "all" and stage.on_shortfall == "redistribute"
    component = stage.components[0]
    assert component.splits == ("train",)
    assert component.max_repeat == 1 and component.temperature == 1.0
    assert component.max_per_source is None


def test_shipped_recipes_load_and_v3_has_the_paper_composition():
    names = {p.stem for p in SHIPPED_RECIPES.glob("*.toml")}
    assert {"v1", "v2", "v3", "demo-image", "demo-video", "demo-mixed"} <= names
    for path in SHIPPED_RECIPES.glob("*.toml"):
        recipe = load_recipe(path)
        assert recipe.name == path.stem
    v3 = load_recipe(SHIPPED_RECIPES / "v3.toml")
    stage1, stage2 = v3.stages
    assert (stage1.name, stage2.name) == ("retrieval_adaptation", "instruction_tuning")
    pairs1 = {c.name: (c.pairs, c.weight) for c in stage1.components}
    assert pairs1 == {
        "text_text": (("t2t",), 21.6),
        "image_text": (("t2i", "i2t"), 39.2),
        "video_text": (("t2v", "v2t"), 39.2),
    }
    weights2 = {c.pairs: c.weight for c in stage2.components}
    assert weights2 == {
        ("i2i",): 1.3, ("t2i",): 25.5, ("i2t",): 27.6, ("t2it",): 1.4,
        ("it2t",): 14.8, ("it2i",): 13.8, ("vt2v",): 15.8,
    }  # fmt: skip
    assert math.isclose(sum(stage1.shares.values()), 1.0)
    # Components select by pair only, never by source name (scaled to whatever was ingested).
    assert all(not c.sources and not c.manifests for s in v3.stages for c in s.components)
    v1 = load_recipe(SHIPPED_RECIPES / "v1.toml")
    assert {p for c in v1.stages[0].components for p in c.pairs} == {"t2i", "i2t"}
    v2 = load_recipe(SHIPPED_RECIPES / "v2.toml")
    assert {p for c in v2.stages[0].components for p in c.pairs} == {"t2i", "i2t", "t2v", "v2t"}


def test_canonical_form_ignores_description_and_selector_order(tmp_path: Path):
    a = load_recipe(
        write(tmp_path, MINIMAL.replace('pairs = ["t2i"]', 'pairs = ["t2i", "i2t"]'), "a")
    )
    b = load_recipe(
        write(
            tmp_path,
            'description = "other words"\n'
            + MINIMAL.replace('pairs = ["t2i"]', 'pairs = ["i2t", "t2i"]'),
            "b",
        )
    )
    assert a.canonical_json() == b.canonical_json()
    # Weights are relative: 1:3 and 25:75 are the same recipe, 1:2 is not.
    two = MINIMAL + '[[stages.components]]\nname = "vt"\npairs = ["t2v"]\nweight = 3\n'
    c = load_recipe(write(tmp_path, two, "c"))
    d = load_recipe(
        write(
            tmp_path,
            two.replace("weight = 1", "weight = 25").replace("weight = 3", "weight = 75"),
            "d",
        )
    )
    e = load_recipe(write(tmp_path, two.replace("weight = 3", "weight = 2"), "e"))
    assert c.digest() == d.digest() != e.digest()
    assert a.digest() == b.digest()
    assert a.with_seed(1).digest() != a.digest()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("weight = 1", "weight = 0"), "`weight` must be > 0"),
        (("weight = 1", "weight = -2"), "`weight` must be > 0"),
        (("weight = 1", "weight = nan"), "`weight` must be a finite number"),
        (("weight = 1", "weight = inf"), "`weight` must be a finite number"),
        (("weight = 1", 'weight = "lots"'), "`weight` must be a finite number"),
        (("weight = 1", ""), "missing `weight`"),
        (('pairs = ["t2i"]', 'pairs = ["x2y"]'), "unknown pair code(s) ['x2y']"),
        (('pairs = ["t2i"]', 'pairs = ["t2i"]\ntasks = ["dancing"]'), "unknown task(s)"),
        (('pairs = ["t2i"]', 'pairs = ["t2i"]\nmax_repeat = 0'), "`max_repeat` must be >= 1"),
        (('pairs = ["t2i"]', 'pairs = ["t2i"]\ntemperature = 0'), "`temperature` must be > 0"),
        (('pairs = ["t2i"]', 'pairs = ["t2i"]\nwieght = 2'), "unknown key(s) ['wieght']"),
        (('pairs = ["t2i"]', 'pairs = "t2i"\nwhere = ["x;"]'), "';'"),
        (('pairs = ["t2i"]', 'pairs = ["t2i"]\nsplits = ["*", "train"]'), "`splits` is either"),
        (('name = "s1"', 'name = "s1"\ntarget = 0'), "`target` must be >= 1"),
        (('name = "s1"', 'name = "s1"\ntarget = "lots"'), "`target` must be an integer"),
        (('name = "s1"', 'name = "s1"\non_shortfall = "pray"'), "`on_shortfall` must be one of"),
        (('name = "tiny"', 'name = "tiny"\nbatching = "size"'), "`batching` must be one of"),
        (('name = "tiny"', 'name = "../evil"'), "invalid recipe name"),
        (('name = "tiny"', 'name = "tiny"\n[filters]\ntext_chars = [10, 1]'), "min > max"),
        (('name = "tiny"', 'name = "tiny"\n[filters]\nsignal_min = 0.3'), "must be a table"),
        (('name = "tiny"', 'name = "tiny"\n[filters]\nbogus = 1'), "unknown key(s) ['bogus']"),
    ],
)
def test_invalid_recipes_say_what_is_wrong(tmp_path: Path, edit: tuple[str, str], message: str):
    old, new = edit
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_recipe(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_structural_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(write(tmp_path, "name = "))
    with pytest.raises(ConfigError, match=r"at least one \[\[stages\]\]"):
        recipe_from_dict({"name": "x"})
    two = MINIMAL + MINIMAL.split("\n", 2)[2]
    with pytest.raises(ConfigError, match="two stages are named 's1'"):
        load_recipe(write(tmp_path, two))
    dup = MINIMAL + '[[stages.components]]\nname = "it"\nweight = 2\n'
    with pytest.raises(ConfigError, match=r"component names must differ; repeated: \['it'\]"):
        load_recipe(write(tmp_path, dup))


def test_recipe_lookup_prefers_the_workspace_then_shipped(tmp_path: Path):
    ws = Workspace.resolve(tmp_path / "ws")
    assert find_recipe(ws, "v3") == (SHIPPED_RECIPES / "v3.toml").resolve()
    ws.mixtures.mkdir(parents=True)
    own = ws.mixtures / "v3.toml"
    own.write_text(MINIMAL.replace('name = "tiny"', 'name = "v3"'))
    assert find_recipe(ws, "v3") == own.resolve()
    assert find_recipe(ws, str(own)) == own.resolve()
    assert {p.stem for p in available_recipes(ws)} >= {"v1", "v2", "v3"}
    assert [p for p in available_recipes(ws) if p.stem == "v3"] == [own]
    with pytest.raises(NotFoundError, match=r"no recipe named 'v9'.*known: .*demo-mixed"):
        find_recipe(ws, "v9")
    with pytest.raises(NotFoundError, match="does not exist"):
        find_recipe(ws, "nowhere/r.toml")
    with pytest.raises(ConfigError, match="invalid recipe name"):
        find_recipe(ws, "..")


def test_a_symlinked_recipe_file_answers_to_the_name_of_the_link(tmp_path: Path):
    ws = Workspace.resolve(tmp_path / "ws")
    ws.mixtures.mkdir(parents=True)
    (tmp_path / "team-recipes").mkdir()
    dated = write(tmp_path / "team-recipes", MINIMAL.replace('"tiny"', '"team"'), "team-2026-11")
    link = ws.mixtures / "team.toml"
    link.symlink_to(dated)
    # Found by name or by path, the file is the link: its stem, not the target's.
    assert find_recipe(ws, "team") == link
    assert find_recipe(ws, str(link)) == link
    recipe = load_recipe(find_recipe(ws, "team"))
    assert recipe.path == link and recipe.name == "team"
    check_recipe_owns_name(ws, recipe)
    # The file `--recipe team` finds may be given by its own path too.
    check_recipe_owns_name(ws, load_recipe(dated))
    # Without `name`, a recipe is named after the link it was found by.
    write(tmp_path / "team-recipes", MINIMAL.replace('name = "tiny"\n', ""), "crew-2026-11")
    (ws.mixtures / "crew.toml").symlink_to(tmp_path / "team-recipes" / "crew-2026-11.toml")
    assert load_recipe(find_recipe(ws, "crew")).name == "crew"
    # A copy of the file is another recipe file: it may not take the name, under a link either.
    copy = write(tmp_path, dated.read_text(), "team")
    with pytest.raises(ConfigError, match=r"takes the name 'team' of .*ws/mixtures/team\.toml"):
        check_recipe_owns_name(ws, load_recipe(copy))
    other = ws.mixtures / "other.toml"
    other.symlink_to(copy)
    with pytest.raises(ConfigError) as caught:
        check_recipe_owns_name(ws, load_recipe(other))
    message = str(caught.value)
    assert "is named 'team' but its file is other.toml" in message
    assert f"'team' is the name of {link}" in message and "\n" not in message


def test_the_documented_example_is_a_valid_recipe(tmp_path: Path):
    import curate.recipe

    doc = curate.recipe.__doc__
    block = doc.split("stage by stage:\n\n", 1)[1].split("\n\nValidation", 1)[0]
    example = "\n".join(line[4:] for line in block.splitlines())
    recipe = load_recipe(write(tmp_path, example))
    assert recipe.name == "demo-mixed" and recipe.filters.dedup == ("exact", "near_dup")
    component = recipe.stages[0].components[0]
    assert (component.max_per_source, component.temperature) == (100000, 1.0)
