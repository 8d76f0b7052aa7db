"""Training configs: shipped TOML files, overrides, validation, hashing, round trip."""

from __future__ import annotations

import tomllib

import pytest

from curate.errors import ConfigError
from train.config import TrainConfig, load_train_config, parse_override


@pytest.mark.parametrize("name", ["unite-2b", "unite-7b", "tiny-cpu"])
def test_shipped_configs_load_and_round_trip_through_toml(name):
    config = load_train_config(name)
    assert config.name == name
    assert [s.name for s in config.stages] == ["retrieval_adaptation", "instruction_tuning"]
    again = TrainConfig.from_dict(tomllib.loads(config.to_toml()))
    assert again == config
    assert again.config_hash() == config.config_hash()


def test_unite_configs_carry_the_published_settings():
    config = load_train_config("unite-2b")
    s1, s2 = config.stages
    assert (s1.loss, s1.lr, s1.lora_r, s1.lora_alpha) == ("symmetric_infonce", 1e-4, 8, 16)
    assert (s2.loss, s2.lr, s2.lora_r, s2.lora_alpha) == ("mamcl", 2e-5, 8, 64)
    assert s1.warmup_ratio == s2.warmup_ratio == 0.03
    assert s1.weight_decay == s2.weight_decay == 0.0
    assert s1.temperature == 0.03 and not s1.learnable_temperature
    assert not s1.instructions and s2.instructions
    assert config.backbone.gradient_checkpointing and config.backbone.kind == "qwen2-vl"
    m = config.media
    assert (m.min_pixels, m.max_pixels) == (256 * 28 * 28, 1280 * 28 * 28)
    assert (m.fps, m.min_frames, m.max_frames, m.max_frame_pixels) == (1.0, 4, 12, 240 * 320)
    assert "7B" in load_train_config("unite-7b").backbone.model


def test_dotted_overrides_reach_nested_fields_and_stages():
    base = load_train_config("tiny-cpu")
    config = load_train_config(
        "tiny-cpu",
        {"stages.1.loss": "infonce", "seed": 2, "stages.0.max_steps": 5, "media.max_frames": 6},
    )
    assert config.stages[1].loss == "infonce"
    assert config.stages[0].max_steps == 5
    assert (config.seed, config.media.max_frames) == (2, 6)
    assert config.config_hash() != base.config_hash()
    # logging cadence does not change what is trained
    assert load_train_config("tiny-cpu", {"log_every": 7}).config_hash() == base.config_hash()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stages.0.loss": "triplet"}, "must be one of"),
        ({"stages.5.lr": 1.0}, "is not an index from 0 to 1"),
        ({"stages.0.lr": "fast"}, "must be a number"),
        ({"stages.0.bogus": 1}, "stages[0] has no key 'bogus'"),
        ({"media.min_frames": 9, "media.max_frames": 4}, "min_frames <= max_frames"),
        ({"stages.0.epochs": 0}, "set epochs or max_steps"),
    ],
)
def test_bad_overrides_say_what_is_wrong(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_train_config("tiny-cpu", overrides)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"stages.0.max_stepz": 1},
            "--set stages.0.max_stepz=1: stages[0] has no key 'max_stepz' "
            "(did you mean 'max_steps'?); valid keys: name, data, loss, lr,",
        ),
        ({"seeed": 2}, "--set seeed=2: the config has no key 'seeed' (did you mean 'seed'?)"),
        ({"media.fpss": 2.0}, "--set media.fpss=2.0: media has no key 'fpss'"),
        ({"stages.2.lr": 1e-3}, "--set stages.2.lr=0.001: stages has 2 items; '2' is not an index"),
        ({"stages.0.lr": "fast"}, "--set stages.0.lr=fast: stages[0].lr must be a number"),
        ({"seed.x": 1}, "--set seed.x=1: seed is a single value, not a table"),
        (
            {"backbone.lora_targets.0": "q_proj"},
            "--set backbone.lora_targets.0=q_proj: backbone.lora_targets has no items",
        ),
    ],
)
def test_a_bad_override_is_blamed_on_the_override_not_on_the_config_file(overrides, message):
    """A typo in --set used to read `<path>/tiny-cpu.toml: stages[0]: unknown keys [...]`."""
    with pytest.raises(ConfigError) as info:
        load_train_config("tiny-cpu", overrides)
    text = str(info.value)
    assert text.startswith(message), text
    assert "tiny-cpu.toml" not in text and "\n" not in text


def test_overrides_apply_in_order_each_checked_against_the_earlier_ones():
    """`stages.2.loss` after a three-stage `stages` used to fail: "stages has 2 items"."""
    from train.config import CONFIG_DIR

    shipped = tomllib.loads((CONFIG_DIR / "tiny-cpu.toml").read_text())["stages"]
    three = [*shipped, {**shipped[1], "name": "polish", "lr": 1e-4}]
    config = load_train_config("tiny-cpu", {"stages": three, "stages.2.loss": "infonce"})
    assert [s.name for s in config.stages] == [
        "retrieval_adaptation", "instruction_tuning", "polish",
    ]  # fmt: skip
    assert [s.loss for s in config.stages] == ["symmetric_infonce", "mamcl", "infonce"]
    assert config.stages[2].lr == 1e-4
    # Later overrides still see the earlier ones, for typos too, and are blamed one by one.
    with pytest.raises(ConfigError) as info:
        load_train_config("tiny-cpu", {"stages": three, "stages.2.lossy": "infonce"})
    assert str(info.value).startswith(
        "--set stages.2.lossy=infonce: stages[2] has no key 'lossy' (did you mean 'loss'?)"
    )
    # In the other order the index comes first, when the file's config has two stages.
    with pytest.raises(ConfigError) as info:
        load_train_config("tiny-cpu", {"stages.2.loss": "infonce", "stages": three})
    assert str(info.value).startswith(
        "--set stages.2.loss=infonce: stages has 2 items; '2' is not an index from 0 to 1"
    )
    assert "\n" not in str(info.value)


def test_unknown_keys_in_the_file_itself_still_name_the_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[[stages]]\nname = "s"\ndata = "d"\nmax_stepz = 1\n')
    with pytest.raises(ConfigError, match=r"mine\.toml: stages\[0\]: unknown keys \['max_stepz'\]"):
        load_train_config(path)


def test_unknown_config_name_lists_known_ones():
    with pytest.raises(ConfigError, match="known: tiny-cpu, unite-2b, unite-7b"):
        load_train_config("unite-13b")


def test_parse_override_reads_toml_values_and_falls_back_to_strings():
    assert parse_override("stages.0.lr=1e-3") == ("stages.0.lr", 0.001)
    assert parse_override("backbone.gradient_checkpointing=true") == (
        "backbone.gradient_checkpointing",
        True,
    )
    assert parse_override("backbone.model=Qwen/Qwen2-VL-2B-Instruct") == (
        "backbone.model",
        "Qwen/Qwen2-VL-2B-Instruct",
    )
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("seed")
    with pytest.raises(ConfigError, match="--slurm expects key=value"):
        parse_override("partition", option="--slurm")
