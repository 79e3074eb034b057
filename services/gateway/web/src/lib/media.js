// Binary media messages from the gateway (docs/websocket.md): kind, turn, pts, then audio and/or a video frame.
// `audio` is the message's audio bytes: LINEAR16 PCM, or one Opus packet (as the ready event's output_audio says).
export const AUDIO = 1;
export const VIDEO = 2; // a JPEG
export const ENCODED_VIDEO = 3; // one H.264 or VP8 frame (the codec the ready event named)

export function parseMedia(buffer) {
  const view = new DataView(buffer);
  const kind = view.getUint8(0);
  const turn = view.getUint32(1, true);
  const pts = view.getFloat64(5, true);
  if (kind === AUDIO) {
    return { kind, turn, pts, audio: buffer.slice(13) };
  }
  const encoded = kind === ENCODED_VIDEO;
  const at = encoded ? 14 : 13;
  const keyframe = encoded ? (view.getUint8(13) & 1) === 1 : true;
  const audioLength = view.getUint32(at, true);
  const audio = buffer.slice(at + 4, at + 4 + audioLength);
  const image = buffer.slice(at + 4 + audioLength);
  return encoded
    ? { kind, turn, pts, audio, keyframe, chunk: image }
    : { kind, turn, pts, audio, jpeg: new Blob([image], { type: "image/jpeg" }) };
}

// The codecs this browser can decode, most preferred first (sent in the hello): H.264, VP8 and Opus through
// WebCodecs where it has them; JPEG and PCM always.
const VIDEO_CODECS = { h264: "avc1.42E01F", vp8: "vp8" };
export const OPUS = { codec: "opus", sampleRate: 16000, numberOfChannels: 1 };

async function supported(Decoder, config) {
  try {
    return typeof Decoder !== "undefined" && (await Decoder.isConfigSupported(config)).supported;
  } catch {
    return false;
  }
}

export async function decodableCodecs() {
  const video = [];
  for (const [name, codec] of Object.entries(VIDEO_CODECS)) {
    if (await supported(globalThis.VideoDecoder, { codec, optimizeForLatency: true })) video.push(name);
  }
  const audio = (await supported(globalThis.AudioDecoder, OPUS)) ? ["opus"] : [];
  return { video: [...video, "jpeg"], audio: [...audio, "linear16"] };
}
