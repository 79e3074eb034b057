"""A network namespace joined to this machine by a link with the delay, jitter, loss and rate of a real network.

The link is shaped in user space: this machine's kernel has no netem (CONFIG_NET_SCH_NETEM is not set), so the
namespace's only way out is a TUN device whose packets a forwarder thread here carries to a second TUN device on
this side, and back, holding each packet for its delay (plus jitter, order kept), dropping some (independently,
or in bursts: a two-state Gilbert model) and serialising them at the link's rate. Both directions are shaped
alike. Needs root (the project's tests run as root; the namespace and both devices are removed on exit).

    with ImpairedLink(delay_ms=75, loss=0.01) as link:      # 150 ms round trip, 1% loss each way
        link.run(["python", "-m", "...", f"{link.host}:8000"])  # inside the namespace; this side is link.host
"""

import fcntl
import os
import random
import selectors
import struct
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field

_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000


@dataclass
class LinkShape:
    delay_ms: float = 0.0  # one way
    jitter_ms: float = 0.0  # uniform ± around the delay, order kept
    loss: float = 0.0  # share of packets lost, each way
    burst: float = 1.0  # mean packets in a run of losses (1: independent)
    rate_kbps: float = 0.0  # 0: unlimited

    def describe(self) -> str:
        parts = [f"{2 * self.delay_ms:.0f} ms round trip" + (f" ± {2 * self.jitter_ms:.0f}" if self.jitter_ms else "")]
        if self.loss:
            parts.append(f"{100 * self.loss:g}% loss" + (f" in bursts of {self.burst:g}" if self.burst > 1 else ""))
        if self.rate_kbps:
            parts.append(f"{self.rate_kbps / 1000:g} Mbit/s")
        return ", ".join(parts)


@dataclass
class _Direction:
    """One way of the link: its queue of packets in flight and its loss state."""

    shape: LinkShape
    rng: random.Random
    out: int  # the device the packets are written to
    queue: deque = field(default_factory=deque)  # (due, packet), in order
    free_at: float = 0.0  # when the link's transmitter is free (rate)
    last_due: float = 0.0
    losing: bool = False
    delivered: int = 0  # bytes written out

    def take(self, packet: bytes, now: float) -> None:
        shape = self.shape
        if shape.loss:
            # Gilbert model: from "good" into a loss run with p, out of it with 1/burst; the mean loss is `loss`
            leave = 1.0 / max(shape.burst, 1.0)
            enter = shape.loss * leave / max(1.0 - shape.loss, 1e-9)
            self.losing = self.rng.random() < (1 - leave if self.losing else enter)
            if self.losing:
                return
        start = now
        if shape.rate_kbps:
            start = max(now, self.free_at)
            self.free_at = start + len(packet) * 8 / (shape.rate_kbps * 1000)
        due = start + (shape.delay_ms + self.rng.uniform(-shape.jitter_ms, shape.jitter_ms)) / 1000
        due = max(due, self.last_due)  # jitter without reordering
        self.last_due = due
        self.queue.append((due, packet))

    def send_due(self, now: float) -> float | None:
        """Write what is due; the time the next packet is due, or None."""
        while self.queue and self.queue[0][0] <= now:
            _, packet = self.queue.popleft()
            try:
                self.delivered += os.write(self.out, packet)
            except OSError:
                pass
        return self.queue[0][0] if self.queue else None


class ImpairedLink:
    """`host` (this side) and `client` (the namespace's side) are the link's two addresses."""

    host, client = "10.77.0.1", "10.77.0.2"

    def __init__(self, shape: LinkShape, name: str = "avatar-link", seed: int = 0):
        self.shape = shape
        self.name = name
        self._seed = seed
        self._stop = threading.Event()
        self._fds: list[int] = []
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "ImpairedLink":
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        _ip("netns", "add", self.name)
        here, there = self._tun(f"{self.name[:9]}-h"), self._tun(f"{self.name[:9]}-c")
        _ip("link", "set", f"{self.name[:9]}-c", "netns", self.name)
        _ip("addr", "add", self.host, "peer", self.client, "dev", f"{self.name[:9]}-h")
        _ip("link", "set", f"{self.name[:9]}-h", "up")
        inside = ["ip", "netns", "exec", self.name, "ip"]
        for args in (["link", "set", "lo", "up"], ["addr", "add", self.client, "peer", self.host, "dev",
                     f"{self.name[:9]}-c"], ["link", "set", f"{self.name[:9]}-c", "up"],
                     ["route", "add", "default", "via", self.host]):
            subprocess.run([*inside, *args], check=True, capture_output=True)
        rng = random.Random(self._seed)
        self._here = here
        self._ways = {here: _Direction(self.shape, rng, there), there: _Direction(self.shape, rng, here)}
        self._thread = threading.Thread(target=self._forward, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for fd in self._fds:
            os.close(fd)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def run(self, command: list[str], **kwargs) -> subprocess.CompletedProcess:
        """A command inside the namespace: its only network is the link (and its own loopback)."""
        return subprocess.run(["ip", "netns", "exec", self.name, *command], **kwargs)

    @property
    def bytes_to_client(self) -> int:
        """Bytes the link has delivered into the namespace so far (IP packets, headers included)."""
        return self._ways[self._here].delivered

    def _tun(self, name: str) -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
        self._fds.append(fd)
        return fd

    def _forward(self) -> None:
        selector = selectors.DefaultSelector()
        for fd in self._ways:
            selector.register(fd, selectors.EVENT_READ)
        next_due: float | None = None
        while not self._stop.is_set():
            timeout = 0.05 if next_due is None else max(0.0, min(0.05, next_due - time.monotonic()))
            for key, _ in selector.select(timeout):
                while True:
                    try:
                        packet = os.read(key.fd, 65536)
                    except BlockingIOError:
                        break
                    self._ways[key.fd].take(packet, time.monotonic())
            now = time.monotonic()
            dues = [d for d in (way.send_due(now) for way in self._ways.values()) if d is not None]
            next_due = min(dues) if dues else None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)
