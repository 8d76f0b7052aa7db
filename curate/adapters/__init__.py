"""The registry of ingest adapters, and format detection.

Each format lives in its own module of this package and registers its class with `@register`.
`ADAPTER_MODULES` lists them so that `curate formats` can show all without guessing.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from curate.adapters.base import Adapter, AdapterContext
from curate.errors import InputError

#: Modules of this package that define adapters (imported on first use).
ADAPTER_MODULES: tuple[str, ...] = (
    "coco",
    "sugarcrepe",
    "cc3m",
    "laion",
    "webdataset",
    "llava",
    "openai_jsonl",
    "textpairs",
    "msrvtt",
    "webvid",
    "activitynet",
    "didemo",
    "mmeb",
    "unite",
    "covr",
    "generic",
)

_REGISTRY: dict[str, type[Adapter]] = {}
_loaded = False


def register(cls: type[Adapter]) -> type[Adapter]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise RuntimeError(f"two adapters are named {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for module in ADAPTER_MODULES:
        # A module not written yet is skipped; one that fails to import is a bug and raises.
        if importlib.util.find_spec(f"curate.adapters.{module}") is not None:
            importlib.import_module(f"curate.adapters.{module}")
    _loaded = True


def all_adapters() -> dict[str, type[Adapter]]:
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def get_adapter(name: str) -> type[Adapter]:
    adapters = all_adapters()
    if name not in adapters:
        raise InputError(
            f"unknown format {name!r}; known formats: {', '.join(adapters)} "
            "(`curate formats` describes each)"
        )
    return adapters[name]


def detect_format(path: Path) -> str:
    """The one format whose sniff accepts `path`, or an InputError saying why there is none.

    A file is sniffed by every adapter. A folder is first offered whole (webdataset and laion
    claim folders of shards); when no adapter claims it, a sample of its data files is sniffed
    and the folder gets the format that every claimed file agrees on. Files no adapter claims
    (id lists, labels) do not count against the others. See `folder_data_files` for which
    files are sniffed. The files of a folder that disagree, or none claimed, raise an error
    naming examples.
    """
    adapters = all_adapters()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    matches = _claims(path, adapters)
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InputError(
            f"{path}: the format is ambiguous, it could be any of: {', '.join(matches)}; "
            "pass --format to choose"
        )
    if not path.is_dir():
        raise InputError(f"{path}: cannot tell its format from its content; {_PASS_FORMAT}")
    return _folder_format(path, _sniff_folder(path, adapters))


def format_mismatch(path: Path, name: str) -> str | None:
    """A one-line warning when `path` looks like another format than the chosen `name`, else None.

    Warns when `name`'s sniff rejects the path (for a folder: the folder and every sniffed data
    file) and detection finds exactly one other format; for a file no format claims, it gives a
    weaker hint (a sniff reads only the first lines, so the file may still be right).
    `generic` never warns: it is chosen to map a file's columns by hand, whatever it looks like.
    Reads only file heads, like `detect_format`. An unknown `name` raises InputError.
    """
    adapters = all_adapters()
    get_adapter(name)  # an unknown format is the caller's error, not a mismatch
    if name == "generic" or not path.exists():
        return None  # `generic` is chosen on purpose, to map any file's columns by hand
    matches = _claims(path, adapters)
    if name in matches:
        return None
    if len(matches) == 1:
        return f"{path} looks like {matches[0]}, not {name}; check --format"
    if not path.is_dir():
        # No format claims the file: a weaker hint, since a sniff only reads the first lines.
        return (
            None
            if matches
            else f"{path} does not look like {name} at its start; check --format if the result "
            "is wrong"
        )
    if matches:
        return None
    sniffed = _sniff_folder(path, adapters)
    by_format = _files_by_format(sniffed)
    if name in by_format or len(by_format) != 1:
        return None
    ((other, files),) = by_format.items()
    return (
        f"{path}: its data files look like {other} (e.g. {_shown(path, files[0])}), not {name}; "
        "check --format"
    )


# --------------------------------------------------------------------------------------------
# Folder detection.

#: Data files of a folder sniffed at most: a sample is enough to tell a format, and the work
#: stays bounded on folders of thousands of shards.
MAX_SNIFFED_FILES = 32
#: Entries looked at per folder, and folders visited, at most, while searching for data files: a
#: folder of a million images must not be listed in full, nor use up the search before the
#: folder of annotations beside it is reached.
MAX_ENTRIES_PER_FOLDER = 2_000
MAX_FOLDERS = 500
#: Example files named per format in an error.
EXAMPLES_PER_FORMAT = 2
#: File names (without suffix, any case) that document a corpus rather than hold it.
DOC_STEMS = frozenset({"readme", "provenance", "license", "licence", "changelog", "citation"})
#: Suffixes of files that are never annotations: documents, code, images, audio (videos are
#: added from the generic adapter's list).
NON_DATA_SUFFIXES = frozenset(
    {
        ".md", ".rst", ".html", ".htm", ".pdf", ".py", ".sh", ".ipynb", ".yaml", ".yml",
        ".toml", ".cfg", ".ini", ".lock", ".log", ".md5", ".sha256",
        ".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".svg", ".heic",
        ".wav", ".mp3", ".flac", ".ogg", ".m4a",
    }
)  # fmt: skip
#: Formats whose reader takes one file, not a folder: detecting them for a folder would only
#: move the error to ingest. (Better as an adapter class attribute; see the adapters.)
ONE_FILE_FORMATS = frozenset({"cc3m", "msmarco", "nli"})

_PASS_FORMAT = "pass --format (`curate formats` lists the formats)"


@dataclass(frozen=True)
class _FolderSniff:
    """The data files sampled from a folder and the formats claiming each."""

    claims: dict[Path, list[str]]
    complete: bool  # False when a limit stopped the search before every file was seen


def is_data_file_name(name: str) -> bool:
    """Whether a file of this name may hold records: not hidden, not documentation (README,
    PROVENANCE, LICENSE… with any suffix), and not a document, code, image, audio or video file
    by its suffix (`NON_DATA_SUFFIXES`, the generic adapter's `VIDEO_EXTENSIONS`)."""
    from curate.adapters.generic import VIDEO_EXTENSIONS

    if name.startswith("."):
        return False
    suffix = os.path.splitext(name)[1].lower()
    stem = name.split(".", 1)[0].lower()
    return (
        suffix not in NON_DATA_SUFFIXES
        and suffix not in VIDEO_EXTENSIONS
        and (stem not in DOC_STEMS)
    )


def folder_data_files(folder: Path) -> tuple[list[Path], bool]:
    """The data files of `folder` that detection sniffs, and whether the search saw them all.

    Rule: every regular, non-empty file (symlinks to files count) under `folder` whose name
    passes `is_data_file_name`, breadth first and sorted by name within each folder; hidden
    folders are skipped and symlinked folders not followed (no loops). At most MAX_SNIFFED_FILES
    files are returned, MAX_ENTRIES_PER_FOLDER entries of each folder looked at (which ones, in a
    bigger folder, is up to the file system) and MAX_FOLDERS folders visited.
    """
    found: list[Path] = []
    pending = [folder]
    complete = True
    visited = 0
    while pending:
        if visited >= MAX_FOLDERS:
            return found, False
        current = pending.pop(0)
        visited += 1
        try:
            with os.scandir(current) as listing:
                entries = []
                for entry in listing:
                    if len(entries) >= MAX_ENTRIES_PER_FOLDER:
                        complete = False
                        break
                    entries.append(entry)
        except OSError:
            continue  # an unreadable subfolder holds nothing we could ingest either
        for entry in sorted(entries, key=lambda e: e.name):
            name = entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not name.startswith("."):
                        pending.append(Path(entry.path))
                    continue
                if not entry.is_file() or entry.stat().st_size == 0:
                    continue
            except OSError:
                continue  # a dangling symlink or a vanished file
            if not is_data_file_name(name):
                continue
            found.append(Path(entry.path))
            if len(found) >= MAX_SNIFFED_FILES:
                return found, False
    return found, complete


def _claims(path: Path, adapters: dict[str, type[Adapter]]) -> list[str]:
    return [name for name, cls in adapters.items() if cls.sniff(path)]


def _sniff_folder(folder: Path, adapters: dict[str, type[Adapter]]) -> _FolderSniff:
    files, complete = folder_data_files(folder)
    return _FolderSniff({file: _claims(file, adapters) for file in files}, complete)


def _files_by_format(sniffed: _FolderSniff) -> dict[str, list[Path]]:
    by_format: dict[str, list[Path]] = {}
    for file, formats in sniffed.claims.items():
        for name in formats:
            by_format.setdefault(name, []).append(file)
    return dict(sorted(by_format.items()))


def _shown(folder: Path, file: Path) -> str:
    return str(file.relative_to(folder))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _examples(folder: Path, files: list[Path]) -> str:
    shown = ", ".join(_shown(folder, f) for f in files[:EXAMPLES_PER_FORMAT])
    more = len(files) - EXAMPLES_PER_FORMAT
    return f"{shown} and {more} more" if more > 0 else shown


def _folder_format(folder: Path, sniffed: _FolderSniff) -> str:
    """The single format the sniffed files of `folder` agree on, or an InputError."""
    sample = "" if sniffed.complete else f" (looked at the first {len(sniffed.claims)})"
    if not sniffed.claims:
        where = "the folder holds" if sniffed.complete else "among the entries looked at, it has"
        raise InputError(
            f"{folder}: cannot tell its format, {where} no data file (hidden files, docs, "
            f"images and videos are skipped); {_PASS_FORMAT}"
        )
    by_format = _files_by_format(sniffed)
    if not by_format:
        raise InputError(
            f"{folder}: cannot tell its format from the content of its "
            f"{_count(len(sniffed.claims), 'data file')}{sample}; {_PASS_FORMAT}"
        )
    if len(by_format) > 1:
        kinds = "; ".join(
            f"{name}: {_examples(folder, files)}" for name, files in by_format.items()
        )
        raise InputError(
            f"{folder}: its data files are of different formats{sample}: {kinds}; "
            "pass --format to choose one, or split the folder into one folder per format"
        )
    ((name, files),) = by_format.items()
    if name in ONE_FILE_FORMATS:
        raise InputError(
            f"{folder}: its data files look like {name} ({_examples(folder, files)}), and "
            f"format {name} reads one file, not a folder; ingest each file on its own"
        )
    return name


__all__ = [
    "ADAPTER_MODULES",
    "Adapter",
    "AdapterContext",
    "all_adapters",
    "detect_format",
    "folder_data_files",
    "format_mismatch",
    "get_adapter",
    "is_data_file_name",
    "register",
]
