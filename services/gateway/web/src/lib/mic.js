// Microphone capture through an AudioWorklet: 16 kHz LINEAR16 frames of 100 ms, handed to `onFrame` with the
// frame's level (0-1, from its RMS on a decibel scale: -60 dBFS is 0) for a live input meter; the stream itself
// goes to a WebRTC peer connection where there is one.
export async function startMic(onFrame) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
  });
  const context = new AudioContext();
  await context.audioWorklet.addModule("/pcm-capture-worklet.js");
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "pcm-capture");
  node.port.onmessage = (event) => onFrame(event.data, level(new Int16Array(event.data)));
  source.connect(node);
  return {
    stream, // the microphone itself, for a WebRTC peer connection
    stop() {
      node.disconnect();
      source.disconnect();
      stream.getTracks().forEach((track) => track.stop());
      context.close();
    },
  };
}

function level(pcm) {
  let sum = 0;
  for (let i = 0; i < pcm.length; i++) sum += (pcm[i] / 32768) ** 2;
  const db = 10 * Math.log10(sum / Math.max(pcm.length, 1) + 1e-10);
  return Math.min(1, Math.max(0, (db + 60) / 60));
}
