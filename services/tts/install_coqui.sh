#!/usr/bin/env bash
# Installs the Coqui TTS backend into the Python environment of $1 (default: python3).
# torchaudio 2.11's compiled extensions do not load against torch 2.13 and nothing here needs them: they are
# removed so that torchaudio's pure-Python parts (all that coqui-tts imports for VITS) work. Audio files are read
# with soundfile instead (pipelines/tts/coqui_compat.py).
set -euo pipefail
python="${1:-python3}"
here="$(cd "$(dirname "$0")" && pwd)"
"$python" -m pip install --quiet -r "$here/requirements-coqui.txt"
"$python" -m pip install --quiet --no-deps -r "$here/requirements-coqui-nodeps.txt"
site="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -f "$site"/torchaudio/lib/*.so
"$python" -c 'import TTS.tts.models.vits' 2>/dev/null || { echo "coqui-tts does not import" >&2; exit 1; }
