// On a network that loses packets, the browser's jitter buffers wait long enough for a lost packet's
// retransmission (one round trip) instead of freezing the picture until it comes: each receiver's
// jitterBufferTarget is the round trip and a margin (audio too: the lips stay on the voice) from the start, as the
// first loss would come before any could be seen, and while losses come; after a spell without any it is let down,
// and replies come as soon as they can.
const CHECK_MS = 1000;
const MARGIN_MS = 60;
const MOST_MS = 500;
const CALM_MS = 30000;

export function cushionLosses(pc) {
  let seen = null; // losses counted so far (lost audio packets, video retransmissions asked)
  let lastLossAt = performance.now(); // a new connection is taken for a lossy one until it proves calm
  let target = null;
  const timer = setInterval(async () => {
    let losses = 0;
    let rtt = null;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp") losses += s.kind === "video" ? (s.nackCount ?? 0) : (s.packetsLost ?? 0);
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
        rtt = s.currentRoundTripTime;
      }
    });
    const now = performance.now();
    if (seen !== null && losses > seen) lastLossAt = now;
    seen = losses;
    const wanted = now - lastLossAt < CALM_MS
      ? Math.min(MOST_MS, Math.round(1000 * (rtt ?? 0.1) + MARGIN_MS)) : null;
    if (wanted === target) return;
    target = wanted;
    for (const receiver of pc.getReceivers()) {
      if ("jitterBufferTarget" in receiver) receiver.jitterBufferTarget = target;
      else receiver.playoutDelayHint = target === null ? null : target / 1000;
    }
  }, CHECK_MS);
  return () => clearInterval(timer);
}
