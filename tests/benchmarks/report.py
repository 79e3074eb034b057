"""Figures and their markdown: percentiles, tables, the machine they were measured on."""

import datetime
import os
import platform
import subprocess
from dataclasses import dataclass, field

import numpy as np


def p50(values) -> float:
    return float(np.percentile(values, 50))


def p95(values) -> float:
    return float(np.percentile(values, 95))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def met(value: float, target: float, unit=ms) -> str:
    """"met", or by how much a figure that must stay at or under `target` missed it."""
    return "met" if value <= target else f"missed by {unit(value - target)}"


def met_at_least(value: float, target: float, unit=ms) -> str:
    """"met", or by how much a figure that must reach `target` fell short of it."""
    return met(target, value, unit)


@dataclass
class Section:
    title: str
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (metric, value, target)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, value: str, target: str = "") -> None:
        self.rows.append((metric, value, target))

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", "| metric | measured | target |", "|---|---|---|"]
        lines += [f"| {m} | {v} | {t} |" for m, v, t in self.rows]
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; commit {commit()}")


def commit() -> str:
    """The commit the code measured is at (`+changes` when the work tree differs from it)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    # what the benches write themselves (docs/) is no change to the code measured
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"],
                             capture_output=True, text=True).stdout.strip()
    return f"{head or 'unknown'}{'+changes' if changed else ''}"
