"""python -m tests.benchmarks — runs every benchmark against the services as processes; rewrites docs/benchmarks.md."""

import sys
from pathlib import Path

from services.runner.redis_server import EmbeddedRedis
from tests.benchmarks import bench_asr, bench_e2e, bench_llm, bench_sda, bench_tts
from tests.benchmarks.report import machine
from tests.stack import ROOT, Stack

BENCHES = {"asr": bench_asr, "llm": bench_llm, "tts": bench_tts, "sda": bench_sda, "e2e": bench_e2e}


def main(names: list[str]) -> None:
    redis = EmbeddedRedis()
    stack = Stack(redis.url).start()
    try:
        for name in ("asr", "llm", "tts", "sda", "gateway"):
            stack.wait(name)
        sections = []
        for name, bench in BENCHES.items():
            if names and name not in names:
                continue
            print(f"benchmarking {name}...", flush=True)
            sections.append(bench.run(stack).markdown())
    finally:
        stack.stop()
        redis.stop()
    out = Path(ROOT / "docs" / "benchmarks.md")
    text = ("# Benchmarks\n\nWritten by `make bench` (`python -m tests.benchmarks [stage ...]`). "
            f"Machine: {machine()}.\n\n" + "\n".join(sections))
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
