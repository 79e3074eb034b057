"""How many WebSockets are open, in all and per client address: a client that opens sockets without end is
refused before they cost the gateway more than a few bytes each."""

from collections import Counter


class SocketLimits:
    def __init__(self, max_sockets: int, max_per_address: int):
        self.max_sockets = max_sockets
        self.max_per_address = max_per_address
        self._open: Counter[str] = Counter()

    @property
    def open(self) -> int:
        return sum(self._open.values())

    def take(self, address: str) -> str | None:
        """Count a new socket from `address`; None when it may open, else why not."""
        if self.open >= self.max_sockets:
            return f"the gateway holds {self.max_sockets} sockets already"
        if self._open[address] >= self.max_per_address:
            return f"{self.max_per_address} sockets from your address are open already"
        self._open[address] += 1
        return None

    def release(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]
