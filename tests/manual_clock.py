"""A clock the test moves by hand (`clock.now += 1.0`), for code that takes a `clock` callable."""


class ManualClock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now
