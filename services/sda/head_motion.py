"""The head's own motion, made on the stream's clock from the loudness of what it says (procedural, not learned).

- Sway: a slow turn of about a degree and a sideways drift, from a few incommensurate sines with random phases
  (coherent, never repeating), wider while speaking.
- Breathing: the head rises and falls about 15 times a minute.
- Nods: a small dip of the head at a stressed syllable (the loudness jumping well above its recent floor), at
  most one every 0.4 s.
- Brows: a lift at the loudest peaks, at most one every 1.5 s.
- Gaze: saccades, the eyes jumping to a new point every 0.7-3 s (held longer and nearer the middle while
  speaking, as a speaker looks at the listener), each jump over two frames.
A stream starts from the photo's own pose and the sway and breathing come in over its first seconds: the first
frame of every stream is the same picture (the avatar's still, wherever it is drawn), and a reply's first frame
does not jump from it.
Each frame's motion is (turn in radians, shift right and down in face heights, brows' lift in their distance to
the eyes, gaze right and down in eye widths): what `core.sda.face_warp.warp` takes as `head`.
"""

import math

import numpy as np

_SWAY_HZ = (0.07, 0.13, 0.23)
_TURN = math.radians(1.0)  # the sway's turn at rest; 1.6× while speaking
_DRIFT = 0.006  # sideways, face heights
_BREATH_HZ, _BREATH = 0.25, 0.003
_NOD, _NOD_S, _NOD_GAP_S, _NOD_JUMP_DB = 0.012, 0.12, 0.4, 9.0
_BROW, _BROW_S, _BROW_GAP_S, _BROW_OVER_DB = 0.25, 0.2, 1.5, 4.0
_SILENT_DB = -50.0
_GAZE_X, _GAZE_Y = 0.12, 0.04  # how far the eyes look aside, in eye widths
_GAZE_HOLD_S = (0.7, 3.0)
_SETTLE_S = 1.5  # the sway and breathing grow from nothing over a stream's first seconds


class HeadMotion:
    def __init__(self, fps: int, rng: np.random.Generator):
        self._fps = fps
        self._phases = rng.uniform(0, 2 * math.pi, size=(3, len(_SWAY_HZ)))
        self._frame = 0
        self._floor_db = _SILENT_DB  # the loudness's recent low, rising slowly
        self._mean_db = _SILENT_DB  # its running level while speaking
        self._last_nod = self._last_brow = -10**6
        self._speaking = 0.0
        self._rng = rng
        self._gaze = np.zeros(2, np.float32)
        self._gaze_from = np.zeros(2, np.float32)
        self._gaze_at = 0  # the frame the last saccade began
        self._next_saccade = int(rng.uniform(*_GAZE_HOLD_S) * fps)

    def step(self, loudness_db: float, speaking: float) -> np.ndarray:
        """The motion for the next frame, given its audio's loudness (dBFS) and how much it is speaking (0-1)."""
        t = self._frame / self._fps
        if loudness_db - self._floor_db > _NOD_JUMP_DB and loudness_db > _SILENT_DB + 15 \
                and self._frame - self._last_nod > _NOD_GAP_S * self._fps:
            self._last_nod = self._frame
        if speaking > 0.5 and loudness_db > self._mean_db + _BROW_OVER_DB \
                and self._frame - self._last_brow > _BROW_GAP_S * self._fps:
            self._last_brow = self._frame
        self._floor_db = min(loudness_db, self._floor_db + 40.0 / self._fps)  # forgets a low over about 0.4 s
        if loudness_db > _SILENT_DB + 15:
            self._mean_db += 0.05 * (loudness_db - self._mean_db)
        self._speaking += 0.05 * (speaking - self._speaking)  # the sway widens and narrows over seconds

        wave = np.sin(2 * math.pi * np.array(_SWAY_HZ) * t + self._phases).mean(axis=1)  # three coherent curves
        settled = min(1.0, t / _SETTLE_S)
        width = (1.0 + 0.6 * self._speaking) * settled * settled * (3 - 2 * settled)
        turn = _TURN * width * wave[0] * 1.6
        right = _DRIFT * width * wave[1] * 1.6
        down = width * (_BREATH * math.sin(2 * math.pi * _BREATH_HZ * t + self._phases[2, 0]) + _DRIFT * 0.5 * wave[2])
        down += _NOD * _pulse((self._frame - self._last_nod) / self._fps, _NOD_S)
        brow = _BROW * _pulse((self._frame - self._last_brow) / self._fps, _BROW_S)
        gaze = self._saccade()
        self._frame += 1
        return np.array([turn, right, down, brow, gaze[0], gaze[1]], np.float32)

    def _saccade(self) -> np.ndarray:
        """Where the eyes look this frame: a jump to a new point now and then, done in two frames."""
        if self._frame >= self._next_saccade:
            near = 0.4 if self._speaking > 0.5 else 1.0  # a speaker keeps their eyes on the listener
            self._gaze_from = self._gaze_now()
            self._gaze = np.array([self._rng.uniform(-_GAZE_X, _GAZE_X) * near,
                                   self._rng.uniform(-_GAZE_Y, _GAZE_Y) * near], np.float32)
            self._gaze_at = self._frame
            hold = self._rng.uniform(*_GAZE_HOLD_S) * (1.5 if self._speaking > 0.5 else 1.0)
            self._next_saccade = self._frame + int(hold * self._fps)
        return self._gaze_now()

    def _gaze_now(self) -> np.ndarray:
        done = min(1.0, (self._frame - self._gaze_at + 1) / 2)
        return self._gaze_from + done * (self._gaze - self._gaze_from)


def _pulse(since_s: float, rise_s: float) -> float:
    """A smooth bump: 0 at its start, 1 after `rise_s`, back towards 0 over a few times that."""
    if since_s < 0:
        return 0.0
    x = since_s / rise_s
    return x * math.exp(1 - x)
