"""`python -m tests.benchmarks.browser_link_client ADDRESS TOKEN WAV`: one spoken question to a gateway from the
browser app in headless Chromium over WebRTC, at the far end of a network link (bench_network runs it inside the
link's namespace), and what Chromium itself counted while the reply played, as JSON on stdout (its WebRTC
statistics, read from the page's peer connection):

- freezes, freeze_s: Chromium's own count of the video's freezes (a frame shown later than 3 times the mean frame
  interval, or the mean plus 150 ms) and their seconds;
- frames: frames it decoded; video_buffer_ms, audio_buffer_ms: the mean time a frame or a sample waited in its
  jitter buffer (what the browser spends on the network's jitter and retransmissions to play smoothly);
- concealed: the share of the audio it made up for lost or late packets (not counting the silence between
  replies, which it also fills); nacks: retransmissions it asked for;
- reply_s: how long the reply's video played.
"""

import json
import sys
import time

from tests.test_browser import CHROMIUM, chromium_args, wait_until

# The page's peer connections, kept where the client can read their statistics.
_KEEP_PEERS = """
(() => {
  const Original = window.RTCPeerConnection;
  window.__peers = [];
  window.RTCPeerConnection = function (...args) { const pc = new Original(...args); window.__peers.push(pc); return pc; };
  window.RTCPeerConnection.prototype = Original.prototype;
})();
"""
_INBOUND = """
async () => {
  const out = {};
  for (const pc of window.__peers) {
    (await pc.getStats()).forEach((s) => { if (s.type === "inbound-rtp") out[s.kind] = s; });
  }
  return out;
}
"""


def ask(address: str, token: str, wav: str) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # the microphone and WebRTC want a secure origin: the gateway over the link is plain HTTP, as on a LAN
        secure = f"--unsafely-treat-insecure-origin-as-secure=http://{address}"
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*chromium_args(f"{wav}%noloop"), secure],
                                    headless=True, chromium_sandbox=False)
        page = browser.new_page()
        page.add_init_script(_KEEP_PEERS)
        page.goto(f"http://{address}/?transport=webrtc&token={token}")
        page.get_by_test_id("start").click()
        wait_until(page, "window.__avatar.rtcLive() && window.__avatar.stats.framesDrawn > 0", timeout=120_000)
        started = time.monotonic()
        drawn, still_since = 0, time.monotonic()
        while time.monotonic() - still_since < 2.0:  # the reply has played out: no new frame for 2 s
            time.sleep(0.2)
            now = page.evaluate("window.__avatar.stats.framesDrawn")
            if now != drawn:
                drawn, still_since = now, time.monotonic()
        stats = page.evaluate(_INBOUND)
        browser.close()
    video, audio = stats["video"], stats.get("audio", {})
    samples = max(audio.get("totalSamplesReceived", 0), 1)
    return {"freezes": video.get("freezeCount", 0), "freeze_s": video.get("totalFreezesDuration", 0.0),
            "frames": video.get("framesDecoded", 0),
            "video_buffer_ms": 1000 * video.get("jitterBufferDelay", 0.0) / max(video.get("jitterBufferEmittedCount", 0), 1),
            "audio_buffer_ms": 1000 * audio.get("jitterBufferDelay", 0.0) / max(audio.get("jitterBufferEmittedCount", 0), 1),
            "concealed": (audio.get("concealedSamples", 0) - audio.get("silentConcealedSamples", 0)) / samples, "nacks": video.get("nackCount", 0),
            "reply_s": still_since - started}


def main() -> None:
    address, token, wav = sys.argv[1:4]
    print(json.dumps(ask(address, token, wav)))


if __name__ == "__main__":
    main()
