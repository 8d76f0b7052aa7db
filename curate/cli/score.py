"""Commands `score` (signal sidecars: text, phash, clip, near_dup) and `decontaminate`."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from curate.cli.common import (
    Console,
    JsonOption,
    Table,
    WorkspaceOption,
    print_json,
    workspace_from,
)
from curate.errors import ConfigError

SCORE_EPILOG = """
Examples:

  curate score coco --signals text,phash,near_dup

  curate score coco --signals clip,phash,text,near_dup --clip-model ViT-B-32 --clip-pretrained ~/ckpt/vit-b-32-openai.pt

  curate score msrvtt --signals clip --clip-model ViT-B-32 --clip-pretrained openai --frame-rate 0.5 --max-frames 8 --json

Sidecars go to manifests/NAME/signals/<signal>.parquet (keyed by id); a
rerun computes only missing rows, and a killed run resumes from its last
finished chunk.
"""

DECONTAMINATE_EPILOG = """
Examples:

  curate decontaminate --train coco-train --eval coco-test

  curate decontaminate --train webvid --eval msrvtt-1k --eval didemo-test --phash-bits 4 --json

Writes manifests/TRAIN/signals/contamination.parquet: contaminated,
contamination_reason (media_hash | phash | text), contamination_match (the
evaluation row's id).
"""


def _off_or(value: str | None, cast: type, option: str) -> Any:
    """Parse "off" as None, anything else with `cast`; None stays "not given" (...)."""
    if value is None:
        return ...
    if value.strip().lower() in {"off", "none", "no"}:
        return None
    try:
        return cast(value)
    except ValueError:
        raise ConfigError(f"{option} expects a number or 'off', found {value!r}") from None


def _pretrained_in_toml(path: Path | None) -> bool:
    if path is None or not path.exists():
        return False
    data = tomllib.loads(path.read_text())
    return "pretrained" in data.get("score", {}).get("clip", {})


def score_command(
    name: str = typer.Argument(..., help="Manifest name."),
    signals: str | None = typer.Option(
        None,
        "--signals",
        "-s",
        help="Comma-separated signals: text, phash, clip, near_dup. Default: text,phash.",
    ),
    clip_model: str | None = typer.Option(
        None, "--clip-model", help="open_clip model name (default ViT-B-32)."
    ),
    clip_pretrained: str | None = typer.Option(
        None,
        "--clip-pretrained",
        help="Checkpoint file or pretrained tag; 'none' for random weights (tests only).",
    ),
    clip_config: Path | None = typer.Option(
        None, "--clip-config", help="Extra open_clip model config JSON to register."
    ),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    precision: str | None = typer.Option(None, "--precision", help="auto, fp32 or bf16."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Images or frames per CLIP forward pass (default 64)."
    ),
    frame_rate: float | None = typer.Option(
        None, "--frame-rate", help="Video frames sampled per second of clip (default 1.0)."
    ),
    max_frames: int | None = typer.Option(
        None, "--max-frames", min=1, help="At most this many frames per video (default 8)."
    ),
    near_dup_bits: str | None = typer.Option(
        None, "--near-dup-bits", help="pHash distance (bits) for near-duplicates, or 'off' (6)."
    ),
    near_dup_cosine: str | None = typer.Option(
        None,
        "--near-dup-cosine",
        help="CLIP embedding cosine for near-duplicates, or 'off' (default 0.95).",
    ),
    near_dup_scope: str | None = typer.Option(
        None,
        "--near-dup-scope",
        help="media: near-duplicate media whatever the text (default); pair: same text too.",
    ),
    chunk_rows: int | None = typer.Option(
        None, "--chunk-rows", min=1, help="Rows per resumable chunk (default 1024)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=0, help="Threads loading media (0: auto)."
    ),
    config_file: Path | None = typer.Option(
        None, "--config", help="TOML file with a \\[score] table; options given here override it."
    ),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Compute quality signals of a manifest as sidecar tables that recipes can filter on."""
    from curate.signals.clip import ClipOptions
    from curate.signals.frames import FrameSampling
    from curate.signals.score import NearDupOptions, ScoreConfig, parse_signals, score_manifest

    config = ScoreConfig.from_toml(config_file) if config_file else ScoreConfig()
    clip_over: dict[str, Any] = {
        "model": clip_model,
        "config_file": str(clip_config) if clip_config else None,
        "device": device,
        "precision": precision,
        "batch_size": batch_size,
    }
    clip_over = {k: v for k, v in clip_over.items() if v is not None}
    if clip_pretrained is not None:
        clip_over["pretrained"] = None if clip_pretrained.lower() == "none" else clip_pretrained
    frame_over = {"rate": frame_rate, "max_frames": max_frames}
    dup_over = {
        "phash_bits": _off_or(near_dup_bits, int, "--near-dup-bits"),
        "cosine": _off_or(near_dup_cosine, float, "--near-dup-cosine"),
        "scope": near_dup_scope if near_dup_scope is not None else ...,
    }
    config = replace(
        config,
        signals=parse_signals(signals) if signals else config.signals,
        clip=replace(config.clip, **clip_over) if clip_over else config.clip,
        frames=replace(config.frames, **{k: v for k, v in frame_over.items() if v is not None}),
        near_dup=NearDupOptions(
            **{**vars(config.near_dup), **{k: v for k, v in dup_over.items() if v is not ...}}
        ),
        chunk_rows=chunk_rows or config.chunk_rows,
        workers=config.workers if workers is None else workers,
    )
    assert isinstance(config.frames, FrameSampling) and isinstance(config.clip, ClipOptions)
    if (
        "clip" in config.signals
        and clip_pretrained is None
        and not _pretrained_in_toml(config_file)
    ):
        raise ConfigError(
            "the clip signal needs weights: pass --clip-pretrained PATH (a local checkpoint) or "
            "a pretrained tag such as 'openai' (needs the hub or its cache); 'none' gives random "
            "weights, which only tests should use"
        )
    result = score_manifest(
        workspace_from(workspace), name, config, progress=None if not json_output else False
    )
    if json_output:
        print_json(result.to_dict())
        return
    table = Table(title=f"signals of {name}")
    for column in ("signal", "rows", "computed", "reused", "failed", "summary"):
        table.add_column(column, justify="right" if column not in ("signal", "summary") else "left")
    for outcome in result.outcomes:
        summary = ", ".join(f"{k} {v}" for k, v in outcome.summary.items())
        table.add_row(
            outcome.signal,
            f"{outcome.rows:,}",
            f"{outcome.computed:,}",
            f"{outcome.reused:,}",
            f"{outcome.failed:,}",
            summary,
        )
    console = Console()
    console.print(table)
    if result.outcomes:
        # One pass computes every signal (media decoded once), so the time is the pass's.
        seconds = max(outcome.seconds for outcome in result.outcomes)
        console.print(f"  one pass over the rows for all signals: {seconds:.1f} s")
    for outcome in result.outcomes:
        for error in outcome.errors:
            console.print(f"  {outcome.signal} failed: {error}", markup=False, highlight=False)


def decontaminate_command(
    train: str = typer.Option(..., "--train", help="Training manifest to flag."),
    evals: list[str] = typer.Option(
        ..., "--eval", help="Evaluation manifest to check against; repeatable."
    ),
    phash_bits: str = typer.Option(
        "6", "--phash-bits", help="pHash distance (bits) that counts as a copy, or 'off'."
    ),
    min_text_words: str = typer.Option(
        "4", "--min-text-words", help="Shortest text (words) matched by normalised text, or 'off'."
    ),
    media_hash: bool = typer.Option(
        True, "--media-hash/--no-media-hash", help="Match identical media files."
    ),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Flag training rows that share media or text with evaluation manifests."""
    from curate.signals.decontaminate import DecontaminationOptions, decontaminate

    options = DecontaminationOptions(
        phash_bits=_off_or(phash_bits, int, "--phash-bits"),
        min_text_words=_off_or(min_text_words, int, "--min-text-words"),
        match_media_hash=media_hash,
    )
    result = decontaminate(
        workspace_from(workspace),
        train,
        evals,
        options,
        progress=None if not json_output else False,
    )
    if json_output:
        print_json(result.to_dict())
        return
    state = " (already up to date)" if result.up_to_date else ""
    reasons = ", ".join(f"{k} {v:,}" for k, v in result.by_reason.items())
    typer.echo(
        f"{train}: {result.contaminated:,} of {result.rows:,} rows overlap "
        f"{', '.join(evals)} ({reasons}){state}"
    )
    if result.examples:
        table = Table(title="first contaminated rows")
        for column in ("id", "reason", "eval", "match"):
            table.add_column(column)
        for row in result.examples:
            table.add_row(
                row["id"],
                row["contamination_reason"],
                row["contamination_eval"],
                row["contamination_match"],
            )
        Console().print(table)
    typer.echo(f"  flags: {result.path}")


def register(app: typer.Typer) -> None:
    app.command("score", epilog=SCORE_EPILOG)(score_command)
    app.command("decontaminate", epilog=DECONTAMINATE_EPILOG)(decontaminate_command)
