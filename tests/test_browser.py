"""A real browser completes a turn in the app: Debian's Chromium, a fake microphone fed from a WAV."""

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.speech import speak
from tests.stack import ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "var" / "screenshots"


@pytest.fixture
def question_wav(tmp_path) -> Path:
    audio = np.concatenate([np.zeros(8000, np.float32), speak("Hello! What is your name?"), np.zeros(48000, np.float32)])
    path = tmp_path / "question.wav"
    soundfile.write(path, audio, 16000, subtype="PCM_16")
    return path


def test_a_turn_completes_in_the_browser(stack, question_wav):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={question_wav}%noloop", "--autoplay-policy=no-user-gesture-required",
            "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-quic"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True, chromium_sandbox=False)
        page = browser.new_page()
        page.goto(f"http://{stack.address('gateway')}/")
        page.get_by_test_id("start").click()
        page.get_by_test_id("user-text").first.wait_for(timeout=60_000)
        assert "name" in page.get_by_test_id("user-text").first.inner_text().lower()
        page.get_by_test_id("reply-text").first.wait_for(timeout=60_000)
        # The canvas changes as frames are drawn on the audio clock.
        shots = set()
        deadline = time.monotonic() + 30
        while len(shots) < 3 and time.monotonic() < deadline:
            shots.add(page.eval_on_selector("[data-testid=avatar-canvas]", "c => c.toDataURL('image/jpeg', 0.5)"))
            time.sleep(0.2)
        assert len(shots) >= 3, "the avatar canvas did not change"
        page.get_by_test_id("latency").first.wait_for(timeout=60_000)
        stats = page.evaluate("window.__avatar.stats")
        assert stats["audioScheduled"] > 10 and stats["framesDrawn"] > 10, stats
        page.screenshot(path=str(SCREENSHOTS / "conversation.png"), full_page=True)
        assert not page.get_by_test_id("error").count()
        browser.close()
