"""Where the clip stage cuts natural speech: short phrases with pauses inside sentences, another speaker in some
of the pauses, stretches too long for one clip. Runs in milliseconds on segment lists."""

import numpy as np
import pytest

from pipelines.steps.clip import MAX_S, MIN_S, plan_clips, speech_in
from pipelines.speech_regions import STEP_S, Segment

pytestmark = pytest.mark.unit


def _probs(total_s: float, speech: list[Segment]) -> np.ndarray:
    probs = np.full(int(total_s / STEP_S), 0.05, np.float32)
    for seg in speech:
        probs[int(seg.start_s / STEP_S) : int(seg.end_s / STEP_S)] = 0.95
    return probs


def _conversation(seed: int) -> tuple[list[Segment], list[Segment], float]:
    """Turns of 2-6 phrases of 0.4-1.1 s with 0.4-1.2 s pauses (the target), and the other speaker's replies
    between turns, sometimes after a pause as short as the target's own."""
    rng = np.random.default_rng(seed)
    target, other, t = [], [], 0.5
    for _ in range(12):
        for _ in range(rng.integers(2, 7)):
            length = rng.uniform(0.4, 1.1)
            target.append(Segment(t, t + length))
            t += length + rng.uniform(0.4, 1.2)
        length = rng.uniform(0.5, 3.0)
        other.append(Segment(t, t + length))
        t += length + rng.uniform(0.3, 1.2)
    return target, other, t + 1.0


def _check(clips: list[Segment], others: list[Segment]) -> None:
    assert all(MIN_S - 1e-6 <= c.duration_s <= MAX_S + 1e-6 for c in clips), clips
    assert not any(min(c.end_s, o.end_s) > max(c.start_s, o.start_s) for c in clips for o in others)
    assert all(a.end_s <= b.start_s + 1e-6 for a, b in zip(clips, clips[1:]))  # no audio in two clips


@pytest.mark.parametrize("seed", range(5))
def test_pausy_speech_ends_up_in_clips_of_one_speaker(seed):
    target, other, total = _conversation(seed)
    clips = plan_clips(target, _probs(total, target + other), other, total)
    _check(clips, other)
    assert speech_in(clips, target) / sum(s.duration_s for s in target) >= 0.8


def test_a_short_answer_alone_between_the_other_speakers_turns_is_kept_with_the_silence_around_it():
    other = [Segment(0.0, 3.0), Segment(4.6, 8.0)]
    target = [Segment(3.5, 4.1)]  # "Yes, sure."
    clips = plan_clips(target, _probs(9.0, target + other), other, 9.0)
    _check(clips, other)
    assert len(clips) == 1 and clips[0].start_s < 3.5 and clips[0].end_s > 4.1


def test_a_long_stretch_is_cut_where_it_is_quietest_and_nothing_is_lost():
    target = [Segment(1.0, 21.0)]
    probs = _probs(22.0, target)
    quiet = [7.0, 14.5]  # a breath in the middle of the stretch
    for q in quiet:
        probs[int(q / STEP_S)] = 0.1
    clips = plan_clips(target, probs, [], 22.0)
    _check(clips, [])
    assert len(clips) == 3 and speech_in(clips, target) == pytest.approx(20.0)
    assert [round(c.end_s, 1) for c in clips[:-1]] == quiet


def test_a_pause_with_the_other_speaker_in_it_ends_the_clip():
    target = [Segment(0.0, 1.5), Segment(2.5, 4.0)]
    other = [Segment(1.7, 2.3)]  # a word from the other speaker between the phrases
    clips = plan_clips(target, _probs(5.0, target + other), other, 5.0)
    _check(clips, other)
    assert len(clips) == 2


def test_a_sentence_with_short_pauses_inside_stays_one_clip():
    """"The weather is lovely today, | so we are going for a walk | in the park.": three phrases that fit in one
    clip are not cut apart at their pauses (the transcript of a cut half loses its sentence)."""
    target = [Segment(0.5, 2.0), Segment(2.25, 4.1), Segment(4.5, 5.6)]
    other = [Segment(6.3, 9.0)]
    clips = plan_clips(target, _probs(10.0, target + other), other, 10.0)
    _check(clips, other)
    assert len(clips) == 1 and clips[0].start_s <= 0.5 and clips[0].end_s >= 5.6
