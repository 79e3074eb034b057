"""Turns a generated face crop into the frame a viewer sees: composited into the photo, framed (the head, or the
whole photo), sized, encoded (a JPEG or raw RGB per frame, or one stream's H.264/VP8 video)."""

import cv2
import numpy as np
from avatar.sda.v1 import sda_pb2

from core.errors import BadRequest
from core.sda.face_rig import FaceRig
from services.sda.config import SdaSettings
from services.sda.engine import AnimatedFrame
from services.sda.video_encoder import VideoEncoder

_VIDEO = {sda_pb2.H264: "h264", sda_pb2.VP8: "vp8"}
_FRAMING = {sda_pb2.HEAD: "head", sda_pb2.PHOTO: "photo"}


def head_box(rig: FaceRig, margin: float) -> tuple[int, int, int, int]:
    """A square (left, top, right, bottom) of the photo centred on the face's crop box, `margin` of its size
    around it on every side, moved (and if need be shrunk) to stay inside the photo."""
    photo_h, photo_w = rig.photo.shape[:2]
    left, top, right, bottom = rig.box
    side = min(int(max(right - left, bottom - top) * (1 + 2 * margin)), photo_w, photo_h)
    x = int(np.clip((left + right) / 2 - side / 2, 0, photo_w - side))
    y = int(np.clip((top + bottom) / 2 - side / 2, 0, photo_h - side))
    return x, y, x + side, y + side


class FrameCodec:
    """One stream's frames, as its config asks (the service's settings where it does not say)."""

    def __init__(self, rig: FaceRig, config: sda_pb2.AnimateConfig, settings: SdaSettings, fps: int):
        self._rig = rig
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

    def want_keyframe(self) -> None:
        """Encoded video: the next frame decodes on its own (frames before it were dropped, or a client asked)."""
        if self._video is not None:
            self._video.want_keyframe()

    def encode(self, made: AnimatedFrame) -> tuple[bytes, bool]:
        """The frame's bytes and whether it decodes on its own: the generated lower face over the photo as far as
        the frame is speaking (at rest, the person's own expression), the eyelids as far down as it blinks."""
        left, top, right, bottom = self._region
        frame = self._rig.blink(self._rig.paste(made.crop, made.speaking), made.blink)[top:bottom, left:right]
        if frame.shape[1] != self.width or frame.shape[0] != self.height:
            frame = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
        if self._video is not None:
            return self._video.encode(frame)
        if self.encoding == sda_pb2.RGB24:
            return frame.tobytes(), True
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), self._quality)
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return data.tobytes(), True
