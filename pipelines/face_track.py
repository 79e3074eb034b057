"""The face in a clip's video: detected every few frames, 68 landmarks per frame, cut into the SDA model's
aligned crop (one steady crop box per clip, from the median landmarks)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.sda.face_rig import _dlib_models, crop, crop_box, landmarks
from pipelines.media import read_frames

DETECT_EVERY = 12  # frames between detections; landmarks follow the face in between
MAX_WIDTH = 640  # frames are scaled down to this width first
MIN_FACE_SHARE = 0.8  # a clip "has a face" when one was found on this share of its detections
MIN_FACE_PX = 48  # narrower detections are ignored (the crop would be mostly upscaled blur)


@dataclass
class FaceTrack:
    frames: np.ndarray  # (T, H, W, 3) uint8 aligned crops; empty without a face
    points: np.ndarray  # (T, 68, 2) landmarks in crop pixels
    found_share: float

    @property
    def has_face(self) -> bool:
        return self.found_share >= MIN_FACE_SHARE and len(self.frames) > 0


def _detect(frame: np.ndarray) -> tuple[int, int, int, int] | None:
    detector, _ = _dlib_models()
    found, scores, _ = detector.run(np.ascontiguousarray(frame), 1, 0.0)
    boxes = [b for b, score in zip(found, scores) if b.width() >= MIN_FACE_PX and score > 0.3]
    if not boxes:
        return None
    widest = max(boxes, key=lambda b: b.width())
    return widest.left(), widest.top(), widest.right(), widest.bottom()


def track_face(media: Path, start_s: float, duration_s: float, video_size: tuple[int, int], fps: int,
               height: int, width: int) -> FaceTrack:
    w, h = video_size
    scale = min(1.0, MAX_WIDTH / w)
    fw, fh = int(round(w * scale / 2)) * 2, int(round(h * scale / 2)) * 2
    frames, points, box, detections, found = [], [], None, 0, 0
    for i, frame in enumerate(read_frames(media, start_s, duration_s, fps, fw, fh)):
        if i % DETECT_EVERY == 0:
            detections += 1
            box = _detect(frame)
            found += box is not None
        frames.append(frame)
        points.append(landmarks(frame, box) if box is not None else None)
    share = found / max(detections, 1)
    measured = [p for p in points if p is not None]
    if not measured or share < MIN_FACE_SHARE:
        return FaceTrack(np.zeros((0, height, width, 3), np.uint8), np.zeros((0, 68, 2), np.float32), share)
    steady = crop_box(np.median(np.stack(measured), axis=0), height, width)
    # frames with no landmarks (between a lost and a found detection) borrow the nearest measured ones
    last = measured[0]
    filled = []
    for p in points:
        last = p if p is not None else last
        filled.append(last)
    sx, sy = width / (steady[2] - steady[0]), height / (steady[3] - steady[1])
    crops = np.stack([crop(f, steady, width, height) for f in frames])
    crop_points = np.stack([(p - np.array(steady[:2], np.float32)) * np.array([sx, sy], np.float32) for p in filled])
    return FaceTrack(crops, crop_points.astype(np.float32), share)
