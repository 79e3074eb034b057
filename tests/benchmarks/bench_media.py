"""Media that fits a real connection: what a talking session costs on the wire with JPEG frames and with encoded
video (H.264, VP8), what the encoding costs in time and CPU, and how close the encoded frames stay to the
uncompressed ones.

Through /ws: sessions that ask for one codec each speak questions in voices the models were not built around
(tests/voices.py) and count the bytes of video and audio per second of reply, the first frame, and the CPU the
animation stage and the gateway spent (sessions at once: the concurrency bench). In process: one reply's frames, framed as the service frames them, for three faces (the default
avatar, another person's photo, a greyscale photo of odd size) are encoded by each codec and decoded again,
against the uncompressed frames.
"""

import asyncio
import os
import time

import cv2
import numpy as np

from tests.benchmarks.bench_concurrency import _session
from tests.benchmarks.report import Section, met, met_at_least, ms, p50
from tests.voices import UNFAMILIAR, say

CODECS = ("jpeg", "h264", "vp8")  # video, in process
SESSIONS = ("jpeg+linear16", "h264+linear16", "vp8+linear16", "h264+opus")  # video + audio, through /ws
ROUNDS = 2  # each codec's session runs this often, interleaved with the others
MAX_MBPS = 1.5  # per talking session, video and audio
MIN_PSNR_DB = 35.0
MAX_ADDED_FIRST_FRAME_S = 0.040
SENTENCE = "Tell me something about the weather where you live, and what you like to do on a sunny afternoon."


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wire(stack) -> dict[str, dict]:
    """Per codec: bits per second of reply (video, audio), first frames, and CPU seconds per second of reply."""
    url = f"ws://{stack.address('gateway')}/ws"
    pids = {name: stack.processes[name].pid for name in ("sda", "gateway")}
    out = {codec: {"turns": [], "cpu": {name: 0.0 for name in pids}} for codec in SESSIONS}
    for _ in range(ROUNDS):
        for codec in SESSIONS:
            before = {name: _cpu_s(pid) for name, pid in pids.items()}
            session = asyncio.run(_session(url, 0, *codec.split("+")))
            for name, pid in pids.items():
                out[codec]["cpu"][name] += _cpu_s(pid) - before[name]
            out[codec]["turns"] += session["turns"]
    return out


def _frames_for(face: np.ndarray | None) -> list[np.ndarray]:
    """One reply's uncompressed frames, framed as the service frames them, for `face` (None: the default
    avatar)."""
    import torch
    from avatar.sda.v1 import sda_pb2

    from core import audio as pcm
    from services.sda.avatars import AvatarBook, choose_device
    from services.sda.config import SdaSettings
    from services.sda.engine import Animator
    from services.sda.frame_codec import FrameCodec

    torch.set_num_threads(2)
    book = AvatarBook("core/sda/checkpoints/default.pt", "", choose_device("cpu"))
    default = book.load_default()
    avatar = default if face is None else book.from_photo(face)
    animator = Animator(avatar, 16000, pcm.LINEAR16, 0)
    speech = say(SENTENCE, UNFAMILIAR[3]).samples
    frames = animator.push((np.clip(speech, -1, 1) * 32767).astype(np.int16).tobytes()) + animator.end_segment()[0]
    codec = FrameCodec(avatar.rig, sda_pb2.AnimateConfig(image_encoding=sda_pb2.RGB24), SdaSettings(), animator.fps)
    return [np.frombuffer(codec.encode(f)[0], np.uint8).reshape(codec.height, codec.width, 3) for f in frames]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-9))


def _quality(frames: list[np.ndarray], codec: str) -> dict:
    """Encode and decode one reply's frames: bits per second, PSNR (mean, worst), SSIM, encoding time, and the
    time to the first frame's bytes from a stream's start (encoder set-up included)."""
    import av
    from skimage.metrics import structural_similarity

    from services.sda.video_encoder import VideoEncoder

    h, w = (s // 2 * 2 for s in frames[0].shape[:2])
    frames = [np.ascontiguousarray(f[:h, :w]) for f in frames]
    started = time.perf_counter()
    if codec == "jpeg":
        encoded, first = [], None
        for f in frames:
            encoded.append(cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])[1]
                           .tobytes())
            first = first or time.perf_counter() - started
        spent = time.perf_counter() - started
        decoded = [cv2.cvtColor(cv2.imdecode(np.frombuffer(e, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                   for e in encoded]
    else:
        encoder, encoded, first = VideoEncoder(codec, w, h, 25), [], None
        for f in frames:
            encoded.append(encoder.encode(f)[0])
            first = first or time.perf_counter() - started
        spent = time.perf_counter() - started
        decoder = av.CodecContext.create(codec, "r")
        decoded = [image.to_ndarray(format="rgb24") for e in encoded for image in decoder.decode(av.Packet(e))]
    psnr = [_psnr(a, b) for a, b in zip(decoded, frames)]
    ssim = [structural_similarity(a, b, channel_axis=2) for a, b in list(zip(decoded, frames))[::4]]
    return {"kbps": sum(map(len, encoded)) * 8 / (len(frames) / 25) / 1000, "psnr": float(np.mean(psnr)),
            "worst": min(psnr), "ssim": float(np.mean(ssim)), "ms_per_frame": spent / len(frames) * 1000,
            "first_s": first, "size": f"{w}x{h}"}


def _gateway_side_ms(frames: list[np.ndarray]) -> float:
    """Encoding at the gateway instead: each JPEG from the animation stage decoded, then encoded (ms a frame)."""
    from services.sda.video_encoder import VideoEncoder

    jpegs = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])[1] for f in frames]
    encoder = VideoEncoder("h264", *frames[0].shape[1::-1], 25)
    started = time.perf_counter()
    for jpeg in jpegs:
        encoder.encode(cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return (time.perf_counter() - started) / len(frames) * 1000


def run(stack) -> Section:
    from skimage import data

    section = Section("Media: bytes on the wire per talking session, JPEG frames against encoded video")
    wire = _wire(stack)
    first_frames = {}
    for codec, result in wire.items():
        turns = [t for t in result["turns"] if t["seconds"]]
        seconds = sum(t["seconds"] for t in turns)
        video = sum(t["video_bytes"] for t in turns) * 8 / seconds / 1e6
        audio = sum(t["audio_bytes"] for t in turns) * 8 / seconds / 1e6
        first_frames[codec] = p50([t["first_frame"] for t in turns if t["first_frame"] is not None])
        section.add(f"{codec}: bits per second of reply, video + audio",
                    f"{video:.2f} + {audio:.2f} = {video + audio:.2f} Mbit/s ({met(video + audio, MAX_MBPS, lambda v: f'{v:.2f} Mbit/s')})",
                    f"≤ {MAX_MBPS} Mbit/s")
        section.add(f"{codec}: end of speech → first frame", f"{ms(first_frames[codec])} P50 ({len(turns)} turns)")
        section.add(f"{codec}: CPU per second of reply", "; ".join(
            f"{name} {spent / seconds * 1000:.0f} ms" for name, spent in result["cpu"].items()))

    from matplotlib import cbook

    hopper = cv2.cvtColor(cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))), cv2.COLOR_BGR2RGB)
    grey = cv2.cvtColor(cv2.cvtColor(cv2.resize(data.astronaut(), (360, 450)), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    faces = {"default avatar": None, "another face (Grace Hopper's portrait)": hopper,
             "greyscale photo, 360x450": grey}
    for name, face in faces.items():
        frames = _frames_for(face)
        for codec in CODECS:
            q = _quality(frames, codec)
            target = f"≥ {MIN_PSNR_DB:.0f} dB" if codec != "jpeg" else ""
            verdict = f" ({met_at_least(q['psnr'], MIN_PSNR_DB, lambda v: f'{v:.1f} dB')})" if codec != "jpeg" else ""
            section.add(f"{name} ({q['size']}), {codec}: PSNR / SSIM against the uncompressed frames",
                        f"{q['psnr']:.1f} dB mean{verdict}, {q['worst']:.1f} dB worst; SSIM {q['ssim']:.3f}; "
                        f"{q['kbps']:.0f} kbit/s; {q['ms_per_frame']:.1f} ms a frame to encode", target)
            if name == "default avatar":
                first_frames[f"{codec} in process"] = q["first_s"]
    added = first_frames["h264 in process"] - first_frames["jpeg in process"]
    section.add("h264 ÷ JPEG: time to a stream's first frame bytes (encoder set-up and keyframe against a JPEG)",
                f"{ms(first_frames['h264 in process'])} vs {ms(first_frames['jpeg in process'])}: "
                f"{added * 1000:+.1f} ms ({met(added, MAX_ADDED_FIRST_FRAME_S)})", "≤ 40 ms added")
    frames = _frames_for(None)
    section.add("where H.264 encoding runs: in the animation stage vs in the gateway (JPEG decoded, then encoded)",
                f"{_quality(frames, 'h264')['ms_per_frame']:.1f} ms vs {_gateway_side_ms(frames):.1f} ms a frame")
    section.notes.append(
        "Encoding runs in the animation stage: one encoder per reply stream, where the frames are made. It costs "
        "the stage a little more than the JPEG it replaces, scales with the animation replicas, and the link to "
        "the gateway carries the encoded frames; the gateway then has a tenth of the bytes to send. In the "
        "gateway each frame would be a JPEG decoded and encoded again, on the process every session shares.")
    section.notes.append(f"{ROUNDS} sessions per codec of 2 spoken questions each; bits per second over the "
                         "reply's seconds of audio (what a talking session streams); audio is 16 kHz PCM "
                         "(linear16) or Opus at GATEWAY_OPUS_KBPS (24).")
    return section
