"""A dataset's folder (`data/<name>/`) and its per-step manifests.

Every step writes its outputs atomically (`core.atomic`), then writes its
manifest last: a step either finished (manifest present, outputs whole) or it did not, and re-running it starts
clean. A manifest records the manifests it was built from, so a step whose inputs changed runs again.
"""

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from core.atomic import write_json

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class PipelineError(Exception):
    """A problem with the user's input or an earlier step's output, worded for the user."""


@dataclass(frozen=True)
class Workspace:
    name: str
    root: Path

    @classmethod
    def open(cls, name: str, data_dir: Path) -> "Workspace":
        if not _NAME.fullmatch(name or ""):
            raise PipelineError(
                f"dataset name {name!r} must be 1-64 letters, digits, '-' or '_' (no paths), starting with a letter or digit"
            )
        root = data_dir / name
        root.mkdir(parents=True, exist_ok=True)
        return cls(name, root)

    def manifest_path(self, step: str) -> Path:
        return self.root / "manifests" / f"{step}.json"

    def manifest(self, step: str) -> dict | None:
        path = self.manifest_path(step)
        return json.loads(path.read_text()) if path.is_file() else None

    def require(self, step: str) -> dict:
        manifest = self.manifest(step)
        if manifest is None:
            raise PipelineError(f"dataset {self.name!r} has no {step!r} output yet: run that step first")
        return manifest

    def fingerprint(self, steps: list[str]) -> str:
        """A hash of the manifests of `steps`, to tell whether a step's inputs changed since it ran."""
        digest = hashlib.sha256()
        for step in steps:
            path = self.manifest_path(step)
            digest.update(path.read_bytes() if path.is_file() else b"-")
        return digest.hexdigest()[:16]

    def inputs(self, needs: list[str], key: dict) -> str:
        """What a step is run on: the manifests of the steps it needs, and its own settings (`key`)."""
        return self.fingerprint(needs) + ":" + json.dumps(key, sort_keys=True, default=str)

    def run_dir(self, step: str, inputs: str, force: bool) -> tuple[Path, bool]:
        """A training step's working folder, and whether to resume in it: only an interrupted run of the same
        inputs is resumed; otherwise the folder starts empty."""
        folder = self.root / "runs" / step
        marker = folder / "INPUTS"
        resume = marker.is_file() and marker.read_text() == inputs and not force
        if not resume:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            marker.write_text(inputs)
        return folder, resume

    def finish(self, step: str, inputs: str, **fields) -> dict:
        manifest = {"step": step, "inputs": inputs, **fields}
        write_json(self.manifest_path(step), manifest)
        return manifest
