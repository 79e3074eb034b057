"""Turns an animated frame into the picture a viewer sees: the photo, framed (the head, or the whole photo) and
sized once per stream, then for each frame its own pixels moved to the frame's mouth pose and head motion with the
inside of the mouth painted in and the eyelids as far down as it blinks; encoded (a JPEG or raw RGB per frame, or
one stream's H.264/VP8 video)."""

import threading
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from avatar.sda.v1 import sda_pb2

from core.errors import BadRequest
from core.sda import face_warp
from core.sda.face_rig import FaceRig, blink
from core.sda.face_warp import FaceGeometry
from services.sda.config import SdaSettings
from services.sda.engine import AnimatedFrame
from services.sda.video_encoder import VideoEncoder

_VIDEO = {sda_pb2.H264: "h264", sda_pb2.VP8: "vp8"}
_FRAMING = {sda_pb2.HEAD: "head", sda_pb2.PHOTO: "photo"}


def head_box(rig: FaceRig, margin: float) -> tuple[int, int, int, int]:
    """A square (left, top, right, bottom) of the photo framing the whole head, hair to chin, centred, with `margin`
    of its size around it on every side; moved (and if need be shrunk) to stay inside the photo, and where it must
    shrink below the head it keeps the chin and gives up the top of the hair."""
    photo_h, photo_w = rig.photo.shape[:2]
    points = rig.photo_points
    brow, chin = points[17:27, 1].min(), points[8, 1]
    face = chin - brow
    top, bottom = brow - 0.55 * face, chin + 0.08 * face  # the hair above the brows, a little below the chin
    left, right = points[0:17, 0].min() - 0.12 * face, points[0:17, 0].max() + 0.12 * face
    side = int(min(max(bottom - top, right - left) * (1 + 2 * margin), photo_w, photo_h))
    x = int(np.clip((left + right) / 2 - side / 2, 0, photo_w - side))
    y = (top + bottom) / 2 - side / 2
    if side < bottom - top:
        y = bottom - side
    y = int(np.clip(y, 0, photo_h - side))
    return x, y, x + side, y + side


@dataclass(frozen=True)
class _Framed:
    """A photo framed and sized for a stream, with its face's warp fitted at that size."""

    base: np.ndarray  # RGB uint8 at the stream's size
    points: np.ndarray  # the face's landmarks in it
    geometry: dict[str, torch.Tensor]  # batched (1, ...)
    rest_opening: float
    grey: bool  # a greyscale photo


_FRAMED: OrderedDict[tuple, tuple[FaceRig, _Framed]] = OrderedDict()
_FRAMED_KEPT = 16
_FRAMED_LOCK = threading.Lock()


def _framed(rig: FaceRig, region: tuple[int, int, int, int], width: int, height: int) -> _Framed:
    """The framing of a photo for a stream, made once per avatar, region and size (fitting the warp at a 512 px
    size takes about 20 ms: every stream's first frame would wait for it)."""
    key = (id(rig), region, width, height)
    with _FRAMED_LOCK:
        kept = _FRAMED.get(key)
        if kept is not None and kept[0] is rig:
            _FRAMED.move_to_end(key)
            return kept[1]
    left, top, right, bottom = region
    base = cv2.resize(rig.photo[top:bottom, left:right], (width, height), interpolation=cv2.INTER_AREA)
    scale = np.array([width / (right - left), height / (bottom - top)], np.float32)
    points = (rig.photo_points - np.array([left, top], np.float32)) * scale
    geometry = FaceGeometry.fit(base, points)
    framed = _Framed(base, points, {k: v[None] for k, v in geometry.tensors().items()}, geometry.rest_opening,
                     bool(np.percentile(np.ptp(base.astype(np.int16), axis=2), 99) <= 8))
    with _FRAMED_LOCK:
        _FRAMED[key] = (rig, framed)
        while len(_FRAMED) > _FRAMED_KEPT:
            _FRAMED.popitem(last=False)
    return framed


class FrameCodec:
    """One stream's frames, as its config asks (the service's settings where it does not say)."""

    def __init__(self, rig: FaceRig, config: sda_pb2.AnimateConfig, settings: SdaSettings, fps: int):
        photo_h, photo_w = rig.photo.shape[:2]
        if config.framing and config.framing not in _FRAMING:
            raise BadRequest(f"unknown framing {config.framing}")
        framing = _FRAMING.get(config.framing, settings.framing)
        self._region = head_box(rig, settings.head_margin) if framing == "head" else (0, 0, photo_w, photo_h)
        size = (settings.frame_size, settings.frame_size) if framing == "head" else (photo_w, photo_h)
        self.width = config.width or size[0]
        self.height = config.height or size[1]
        self.encoding = config.image_encoding or sda_pb2.JPEG
        if self.encoding not in (sda_pb2.JPEG, sda_pb2.RGB24, *_VIDEO):
            raise BadRequest(f"unknown image_encoding {config.image_encoding}")
        self._quality = [int(cv2.IMWRITE_JPEG_QUALITY), config.jpeg_quality or settings.jpeg_quality]
        self._video = None
        if self.encoding in _VIDEO:
            if min(self.width, self.height) < 16:
                raise BadRequest(f"encoded video needs frames of at least 16 px a side, not {self.width}x{self.height}")
            self.width, self.height = self.width // 2 * 2, self.height // 2 * 2  # 4:2:0 video: even sides
            self._video = VideoEncoder(_VIDEO[self.encoding], self.width, self.height, fps, settings.video_quality())
        self._framed = _framed(rig, self._region, self.width, self.height)

    def want_keyframe(self) -> None:
        """Encoded video: the next frame decodes on its own (frames before it were dropped, or a client asked)."""
        if self._video is not None:
            self._video.want_keyframe()

    @torch.no_grad()
    def picture(self, made: AnimatedFrame) -> np.ndarray:
        """The frame as RGB: the generated mouth as far as the frame is speaking (at rest, the person's own), its
        lips as far closed as the voice closes them, the head where its motion puts it, the eyelids as far down as it
        blinks."""
        framed = self._framed
        speaking = made.speaking
        opening = (1 - made.lips_closed) * (framed.rest_opening + speaking * (made.opening - framed.rest_opening))
        cavity = (torch.from_numpy(made.cavity)[None] + 1) * 127.5
        if framed.grey:  # the inside of a grey photo's mouth is grey too
            luma = (cavity * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(dim=1, keepdim=True)
            cavity = luma.expand_as(cavity)
        return face_warp.render_photo(blink(framed.base, framed.points, made.blink), framed.geometry, opening,
                                      speaking * made.rounding, cavity, speaking, made.head)

    def skip(self) -> tuple[bytes, bool]:
        """A frame without a picture (the stream's picture rate): no bytes; encoded video's clock moves on."""
        if self._video is not None:
            self._video.skip()
        return b"", False

    def encode(self, made: AnimatedFrame) -> tuple[bytes, bool]:
        """The frame's bytes and whether it decodes on its own."""
        frame = self.picture(made)
        if self._video is not None:
            return self._video.encode(frame)
        if self.encoding == sda_pb2.RGB24:
            return frame.tobytes(), True
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), self._quality)
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return data.tobytes(), True
