"""Several sessions on one engine: a reply's first tokens, clause or frames go ahead of other replies' later
work, the voice's and face's streams take turns by when their listeners need the work, and a long reply still
moves on between them (the text engine's threads, the voice's and face's streams)."""

import asyncio
import threading
import time

import pytest

from core.llm.backends.turns import Turnstile
from services.common.priority_turns import Playout, PriorityTurns
from tests.manual_clock import ManualClock

pytestmark = pytest.mark.unit


def test_a_new_generation_goes_ahead_of_the_tails_waiting_for_the_engine():
    turns, order = Turnstile(), []
    holding, release = threading.Event(), threading.Event()

    def generate(name: str, steps: int, leading: bool = False) -> None:
        for step in range(steps):
            with turns.turn(leading=leading):
                if name == "story" and step == 0:
                    holding.set()
                    release.wait()
                order.append(name)

    story = threading.Thread(target=generate, args=("story", 4))
    story.start()
    holding.wait()  # the story holds the engine
    other = threading.Thread(target=generate, args=("other", 2))
    other.start()
    time.sleep(0.05)  # another reply's tail asks first ...
    new = threading.Thread(target=generate, args=("new", 1, True))
    new.start()
    time.sleep(0.05)  # ... then a new turn's first token
    release.set()
    for thread in (story, other, new):
        thread.join(5)
    assert order[:3] == ["story", "new", "other"], order  # the new turn straight after the step under way
    assert order.count("story") == 4 and order.count("other") == 2
    assert order.index("other") < max(i for i, name in enumerate(order) if name == "story"), \
        f"the story ran to its end before the other reply moved on: {order}"


async def test_the_piece_due_soonest_goes_first_and_a_streams_first_piece_is_due_at_once():
    """A story seconds ahead of its listener, a reply whose listener is about to run dry, and a new reply's first
    clause: after the piece under way, the new reply's first clause (due now), then the frames about to be heard,
    then the story's (due later), each stream's pieces in their order."""
    clock = ManualClock(100.0)
    turns, order = PriorityTurns(), []
    holding, release = asyncio.Event(), asyncio.Event()
    story, thin = Playout(clock=clock), Playout(clock=clock)
    story.begin(0.0)
    clock.now += 3.0  # the story's listener is 3 s in; it was made 8 s ahead
    thin.begin(0.0)  # a reply just begun: its first output went out now, its listener plays it 0.12 s from now

    async def piece(name: str, due: float, hold: bool = False) -> None:
        async with turns.turn(due):
            if hold:
                holding.set()
                await release.wait()
            order.append(name)

    tasks = [asyncio.create_task(piece("story 7 s", story.due(7.0), hold=True))]
    await holding.wait()
    for name, due in [("story 7.5 s", story.due(7.5)), ("story 8 s", story.due(8.0)), ("thin 0.2 s", thin.due(0.2)),
                      ("new reply first", Playout(clock=clock).due(0.0)), ("thin 0.3 s", thin.due(0.3))]:
        tasks.append(asyncio.create_task(piece(name, due)))
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["story 7 s", "new reply first", "thin 0.2 s", "thin 0.3 s", "story 7.5 s", "story 8 s"]


async def test_a_stream_cancelled_while_it_waits_does_not_hold_up_the_others():
    turns, order = PriorityTurns(), []
    release = asyncio.Event()

    async def piece(name: str, first: bool, wait_for: asyncio.Event | None = None) -> None:
        async with turns.turn(time.monotonic() - 1.0 if first else time.monotonic()):
            if wait_for:
                await wait_for.wait()
            order.append(name)

    holder = asyncio.create_task(piece("holder", False, release))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(piece("barged in on", True))
    waiting = asyncio.create_task(piece("next", False))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, waiting), 2)
    assert order == ["holder", "next"] and cancelled.cancelled()
