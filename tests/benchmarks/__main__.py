"""python -m tests.benchmarks — runs every benchmark against the services as processes, in one run at one commit,
and rewrites docs/benchmarks.md; `python -m tests.benchmarks asr llm` reruns some (each section names its
commit, and the page says when they differ). A bench that fails says why in its section; no older figure stays."""

import re
import sys

from services.runner.redis_server import EmbeddedRedis
from tests.benchmarks import (
    bench_asr,
    bench_barge_in,
    bench_concurrency,
    bench_e2e,
    bench_face,
    bench_llm,
    bench_media,
    bench_pipeline,
    bench_provenance,
    bench_memory,
    bench_network,
    bench_sda,
    bench_soak,
    bench_tts,
    bench_turns,
)
from tests.benchmarks.report import commit, machine
from tests.stack import ROOT, Stack

# memory comes last: it reads the peak memory of the processes the others exercised
BENCHES = {"asr": bench_asr, "turns": bench_turns, "llm": bench_llm, "tts": bench_tts, "sda": bench_sda, "face": bench_face, "e2e": bench_e2e,
           "barge_in": bench_barge_in, "concurrency": bench_concurrency, "media": bench_media, "pipeline": bench_pipeline,
           "provenance": bench_provenance, "network": bench_network,
           "soak": bench_soak, "memory": bench_memory}


OUT = ROOT / "docs" / "benchmarks.md"
_MARK = re.compile(r"^<!-- bench:(\w+) -->$", re.M)
_COMMIT = re.compile(r"commit (\S+?)\._")


def previous_sections() -> dict[str, str]:
    """The sections of the current docs/benchmarks.md, by bench name, so a partial run keeps the others."""
    if not OUT.exists():
        return {}
    text = OUT.read_text()
    marks = list(_MARK.finditer(text))
    return {m.group(1): text[m.start() : (marks[i + 1].start() if i + 1 < len(marks) else len(text))].rstrip() + "\n"
            for i, m in enumerate(marks)}


def main(names: list[str]) -> None:
    sections = previous_sections()
    redis = EmbeddedRedis()
    stack = Stack(redis.url).start()
    try:
        for name in stack.specs:
            stack.wait(name)
        for name, bench in BENCHES.items():
            if names and name not in names:
                continue
            print(f"benchmarking {name}...", flush=True)
            try:
                body = bench.run(stack).markdown()
            except Exception as err:  # noqa: BLE001 - the page says which bench failed and why, the others go on
                body = f"## {name}\n\nCould not run: {type(err).__name__}: {err}\n\n"
            sections[name] = f"<!-- bench:{name} -->\n{body}_Measured on {machine()}._\n"
    finally:
        stack.stop()
        redis.stop()
    commits = {found.group(1) for section in sections.values() if (found := _COMMIT.search(section))}
    at = (f"Every section was measured in one run at commit {commits.pop()}." if len(commits) == 1 else
          f"Sections were measured at {len(commits)} commits (each names its own); `make bench` measures all at one.")
    text = ("# Benchmarks\n\nWritten by `make bench` (`python -m tests.benchmarks [stage ...]` reruns some). "
            f"{at} Figures are from the 2-core CPU machine named under each table.\n\n"
            + "\n".join(sections[name] for name in BENCHES if name in sections))
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
