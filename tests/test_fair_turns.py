"""Several sessions on one engine: a reply's first tokens, clause or frames go ahead of other replies' later
work, and a long reply still moves on between them (the text engine's threads, the voice's and face's streams)."""

import asyncio
import threading
import time

import pytest

from core.llm.backends.turns import Turnstile
from services.common.priority_turns import PriorityTurns

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


async def test_a_streams_first_piece_goes_ahead_of_later_pieces_of_other_streams():
    turns, order = PriorityTurns(), []
    holding, release = asyncio.Event(), asyncio.Event()

    async def piece(name: str, first: bool, hold: bool = False) -> None:
        async with turns.turn(first):
            if hold:
                holding.set()
                await release.wait()
            order.append(name)

    tasks = [asyncio.create_task(piece("story clause 2", False, hold=True))]
    await holding.wait()
    tasks.append(asyncio.create_task(piece("story clause 3", False)))
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(piece("new reply clause 1", True)))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["story clause 2", "new reply clause 1", "story clause 3"]


async def test_a_stream_cancelled_while_it_waits_does_not_hold_up_the_others():
    turns, order = PriorityTurns(), []
    release = asyncio.Event()

    async def piece(name: str, first: bool, wait_for: asyncio.Event | None = None) -> None:
        async with turns.turn(first):
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
