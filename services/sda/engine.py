"""The animator of one stream: audio in, the face's motion out, one clock for both.

Frame i of a segment shows the audio [i/fps, (i+1)/fps) of that segment and is made from the 0.2 s window
centred on it, so it can be generated once 0.1 s of audio past its centre has arrived (or the segment ended).
The generator's GRU state is carried from chunk to chunk and segment to segment, so a reply streams without
seams. Each frame carries the mouth's pose and the inside of the mouth from the generator; how much it is
speaking (its loudness, smoothed: the generated pose shows in speech, and at rest the person's own mouth does, so
a smile stays a smile); the head's motion (services.sda.head_motion); and how far its eyelids are down (a blink
every few seconds, sooner at a pause). The frame codec turns them into the picture.

Where the voice says when its lips close (p, b, m: a voice with phoneme timings knows), the frame showing the
middle of each closure, and every frame whose middle it covers, shows the lips closed whatever the generator made
of the audio (a closure is short, and the generator, which hears it as a moment of quiet, often leaves the mouth
ajar); the frame on either side closes them half way, as lips close from the vowel before and open into the next.
"""

from dataclasses import dataclass

import numpy as np
import torch

from core import audio as pcm
from core.errors import BadRequest
from core.sda.features import audio_windows
from services.sda.avatars import Avatar
from services.sda.head_motion import HeadMotion

_BATCH = 25  # frames generated in one call when several are ready


# A frame's loudness (dBFS) where the generated lower face starts to show over the photo, and where it fully shows;
# how fast it comes in at speech, and how slowly it gives the photo back after (not between syllables).
_SILENT_DB, _SPEAKING_DB = -50.0, -35.0
_RISE, _FALL = 0.7, 0.25
# Blinks on the photo's own eyes: one every 2-6 s (people blink about every 4 s), over 7 frames (280 ms): closing
# in two, shut for two, opening more slowly, as people's lids do.
_BLINK_EVERY_S = (2.0, 6.0)
_BLINK = (0.45, 0.9, 1.0, 1.0, 0.75, 0.45, 0.2)
_BLINK_AT_PAUSE_AFTER_S = 1.0  # a pause brings the next blink forward once this long has passed since the last
_BESIDE_CLOSURE = 0.5  # how far a frame next to one whose lips close closes them
# A closure is one phoneme's (a long "mm" under a second), and comes just before its audio: a span longer, or further
# ahead of the audio received, is a client's mistake (and would hold memory for frames that may never come).
_LONGEST_CLOSURE_S = 1.0
_CLOSURE_AHEAD_S = 30.0


@dataclass(frozen=True)
class AnimatedFrame:
    opening: float  # the generated mouth pose (core.sda.face_warp)
    rounding: float
    cavity: np.ndarray  # float32 (3, h, w) in [-1, 1]: the inside of the mouth
    head: np.ndarray  # (6,): turn, shift right and down, brows' lift, gaze right and down (services.sda.head_motion)
    pts_s: float
    index: int
    audio: bytes  # the input-format audio this frame shows; empty for idle frames
    segment: int
    speaking: float  # 0 at rest (the photo shows as it is) to 1 in speech (the generated lower face shows)
    blink: float  # how far the eyelids are down: 0 open, 1 closed
    lips_closed: float = 0.0  # how far the voice closes the lips here, whatever the pose: 1 shut, 0 as posed


class Animator:
    def __init__(self, avatar: Avatar, sample_rate: int, encoding: int, fps: int):
        cfg = avatar.generator.cfg
        if fps not in (0, cfg.fps):
            raise BadRequest(f"this avatar's model animates at {cfg.fps} fps; ask for {cfg.fps} (or 0)")
        if sample_rate % cfg.fps:
            raise BadRequest(f"sample rate {sample_rate} Hz is not a whole number of samples per frame at {cfg.fps} fps")
        self._avatar = avatar
        self._cfg = cfg
        self._rate = sample_rate
        self._encoding = encoding
        self.fps = cfg.fps
        self.bytes_per_frame = sample_rate // cfg.fps * (2 if encoding == pcm.LINEAR16 else 4)
        self._state = avatar.generator.initial_state(1, avatar.device)
        self._frames = 0  # frames of the stream so far: the clock
        self._speaking = 0.0
        self._rng = np.random.default_rng()
        self._head = HeadMotion(cfg.fps, self._rng)
        self._next_blink = self._blink_gap()  # the frame the next blink starts at
        self._last_blink = 0
        self.segment = 0
        self._reset_segment()

    def _reset_segment(self) -> None:
        self._raw = bytearray()
        self._audio = np.zeros(0, dtype=np.float32)  # model-rate audio of the segment
        self._done = 0  # frames of the segment generated
        self._closed: set[int] = set()  # frames of the segment whose lips close

    def close_lips(self, spans: list[tuple[float, float]]) -> None:
        """The voice closes its lips over these spans of the segment (seconds from its start): the frames that show
        them close the lips. Give them before the audio they fall in; a span whose frames were made already is
        too late to show."""
        fps = self._cfg.fps
        received_s = self._audio.size / self._cfg.sample_rate
        for start_s, end_s in spans:
            if not (0.0 <= start_s <= end_s <= start_s + _LONGEST_CLOSURE_S
                    and start_s <= received_s + _CLOSURE_AHEAD_S):
                raise BadRequest(f"a lips-closed span runs forward from 0 s, lasts at most {_LONGEST_CLOSURE_S:.0f} s "
                                 f"and starts at most {_CLOSURE_AHEAD_S:.0f} s past the audio received "
                                 f"({received_s:.2f} s); got {start_s}-{end_s} s")
            middle = int((start_s + end_s) / 2 * fps)
            covered = range(int(np.ceil(start_s * fps - 0.5)), int(np.floor(end_s * fps - 0.5)) + 1)
            self._closed.update([middle, *covered])

    @property
    def pending_frames(self) -> int:
        """Frames of audio received but not generated yet."""
        return max(0, -(-self._audio.size // self._cfg.samples_per_frame) - self._done)

    @property
    def next_pts(self) -> float:
        return self._frames / self._cfg.fps

    def push(self, data: bytes) -> list[AnimatedFrame]:
        """Add a chunk of audio; return the frames it completes."""
        samples = pcm.decode(data, self._encoding)
        self._raw += data
        self._audio = np.concatenate([self._audio, pcm.resample(samples, self._rate, self._cfg.sample_rate)])
        cfg = self._cfg
        lookahead = cfg.window_samples // 2
        ready = max(0, (self._audio.size - lookahead - cfg.samples_per_frame // 2) // cfg.samples_per_frame + 1)
        return self._generate(ready - self._done) if ready > self._done else []

    def end_segment(self) -> tuple[list[AnimatedFrame], int]:
        """Generate the segment's last frames; return them and the number of frames the segment had."""
        frames = self._generate(self.pending_frames)
        total = self._done
        self.segment += 1
        self._reset_segment()
        return frames, total

    def clear(self) -> None:
        """Drop the audio not animated yet and start a new segment."""
        self.segment += 1
        self._reset_segment()

    def idle(self) -> AnimatedFrame:
        """One frame with no speech: the face at rest, its head, eyes and lids still moving on the stream's clock."""
        silence = np.zeros((1, 1, self._cfg.window_samples), dtype=np.float32)
        return self._frame(self._run(silence)[0], None, b"", -1)

    def _generate(self, count: int) -> list[AnimatedFrame]:
        out: list[AnimatedFrame] = []
        for start in range(self._done, self._done + count, _BATCH):
            n = min(_BATCH, self._done + count - start)
            windows = audio_windows(self._audio, n, self._cfg, start)[None]
            for offset, motion in enumerate(self._run(windows)):
                i = start + offset
                piece = bytes(self._raw[i * self.bytes_per_frame : (i + 1) * self.bytes_per_frame])
                piece += b"\0" * (self.bytes_per_frame - len(piece))
                spf = self._cfg.samples_per_frame
                out.append(self._frame(motion, self._audio[i * spf : (i + 1) * spf], piece, self.segment,
                                       self._lips_closed(i)))
        self._done += count
        self._closed = {i for i in self._closed if i >= self._done - 1}  # the last one made still has a neighbour
        return out

    def _frame(self, motion: tuple, samples: np.ndarray | None, audio: bytes, segment: int,
               lips_closed: float = 0.0) -> AnimatedFrame:
        """The stream's next frame: the generated motion, and what the clock adds (speaking, head, eyelids)."""
        loud = 20 * np.log10(np.sqrt(np.mean(samples**2)) + 1e-9) if samples is not None and samples.size else -120.0
        was_speaking = self._speaking
        speaking = self._speaking_at(loud)
        head = self._head.step(loud, speaking)
        frame = AnimatedFrame(*motion, head, self.next_pts, self._frames, audio, segment, speaking,
                              self._blink_at(pause=was_speaking > 0.5 >= speaking), lips_closed)
        self._frames += 1
        return frame

    def _lips_closed(self, index: int) -> float:
        """How far the voice closes the lips in the segment's frame `index`."""
        if index in self._closed:
            return 1.0
        return _BESIDE_CLOSURE if index - 1 in self._closed or index + 1 in self._closed else 0.0

    def _blink_gap(self) -> int:
        return self._frames + int(self._rng.uniform(*_BLINK_EVERY_S) * self._cfg.fps)

    def _blink_at(self, pause: bool) -> float:
        """The eyelids for the stream's current frame (frames are numbered on the stream's one clock); a pause in
        speech brings the next blink forward, as people blink more at pauses."""
        if pause and self._frames < self._next_blink and \
                self._frames - self._last_blink > _BLINK_AT_PAUSE_AFTER_S * self._cfg.fps:
            self._next_blink = self._frames
        if self._frames == self._next_blink:
            self._last_blink = self._frames
        step = self._frames - self._next_blink
        if step >= len(_BLINK):
            self._next_blink = self._blink_gap()
            return 0.0
        return _BLINK[step] if step >= 0 else 0.0

    def _speaking_at(self, loud: float) -> float:
        """How much of the generated mouth to show for a frame this loud (dBFS): smoothed so that it comes in
        quickly at speech and settles back onto the photo's own mouth after it."""
        target = float(np.clip((loud - _SILENT_DB) / (_SPEAKING_DB - _SILENT_DB), 0.0, 1.0))
        self._speaking += (_RISE if target > self._speaking else _FALL) * (target - self._speaking)
        if self._speaking < 0.02:
            self._speaking = 0.0
        return self._speaking

    @torch.no_grad()
    def _run(self, windows: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
        """(opening, rounding, cavity) of each frame of `windows` (1, T, window_samples)."""
        generator = self._avatar.generator
        t = windows.shape[1]
        device = self._avatar.device
        noise = torch.randn(1, t, self._cfg.noise_dim, device=device) * generator.NOISE_STD
        motion, self._state = generator(self._avatar.lips, torch.from_numpy(windows).to(device), self._state, noise)
        cavity = motion.cavity[0].cpu().numpy()
        return [(float(o), float(r), c) for o, r, c in zip(motion.opening[0].cpu(), motion.rounding[0].cpu(), cavity)]
