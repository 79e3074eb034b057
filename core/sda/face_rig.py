"""Finds one face in a photo, measures its 68 landmarks, and cuts the model's aligned crop out of it.

The crop is what the SDA model trains on (128×96 by default); the service moves the full photo's own pixels
(`core.sda.face_warp`), with the landmarks in photo pixels (`photo_points`). `blink` lowers a face's eyelids.
"""

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

MIN_FACE_PX = 64  # a face narrower than this in the photo is too small to animate well

# dlib's 68-point layout
JAW = slice(0, 17)
OUTER_LIPS = slice(48, 60)
INNER_LIPS = slice(60, 68)


class FaceError(ValueError):
    """The photo cannot become an avatar; the message says why, for a person."""


MAX_PHOTO_PIXELS = 40_000_000  # a photo larger than this (a 50-megapixel camera's, a decompression bomb) is refused


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """The width and height a PNG or JPEG says it has, read from its header without decoding it."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 9 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame: the image's size
            return int.from_bytes(data[at + 7 : at + 9], "big"), int.from_bytes(data[at + 5 : at + 7], "big")
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return None


def read_photo(data: bytes) -> np.ndarray:
    """A JPEG or PNG as RGB; its size is checked before it is decoded, so a small file that decodes to gigabytes
    costs nothing."""
    size = _declared_size(data)
    if size is None:
        raise FaceError("the file is not a JPEG or PNG image")
    if size[0] * size[1] > MAX_PHOTO_PIXELS:
        raise FaceError(f"the photo is {size[0]}x{size[1]} pixels; at most {MAX_PHOTO_PIXELS // 1_000_000} megapixels")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise FaceError("the file is not a JPEG or PNG image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@cache
def _dlib_models():
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(models_dir() / "shape_predictor_68_face_landmarks.dat"))


def models_dir() -> Path:
    """dlib's model files, from the face-recognition-models package (located, not imported: its import needs
    pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face-recognition-models package is not installed")
    return Path(spec.submodule_search_locations[0]) / "models"


def landmarks(image: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """68 (x, y) landmarks of the face in `box` (left, top, right, bottom), or of the whole image."""
    import dlib

    _, predictor = _dlib_models()
    h, w = image.shape[:2]
    left, top, right, bottom = box or (0, 0, w, h)
    shape = predictor(np.ascontiguousarray(image), dlib.rectangle(int(left), int(top), int(right), int(bottom)))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def detect_faces(image: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
    """The faces dlib finds in an RGB image with a score over 0.3: (left, top, right, bottom) and the score,
    widest first."""
    detector, _ = _dlib_models()
    boxes, scores, _ = detector.run(np.ascontiguousarray(image), 1, -0.2)
    found = [((b.left(), b.top(), b.right(), b.bottom()), s) for b, s in zip(boxes, scores) if s > 0.3]
    return sorted(found, key=lambda item: item[0][0] - item[0][2])


def find_face(image: np.ndarray) -> tuple[int, int, int, int]:
    """The box of the one clear face in an RGB photo; FaceError when there is none, several, or it is too small."""
    found = detect_faces(image)
    if not found:
        raise FaceError("no face found in the photo; use a clear, front-facing portrait")
    widest = found[0][0]
    width = widest[2] - widest[0]
    others = [b for b, s in found[1:] if b[2] - b[0] > 0.6 * width and s > 0.6]
    if others:
        raise FaceError(f"{1 + len(others)} faces found in the photo; use a photo of one person")
    if width < MIN_FACE_PX:
        raise FaceError(f"the face is {width} px wide; it must be at least {MIN_FACE_PX} px")
    return widest


@dataclass(frozen=True)
class FaceRig:
    """A face photo prepared for the model: the crop, its place in the photo, and the landmarks in both."""

    photo: np.ndarray  # RGB uint8, full resolution
    box: tuple[int, int, int, int]  # crop (left, top, right, bottom) in photo pixels; may reach past the edges
    still: np.ndarray  # RGB uint8 (height, width): the neutral crop
    points: np.ndarray  # 68 landmarks in crop pixels
    photo_points: np.ndarray  # the same 68 landmarks in photo pixels

    @classmethod
    def from_photo(cls, photo: np.ndarray, height: int = 128, width: int = 96) -> "FaceRig":
        if photo.ndim != 3 or photo.shape[2] != 3:
            raise FaceError("the photo must be an RGB image")
        points = landmarks(photo, find_face(photo))
        box = crop_box(points, height, width)
        still = crop(photo, box, width, height)
        scale = np.array([width / (box[2] - box[0]), height / (box[3] - box[1])], dtype=np.float32)
        crop_points = (points - np.array(box[:2], dtype=np.float32)) * scale
        return cls(photo=photo, box=box, still=still, points=crop_points, photo_points=points)


_LID_MARGIN = 0.15  # share of the eye's opening above the lid line the closing lid's skin is taken from
_LASH_WIDTH, _LASH_DARKEN = 0.18, 0.45  # the closed lid's lash line: its width (share of the opening), how dark


def blink(image: np.ndarray, points: np.ndarray, amount: float) -> np.ndarray:
    """`image` with both upper eyelids lowered by `amount` (0 open, 1 closed), `points` its face's 68 landmarks in
    its pixels: the skin between brow and lid stretches down over the eye, most in the middle of the lid, none at
    the corners."""
    if amount <= 0:
        return image
    out = image.copy()
    for eye, brow in ((points[36:42], points[17:22]), (points[42:48], points[22:27])):
        _lower_lid(out, image, eye, brow, amount)
    return out


def _lower_lid(out: np.ndarray, image: np.ndarray, eye: np.ndarray, brow: np.ndarray, amount: float) -> None:
    """One eye: columns between its corners are remapped so the upper lid sits `amount` of the way down to the
    lower lid; the skin above it, up to halfway to the brow, stretches to fill, and its edge darkens into the lash
    line (done in place on `out`). The stretched skin stops a little above the landmarks' lid line, which often lies
    on the iris itself: a closed eye shows no iris and no catchlight."""
    x0, x1 = int(np.floor(eye[0, 0])), int(np.ceil(eye[3, 0]))
    xs = np.arange(x0, x1 + 1, dtype=np.float32)
    upper = np.interp(xs, eye[[0, 1, 2, 3], 0], eye[[0, 1, 2, 3], 1])
    lower = np.interp(xs, eye[[0, 5, 4, 3], 0], eye[[0, 5, 4, 3], 1])
    taper = np.clip(np.sin(np.pi * (xs - x0) / max(x1 - x0, 1)), 0, 1) ** 0.5  # least at the corners
    lid = upper + amount * taper * (lower - upper)
    ceiling = upper - 0.5 * (upper - brow[:, 1].mean())
    opening = max(float(np.max(lower - upper)), 1.0)
    skin_edge = upper - amount * taper * _LID_MARGIN * opening  # where the stretched skin is taken down to
    y0, y1 = int(np.floor(ceiling.min())), int(np.ceil(lower.max())) + 1
    if y0 < 0 or y1 > image.shape[0] or x0 < 0 or x1 >= image.shape[1]:
        return
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    above = ceiling + (ys - ceiling) * (skin_edge - ceiling) / np.maximum(lid - ceiling, 1e-3)  # skin, stretched
    below = upper + (ys - lid) * (lower - upper) / np.maximum(lower - lid, 1e-3)  # what shows of the eye
    source_y = np.where(ys < ceiling, ys, np.where(ys < lid, above, np.where(ys < lower, below, ys)))
    source_x = np.broadcast_to(xs, source_y.shape)
    moved = cv2.remap(image, source_x.astype(np.float32), source_y.astype(np.float32), cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    lash = max(_LASH_WIDTH * opening, 1.0)
    shade = np.clip(1 - np.abs(ys - (lid - 0.5 * lash)) / lash, 0, 1) * (ys < lid + 0.5)  # the lash line's band
    moved *= (1 - _LASH_DARKEN * amount * taper * shade)[..., None]
    out[y0:y1, x0 : x1 + 1] = np.clip(moved + 0.5, 0, 255).astype(np.uint8)


def crop_box(points: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """The model's crop (left, top, right, bottom) around a face's 68 landmarks, at the model's aspect ratio."""
    center = points.mean(axis=0)
    span = points[:, 0].max() - points[:, 0].min()
    crop_w = 1.45 * span
    crop_h = crop_w * height / width
    cx, cy = center[0], center[1] + 0.02 * crop_h
    return (int(round(cx - crop_w / 2)), int(round(cy - crop_h / 2)), int(round(cx + crop_w / 2)), int(round(cy + crop_h / 2)))


def crop(photo: np.ndarray, box: tuple[int, int, int, int], width: int, height: int) -> np.ndarray:
    """The region `box` of `photo` (edge pixels repeated past its borders), resized to width × height."""
    left, top, right, bottom = box
    pad = max(0, -left, -top, right - photo.shape[1], bottom - photo.shape[0])
    padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else photo
    region = padded[top + pad : bottom + pad, left + pad : right + pad]
    return cv2.resize(region, (width, height), interpolation=cv2.INTER_AREA)
