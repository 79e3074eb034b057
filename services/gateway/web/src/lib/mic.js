// Microphone capture through an AudioWorklet: 16 kHz LINEAR16 frames of 100 ms, handed to `onFrame`.
export async function startMic(onFrame) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
  });
  const context = new AudioContext();
  await context.audioWorklet.addModule("/pcm-capture-worklet.js");
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "pcm-capture");
  node.port.onmessage = (event) => onFrame(event.data);
  source.connect(node);
  return {
    stop() {
      node.disconnect();
      source.disconnect();
      stream.getTracks().forEach((track) => track.stop());
      context.close();
    },
  };
}
