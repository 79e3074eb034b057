// Plays a reply: the audio clock drives everything. Each audio slice is scheduled at turnStart + pts, and each
// video frame is drawn when the audio clock reaches its pts, so lips and sound stay together; a slice that comes
// too late for its time moves it and all after it, audio and frames, later (the reply ran out: it goes on from
// where it stopped). Frames come as
// JPEGs or as H.264/VP8 chunks, audio as PCM or Opus packets, decoded with WebCodecs (the codecs the gateway
// chose from the hello's lists).
import { OPUS } from "./media.js";

const JITTER_S = 0.12;
const BLINK_MS = 200;
const IDLE_MS = 400; // WebRTC: no frame for this long, and the reply is over (the face at rest shows)

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
    this.stats = { audioScheduled: 0, framesDrawn: 0, lateFrames: 0, videoCodec: "jpeg", audioCodec: "linear16",
                   decodeErrors: 0, paused: false, pauses: 0, underruns: 0, overlaps: 0, blinks: 0,
                   transport: "websocket", pictures: "all" };
    this.video = null; // WebRTC: the element that plays the reply's stream
    this.videoFrameAt = 0; // performance.now() of its last frame
    this.videoFresh = false; // a frame not drawn yet
    this.playedUntil = 0; // where the audio scheduled so far ends, on the audio clock
    this.still = null; // the face at rest (an ImageBitmap)
    this.stillEyesClosed = null; // the same with its eyelids down, when the server found its eyes
    this.nextBlinkAt = 0; // performance.now() of the next blink's start
    this.lag = 0; // how far the reply plays behind its schedule (it ran out, or decoded late)
    this.onFirstAudio = () => {};
    this.onKeyframeNeeded = () => {};
    this.decoder = null;
    this.codecString = "";
    this.audioDecoder = null;
    this.preSkipS = 0;
    const draw = () => {
      this.drawDue();
      requestAnimationFrame(draw);
    };
    requestAnimationFrame(draw);
  }

  // WebRTC: the reply comes as a stream that the browser plays itself (its jitter buffer keeps the lips on the
  // voice from the RTP timestamps); each of its frames is drawn onto the canvas as it comes, and the face at rest
  // shows between replies. null: back to the WebSocket's media.
  useStream(stream) {
    if (this.video) {
      this.video.srcObject = null;
      this.video.remove();
    }
    this.video = null;
    this.stats.transport = stream ? "webrtc" : "websocket";
    if (!stream) return;
    const video = document.createElement("video");
    video.playsInline = true;
    video.autoplay = true;
    video.style.cssText = "position:fixed;width:1px;height:1px;opacity:0;pointer-events:none";
    video.srcObject = stream;
    document.body.appendChild(video);
    video.play().catch(() => {});
    this.video = video;
    const onFrame = () => {
      if (this.video !== video) return;
      if (performance.now() - this.videoFrameAt > IDLE_MS) this.onFirstAudio(-1); // a reply starts to show
      this.videoFrameAt = performance.now();
      this.videoFresh = true;
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }

  async resume() {
    await this.audio.resume();
  }

  useMedia(video, audio) {
    this.useVideo(video.codec, video.codec_string);
    this.useAudio(audio);
  }

  // Opus: one decoder for the connection, reset with each reply (each has its own encoder). The decoded audio is
  // played the encoder's look-ahead earlier, so that it stays on the frames' clock.
  useAudio(audio) {
    this.stats.audioCodec = audio.encoding;
    if (this.audioDecoder && this.audioDecoder.state !== "closed") this.audioDecoder.close();
    this.audioDecoder = null;
    if (audio.encoding !== "opus") return;
    this.preSkipS = audio.pre_skip_s;
    this.audioDecoder = new AudioDecoder({
      output: (data) => this.scheduleDecoded(data),
      error: () => {
        this.stats.decodeErrors++;
        this.useAudio(audio);
      },
    });
    this.audioDecoder.configure(OPUS);
  }

  scheduleDecoded(data) {
    const buffer = this.audio.createBuffer(1, data.numberOfFrames, data.sampleRate);
    data.copyTo(buffer.getChannelData(0), { planeIndex: 0, format: "f32-planar" });
    const at = data.timestamp / 1e6 - this.preSkipS;
    data.close();
    this.play(buffer, at);
  }

  // Encoded video: one decoder for the connection; it starts (and starts again after a clear or an error) at a
  // keyframe, and asks the gateway for one when a frame arrives that it cannot start from.
  useVideo(codec, codecString) {
    this.stats.videoCodec = codec;
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = null;
    if (codec === "jpeg") return;
    this.codecString = codecString;
    this.decoder = new VideoDecoder({
      output: (frame) => this.frames.push({ at: frame.timestamp / 1e6, image: frame }),
      error: () => { // the decoder closed itself: a new one waits for the keyframe asked for
        this.stats.decodeErrors++;
        this.restartDecoder();
        this.askKeyframe();
      },
    });
    this.restartDecoder();
  }

  restartDecoder() {
    if (!this.decoder) return;
    if (this.decoder.state === "closed") return this.useVideo(this.stats.videoCodec, this.codecString);
    if (this.decoder.state === "configured") this.decoder.reset();
    this.decoder.configure({ codec: this.codecString, optimizeForLatency: true });
    this.needKeyframe = true;
    this.keyframeAsked = false;
  }

  askKeyframe() {
    if (!this.keyframeAsked) this.onKeyframeNeeded();
    this.keyframeAsked = true;
  }

  decode(message, at) {
    if (this.needKeyframe && !message.keyframe) {
      this.askKeyframe();
      return;
    }
    this.needKeyframe = false;
    this.decoder.decode(new EncodedVideoChunk({
      type: message.keyframe ? "key" : "delta", timestamp: Math.round(at * 1e6), data: message.chunk,
    }));
  }

  async push(message) {
    if (message.turn !== this.turn) {
      this.turn = message.turn;
      // pts 0, or where a reply the peer connection carried was cut (it goes on here from now)
      this.turnStart = this.audio.currentTime + JITTER_S - message.pts;
      this.lag = 0;
      this.onFirstAudio(message.turn);
      if (this.audioDecoder) { // a new reply: a new Opus stream
        this.audioDecoder.reset();
        this.audioDecoder.configure(OPUS);
      }
    }
    const at = this.turnStart + message.pts;
    if (message.audio.byteLength) {
      if (this.audioDecoder) {
        this.audioDecoder.decode(new EncodedAudioChunk({ type: "key", timestamp: Math.round(at * 1e6), data: message.audio }));
      } else {
        this.schedule(new Int16Array(message.audio), at);
      }
    }
    if (message.chunk && this.decoder) this.decode(message, at);
    if (message.jpeg) {
      const image = await createImageBitmap(message.jpeg);
      this.frames.push({ at, image });
    }
  }

  schedule(pcm, at) {
    const buffer = this.audio.createBuffer(1, pcm.length, this.sampleRate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) channel[i] = pcm[i] / 32768;
    this.play(buffer, at);
  }

  play(buffer, at) {
    const source = this.audio.createBufferSource();
    source.buffer = buffer;
    source.connect(this.audio.destination);
    source.onended = () => this.sources.delete(source);
    let start = at + this.lag;
    if (start < this.audio.currentTime) {
      // Late: the reply ran out (its stages or the network fell behind) or its decoder is slow. It goes on from
      // where it stopped, a jitter ahead, and so do its frames (played at their late times, slices would sound
      // on top of one another).
      this.lag += this.audio.currentTime - start + JITTER_S;
      start = at + this.lag;
      this.stats.underruns++;
    }
    if (start < this.playedUntil - 0.002) this.stats.overlaps++; // two slices at once: the speech garbles
    this.playedUntil = Math.max(this.playedUntil, start + buffer.duration);
    source.start(start);
    this.sources.add(source);
    this.stats.audioScheduled++;
  }

  // The avatar's face at rest, shown before and between replies, breathing gently (a slow rise and fall of a
  // fraction of a percent) and blinking every 2-6 s (the same face with its eyelids down, faded in and out over
  // 200 ms), so the face never looks like a frozen picture.
  showStill(image, eyesClosed = null) {
    this.still = image;
    this.stillEyesClosed = eyesClosed;
    this.nextBlinkAt = performance.now() + 1000 + Math.random() * 2000;
    this.paintStill();
  }

  get speaking() {
    return this.socketReplyPlaying || (this.video !== null && performance.now() - this.videoFrameAt < IDLE_MS);
  }

  // A reply that came over the WebSocket plays to its end there, also when a peer connection came up meanwhile.
  get socketReplyPlaying() {
    return this.frames.length > 0 || (this.turn !== -1 && this.audio.currentTime < this.playedUntil);
  }

  // How far the eyelids are down now (0 open, 1 closed): a blink closes and opens over BLINK_MS.
  eyelids(now) {
    if (!this.stillEyesClosed) return 0;
    if (now >= this.nextBlinkAt + BLINK_MS) {
      this.nextBlinkAt = now + 2000 + Math.random() * 4000;
      this.stats.blinks++;
    }
    const into = (now - this.nextBlinkAt) / BLINK_MS;
    return into < 0 || into > 1 ? 0 : 1 - Math.abs(2 * into - 1);
  }

  paintStill() {
    const image = this.still;
    if (!image) return;
    if (this.canvas.width !== image.width || this.canvas.height !== image.height) {
      this.canvas.width = image.width;
      this.canvas.height = image.height;
    }
    const now = performance.now();
    const breath = Math.sin((now / 4200) * 2 * Math.PI);
    const scale = 1 + 0.006 * (breath + 1) / 2;
    const w = image.width * scale;
    const h = image.height * scale;
    const x = (image.width - w) / 2;
    const y = image.height - h + 0.01 * image.height * breath;
    this.ctx2d.drawImage(image, x, y, w, h);
    const lids = this.eyelids(now);
    if (lids > 0) {
      this.ctx2d.globalAlpha = lids;
      this.ctx2d.drawImage(this.stillEyesClosed, x, y, w, h);
      this.ctx2d.globalAlpha = 1;
    }
    this.stats.stillDrawn = (this.stats.stillDrawn ?? 0) + 1;
  }

  drawDue() {
    if (this.video && !this.socketReplyPlaying) {
      if (this.stats.paused) {
        this.videoFresh = false; // what the stream's jitter buffer still held plays unseen: the face holds
        return;
      }
      if (this.videoFresh) {
        this.videoFresh = false;
        this.paint(this.video, this.video.videoWidth, this.video.videoHeight);
        this.stats.framesDrawn++;
      } else if (!this.speaking) this.paintStill();
      return;
    }
    const now = this.audio.currentTime;
    if (!this.frames.length && !this.speaking && !this.stats.paused) {
      this.paintStill();
      return;
    }
    let due = null;
    while (this.frames.length && this.frames[0].at + this.lag <= now) {
      if (due) {
        this.stats.lateFrames++;
        due.image.close?.();
      }
      due = this.frames.shift();
    }
    if (due) {
      this.paint(due.image);
      this.stats.framesDrawn++;
    }
  }

  paint(image, width = image.displayWidth ?? image.width, height = image.displayHeight ?? image.height) {
    // a decoded VideoFrame, an ImageBitmap, or the video element that plays a WebRTC stream
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    this.ctx2d.drawImage(image, 0, 0);
    image.close?.(); // decoded frames hold decoder memory until closed
  }

  // Speech began over the reply: everything stops where it is (the audio clock draws the frames too), and goes
  // on from there on `unpause`, or is dropped by `clear`.
  // Over WebRTC the gateway stops the tracks, and the page mutes and holds what the browser's jitter buffer still
  // plays of them, so the voice stops at once there too.
  async pause() {
    this.stats.paused = true;
    this.stats.pauses++;
    if (this.video) this.video.muted = true;
    await this.audio.suspend();
  }

  async unpause() {
    this.stats.paused = false;
    if (this.video) this.video.muted = false;
    await this.audio.resume();
  }

  // Barge-in: drop everything queued for the reply.
  clear() {
    for (const source of this.sources) source.stop();
    this.sources.clear();
    this.playedUntil = 0;
    for (const frame of this.frames) frame.image.close?.();
    this.frames = [];
    this.turn = -1;
    if (this.stats.paused) this.unpause();
    this.restartDecoder(); // the next reply starts with a keyframe
    if (this.audioDecoder && this.audioDecoder.state === "configured") this.audioDecoder.reset();
  }
}
