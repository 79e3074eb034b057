// WebRTC (docs/websocket.md, "WebRTC"): the microphone goes up as an Opus track, the reply comes down as an audio
// and a video track, the events come on the data channel "events"; the WebSocket carries the offer and the answer.
// `onMedia(stream)` gets the reply's stream once both tracks are there, `onLive()` says when media travel over the
// peer connection, `onLost(wasLive)` when it failed or was lost (the media come over the WebSocket again). On a
// lossy network the jitter buffers wait a round trip for retransmissions (loss_cushion.js).
import { cushionLosses } from "./loss_cushion.js";

const CONNECT_TIMEOUT_MS = 8000;
const DISCONNECTED_MS = 3000; // a peer connection "disconnected" this long (a network change) is given up

export function openPeer({ iceServers, microphone, send, onEvent, onMedia, onLive, onLost }) {
  const pc = new RTCPeerConnection({
    iceServers: iceServers.map((s) => ({ urls: s.urls, username: s.username || undefined,
                                         credential: s.credential || undefined })),
  });
  const stream = new MediaStream();
  let live = false;
  let closed = false;
  for (const track of microphone.getAudioTracks()) pc.addTrack(track, microphone);
  pc.addTransceiver("video", { direction: "recvonly" });
  const channel = pc.createDataChannel("events");
  channel.onmessage = (event) => onEvent(JSON.parse(event.data));
  pc.ontrack = (event) => {
    stream.addTrack(event.track);
    if (stream.getTracks().length === 2) onMedia(stream);
  };
  const giveUp = () => {
    if (closed) return;
    const wasLive = live;
    close();
    send({ type: "webrtc_close" }); // the gateway sends the media over the WebSocket again
    onLost(wasLive);
  };
  let dropTimer = null;
  let stopCushion = () => {};
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "connected" && !live) {
      live = true;
      stopCushion = cushionLosses(pc);
      onLive();
    }
    if (pc.connectionState === "failed") giveUp();
    clearTimeout(dropTimer);
    if (pc.connectionState === "disconnected") dropTimer = setTimeout(giveUp, DISCONNECTED_MS);
  };
  const timer = setTimeout(() => { if (!live) giveUp(); }, CONNECT_TIMEOUT_MS);

  function close() { // on purpose: nothing is told
    closed = true;
    live = false;
    clearTimeout(timer);
    clearTimeout(dropTimer);
    stopCushion();
    pc.close();
  }

  (async () => {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => { // the whole offer in one message: candidates gathered, none trickled
      if (pc.iceGatheringState === "complete") return resolve();
      pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === "complete") resolve(); };
      setTimeout(resolve, 2000);
    });
    send({ type: "webrtc_offer", sdp: pc.localDescription.sdp });
  })().catch(giveUp);

  return {
    answer: (sdp) => pc.setRemoteDescription({ type: "answer", sdp }).catch(giveUp),
    close,
    drop: giveUp, // the connection is lost (the app then offers a new one)
  };
}

// Whether this browser can take the gateway's media over WebRTC: H.264 or VP8 video and Opus audio.
export function webrtcCodecs() {
  if (typeof RTCRtpReceiver === "undefined" || !RTCRtpReceiver.getCapabilities) return null;
  const video = RTCRtpReceiver.getCapabilities("video").codecs.map((c) => c.mimeType.toLowerCase());
  const audio = RTCRtpReceiver.getCapabilities("audio").codecs.map((c) => c.mimeType.toLowerCase());
  const names = ["h264", "vp8"].filter((name) => video.includes(`video/${name}`));
  return names.length && audio.includes("audio/opus") ? names : null;
}
