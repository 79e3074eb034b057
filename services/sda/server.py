"""The SDA gRPC servicer: audio chunks in, portrait frames out, with clear-buffer for barge-in and idle frames."""

import asyncio
import time
from collections import deque

import grpc
import torch
from avatar.common.v1 import common_pb2
from avatar.sda.v1 import sda_pb2, sda_pb2_grpc

from core import audio as pcm
from core.avatar_bundle import DEFAULT
from core.errors import BadRequest
from core.sda.face_rig import FaceError, read_photo
from services.common import metrics
from services.common.priority_turns import Playout, PriorityTurns
from services.common.streams import check_chunk_size, read_config
from services.sda.avatars import Avatar, AvatarBook, choose_device
from services.sda.config import SdaSettings
from services.sda.engine import AnimatedFrame, Animator
from services.sda.frame_codec import FrameCodec

_END = object()
_CLEAR = object()
MAX_CLOSURES = 1000  # lips-closed spans in one message: a few seconds of speech has tens


class SdaService(sda_pb2_grpc.SdaServiceServicer):
    service_name = sda_pb2.DESCRIPTOR.services_by_name["SdaService"].full_name

    def __init__(self, settings: SdaSettings):
        self._settings = settings
        self._avatars: AvatarBook | None = None
        self._turns = PriorityTurns()  # streams of several sessions share the model: the frame due soonest first

    def add_to_server(self, server: grpc.aio.Server) -> None:
        sda_pb2_grpc.add_SdaServiceServicer_to_server(self, server)

    def load(self) -> None:
        s = self._settings
        torch.set_num_threads(s.threads)
        self._avatars = AvatarBook(s.checkpoint_path, s.avatars_dir, choose_device(s.device))
        avatar = self._avatars.load_default()
        Animator(avatar, 16000, pcm.LINEAR16, 0).push(b"\0\0" * 16000)  # warm-up

    async def ListAvatars(self, request, context):
        default = self._avatars.get(DEFAULT)
        h, w = default.rig.photo.shape[:2]
        if self._settings.framing == "head":
            h = w = self._settings.frame_size
        return sda_pb2.ListAvatarsResponse(
            avatars=[sda_pb2.AvatarInfo(avatar_id=i, width=w if i == DEFAULT else 0, height=h if i == DEFAULT else 0)
                     for i in self._avatars.ids()],
            default_avatar=DEFAULT,
        )

    def _avatar(self, config: sda_pb2.AnimateConfig) -> Avatar:
        if config.face_image:
            if len(config.face_image) > self._settings.max_face_image_bytes:
                raise BadRequest(f"face_image exceeds {self._settings.max_face_image_bytes} bytes")
            try:
                image = read_photo(config.face_image)
            except FaceError as err:
                raise BadRequest(f"face_image: {err}") from None
            return self._avatars.from_photo(image)
        return self._avatars.get(config.avatar_id)

    async def StreamingAnimate(self, request_iterator, context):
        first = await read_config(request_iterator)
        config = first.config
        s = self._settings
        fmt = config.audio_format
        pcm.check_format(fmt.encoding, fmt.sample_rate_hz, fmt.channels)
        if max(config.width, config.height) > s.max_frame_side or min(config.width, config.height) < 0:
            raise BadRequest(f"frame size must be within 0-{s.max_frame_side} px a side")
        avatar = await asyncio.to_thread(self._avatar, config)
        animator = Animator(avatar, fmt.sample_rate_hz, fmt.encoding, config.fps)
        codec = await asyncio.to_thread(FrameCodec, avatar.rig, config, s, animator.fps)
        stream = _Stream(animator, codec, first.meta, config.idle_frames, s.max_chunk_bytes, self._turns)
        async for response in stream.run(request_iterator):
            yield response


class _Stream:
    """One StreamingAnimate call: a reader that queues work (and handles clear at once), a generator that works
    through the queue, and the caller's loop that sends what is ready."""

    def __init__(self, animator: Animator, codec: FrameCodec, meta: common_pb2.RequestMeta, idle: bool, max_chunk: int,
                 turns: PriorityTurns):
        self._animator = animator
        self._turns = turns
        self._playout = Playout()  # when the listener plays each frame of the segment (its first: at once)
        self._segment_frames = 0  # frames made of the current segment
        self._codec = codec
        self._meta = meta
        self._idle = idle
        self._max_chunk = max_chunk
        self._work: deque = deque()
        self._wake = asyncio.Event()
        self._out: asyncio.Queue = asyncio.Queue()
        self._epoch = 0  # bumped by clear: frames of an older epoch are dropped unsent
        self._unsent = 0  # frames queued for the caller of the current epoch
        self._started = time.monotonic()
        self._reading = True
        self._picture_every = 1  # PictureRate.every: which frames get a picture

    async def run(self, requests):
        reader = asyncio.create_task(self._read(requests))
        worker = asyncio.create_task(self._generate())
        try:
            while (item := await self._out.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                epoch, response = item
                is_frame = response.WhichOneof("result") == "frame"
                if is_frame and epoch == self._epoch:
                    self._unsent -= 1
                if epoch == self._epoch or not is_frame:
                    yield response
        finally:
            reader.cancel()
            worker.cancel()

    async def _read(self, requests) -> None:
        try:
            async for request in requests:
                kind = request.WhichOneof("request")
                if kind == "audio":
                    check_chunk_size(request.audio, self._max_chunk)
                    self._work.append(request.audio)
                elif kind == "end_of_segment":
                    self._work.append(_END)
                elif kind == "clear":
                    self._clear()
                elif kind == "keyframe":
                    self._codec.want_keyframe()
                elif kind == "picture_rate":
                    self._picture_every = request.picture_rate.every
                elif kind == "lips_closed":
                    if len(request.lips_closed.spans) > MAX_CLOSURES:
                        raise BadRequest(f"lips_closed carries at most {MAX_CLOSURES} spans (those of the audio after "
                                         f"it), got {len(request.lips_closed.spans)}")
                    self._work.append([(span.start_s, span.end_s) for span in request.lips_closed.spans])
                else:
                    raise BadRequest("after the config only audio, lips_closed, end_of_segment, clear, keyframe and "
                                     f"picture_rate are allowed, got `{kind}`")
                self._wake.set()
        except BaseException as err:
            self._out.put_nowait(err)
            raise
        finally:
            self._reading = False
            self._wake.set()

    def _clear(self) -> None:
        """Barge-in: queued audio is dropped now, frames not sent yet are never sent, and the worker resets the
        animator's segment before anything else it does."""
        queued = sum(len(item) for item in self._work if isinstance(item, bytes)) // self._animator.bytes_per_frame
        dropped = queued + self._animator.pending_frames + self._unsent
        self._work.clear()
        self._work.append(_CLEAR)
        self._epoch += 1
        self._unsent = 0
        self._out.put_nowait((self._epoch, sda_pb2.AnimateResponse(
            cleared=sda_pb2.BufferCleared(dropped_frames=dropped), meta=self._meta)))

    async def _generate(self) -> None:
        try:
            while True:
                if not self._work:
                    if not self._reading:
                        break
                    timeout = self._idle_due() if self._idle else None
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout)
                    except TimeoutError:
                        due = self._started + self._animator.next_pts  # idle frames keep the wall clock
                        await self._emit([await self._work_on(self._animator.idle, due=due)], self._epoch, due)
                    self._wake.clear()
                    continue
                item = self._work.popleft()
                epoch = self._epoch
                started = time.perf_counter()
                if item is _CLEAR:
                    self._animator.clear()
                    self._codec.want_keyframe()  # the frames the next one would build on were dropped
                    self._new_segment()
                    continue
                if isinstance(item, list):  # lips-closed spans, for the audio after them
                    self._animator.close_lips(item)
                    continue
                if item is _END:
                    frames, total = await self._work_on(self._animator.end_segment, due=self._next_due())
                    await self._emit(frames, epoch)
                    self._new_segment()
                    self._out.put_nowait((epoch, sda_pb2.AnimateResponse(
                        segment_end=sda_pb2.SegmentEnd(segment=self._animator.segment - 1, frames=total), meta=self._meta)))
                else:
                    frames = await self._work_on(self._animator.push, item, due=self._next_due())
                    await self._emit(frames, epoch)
                    self._segment_frames += len(frames)
                if frames:
                    metrics.REAL_TIME_FACTOR.observe((time.perf_counter() - started) * self._animator.fps / len(frames))
        except BaseException as err:
            self._out.put_nowait(err)
            raise
        finally:
            self._out.put_nowait(_END)

    async def _work_on(self, step, *args, due: float):
        """`step` on a worker thread, in its turn on the model: the work whose frames are due soonest first."""
        async with self._turns.turn(due):
            return await asyncio.to_thread(step, *args)

    def _next_due(self) -> float:
        """When the listener plays the next frame this stream makes (at once: the segment's first)."""
        return self._playout.due(self._animator.next_pts)

    def _new_segment(self) -> None:
        self._segment_frames = 0
        self._playout.reset()

    def _idle_due(self) -> float:
        """Seconds until the next frame is due on the wall clock (idle frames keep real time)."""
        return max(0.0, self._animator.next_pts - (time.monotonic() - self._started))

    def _pictured(self, frame: AnimatedFrame, first: bool) -> bool:
        """Whether this frame gets a picture at the stream's picture rate (a segment's first frame always does)."""
        every = self._picture_every
        return first or (every >= 0 and frame.index % max(every, 1) == 0)

    async def _emit(self, frames: list[AnimatedFrame], epoch: int, idle_due: float | None = None) -> None:
        """Each frame drawn and sent in its own turn on the worker: frames go out as they are ready (not a chunk's
        worth at once), and another stream's frames can come between them (whichever is due soonest). `idle_due`:
        an idle frame's time on the wall clock."""
        for i, frame in enumerate(frames):
            first = self._segment_frames == 0 and i == 0
            drawn = self._pictured(frame, first)
            due = idle_due if idle_due is not None else self._playout.due(frame.pts_s)
            image, keyframe = await self._work_on(self._codec.encode if drawn else lambda _: self._codec.skip(), frame,
                                                  due=due)
            if epoch != self._epoch:
                return
            if first and idle_due is None:
                self._playout.begin(frame.pts_s)  # the listener's clock for the segment starts with it
            self._unsent += 1
            self._out.put_nowait((epoch, sda_pb2.AnimateResponse(
                frame=sda_pb2.VideoFrame(
                    image=image, encoding=self._codec.encoding, width=self._codec.width, height=self._codec.height,
                    pts_s=frame.pts_s, index=frame.index, audio=frame.audio, segment=frame.segment,
                    keyframe=keyframe),
                meta=self._meta)))
