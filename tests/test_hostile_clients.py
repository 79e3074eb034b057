"""Hostile clients against a real gateway process: a thousand idle sockets, a junk flood from a client that reads
nothing, a listener that never reads its reply, decode bombs and oversized bodies. Each is refused or dropped with
a clear answer, the gateway's memory stays within a stated bound, and a well-behaved session alongside answers its
turn."""

import asyncio
import io
import json
import struct
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
import websockets

from tests.consent import consent_files, consent_form
from tests.reliability_figures import record
from tests.stack import ExtraGateway
from tests.test_gateway_ws import hello, next_event, send_speech

pytestmark = pytest.mark.e2e

IDLE = 990  # sockets from one address that send no hello
HELLO_TIMEOUT_S = 120  # room to open all of them on a slow, busy machine before the first is closed
RSS_BOUND_MB = 250  # the gateway's growth with every attack at once (measured: see docs/reliability.md)
FLOOD = 50_000  # junk messages a flooding client sends
REFUSED_BURST = 50


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def guarded(stack):
    gateway = ExtraGateway(stack, env={
        "GATEWAY_HELLO_TIMEOUT_S": str(HELLO_TIMEOUT_S), "GATEWAY_MAX_SOCKETS": str(IDLE + 10),
        "GATEWAY_MAX_SOCKETS_PER_ADDRESS": str(IDLE), "GATEWAY_MAX_QUEUED_BYTES": str(256 * 1024),
        "GATEWAY_MAX_BODY_BYTES": str(2 * 1024 * 1024), "GATEWAY_MAX_UPLOAD_AUDIO_S": "600",
        "GATEWAY_MAX_REFUSED_BURST": str(REFUSED_BURST)})
    yield gateway
    gateway.stop()


async def _converse(url: str, question: str) -> dict:
    async with websockets.connect(url, max_size=None, local_addr=("127.0.0.2", 0)) as ws:
        await hello(ws)
        await send_speech(ws, question)
        return await next_event(ws, "turn_end", timeout=180)


async def _refusal(url: str, source: str) -> dict:
    async with websockets.connect(url, local_addr=(source, 0)) as ws:
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        return {**event, "close": closed.value.rcvd.code}


async def test_a_thousand_idle_sockets_are_capped_and_closed_while_a_conversation_goes_on(guarded):
    base_mb = rss_mb(guarded.process.pid)
    idle = []
    for start in range(0, IDLE, 100):
        idle += await asyncio.gather(*(websockets.connect(guarded.url) for _ in range(start, min(start + 100, IDLE))))
    open_mb = rss_mb(guarded.process.pid)
    over = await _refusal(guarded.url, "127.0.0.1")  # one more from the same address
    assert over["code"] == "too_many_sockets" and over["fatal"] and over["close"] == 1013
    end = await _converse(guarded.url, "What is your name?")  # another address: admitted, and answered
    assert end["reply"]
    for _ in range(10):  # the gateway's cap reached from another address
        idle.append(await websockets.connect(guarded.url, local_addr=("127.0.0.3", 0)))
    full = await _refusal(guarded.url, "127.0.0.4")  # the gateway's own cap
    assert full["code"] == "too_many_sockets"
    closed = await asyncio.gather(*(_closed_for_no_hello(ws) for ws in idle))
    assert all(closed), f"{closed.count(False)} idle sockets were not closed for sending no hello"
    after_mb = rss_mb(guarded.process.pid)
    record("idle_sockets", f"{IDLE + 10} idle sockets held open cost the gateway {open_mb - base_mb:.0f} MB "
                           f"({(open_mb - base_mb) * 1024 / (IDLE + 10):.0f} kB each); the next from the same address "
                           f"and the next past the cap got `too_many_sockets` (1013); a conversation from another "
                           f"address was answered meanwhile; every idle socket got `hello_timeout` and was closed "
                           f"after {HELLO_TIMEOUT_S} s; RSS {base_mb:.0f} → {after_mb:.0f} MB once they were gone")
    assert open_mb - base_mb < RSS_BOUND_MB


async def _closed_for_no_hello(ws) -> bool:
    """The socket got `hello_timeout` and was closed with 1008."""
    try:
        event = json.loads(await asyncio.wait_for(ws.recv(), HELLO_TIMEOUT_S + 60))
    except (websockets.ConnectionClosed, TimeoutError):
        return False
    try:
        await asyncio.wait_for(ws.recv(), 10)
    except websockets.ConnectionClosed as closed:
        return event.get("code") == "hello_timeout" and closed.rcvd is not None and closed.rcvd.code == 1008
    except TimeoutError:
        return False
    return False


async def _flood(url: str) -> tuple[int, int]:
    """Junk as fast as the socket takes it, reading nothing meanwhile (the client's queue holds one message, so
    the server's answers back up); then what came back before the socket closed: (junk sent, answers read)."""
    async with websockets.connect(url, max_queue=1, local_addr=("127.0.0.5", 0)) as ws:
        sent = 0
        try:
            for sent in range(1, FLOOD + 1):
                await ws.send("x" * 200)
        except websockets.ConnectionClosed:
            pass
        answers = 0
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 60)
                answers += 1
        except websockets.ConnectionClosed:
            return sent, answers


async def _never_reads(url: str, question: str) -> float:
    """A listener that asks a question, then reads nothing of the answer: seconds until the gateway drops it."""
    loop = asyncio.get_running_loop()
    async with websockets.connect(url, max_queue=1, max_size=None, local_addr=("127.0.0.6", 0)) as ws:
        await hello(ws)
        await send_speech(ws, question)
        started = loop.time()
        try:
            while loop.time() - started < 240:
                await ws.send(b"\0\0" * 320)  # silence, as an open microphone sends
                await asyncio.sleep(0.02)
        except websockets.ConnectionClosed:
            return loop.time() - started
    raise AssertionError("a client that read nothing of a reply was never dropped")


async def test_a_junk_flood_and_a_listener_that_never_reads_are_dropped_while_a_conversation_goes_on(guarded):
    base_mb = rss_mb(guarded.process.pid)
    flood, listener, end = await asyncio.gather(
        _flood(guarded.url), _never_reads(guarded.url, "Please tell me a long story about the sea."),
        _converse(guarded.url, "What is your name?"))
    sent, answers = flood
    assert answers <= REFUSED_BURST + 1, f"{answers} answers to a junk flood: the gateway went on reading it"
    assert end["reply"], "the well-behaved conversation was not answered"
    grown = rss_mb(guarded.process.pid) - base_mb
    record("floods", f"a client sending {sent} junk messages and reading nothing was answered {answers} times, "
                     f"then dropped; one that asked for a story and read none of it was dropped "
                     f"{listener:.0f} s after asking, when 256 kB waited for it; a conversation from another "
                     f"address was answered meanwhile; gateway RSS grew {grown:.0f} MB")
    assert grown < RSS_BOUND_MB


async def test_a_client_sending_junk_is_told_why_it_is_closed(guarded):
    async with websockets.connect(guarded.url, max_size=None) as ws:
        for _ in range(REFUSED_BURST + 20):
            await ws.send("not json")
        codes = []
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                codes.append(json.loads(await asyncio.wait_for(ws.recv(), 10))["code"])
    assert codes[-1] == "too_many_refusals" and set(codes[:-1]) == {"bad_message"}
    assert len(codes) <= REFUSED_BURST + 1 and closed.value.rcvd.code == 1008


def _png_bomb() -> bytes:
    """A PNG that says it is 100,000 x 100,000 pixels (30 GB decoded) in a few hundred bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")


def _flac_of_silence(hours: float) -> bytes:
    """Hours of silence as FLAC: a few hundred kB that decode to gigabytes of float32."""
    out = io.BytesIO()
    block = np.zeros(8000 * 60, np.int16)
    with soundfile.SoundFile(out, "w", 8000, 1, format="FLAC", subtype="PCM_16") as flac:
        for _ in range(int(hours * 60)):
            flac.write(block)
    return out.getvalue()


def test_decode_bombs_and_oversized_bodies_are_refused_before_they_cost_memory(guarded):
    base = f"http://127.0.0.1:{guarded.port}"
    base_mb = rss_mb(guarded.process.pid)
    flac = _flac_of_silence(2.0)
    long_audio = httpx.post(f"{base}/v1/audio/transcriptions", files={"file": ("a.flac", flac)}, timeout=60)
    assert long_audio.status_code == 413 and "at most 600 s" in long_audio.json()["error"]["message"]
    bomb = httpx.post(f"{base}/v1/avatars", files={"photo": ("p.png", _png_bomb()), **consent_files()},
                      data=consent_form(), timeout=60)
    assert bomb.status_code == 422 and "megapixels" in bomb.json()["error"]["message"]
    video = httpx.post(f"{base}/v1/avatar/video", timeout=60, data=consent_form(),
                       files={"audio": ("a.flac", flac), "photo": ("p.png", _png_bomb()), **consent_files()})
    assert video.status_code == 413
    declared = httpx.post(f"{base}/v1/audio/transcriptions", content=b"\0" * (3 * 1024 * 1024),
                          headers={"content-type": "multipart/form-data; boundary=x"}, timeout=60)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"

    def chunks():  # a well-formed multipart upload of 3 MB, sent without a declared length
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(48):
            yield b"\0" * 65536
        yield b"\r\n--x--\r\n"

    streamed = httpx.post(f"{base}/v1/audio/transcriptions", content=chunks(),
                          headers={"content-type": "multipart/form-data; boundary=x"}, timeout=60)
    assert streamed.status_code == 413
    grown = rss_mb(guarded.process.pid) - base_mb
    record("decode_bombs", f"{len(flac) // 1024} kB of FLAC holding 2 h of audio: 413 by its length, not decoded; a "
                           f"PNG declaring 100,000 x 100,000 pixels: 422 before decoding; 3 MB bodies past a 2 MB "
                           f"limit, declared or streamed: 413 before parsing; gateway RSS grew {grown:.0f} MB")
    assert grown < 50
