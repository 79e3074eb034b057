"""The gateway's jitter buffer for a WebRTC microphone (services.gateway.catch_up_jitter): real Opus packets of
speech, some lost, some out of order, through the buffer and aiortc's own Opus decoder."""

from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from services.gateway.catch_up_jitter import CatchUpJitterBuffer, frame_ms
from tests.speech import SENTENCES, speak

pytestmark = pytest.mark.unit

RATE = 48000
FRAME = 960  # 20 ms at 48 kHz


@pytest.fixture(scope="module")
def packets() -> list[RtpPacket]:
    """A spoken sentence as the RTP packets of a browser's microphone track: one 20 ms Opus frame each."""
    speech = speak(SENTENCES[0], RATE)
    pcm = (np.clip(speech, -1, 1) * 32767).astype(np.int16)
    encoder = OpusEncoder()
    payloads = []
    for start in range(0, pcm.size - FRAME + 1, FRAME):
        frame = av.AudioFrame.from_ndarray(pcm[None, start : start + FRAME], format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts, frame.time_base = start, Fraction(1, RATE)
        payloads += encoder.encode(frame)[0]
    out = []
    for i, payload in enumerate(payloads):
        packet = RtpPacket(payload_type=111, sequence_number=(65500 + i) % 65536, timestamp=i * FRAME, payload=payload)
        packet._data = payload  # what aiortc's receiver sets from the payload before its jitter buffer
        out.append(packet)
    return out


def _through(buffer, packets) -> list[tuple[int, int]]:
    """(packets added so far, samples decoded) for each frame the buffer hands over."""
    decoder = OpusDecoder()
    out = []
    for added, packet in enumerate(packets, 1):
        frame = buffer.add(packet)[1]
        if frame is not None:
            out.append((added, sum(f.samples for f in decoder.decode(frame))))
    return out


def test_every_packet_decodes_as_it_comes_when_none_is_lost(packets):
    got = _through(CatchUpJitterBuffer(), packets)
    assert [added for added, _ in got] == list(range(1, len(packets) + 1))  # each at once: nothing held back
    assert all(samples == FRAME for _, samples in got)
    assert frame_ms(packets[0]._data[0]) == 20.0


def test_a_lost_packet_costs_its_own_20_ms_and_the_microphone_catches_up_at_once(packets):
    lost = {30, 71, 72}  # one alone, then two in a row (numbers wrap past 65535 between them)
    sent = [p for i, p in enumerate(packets) if i not in lost]
    got = _through(CatchUpJitterBuffer(patience=3), sent)
    assert sum(samples for _, samples in got) == len(sent) * FRAME  # every packet that came is heard
    # and none is held once its turn has come: the last packet's audio comes out when it does
    assert got[-1][0] == len(sent)
    held = max(added - sum(s for _, s in got[: k + 1]) // FRAME for k, (added, _) in enumerate(got))
    assert held <= 3  # at most the patience's packets wait, after a loss, then it is level again
    # aiortc's own buffer for audio holds 16 packets after one loss, for good: the microphone 320 ms behind
    theirs = _through(JitterBuffer(capacity=16, prefetch=4), sent)
    assert len(sent) - sum(samples for _, samples in theirs) // FRAME >= 16


def test_packets_out_of_order_are_put_back_in_order_and_a_late_one_is_dropped(packets):
    order = list(range(len(packets)))
    order[20], order[21] = order[21], order[20]  # one overtakes another
    order.remove(50)
    order.insert(56, 50)  # one comes after its wait was given up
    decoder, buffer, timestamps = OpusDecoder(), CatchUpJitterBuffer(), []
    for i in order:
        frame = buffer.add(packets[i])[1]
        if frame is not None:
            timestamps += [frame.timestamp + k * FRAME for k in range(sum(f.samples for f in decoder.decode(frame))
                                                                      // FRAME)]
    expected = [i * FRAME for i in range(len(packets)) if i != 50]
    assert timestamps == expected


def test_a_sender_whose_numbers_start_anew_is_followed(packets):
    renumbered = []
    for i, packet in enumerate(packets[40:]):
        again = RtpPacket(payload_type=111, sequence_number=1000 + i, timestamp=packet.timestamp, payload=packet._data)
        again._data = packet._data
        renumbered.append(again)
    got = _through(CatchUpJitterBuffer(), packets[:40] + renumbered)
    assert sum(samples for _, samples in got) == len(packets) * FRAME
