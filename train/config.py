"""Training configs: frozen dataclasses loaded from TOML, overridable with dotted keys.

A config names a backbone, the media budget, the prompt template and one or more stages. Stage `i`
trains on the mixture stage named by its `data` field (see `train.data.stage_tables` for the rule
when a mixture has a different set of stages).

>>> cfg = load_train_config("tiny-cpu", {"seed": 2, "stages.0.max_steps": 5})
>>> cfg.seed, cfg.stages[0].max_steps
(2, 5)
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from curate.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

BackboneKind = Literal["qwen2-vl", "tiny-qwen2-vl", "open-clip"]
LossName = Literal["infonce", "symmetric_infonce", "mamcl"]
Batching = Literal["auto", "mixed", "homogeneous"]
Precision = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class BackboneConfig:
    """Which model embeds, and how it is loaded.

    `model` is a local folder or hub id for `qwen2-vl`, an open_clip model name for `open-clip`
    ("tiny" is a built-in 2-layer config), and is ignored for `tiny-qwen2-vl`.
    """

    kind: BackboneKind = "tiny-qwen2-vl"
    model: str = ""
    pretrained: str = ""  # open-clip: optional local weights file
    precision: Precision = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    freeze_vision: bool = True
    lora_targets: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    # tiny-qwen2-vl only: the size of the randomly initialised model.
    tiny_hidden: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 4
    tiny_kv_heads: int = 2
    tiny_vision_depth: int = 2
    tiny_vision_dim: int = 32
    tiny_vision_heads: int = 2
    tiny_vision_mlp_ratio: int = 2
    tiny_intermediate: int = 0  # 0: 2 * tiny_hidden
    tiny_vocab: int = 1024  # the model's vocabulary; the BPE tokenizer learns up to 2048 of it


@dataclass(frozen=True)
class MediaConfig:
    """Pixel and frame budgets. Videos: `fps` frames per second of the clip, clamped to
    [min_frames, max_frames] and rounded to an even count; each frame at most
    `max_frame_pixels` pixels."""

    min_pixels: int = 256 * 28 * 28
    max_pixels: int = 1280 * 28 * 28
    fps: float = 1.0
    min_frames: int = 4
    max_frames: int = 12
    max_frame_pixels: int = 240 * 320
    cache_mb: int = 2048  # decoded media kept in memory per run
    decode_threads: int = 2
    timeout_s: float = 60.0  # per ffmpeg call


@dataclass(frozen=True)
class TemplateConfig:
    """The UNITE prompt: system turn, user turn (media + text + summary), assistant turn."""

    system: str = "You are a helpful assistant."
    summary: str = "Summary above {what} in one word:"
    text_word: str = "sentence"
    image_word: str = "image"
    video_word: str = "video"
    joiner: str = " and "
    instruction_separator: str = " "


@dataclass(frozen=True)
class StageConfig:
    name: str
    data: str  # the mixture stage this stage trains on
    loss: LossName = "symmetric_infonce"
    lr: float = 1e-4
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    epochs: int = 1
    max_steps: int = 0  # 0: epochs decide
    batch_size: int = 8  # per process; the global batch is batch_size * world size
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 0.0  # 0: no clipping
    temperature: float = 0.03
    learnable_temperature: bool = False
    hard_negatives: bool = True  # use the row's first negative as an extra candidate
    instructions: bool = False  # put the row's instruction in front of the query text
    gradcache_chunk: int = 0  # >0: GradCache with chunks of this many inputs
    batching: Batching = "auto"  # auto: what the mixture asks for
    shuffle: bool = False  # False: the mixture's `position` order


@dataclass(frozen=True)
class TrainConfig:
    name: str
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    template: TemplateConfig = field(default_factory=TemplateConfig)
    stages: tuple[StageConfig, ...] = ()
    seed: int = 0
    max_length: int = 2048
    checkpoint_every: int = 50  # steps; 0: only at stage ends
    keep_checkpoints: int = 2
    log_every: int = 1
    device: str = "auto"  # auto: cuda when available, else cpu
    threads: int = 0  # torch CPU threads per process; 0: torch's default

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError(f"config {self.name!r} has no [[stages]]; add at least one stage")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"config {self.name!r}: stage names must be unique, found {names}")
        for s in self.stages:
            if s.batch_size < 1 or s.epochs < 0 or s.max_steps < 0:
                raise ConfigError(
                    f"stage {s.name!r}: batch_size must be >= 1 and epochs/max_steps >= 0, "
                    f"found batch_size={s.batch_size}, epochs={s.epochs}, max_steps={s.max_steps}"
                )
            if s.epochs == 0 and s.max_steps == 0:
                raise ConfigError(f"stage {s.name!r}: set epochs or max_steps above 0")
        m = self.media
        if not (1 <= m.min_frames <= m.max_frames):
            raise ConfigError(
                f"media: need 1 <= min_frames <= max_frames, found {m.min_frames}, {m.max_frames}"
            )
        if not (0 < m.min_pixels <= m.max_pixels):
            raise ConfigError(
                f"media: need 0 < min_pixels <= max_pixels, found {m.min_pixels}, {m.max_pixels}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) that `from_dict` and TOML round-trip."""
        return _plain(dataclasses.asdict(self))

    def config_hash(self) -> str:
        """Hash of the resolved config (16 hex digits); logging options do not change it."""
        data = self.to_dict()
        data.pop("log_every", None)
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_toml(self) -> str:
        return _to_toml(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "config") -> TrainConfig:
        return _build(cls, data, where)


def load_train_config(
    name_or_path: str | Path, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Load `train/configs/<name>.toml` (or a TOML path) and apply dotted-key overrides.

    Overrides address nested fields and stages by index: {"stages.1.loss": "infonce",
    "media.max_frames": 8, "seed": 2}. They apply in order, each checked against the config's
    fields as the earlier ones left it, so a bad key or value is blamed on the override
    (`--set KEY=VALUE`), not on the file.
    """
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = CONFIG_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
            raise ConfigError(
                f"no training config named {str(name_or_path)!r}; known: {known}, "
                "or give the path of a .toml file"
            )
    elif not path.is_file():
        raise ConfigError(f"training config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error
    data.setdefault("name", path.stem)
    # One at a time, in order: an override is checked against the config as the earlier ones
    # left it (`stages=[...]` with three tables, then `stages.2.loss=...`).
    for key, value in (overrides or {}).items():
        check_override(data, key, value)
        data = apply_overrides(data, {key: value})
    return TrainConfig.from_dict(data, where=str(path))


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of `data` with dotted keys set; list items are addressed by index."""
    out = copy.deepcopy(dict(data))
    for key, value in overrides.items():
        parts = key.split(".")
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(
                        f"override {key!r}: {part!r} is not an index below {len(node)}"
                    )
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError(f"override {key!r}: {'.'.join(parts[:i])!r} is not a table")
    return out


def check_override(data: Mapping[str, Any], key: str, value: Any) -> None:
    """Raise a ConfigError naming the override when `key` is no field of a TrainConfig built from
    `data` (stage indexes are checked against `data`'s stages) or `value` does not fit the field.

    >>> check_override({"stages": [{}]}, "stages.0.max_stepz", 1)
    Traceback (most recent call last):
    ...
    curate.errors.ConfigError: --set stages.0.max_stepz=1: stages[0] has no key 'max_stepz' (did you mean 'max_steps'?); valid keys: name, data, loss, ...
    """
    shown = f"--set {key}={_value_text(value)}"
    hint: Any = TrainConfig
    node: Any = data
    where = ""
    parts = key.split(".")
    for i, part in enumerate(parts):
        if dataclasses.is_dataclass(hint):
            names = [f.name for f in fields(hint)]
            if part not in names:
                close = difflib.get_close_matches(part, names, n=1)
                guess = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"{shown}: {where or 'the config'} has no key {part!r}{guess}; "
                    f"valid keys: {', '.join(names)}"
                )
            hint = get_type_hints(hint)[part]
            node = node.get(part) if isinstance(node, Mapping) else None
            where = f"{where}.{part}" if where else part
        elif get_origin(hint) is tuple:
            if not isinstance(node, list) or not node:
                raise ConfigError(
                    f"{shown}: {where} has no items to address by index; set the whole list, "
                    f"e.g. --set {'.'.join(parts[:i])}=[...]"
                )
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"{shown}: {where} has {len(node)} items; {part!r} is not an index from 0 "
                    f"to {len(node) - 1}"
                )
            hint = get_args(hint)[0]
            node = node[int(part)]
            where = f"{where}[{part}]"
        else:
            raise ConfigError(
                f"{shown}: {where} is a single value, not a table; set it as --set {where}=VALUE"
            )
    _convert(hint, value, f"{shown}: {where}")


def _value_text(value: Any) -> str:
    """An override's value as it would be typed after `--set KEY=`."""
    if isinstance(value, str):
        return value
    try:
        return _toml_value(value)
    except TypeError:
        return repr(value)


def parse_override(text: str, *, option: str = "--set") -> tuple[str, Any]:
    """'stages.0.lr=1e-3' -> ('stages.0.lr', 0.001); values are TOML, else plain strings."""
    if "=" not in text:
        raise ConfigError(
            f"{option} expects key=value, found {text!r} (e.g. {option} stages.0.lr=1e-3)"
        )
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


# --- building dataclasses from plain data, with messages that name the bad key -------------------


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table, found {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {sorted(known)}")
    kwargs = {}
    for f in fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{where}: {f.name}")
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from error


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where} must be one of {list(allowed)}, found {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, found {value!r}")
        inner = get_args(hint)[0]
        return tuple(_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, found {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where} must be an integer, found {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, found {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, found {value!r}")
        return value
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _to_toml(data: dict[str, Any]) -> str:
    """Write the config shape (scalars, tables, arrays of tables) as TOML."""
    lines: list[str] = []
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
    for key, value in data.items():
        if key not in tables and key not in arrays:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables.items():
        lines.append(f"\n[{key}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    for key, items in arrays.items():
        for item in items:
            lines.append(f"\n[[{key}]]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())
    return "\n".join(lines) + "\n"
