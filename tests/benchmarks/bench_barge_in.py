"""Barge-in as a user meets it: sounds that are not words, made over a reply while it plays (a cough, a click,
typing, a hummed "hmm", a burst of room noise), and backchannels ("yeah", "right", "okay") must leave it playing;
a question spoken over it by a voice the models were not built around must stop it, and playback must pause as
soon as the voice starts. Default session settings (a reply stops once a word is recognised)."""

import asyncio
import json
import time

import numpy as np

from services.gateway import media_messages
from tests import noises
from tests.benchmarks.report import Section, met, ms, p50, p95
from tests.benchmarks.spoken_client import CHUNK_S, open_session, talk
from tests.speech import to_linear16
from tests.voices import RATE, UNFAMILIAR, say

STORY = "Please tell me a long story about a dragon who lived in the mountains."
QUESTIONS = ("Wait, stop. What time is it?", "Sorry, can I ask you something else?")
BACKCHANNELS = ("Yeah.", "Right.", "Okay.")  # espeak reads "Mm-hmm" out letter by letter: the hum stands for it
BACKCHANNEL_VOICES = UNFAMILIAR[:3]
SEEDS = (0, 1)
AFTER_S = 4.0  # listened to after the sound ends for the reply to stop


def _typing(seed: int) -> np.ndarray:
    """Eight key clicks at uneven intervals over about 1.4 s."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(1.4 * RATE), np.float32)
    for at in np.sort(rng.uniform(0, 1.3, 8)):
        key = noises.click(seed + int(at * 1000))
        start = int(at * RATE)
        out[start : start + key.size] += key[: out.size - start]
    return out


def _room_burst(seed: int) -> np.ndarray:
    """A second of the room and fan as loud as speech (a chair moved, a window opened)."""
    burst = noises.room_with_fan(1.0, seed)
    return (0.1 * burst / np.std(burst)).astype(np.float32)


SOUNDS = {
    "cough": lambda seed: noises.cough(seed=seed),
    "click": lambda seed: noises.click(seed),
    "typing": _typing,
    'hummed "hmm"': lambda seed: noises.hum(f0=120.0 + 40 * seed),
    "room noise burst": _room_burst,
}


async def _over_a_reply(url: str, sound: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Ask for a long story, make `sound` a second into its playback, and listen on: seconds from the sound's
    first audible chunk to the reply's `pause` and to its `interrupted`, and from its last audible chunk to the
    reply's `resume` (None: that did not come)."""
    ws = await open_session(url)
    first_media, stopped = asyncio.Event(), {}

    async def listen():
        async for raw in ws:
            if isinstance(raw, bytes):
                if media_messages.parse(raw)["turn"] == 0:
                    first_media.set()
            elif (event := json.loads(raw))["type"] in ("interrupted", "pause", "resume") and event["turn"] == 0:
                stopped.setdefault(event["type"], time.perf_counter())

    listener = asyncio.create_task(listen())
    try:
        await talk(ws, say(STORY, UNFAMILIAR[1]), {}, trailing_s=0.0)
        silence = np.zeros(int(CHUNK_S * RATE), np.float32)
        while not first_media.is_set():  # a live microphone keeps sending
            await ws.send(to_linear16(silence))
            await asyncio.sleep(CHUNK_S)
        for _ in range(int(1.0 / CHUNK_S)):
            await ws.send(to_linear16(silence))
            await asyncio.sleep(CHUNK_S)
        audible = np.flatnonzero(np.abs(sound) > 0.05 * np.abs(sound).max())
        pcm = np.concatenate([sound, np.zeros(int(AFTER_S * RATE), np.float32)])
        step = int(CHUNK_S * RATE)
        onset = ended = None
        for start in range(0, pcm.size, step):
            await ws.send(to_linear16(pcm[start : start + step]))
            if onset is None and start + step > audible[0]:
                onset = time.perf_counter()
            if ended is None and start + step > audible[-1]:
                ended = time.perf_counter()
            await asyncio.sleep(CHUNK_S)
        return (*(stopped[kind] - onset if kind in stopped else None for kind in ("pause", "interrupted")),
                stopped["resume"] - ended if "resume" in stopped else None)
    finally:
        listener.cancel()
        await ws.close()


def run(stack) -> Section:
    url = f"ws://{stack.address('gateway')}/ws"
    section = Section("Barge-in: sounds that are not words, and questions, over a reply while it plays")
    false_total = trials = 0
    trials_by_kind = {name: [make(seed) for seed in SEEDS] for name, make in SOUNDS.items()}
    trials_by_kind |= {f'backchannel "{word}"': [say(word, voice).samples for voice in BACKCHANNEL_VOICES]
                       for word in BACKCHANNELS}
    resumed, paused_false = [], 0  # a false barge-in that paused the reply: how long the avatar stood still
    for name, sounds in trials_by_kind.items():
        outcomes = [asyncio.run(_over_a_reply(url, sound)) for sound in sounds]
        stops = sum(stopped is not None for _, stopped, _ in outcomes)
        section.add(f"{name}: replies stopped", f"{stops} of {len(sounds)}")
        false_total, trials = false_total + stops, trials + len(sounds)
        paused_false += sum(pause is not None and stopped is None for pause, stopped, _ in outcomes)
        resumed += [resume for _, stopped, resume in outcomes if stopped is None and resume is not None]
    section.add("false barge-ins, all sounds and backchannels", f"{false_total} of {trials} "
                f"({met(false_total, 0, str)})", "0")
    if resumed:
        section.add("sound's end → paused reply resumed", f"{ms(p50(resumed))} P50, {ms(p95(resumed))} P95 "
                    f"({len(resumed)} of the {paused_false} sounds that paused it)")
    reactions = [asyncio.run(_over_a_reply(url, say(question, voice).samples))
                 for question in QUESTIONS for voice in UNFAMILIAR]
    caught = [stopped for _, stopped, _ in reactions if stopped is not None]
    paused = [pause for pause, _, _ in reactions if pause is not None]
    section.add("questions spoken over a reply that stopped it", f"{len(caught)} of {len(reactions)} "
                f"({met(len(reactions) - len(caught), 0, str)})", "all")
    if paused:
        section.add("voice onset → playback paused", f"{ms(p50(paused))} P50, {ms(p95(paused))} P95 "
                    f"({met(p50(paused), 0.3)})", "≤ 300 ms P50")
    if caught:
        section.add("voice onset → reply stopped", f"{ms(p50(caught))} P50, {ms(p95(caught))} P95")
    section.notes.append(f"Each sound twice (two seeds), and each backchannel in {len(BACKCHANNEL_VOICES)} "
                         f"voices, a second into the reply's playback, then {AFTER_S:.0f} s of silence; the questions " + " and ".join(f'"{q}"' for q in QUESTIONS) + " once in each "
                         f"of the {len(UNFAMILIAR)} unfamiliar voices (tests/voices.py). A reply stops once a word of the speech over it is recognised "
                         "for sure: two decodes agree on it, or the speaker paused (`barge_in_min_words` 1, the "
                         "default), so the figure includes recognising that word.")
    return section
