"""The face in a clip's video, followed frame by frame: 68 landmarks per frame, cut into the SDA model's aligned
crop around where the head is in that frame (so a head that turns, nods or comes closer stays framed).

Faces are detected every few frames and at every scene cut; between detections the landmarks of one frame place
the face in the next. A clip is fit for training the face only when one face is in view throughout: a clip with
a scene cut, more than one face, or the face lost for much of it is marked with the reason. Each track also
carries the face's identity (dlib's 128-d descriptor), so the clip step can keep another person's face out.
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from core.sda.face_rig import crop, crop_box, detect_faces, landmarks, models_dir
from pipelines.ffmpeg import read_frames

DETECT_EVERY = 12  # frames between detections; landmarks follow the face in between
MAX_WIDTH = 640  # frames are scaled down to this width first
MIN_FACE_SHARE = 0.8  # a clip "has a face" when one was found on this share of its detections
MIN_FACE_PX = 48  # narrower detections are ignored (the crop would be mostly upscaled blur)
SECOND_FACE = 0.5  # another face at least this wide (against the main one) is a second person in view
CUT = 0.5  # a frame this different from the one before (histogram distance) starts a new shot
JUMP = 0.3  # so does a face that moves this much (of its width) from one frame to the next
SMOOTH_FRAMES = 5  # the crop box follows the landmarks averaged over this many frames (no jitter)


@dataclass
class FaceTrack:
    frames: np.ndarray  # (T, H, W, 3) uint8 aligned crops; empty without a usable face
    points: np.ndarray  # (T, 68, 2) landmarks in crop pixels
    found_share: float
    problem: str = ""  # why the clip's face cannot train the model; "" when it can
    identity: np.ndarray | None = None  # the face's 128-d descriptor (mean over its detections)

    @property
    def has_face(self) -> bool:
        return not self.problem and len(self.frames) > 0


@cache
def _recognizer():
    import dlib

    return dlib.face_recognition_model_v1(str(models_dir() / "dlib_face_recognition_resnet_model_v1.dat"))


def describe(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The identity of the face with these landmarks: 128 numbers, about 0.6 apart or more between people."""
    import dlib

    parts = [dlib.point(int(x), int(y)) for x, y in points]
    left, top = points.min(axis=0)
    right, bottom = points.max(axis=0)
    shape = dlib.full_object_detection(dlib.rectangle(int(left), int(top), int(right), int(bottom)), parts)
    return np.array(_recognizer().compute_face_descriptor(np.ascontiguousarray(frame), shape), np.float32)


def _detect(frame: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes of the faces large enough to animate, widest first."""
    return [box for box, _ in detect_faces(frame) if box[2] - box[0] >= MIN_FACE_PX]


def _histogram(frame: np.ndarray) -> np.ndarray:
    small = cv2.resize(frame, (64, 36), interpolation=cv2.INTER_AREA)
    hist = cv2.calcHist([cv2.cvtColor(small, cv2.COLOR_RGB2HSV)], [0, 1], None, [16, 8], [0, 180, 0, 256])
    return cv2.normalize(hist, hist).flatten()


def _box_of(points: np.ndarray) -> tuple[int, int, int, int]:
    """A detector-like box around landmarks (what the landmark model expects to be given)."""
    (left, top), (right, bottom) = points.min(axis=0), points.max(axis=0)
    pad = 0.1 * (right - left)
    return int(left - pad), int(top - pad), int(right + pad), int(bottom + pad)


def track_face(media: Path, start_s: float, duration_s: float, video_size: tuple[int, int], fps: int,
               height: int, width: int) -> FaceTrack:
    w, h = video_size
    scale = min(1.0, MAX_WIDTH / w)
    fw, fh = int(round(w * scale / 2)) * 2, int(round(h * scale / 2)) * 2
    frames, points, identities = [], [], []
    box, detections, found, problem, previous = None, 0, 0, "", None
    for i, frame in enumerate(read_frames(media, start_s, duration_s, fps, fw, fh)):
        histogram = _histogram(frame)
        cut = previous is not None and cv2.compareHist(previous, histogram, cv2.HISTCMP_BHATTACHARYYA) > CUT
        previous = histogram
        if cut and not problem:
            problem = f"a scene cut {i / fps:.1f} s into the clip"
        if i % DETECT_EVERY == 0 or cut:
            detections += 1
            boxes = _detect(frame)
            found += bool(boxes)
            box = boxes[0] if boxes else None
            others = [b for b in boxes[1:] if (b[2] - b[0]) >= SECOND_FACE * (box[2] - box[0])]
            if others and not problem:
                problem = f"{1 + len(others)} faces in view {i / fps:.1f} s into the clip"
        measured = landmarks(frame, box) if box is not None else None
        last = points[-1] if points else None
        if measured is not None and last is not None and not problem:
            moved = np.linalg.norm(measured.mean(axis=0) - last.mean(axis=0)) / np.ptp(last[:, 0])
            if moved > JUMP:
                problem = f"a scene cut {i / fps:.1f} s into the clip (the face jumped)"
        if measured is not None:
            box = _box_of(measured)  # the next frame starts from where the face is now
            if i % DETECT_EVERY == 0:
                identities.append(describe(frame, measured))
        frames.append(frame)
        points.append(measured)
        if problem:
            break  # the clip will not train the face: no need to follow it further
    share = found / max(detections, 1)
    if not found:
        problem = problem or "no face in view"
    elif share < MIN_FACE_SHARE:
        problem = problem or f"the face is in view on {share:.0%} of the clip"
    measured = [p for p in points if p is not None]
    identity = np.mean(identities, axis=0) if identities else None
    if not measured or problem:
        return FaceTrack(np.zeros((0, height, width, 3), np.uint8), np.zeros((0, 68, 2), np.float32), share,
                         problem, identity)
    # frames with no landmarks (a face lost for a moment) borrow the nearest measured ones
    last = measured[0]
    filled = []
    for p in points:
        last = p if p is not None else last
        filled.append(last)
    filled = np.stack(filled)
    crops, crop_points = [], []
    for i, frame in enumerate(frames):
        around = filled[max(0, i - SMOOTH_FRAMES // 2) : i + SMOOTH_FRAMES // 2 + 1].mean(axis=0)
        box = crop_box(around, height, width)
        sx, sy = width / (box[2] - box[0]), height / (box[3] - box[1])
        crops.append(crop(frame, box, width, height))
        crop_points.append((filled[i] - np.array(box[:2], np.float32)) * np.array([sx, sy], np.float32))
    return FaceTrack(np.stack(crops), np.stack(crop_points).astype(np.float32), share, "", identity)
