"""The per-turn latency breakdown as a PNG: where each turn's time to the first frame went."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first

# (label, the mark it ends at) in order; each bar segment runs from the previous mark to this one
SEGMENTS = [
    ("end of speech → end of turn", "end_of_turn"),
    ("→ LLM first token", "llm_first_token"),
    ("→ TTS first audio", "tts_first_audio"),
    ("→ first frame at the client", "first_frame"),
]


def plot_turns(turns: list[dict[str, float]], out: Path) -> Path:
    """`turns`: per turn, seconds from the end of speech to each mark of SEGMENTS."""
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(turns) + 1.6))
    colors = ["#b0b7c3", "#4c78a8", "#f58518", "#54a24b"]
    for row, marks in enumerate(turns):
        previous = 0.0
        for (label, key), color in zip(SEGMENTS, colors):
            end = max(marks.get(key, previous), previous)
            ax.barh(row, (end - previous) * 1000, left=previous * 1000, color=color,
                    label=label if row == 0 else None)
            previous = end
    ax.set_yticks(range(len(turns)), [f"turn {i + 1}" for i in range(len(turns))])
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds after the end of the user's speech")
    ax.set_title("Per-turn latency breakdown (make bench)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
