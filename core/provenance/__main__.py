"""python -m core.provenance FILE [FILE ...] — does each file carry this system's watermark or a C2PA manifest?

Prints one JSON object per file (its audio's length, the watermark's score and verdict, the manifest's signer,
validation state and what it says); exits 1 when a file cannot be read. WATERMARK_DIR says where the watermark's
model is (made by `make setup`).
"""

import argparse
import json
import os
import sys
from pathlib import Path

from core.errors import BadRequest
from core.provenance.origin import examine
from core.provenance.watermark import DEFAULT_WATERMARK_DIR, Watermark


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--longest-s", type=float, default=3600.0, help="read at most this much audio per file")
    args = parser.parse_args()
    watermark = Watermark(os.environ.get("WATERMARK_DIR", DEFAULT_WATERMARK_DIR))
    failed = False
    for path in args.files:
        try:
            found = {"file": str(path), **examine(path.read_bytes(), watermark, args.longest_s).as_dict()}
        except (OSError, BadRequest) as err:
            found, failed = {"file": str(path), "error": str(err)}, True
        print(json.dumps(found), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
