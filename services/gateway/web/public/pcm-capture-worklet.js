// Runs on the audio thread: downsamples the microphone to 16 kHz mono and posts 100 ms LINEAR16 frames.
class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / 16000;
    this.position = 0;
    this.frame = new Int16Array(1600);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0][0];
    if (!input) return true;
    // Average the input samples that fall into each output sample (a box low-pass before decimation).
    let acc = 0;
    let count = 0;
    for (let i = 0; i < input.length; i++) {
      acc += input[i];
      count++;
      this.position += 1;
      if (this.position >= this.ratio) {
        this.position -= this.ratio;
        const s = Math.max(-1, Math.min(1, acc / count));
        this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        acc = 0;
        count = 0;
        if (this.filled === this.frame.length) {
          this.port.postMessage(this.frame.buffer.slice(0));
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
