// Binary media messages from the gateway (docs/websocket.md): kind, turn, pts, then audio and/or a JPEG.
export const AUDIO = 1;
export const VIDEO = 2;

export function parseMedia(buffer) {
  const view = new DataView(buffer);
  const kind = view.getUint8(0);
  const turn = view.getUint32(1, true);
  const pts = view.getFloat64(5, true);
  if (kind === AUDIO) {
    return { kind, turn, pts, pcm: new Int16Array(buffer.slice(13)) };
  }
  const audioLength = view.getUint32(13, true);
  const pcm = new Int16Array(buffer.slice(17, 17 + audioLength));
  const jpeg = new Blob([buffer.slice(17 + audioLength)], { type: "image/jpeg" });
  return { kind, turn, pts, pcm, jpeg };
}
