"""What this machine holds now: what a second of reply costs it, measured, and the cores the rest of its work
leaves free.

The gateway usually shares its machine with the stages (one box: `make run`, compose). Every `window_s` it reads
the machine's CPU time (/proc/stat: every process on it counted, the stages' and a neighbour's alike) and how many
seconds of reply media its sessions were sent. Windows without reply media give the machine's base load (other
work, listening); windows with it give what a second of reply costs on top (every stage's share: text, speech,
animation, the gateway's own), as CPU over media summed across windows (a reply's CPU comes in bursts), measured
only while no reply sheds pictures (a shed reply costs less than a whole one). On a machine saturated with a
neighbour's work the neighbour's share shrinks and the cost reads low; the learned ceiling catches what that lets
through. Admission then takes as many conversations as could all talk at once within `margin` of the machine's cores:
base + n × cost ≤ margin × cores. Until a reply has been measured, `reply_cpu_s` (the capacity model's figure,
docs/deploy.md) stands for the cost.

Where the stages run on other machines (a cluster), a reply costs the gateway's machine little, the prediction
admits many, and the configured and learned ceilings (`admission.py`) govern; the stages scale on their own load.
"""

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import REGISTRY, Gauge

log = logging.getLogger(__name__)
COST = Gauge("avatar_gateway_reply_cpu_seconds",
             "CPU seconds this machine spends on a second of reply (measured; the configured figure until then)")
BASE = Gauge("avatar_gateway_machine_base_cores", "Cores this machine keeps busy while no reply is being made")
PREDICTED = Gauge("avatar_gateway_sessions_predicted",
                  "Conversations this machine could carry all talking at once, from its measured load (0: unknown)")

_SECONDS_PER_TICK = 1 / os.sysconf("SC_CLK_TCK")
_QUIET = 0.05  # seconds of reply a second below which a window counts as without replies
_BASE_WEIGHT = 0.3  # how much each new window moves the base load
_KEEP = 0.9  # how much of the cost's sums each window keeps


@dataclass(frozen=True)
class CpuTimes:
    busy_s: float  # CPU seconds spent on anything since boot, all cores together
    cores: int


def read_proc_stat(path: str = "/proc/stat") -> CpuTimes | None:
    """The machine's CPU time so far; None where there is no /proc/stat to read."""
    try:
        with open(path) as stat:
            lines = stat.read().splitlines()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal, *_ = (int(v) for v in lines[0].split()[1:])
    cores = sum(1 for line in lines if line.startswith("cpu") and line[3].isdigit())
    return CpuTimes((user + nice + system + irq + softirq + steal) * _SECONDS_PER_TICK, cores)


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


class MachineLoad:
    def __init__(self, reply_cpu_s: float, margin: float, read: Callable[[], CpuTimes | None] = read_proc_stat,
                 media_s: Callable[[], float] = lambda: _sample("avatar_gateway_reply_media_seconds_total"),
                 shedding: Callable[[], float] = lambda: _sample("avatar_gateway_replies_shedding"),
                 clock: Callable[[], float] = time.monotonic):
        self._prior = reply_cpu_s
        self._margin = margin
        self._read, self._media_s, self._shedding, self._clock = read, media_s, shedding, clock
        self._last: tuple[float, CpuTimes, float] | None = None
        self.base: float | None = None  # cores busy without replies
        self.cost: float | None = None  # core-seconds per second of reply
        self._cpu_sum = self._media_sum = 0.0
        self.cores = 0
        COST.set(reply_cpu_s)

    def step(self) -> None:
        """One window's reading (call every few seconds)."""
        now, times, media = self._clock(), self._read(), self._media_s()
        if times is None:
            return
        self.cores = times.cores
        if self._last is not None:
            then, before, media_before = self._last
            wall = now - then
            if wall > 0:
                self._learn((times.busy_s - before.busy_s) / wall, (media - media_before) / wall)
        self._last = (now, times, media)

    def _learn(self, busy_cores: float, media_rate: float) -> None:
        if media_rate < _QUIET:
            self.base = busy_cores if self.base is None else self.base + _BASE_WEIGHT * (busy_cores - self.base)
            BASE.set(self.base)
        elif self.base is not None and not self._shedding():
            # Sums of CPU and media over the windows, older ones fading: a reply's CPU comes in bursts (a clause
            # spoken and animated ahead of its playing, the first frames) that one window's media does not match.
            self._cpu_sum = _KEEP * self._cpu_sum + max(0.0, busy_cores - self.base)
            self._media_sum = _KEEP * self._media_sum + media_rate
            self.cost = max(0.05, self._cpu_sum / self._media_sum)
            COST.set(self.cost)
        PREDICTED.set(self.sessions() or 0)

    def sessions(self) -> int | None:
        """Conversations this machine could carry all talking at once (at least one); None until its base load is
        known."""
        if self.base is None or not self.cores:
            return None
        cost = self.cost if self.cost is not None else self._prior
        return max(1, math.floor((self._margin * self.cores - self.base) / cost + 1e-9))
