// Plays a reply: the audio clock drives everything. Each audio slice is scheduled at turnStart + pts, and each
// video frame is drawn when the audio clock reaches its pts, so lips and sound stay together.
const JITTER_S = 0.12;

export class AvatarPlayer {
  constructor(canvas, sampleRate = 16000) {
    this.canvas = canvas;
    this.ctx2d = canvas.getContext("2d");
    this.sampleRate = sampleRate;
    this.audio = new AudioContext();
    this.turn = -1;
    this.turnStart = 0;
    this.frames = [];
    this.sources = new Set();
    this.stats = { audioScheduled: 0, framesDrawn: 0, lateFrames: 0 };
    this.onFirstAudio = () => {};
    const draw = () => {
      this.drawDue();
      requestAnimationFrame(draw);
    };
    requestAnimationFrame(draw);
  }

  async resume() {
    await this.audio.resume();
  }

  showStill(blob) {
    createImageBitmap(blob).then((image) => this.paint(image));
  }

  async push(message) {
    if (message.turn !== this.turn) {
      this.turn = message.turn;
      this.turnStart = this.audio.currentTime + JITTER_S;
      this.onFirstAudio(message.turn);
    }
    const at = this.turnStart + message.pts;
    if (message.pcm.length) this.schedule(message.pcm, at);
    if (message.jpeg) {
      const image = await createImageBitmap(message.jpeg);
      this.frames.push({ at, image });
    }
  }

  schedule(pcm, at) {
    const buffer = this.audio.createBuffer(1, pcm.length, this.sampleRate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 32768;
    const source = this.audio.createBufferSource();
    source.buffer = buffer;
    source.connect(this.audio.destination);
    source.onended = () => this.sources.delete(source);
    source.start(Math.max(at, this.audio.currentTime));
    this.sources.add(source);
    this.stats.audioScheduled++;
  }

  drawDue() {
    const now = this.audio.currentTime;
    let due = null;
    while (this.frames.length && this.frames[0].at <= now) {
      if (due) this.stats.lateFrames++;
      due = this.frames.shift();
    }
    if (due) {
      this.paint(due.image);
      this.stats.framesDrawn++;
    }
  }

  paint(image) {
    if (this.canvas.width !== image.width) {
      this.canvas.width = image.width;
      this.canvas.height = image.height;
    }
    this.ctx2d.drawImage(image, 0, 0);
  }

  // Barge-in: drop everything queued for the reply.
  clear() {
    for (const source of this.sources) source.stop();
    this.sources.clear();
    this.frames = [];
    this.turn = -1;
  }
}
