"""A conversation over WebRTC: the microphone as an Opus track, the reply as audio and video tracks, events on a
data channel; barge-in stops both tracks at once; a dropped peer connection gives way to a new one, and the
session goes on. Real services, a real peer connection (aiortc) over the loopback."""

import asyncio
import time

import numpy as np
import pytest

from tests.speech import speak, wer
from tests.webrtc_client import WebRtcClient

pytestmark = pytest.mark.e2e


def _lower_face_moves(frames: list[np.ndarray]) -> bool:
    lower = np.stack([f[f.shape[0] // 2 :].astype(np.float32) for f in frames])
    return np.abs(np.diff(lower, axis=0)).mean(axis=(1, 2, 3)).max() > 1.0


async def _final(client: WebRtcClient) -> dict:
    after = 0
    while True:
        await client.event("transcript", after=after)
        finals = [e for _, e in client.received.events[after:] if e["type"] == "transcript" and e["final"]]
        if finals:
            return finals[0]
        after = len(client.received.events)


@pytest.mark.parametrize("video", ["h264", "vp8"])
async def test_a_question_spoken_into_the_microphone_track_is_answered_on_the_audio_and_video_tracks(stack, video):
    async with WebRtcClient(stack.address("gateway"), video) as client:
        question = "Hello! What is your name?"
        client.microphone.say(speak(question))
        final = await _final(client)
        assert wer([(question, final["text"])]) <= 0.2
        end = await client.event("turn_end")
        await client.played()  # the tracks play in real time: the reply was made well before it is heard
        received = client.received
    assert end["reply"].strip() and not received.websocket_media  # all media came over the peer connection
    images = [image for _, image in received.frames]
    assert len(images) >= 25 and images[0].shape == (512, 512, 3) and _lower_face_moves(images)
    audio = np.concatenate([a for _, a in received.audio])
    loud = np.sqrt(np.mean(audio[: audio.size // 960 * 960].reshape(-1, 960) ** 2, axis=1))  # 20 ms windows
    assert (loud > 0.05 * loud.max()).mean() > 0.1, "the reply audio is not speech"
    spoken_s = (loud > 0.05 * loud.max()).sum() * 0.02
    assert spoken_s >= 0.15 * len(end["reply"].split())
    arrivals = [t for t, _ in received.frames]
    assert arrivals[-1] - arrivals[0] >= 0.8 * len(arrivals) * 0.04  # played in real time, not all at once


async def test_speech_over_a_reply_stops_both_tracks_and_a_dropped_connection_gives_way_to_a_new_one(stack):
    async with WebRtcClient(stack.address("gateway")) as client:
        client.microphone.say(speak("Please tell me a long story about a dragon who lived in the mountains."))
        while len(client.received.frames) < 50:  # two seconds of the story are playing
            await asyncio.sleep(0.1)
        asked = len(client.received.events)
        client.microphone.say(speak("Stop, tell me about the ocean instead."))
        interrupted = await client.event("interrupted", after=asked)
        stopped_at = next(t for t, e in client.received.events if e is interrupted)
        await asyncio.sleep(1.0)
        # Frames after the question's own end of turn may be its reply's (on a loaded machine the interruption can
        # come as late as the question's last words, after its end of turn): the story's are those before it.
        answered_at = [t for t, e in client.received.events[asked:] if e["type"] == "end_of_turn"]
        until = min([stopped_at + 1.0, *answered_at])
        late = [round(t - stopped_at, 2) for t, _ in client.received.frames if stopped_at + 0.3 < t < until]
        assert not late, f"frames of the interrupted story this long after it stopped: {late}"
        await client.event("turn_end", after=len(client.received.events) - 1)

        await client.drop()  # the peer connection goes; the session does not
        await client.connect()
        before = len(client.received.frames)
        mark = len(client.received.events)
        client.microphone.say(speak("What colour is the sky?"))
        end = await client.event("turn_end", after=mark)
        await client.played()
        assert end["reply"].strip() and len(client.received.frames) - before >= 25


async def test_a_connection_lost_during_a_reply_hands_what_it_had_not_played_to_the_websocket(stack):
    """The peer connection is lost two seconds into a story: the story goes on over the WebSocket from where the
    tracks were (its frames from a keyframe, so they decode), neither from its start nor skipping what they held."""
    async with WebRtcClient(stack.address("gateway")) as client:
        client.microphone.say(speak("Please tell me a long story about a dragon who lived in the mountains."))
        while sum(a.size for _, a in client.received.audio) < 2 * 48000:
            await asyncio.sleep(0.05)
        await client.give_up()
        heard_s = sum(a.size for _, a in client.received.audio) / 48000  # how far into the story the tracks got
        await client.event("turn_end")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not client.received.websocket_media or
                                               time.monotonic() - client.received.websocket_media[-1][0] < 1):
            await asyncio.sleep(0.1)
        assert client.received.websocket_media, "nothing more of the story came"
        media = [m for _, m in client.received.websocket_media]
        assert media[0]["kind"] == "video" and media[0]["keyframe"], "the first frame does not decode on its own"
        heard = [m for m in media if m["audio"]]
        assert heard_s - 0.3 <= heard[0]["pts"] <= heard_s + 0.5, (heard_s, heard[0]["pts"])
        steps = np.diff([m["pts"] for m in heard])
        assert steps.min() > 0 and steps.max() < 0.1, "the story's audio over the WebSocket has a gap or a repeat"
        assert heard[-1]["pts"] - heard[0]["pts"] >= 1.0


async def test_offers_in_a_flood_are_refused_and_the_session_goes_on(stack):
    """Each offer costs the gateway ports and a handshake: one every 2 s at most; the rest are refused with
    `webrtc_unavailable`, and the conversation is not harmed."""
    import json

    from aiortc import RTCPeerConnection

    async with WebRtcClient(stack.address("gateway")) as client:
        pc = RTCPeerConnection()
        pc.addTransceiver("audio")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        mark = len(client.received.events)
        for _ in range(20):
            await client._ws.send(json.dumps({"type": "webrtc_offer", "sdp": pc.localDescription.sdp}))
        await pc.close()
        await asyncio.sleep(2.0)
        events = [e for _, e in client.received.events[mark:]]
        refused = [e for e in events if e["type"] == "error" and e["code"] == "webrtc_unavailable"]
        answered = [e for e in events if e["type"] == "webrtc_answer"]  # the first, if 2 s had passed since connecting
        assert len(refused) >= 19 and len(answered) <= 1, events
        client.microphone.say(speak("What colour is the sky?"))  # the session goes on over the first connection
        end = await client.event("turn_end", after=len(client.received.events))
        assert end["reply"].strip()
