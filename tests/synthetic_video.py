"""A talking video the pipeline tests make themselves: two voices taking turns in front of one face.

The target speaks with the packaged Piper voice and the face's mouth opens with its loudness; the other speaker
is espeak-ng (another synthesizer, another voice), off camera. One target turn is planted garbled (its audio
reversed) for the review queue, and the last target turn is spoken over an empty frame (no face).

`pausy_conversation` is speech as people make it: short phrases with pauses inside a turn, two voices.
"""

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from core.audio import resample
from core.sda.face_rig import FaceRig
from pipelines.sda.mouth_render import MouthRenderer
from pipelines.sda.synthetic import default_photo
from tests.speech import SENTENCES, speak

RATE = 16000
FPS = 25
SIZE = 448

OTHER_LINES = [
    "I think we should meet again next week to talk about the plan.",
    "That sounds good to me, but the budget is still a problem.",
    "Let me check my calendar and I will write to you tonight.",
    "The new office is much closer to the station than the old one.",
    "Do you remember the name of that little restaurant by the river?",
    "We could ask the others what they think about it first.",
    "Yes, and after that we can finally go and get some lunch.",
]


@dataclass
class Turn:
    speaker: str  # "target" or "other"
    start_s: float
    end_s: float
    text: str
    garbled: bool = False
    face: bool = True


@dataclass
class TalkingVideo:
    path: Path
    turns: list[Turn] = field(default_factory=list)

    def speech(self, speaker: str) -> list[tuple[float, float]]:
        return [(t.start_s, t.end_s) for t in self.turns if t.speaker == speaker]


def espeak(text: str) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", "en-us+f3", "-s", "165", "-w", f.name, text], check=True)
        audio, rate = sf.read(f.name, dtype="float32")
    return resample(audio, rate, RATE) * 0.8


def _trim(audio: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1] if loud.size else audio


def make_talking_video(path: Path, turns: int = 14, seed: int = 0) -> TalkingVideo:
    """About a minute of alternating turns (7 target, 7 other), written as an MP4 (H.264 + AAC)."""
    rng = np.random.default_rng(seed)
    pieces, video, t = [np.zeros(int(0.5 * RATE), np.float32)], TalkingVideo(path), 0.5
    for i in range(turns):
        speaker = "target" if i % 2 == 0 else "other"
        k = i // 2
        if speaker == "target":
            audio = _trim(speak(SENTENCES[k]))
            garbled = k == 2
            if garbled:
                audio = audio[::-1].copy()
            turn = Turn("target", t, t + audio.size / RATE, SENTENCES[k], garbled=garbled, face=i != turns - 2)
        else:
            audio = _trim(espeak(OTHER_LINES[k]))
            turn = Turn("other", t, t + audio.size / RATE, OTHER_LINES[k])
        gap = np.zeros(int(rng.uniform(0.5, 0.9) * RATE), np.float32)
        pieces += [audio, gap]
        video.turns.append(turn)
        t = turn.end_s + gap.size / RATE
    audio = np.concatenate(pieces)
    _write(path, audio, video.turns)
    return video


def _openings(audio: np.ndarray, turns: list[Turn], frames: int) -> np.ndarray:
    spf = RATE // FPS
    loud = np.array([np.sqrt(np.mean(audio[i * spf : (i + 1) * spf] ** 2)) for i in range(frames)])
    opening = np.clip(loud / 0.08, 0, 1)
    mask = np.zeros(frames, bool)
    for turn in turns:
        if turn.speaker == "target":
            mask[int(turn.start_s * FPS) : int(turn.end_s * FPS) + 1] = True
    return np.where(mask, opening, 0.0)


def _write(path: Path, audio: np.ndarray, turns: list[Turn]) -> None:
    photo = cv2.resize(default_photo(), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    renderer = MouthRenderer.fit(photo, FaceRig.from_photo(photo).photo_points)
    frames = int(audio.size / RATE * FPS)
    openings = _openings(audio, turns, frames)
    empty = np.full((SIZE, SIZE, 3), 90, np.uint8)
    faceless = [(int(t.start_s * FPS) - 5, int(t.end_s * FPS) + 5) for t in turns if not t.face]
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "audio.wav"
        sf.write(wav, audio, RATE, subtype="PCM_16")
        ffmpeg = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{SIZE}x{SIZE}",
             "-r", str(FPS), "-i", "-", "-i", str(wav), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt",
             "yuv420p", "-c:a", "aac", "-shortest", str(path)],
            stdin=subprocess.PIPE,
        )
        for i in range(frames):
            hidden = any(a <= i <= b for a, b in faceless)
            frame = empty if hidden else renderer.render(float(openings[i]))
            ffmpeg.stdin.write(frame.tobytes())
        ffmpeg.stdin.close()
        assert ffmpeg.wait() == 0, "ffmpeg could not write the test video"


PHRASES = ["Well.", "I think so.", "Yes, that was it.", "Maybe later.", "Right, and then", "we went home.",
           "It was cold.", "Not really.", "You know what I mean?", "Exactly.", "Sure.", "On Sunday, I guess."]
REPLIES = ["Oh, I see what you mean.", "And what happened after that?", "That sounds like a long day.",
           "Really? Tell me more about it.", "I would have done the same thing."]


def pausy_conversation(wav: Path, turns: int, seed: int = 3) -> TalkingVideo:
    """Two people as they talk: the target says 2-4 short phrases a turn with 0.4-1.2 s pauses between them (a
    person thinking), the other answers between turns (espeak-ng voices the project's models were not built
    around). Written as a 16 kHz WAV; the turns are each phrase with its speaker."""
    from tests.voices import UNFAMILIAR, last_voiced_sample, say

    rng = np.random.default_rng(seed)
    me, you = UNFAMILIAR[1], UNFAMILIAR[2]  # us-female, gb-male-slow
    pieces, t, conversation = [np.zeros(RATE // 2, np.float32)], 0.5, TalkingVideo(wav)

    def add(text: str, voice, speaker: str, pause_s: float) -> None:
        nonlocal t
        samples = say(text, voice).samples
        loud = np.flatnonzero(np.abs(samples) > 0.01)
        audio = samples[loud[0] : last_voiced_sample(samples)]
        conversation.turns.append(Turn(speaker, t, t + audio.size / RATE, text))
        pieces.extend([audio, np.zeros(int(pause_s * RATE), np.float32)])
        t += audio.size / RATE + int(pause_s * RATE) / RATE

    for turn in range(turns):
        for _ in range(int(rng.integers(2, 5))):
            add(PHRASES[int(rng.integers(len(PHRASES)))], me, "target", rng.uniform(0.4, 1.2))
        add(REPLIES[turn % len(REPLIES)], you, "other", rng.uniform(0.5, 1.0))
    sf.write(wav, np.concatenate(pieces), RATE)
    return conversation
