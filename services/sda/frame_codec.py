"""Turns a generated face crop into the frame a viewer sees: pasted into the portrait, sized, encoded."""

import cv2
import numpy as np
from avatar.sda.v1 import sda_pb2

from core.sda.face_rig import FaceRig


class FrameCodec:
    def __init__(self, rig: FaceRig, width: int, height: int, encoding: int, jpeg_quality: int):
        self._rig = rig
        photo_h, photo_w = rig.photo.shape[:2]
        self.width = width or photo_w
        self.height = height or photo_h
        self.encoding = encoding or sda_pb2.JPEG
        self._quality = [int(cv2.IMWRITE_JPEG_QUALITY), jpeg_quality]

    def encode(self, crop: np.ndarray) -> bytes:
        frame = self._rig.paste(crop)
        if frame.shape[1] != self.width or frame.shape[0] != self.height:
            frame = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
        if self.encoding == sda_pb2.RGB24:
            return frame.tobytes()
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), self._quality)
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return data.tobytes()
