"""A real browser completes a turn in the app: Debian's Chromium, a fake microphone fed from a WAV."""

import asyncio
import shutil
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
from skimage import data

from tests.consent import statement_wav
from tests.fault_proxy import FaultProxy
from tests.speech import speak
from tests.stack import ROOT, ExtraGateway

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "var" / "screenshots"


def spoken_wav(path: Path, *pieces: str | float) -> Path:
    """A file for the fake microphone: each piece spoken (text, in the test voice) or silent (seconds), 16 kHz."""
    audio = np.concatenate([speak(p) if isinstance(p, str) else np.zeros(int(p * 16000), np.float32) for p in pieces])
    soundfile.write(path, audio, 16000, subtype="PCM_16")
    return path


@pytest.fixture
def question_wav(tmp_path) -> Path:
    return spoken_wav(tmp_path / "question.wav", 0.5, "Hello! What is your name?", 3.0)


@pytest.fixture
def looping_question(tmp_path) -> Path:
    """The fake microphone says the question again every ~8 s (Chromium loops the file)."""
    return spoken_wav(tmp_path / "looping.wav", 0.5, "Hello! What is your name?", 6.0)


def wait_until(page, expression: str, timeout: float = 30_000):
    """`page.wait_for_function`; one that times out fails with what the page's player counted and its turns."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return page.wait_for_function(expression, timeout=timeout)
    except PlaywrightTimeout:
        seen = page.evaluate("window.__avatar ? {stats: window.__avatar.stats, turns: window.__avatar.turns()} : null")
        pytest.fail(f"not within {timeout / 1000:.0f} s: {expression}\nthe page: {seen}")


def chromium_args(fake_audio: str) -> list[str]:
    """Headless Chromium with a fake microphone reading `fake_audio` (append %noloop to play it once)."""
    return ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={fake_audio}", "--autoplay-policy=no-user-gesture-required",
            "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-quic"]


@pytest.mark.parametrize("webcodecs", [True, False], ids=["encoded video", "without WebCodecs: JPEG"])
def test_a_turn_completes_in_the_browser(stack, question_wav, webcodecs):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    args = chromium_args(f"{question_wav}%noloop")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True, chromium_sandbox=False)
        page = browser.new_page()
        if not webcodecs:
            page.add_init_script("delete window.VideoDecoder")  # a browser without WebCodecs
        page.goto(f"http://{stack.address('gateway')}/?details&transport=websocket")  # latency figures shown
        page.get_by_test_id("start").click()
        page.get_by_test_id("user-text").first.wait_for(timeout=60_000)
        assert "name" in page.get_by_test_id("user-text").first.inner_text().lower()
        page.get_by_test_id("reply-text").first.wait_for(timeout=60_000)
        # The canvas changes as frames are drawn on the audio clock (and as the face at rest breathes).
        shots = set()
        deadline = time.monotonic() + 30
        while len(shots) < 3 and time.monotonic() < deadline:
            shots.add(page.eval_on_selector("[data-testid=avatar-canvas]", "c => c.toDataURL('image/jpeg', 0.5)"))
            time.sleep(0.2)
        assert len(shots) >= 3, "the avatar canvas did not change"
        page.get_by_test_id("latency").first.wait_for(timeout=60_000)
        stats = page.evaluate("window.__avatar.stats")
        assert stats["audioScheduled"] > 10 and stats["framesDrawn"] > 10 and stats["overlaps"] == 0, stats
        assert stats["videoCodec"] in (("h264", "vp8") if webcodecs else ("jpeg",)) and not stats["decodeErrors"], stats
        page.screenshot(path=str(SCREENSHOTS / f"conversation-{stats['videoCodec']}.png"), full_page=True)
        assert not page.get_by_test_id("error").count()
        browser.close()


@pytest.mark.parametrize("blocked", [False, True], ids=["webrtc", "webrtc blocked: the websocket"])
def test_over_webrtc_the_page_plays_the_reply_and_where_it_cannot_connect_the_websocket_does(stack, question_wav,
                                                                                            blocked):
    """The page offers WebRTC (the default): the reply's audio and video come over the peer connection and the
    canvas shows its frames; where the peer connection cannot be made (a network that blocks it, stood in for by a
    page whose peer connections never get their answer) the page gives up on it and the reply comes over the
    WebSocket."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(f"{question_wav}%noloop"),
                                    headless=True, chromium_sandbox=False)
        page = browser.new_page()
        if blocked:
            page.add_init_script("RTCPeerConnection.prototype.setRemoteDescription = () => new Promise(() => {})")
        page.goto(f"http://{stack.address('gateway')}/")
        page.get_by_test_id("start").click()
        page.get_by_test_id("reply-text").first.wait_for(timeout=90_000)
        assert "name" in page.get_by_test_id("user-text").first.inner_text().lower()
        wait_until(page, "window.__avatar.stats.framesDrawn > 25", timeout=60_000)
        stats = page.evaluate("window.__avatar.stats")
        assert stats["transport"] == ("websocket" if blocked else "webrtc"), stats
        if blocked:
            assert stats["audioScheduled"] > 10, stats  # the page's own player: the media came on the WebSocket
        else:
            assert page.evaluate("window.__avatar.rtcLive()") and stats["audioScheduled"] == 0, stats
        assert not page.get_by_test_id("error").count()
        browser.close()


def test_over_webrtc_speech_over_the_reply_stops_it_and_a_lost_peer_connection_is_made_again(stack, tmp_path):
    """Over WebRTC in the browser: "Stop, ..." over a story holds its audio and video at once and drops them (the
    gateway drops what its tracks still held); the peer connection is lost then (as on a network change) and the
    answer to the words after "Stop" plays all the same (over the WebSocket, or the new connection); the app offers
    a new connection, and the next answer plays over it."""
    from playwright.sync_api import sync_playwright

    wav = spoken_wav(tmp_path / "stop.wav", 0.5, "Please tell me a long story about a dragon who lived in the "
                     "mountains.", 6.0, "Stop, tell me about the ocean instead.", 22.0, "What colour is the sky?",
                     25.0)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(f"{wav}%noloop"), headless=True,
                                    chromium_sandbox=False)
        page = browser.new_page()
        page.goto(f"http://{stack.address('gateway')}/")
        page.get_by_test_id("start").click()
        wait_until(page, "window.__avatar.rtcLive() && window.__avatar.stats.framesDrawn > 10", timeout=90_000)
        wait_until(page, "window.__avatar.stats.paused", timeout=60_000)  # "Stop" began
        time.sleep(0.5)  # what the browser's jitter buffer held
        drawn = page.evaluate("window.__avatar.stats.framesDrawn")
        time.sleep(1.0)
        assert page.evaluate("window.__avatar.stats.framesDrawn") - drawn <= 2, "the story went on playing"
        wait_until(page, "window.__avatar.turns().some(t => t.interrupted)", timeout=60_000)
        time.sleep(0.5)
        drawn = page.evaluate("window.__avatar.stats.framesDrawn")
        # until the answer's first words, nothing more of the story shows
        shown = wait_until(page, "(() => window.__avatar.turns().some(t => t.turn > 0 && t.reply) && "
                                 "window.__avatar.stats.framesDrawn + 1)()", timeout=90_000).json_value() - 1
        assert shown - drawn <= 2, "the story came back after it was interrupted"

        page.evaluate("window.__avatar.dropPeer()")
        wait_until(page, "!window.__avatar.rtcLive()", timeout=10_000)
        wait_until(page, "window.__avatar.turns().some(t => t.turn > 0 && t.user.toLowerCase().includes('ocean')"
                         " && t.reply)", timeout=90_000)
        wait_until(page, f"window.__avatar.stats.framesDrawn > {shown + 25}", timeout=60_000)  # it plays
        wait_until(page, "window.__avatar.rtcLive()", timeout=30_000)  # offered again, and up
        wait_until(page, "window.__avatar.turns().some(t => t.user.toLowerCase().includes('sky') && t.reply)",
                   timeout=90_000)
        drawn, scheduled = page.evaluate("[window.__avatar.stats.framesDrawn, window.__avatar.stats.audioScheduled]")
        wait_until(page, f"window.__avatar.stats.framesDrawn > {drawn + 25}", timeout=60_000)
        stats = page.evaluate("window.__avatar.stats")
        assert stats["transport"] == "webrtc" and stats["audioScheduled"] == scheduled, "not over the new connection"
        assert not page.get_by_test_id("error").count()
        browser.close()


def test_the_app_reconnects_to_a_restarted_gateway_and_the_conversation_goes_on(stack, looping_question):
    """The gateway is restarted (SIGTERM: it drains and tells the app to reconnect) after a first turn: the app
    shows it is reconnecting, resumes its session on the new process, and the next turn works."""
    from playwright.sync_api import sync_playwright

    gateway = ExtraGateway(stack)
    args = chromium_args(str(looping_question))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True, chromium_sandbox=False)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{gateway.port}/")
            page.get_by_test_id("start").click()
            page.get_by_test_id("reply-text").first.wait_for(timeout=60_000)
            before = page.evaluate("window.__avatar.session()")
            first_turns = {t["turn"] for t in page.evaluate("window.__avatar.turns()") if t["user"]}
            gateway.process.send_signal(signal.SIGTERM)
            wait_until(page, "document.querySelector('[data-testid=status]').textContent === 'reconnecting'",
                       timeout=60_000)
            gateway.process.wait(timeout=60)
            gateway = ExtraGateway(stack, port=gateway.port)  # the same address, a new process
            wait_until(page, "window.__avatar.session().reconnects >= 1", timeout=60_000)
            after = page.evaluate("window.__avatar.session()")
            assert after["sessionId"] == before["sessionId"], "the session was not resumed"
            wait_until(page, f"window.__avatar.turns().some(t => t.user && t.reply && t.turn > {max(first_turns)})",
                       timeout=90_000)
            page.screenshot(path=str(SCREENSHOTS / "reconnected.png"), full_page=True)
            browser.close()
    finally:
        gateway.stop()


def test_with_two_gateways_the_second_takes_the_conversation_over(stack, looping_question):
    """Two gateway processes behind one address (a proxy standing in for a load balancer): the first is stopped
    after a turn, new connections go to the second, and the app's session goes on there."""
    from playwright.sync_api import sync_playwright

    first, second = ExtraGateway(stack), ExtraGateway(stack)
    balancer = FaultProxy(first.port)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(balancer.start(), loop).result(10)
    args = chromium_args(str(looping_question))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True, chromium_sandbox=False)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{balancer.port}/")
            page.get_by_test_id("start").click()
            page.get_by_test_id("reply-text").first.wait_for(timeout=60_000)
            session = page.evaluate("window.__avatar.session()")["sessionId"]
            first_turns = {t["turn"] for t in page.evaluate("window.__avatar.turns()") if t["user"]}
            loop.call_soon_threadsafe(balancer.retarget, second.port)  # the first replica leaves the rotation
            first.process.send_signal(signal.SIGTERM)
            wait_until(page, "window.__avatar.session().reconnects >= 1", timeout=60_000)
            assert page.evaluate("window.__avatar.session()")["sessionId"] == session
            wait_until(page, f"window.__avatar.turns().some(t => t.user && t.reply && t.turn > {max(first_turns)})",
                       timeout=90_000)
            assert first.process.wait(timeout=60) in (0, -signal.SIGTERM)
            browser.close()
    finally:
        asyncio.run_coroutine_threadsafe(balancer.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        first.stop()
        second.stop()


def test_a_backchannel_over_the_reply_pauses_it_in_the_browser_and_it_plays_on(stack, tmp_path):
    """The user says "mm-hmm" while the avatar answers: the app pauses the reply at once (the audio clock that
    draws the frames stops), and when the recogniser finds no words in it the reply goes on where it paused."""
    from playwright.sync_api import sync_playwright

    wav = spoken_wav(tmp_path / "backchannel.wav", 0.5, "Please tell me about the sea.", 3.5, "Mm-hmm.", 10.0)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(f"{wav}%noloop"), headless=True,
                                    chromium_sandbox=False)
        page = browser.new_page()
        page.goto(f"http://{stack.address('gateway')}/?transport=websocket")  # the page's own player pauses
        page.get_by_test_id("start").click()
        wait_until(page, "window.__avatar.stats.pauses >= 1", timeout=90_000)
        wait_until(page, "!window.__avatar.stats.paused", timeout=30_000)
        drawn = page.evaluate("window.__avatar.stats.framesDrawn")
        wait_until(page, f"window.__avatar.stats.framesDrawn > {drawn + 10}", timeout=30_000)
        turns = page.evaluate("window.__avatar.turns()")
        assert turns[0]["reply"].strip() and not page.get_by_test_id("error").count(), turns
        browser.close()


def test_after_a_network_stall_the_reply_goes_on_from_where_it_stopped(stack, tmp_path):
    """The connection holds everything for 3 s mid-reply (a train's tunnel, a congested link): the app runs out
    of reply, then plays what comes next from where it stopped, its slices one after another (played at their
    late times they would all sound at once), and the frames go on with it."""
    from playwright.sync_api import sync_playwright

    wav = spoken_wav(tmp_path / "story.wav", 0.5, "Please tell me a long story about a dragon.", 3.0)
    link = FaultProxy(stack.specs["gateway"].port)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(link.start(), loop).result(10)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(f"{wav}%noloop"),
                                        headless=True, chromium_sandbox=False)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{link.port}/?transport=websocket")  # the media through the impaired link
            page.get_by_test_id("start").click()
            wait_until(page, "window.__avatar.stats.audioScheduled > 5", timeout=90_000)
            loop.call_soon_threadsafe(link.set, "hold")
            time.sleep(3)
            loop.call_soon_threadsafe(link.set, "pass")
            wait_until(page, "window.__avatar.stats.underruns >= 1", timeout=60_000)
            drawn = page.evaluate("window.__avatar.stats.framesDrawn")
            wait_until(page, f"window.__avatar.stats.framesDrawn > {drawn + 25}", timeout=30_000)
            stats = page.evaluate("window.__avatar.stats")
            assert stats["overlaps"] == 0 and not stats["decodeErrors"], stats
            assert not page.get_by_test_id("error").count()
            browser.close()
    finally:
        asyncio.run_coroutine_threadsafe(link.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)


AXE = ROOT / "services" / "gateway" / "web" / "node_modules" / "axe-core" / "axe.min.js"
FACE_DRAWN = """c => {  // how much the canvas varies: a face, not a black or flat square
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let sum = 0, squares = 0, n = 0;
    for (let i = 0; i < data.length; i += 16) { const v = (data[i] + data[i + 1] + data[i + 2]) / 3; sum += v; squares += v * v; n++; }
    const mean = sum / n;
    return {mean, sd: Math.sqrt(squares / n - mean * mean), width: c.width};
}"""


@pytest.mark.parametrize("size", [(1280, 860), (390, 844)], ids=["desktop", "phone"])
def test_the_page_shows_the_face_at_once_and_one_button_holds_a_readable_conversation(stack, question_wav, size):
    """What a person meets: the avatar's face before anyone speaks (never a black square), a label saying it is
    generated, one button, then the conversation written out; the layout fits a phone; no serious accessibility
    violation (axe-core)."""
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = "desktop" if size[0] > 600 else "phone"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(f"{question_wav}%noloop"),
                                    headless=True, chromium_sandbox=False)
        page = browser.new_page(viewport={"width": size[0], "height": size[1]})
        page.goto(f"http://{stack.address('gateway')}/")
        wait_until(page, "(window.__avatar?.stats.stillDrawn ?? 0) > 0", timeout=60_000)
        face = page.eval_on_selector("[data-testid=avatar-canvas]", FACE_DRAWN)
        assert face["sd"] > 20 and 30 < face["mean"] < 230, f"no face drawn before the first turn: {face}"
        wait_until(page, "window.__avatar.stats.blinks >= 1", timeout=15_000)  # alive, not a photo
        assert page.get_by_test_id("generated-label").is_visible()
        assert "generated" in page.get_by_test_id("generated-label").inner_text().lower()
        layout = page.evaluate("""() => ({scroll: document.scrollingElement.scrollWidth, width: innerWidth,
            button: document.querySelector('[data-testid=start]').getBoundingClientRect().toJSON(),
            canvas: document.querySelector('[data-testid=avatar-canvas]').getBoundingClientRect().toJSON()})""")
        assert layout["scroll"] <= layout["width"], f"the page scrolls sideways: {layout}"
        assert layout["canvas"]["width"] <= layout["width"] and layout["button"]["right"] <= layout["width"], layout
        page.screenshot(path=str(SCREENSHOTS / f"page-{name}-opened.png"), full_page=True)
        page.add_script_tag(path=str(AXE))
        violations = page.evaluate("async () => (await axe.run()).violations.map(v => ({id: v.id, impact: v.impact,"
                                   " nodes: v.nodes.length}))")
        serious = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not serious, serious
        page.get_by_test_id("settings-button").click()  # the drawer: the voice is one of the server's
        wait_until(page, "[...document.querySelectorAll('[data-testid=voice] option')].length > 1")
        page.get_by_test_id("voice").select_option("en_US-joe-medium")
        page.get_by_test_id("settings-close").click()
        page.get_by_test_id("start").click()  # the one button: the microphone is asked for now
        page.get_by_test_id("reply-text").first.wait_for(timeout=90_000)
        assert "name" in page.get_by_test_id("user-text").first.inner_text().lower()
        wait_until(page, "document.querySelector('[data-testid=status]').textContent === 'speaking'",
                               timeout=60_000)
        page.get_by_test_id("caption").wait_for(timeout=30_000)
        page.screenshot(path=str(SCREENSHOTS / f"page-{name}-speaking.png"), full_page=True)
        assert not page.get_by_test_id("error").count()
        browser.close()


def test_a_refused_microphone_says_what_to_do(stack):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args("/dev/null"), headless=True,
                                    chromium_sandbox=False)
        page = browser.new_page()
        page.add_init_script("""navigator.mediaDevices.getUserMedia = () =>
            Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));""")
        page.goto(f"http://{stack.address('gateway')}/")
        page.get_by_test_id("start").click()
        page.get_by_test_id("error").wait_for(timeout=30_000)
        message = page.get_by_test_id("error").inner_text()
        assert "microphone is blocked" in message.lower() and "allow" in message.lower(), message
        wait_until(page, "document.querySelector('[data-testid=status]').textContent === 'disconnected'")
        browser.close()


def test_a_photo_avatar_is_made_in_the_page_only_with_its_persons_consent(stack, tmp_path):
    from playwright.sync_api import sync_playwright

    photo, statement = tmp_path / "me.png", tmp_path / "consent.wav"
    statement.write_bytes(statement_wav())
    cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args("/dev/null"), headless=True,
                                    chromium_sandbox=False)
        page = browser.new_page()
        page.goto(f"http://{stack.address('gateway')}/")
        page.get_by_test_id("settings-button").click()
        assert page.get_by_test_id("photo").is_disabled(), "a photo could be sent without the person's consent"
        page.get_by_test_id("consent-person").fill("Eileen Example")
        assert page.get_by_test_id("photo").is_disabled()
        page.get_by_test_id("consent-evidence").set_input_files(str(statement))
        page.get_by_test_id("photo").set_input_files(str(photo))
        page.get_by_role("status").filter(has_text="Ready").wait_for(timeout=300_000)
        assert not page.get_by_role("alert").count()
        browser.close()
