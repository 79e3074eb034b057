"""Writes that a reader never sees half done: a file or folder appears whole, or not at all.

Everything is first written beside its target under a hidden name that keeps the suffix
(`.generator.partial.pt`), so tools that go by the extension still work and a service scanning the folder
never takes the partial for an entry; then it is renamed over the target in one step.
"""

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _partial(target: Path) -> Path:
    return target.with_name(f".{target.stem}.partial{target.suffix}")


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A path to write `target`'s content to (by any means: torch.save, ffmpeg, a writer of your own); it
    replaces `target` when the block ends without error, and is removed when it fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(target)
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)


def write_bytes(target: Path, data: bytes) -> Path:
    with atomic_path(target) as partial:
        partial.write_bytes(data)
    return target


def write_text(target: Path, text: str) -> Path:
    with atomic_path(target) as partial:
        partial.write_text(text)
    return target


def write_json(target: Path, data, indent: int | None = 2) -> Path:
    return write_text(target, json.dumps(data, indent=indent, ensure_ascii=False))


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """An empty staging folder that replaces the folder `target` when the block ends without error."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
