"""Sounds that are not words, made here: a cough, a click, a hummed "hmm", and the steady noise of a room with a
laptop fan to mix under speech at a chosen signal-to-noise ratio."""

import numpy as np
from scipy.signal import butter, lfilter

RATE = 16000


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def cough(ms: int = 300, seed: int = 0) -> np.ndarray:
    """A burst of breath noise in the speech band with a sharp attack and a fast decay."""
    n = RATE * ms // 1000
    b, a = butter(2, [300 / (RATE / 2), 3000 / (RATE / 2)], "band")
    x = lfilter(b, a, _rng(seed).standard_normal(n))
    t = np.linspace(0, 1, n)
    return _peak(x * np.exp(-6 * t) * (1 - np.exp(-40 * t)), 0.5)


def click(seed: int = 0) -> np.ndarray:
    """A 2.5 ms click (a key, a mouse) followed by silence, 100 ms in all."""
    x = np.zeros(RATE // 10)
    x[:40] = _rng(seed).standard_normal(40)
    return _peak(x, 0.6)


def hum(ms: int = 700, f0: float = 130.0) -> np.ndarray:
    """A hummed "hmm": a voiced harmonic tone with a slight wobble (the recogniser hears "Hmm.")."""
    t = np.arange(RATE * ms // 1000) / RATE
    phase = 2 * np.pi * np.cumsum(f0 + 10 * np.sin(2 * np.pi * 3 * t)) / RATE
    x = sum(np.sin(k * phase) / k**1.5 for k in range(1, 25))
    return _peak(x * np.minimum(1, np.minimum(t, t[-1] - t) * 20), 0.5)


def room_with_fan(seconds: float, seed: int = 0) -> np.ndarray:
    """Brown-ish room noise plus a fan's hum at 110 Hz and its harmonics, with a slow wobble."""
    n = int(RATE * seconds)
    rng = _rng(seed)
    room = np.cumsum(rng.standard_normal(n))
    b, a = butter(1, 40 / (RATE / 2), "high")
    room = lfilter(b, a, room)
    t = np.arange(n) / RATE
    fan = sum(np.sin(2 * np.pi * 110 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 6))
    fan *= 1 + 0.2 * np.sin(2 * np.pi * 0.5 * t)
    b, a = butter(2, 2500 / (RATE / 2))
    hiss = lfilter(b, a, rng.standard_normal(n))
    return (room / np.std(room) + 0.5 * fan / np.std(fan) + 0.7 * hiss / np.std(hiss)).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`speech` with `noise` under it, the noise scaled so that speech power ÷ noise power is `snr_db`."""
    noise = np.resize(noise, speech.size)
    voiced = speech[np.abs(speech) > 0.02 * np.abs(speech).max()]
    gain = np.sqrt(np.mean(voiced**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return np.clip(speech + gain * noise, -1, 1).astype(np.float32)


def _peak(x: np.ndarray, level: float) -> np.ndarray:
    return (level * x / (np.abs(x).max() + 1e-9)).astype(np.float32)
