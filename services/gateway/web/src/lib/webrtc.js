// WebRTC (docs/websocket.md, "WebRTC"): the microphone goes up as an Opus track, the reply comes down as an audio
// and a video track, the events come on the data channel "events"; the WebSocket carries the offer and the answer.
// `onMedia(stream)` gets the reply's stream once both tracks are there, `onLive(live)` says when media travel
// over the peer connection (and when they stopped: the app falls back to the WebSocket).
const CONNECT_TIMEOUT_MS = 8000;

export function openPeer({ iceServers, microphone, send, onEvent, onMedia, onLive }) {
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
  const setLive = (value) => {
    if (live === value) return;
    live = value;
    onLive(value);
  };
  const giveUp = () => {
    if (closed) return;
    close();
    send({ type: "webrtc_close" }); // the gateway sends the media over the WebSocket again
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "connected") setLive(true);
    if (pc.connectionState === "failed") giveUp();
  };
  const timer = setTimeout(() => { if (!live) giveUp(); }, CONNECT_TIMEOUT_MS);

  function close() {
    closed = true;
    clearTimeout(timer);
    pc.close();
    setLive(false);
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
    get live() { return live; },
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
