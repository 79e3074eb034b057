"""Renders a face crop speaking a given mouth shape: the synthetic talking-face frames the generator learns from.

A shape is an `opening` (0 closed … 1 wide open) and a `rounding` (−1 spread as in "ee", 0 neutral, 1 rounded
as in "oo"). The jaw drops by a smooth displacement field fitted once per face from its landmarks (the chin
follows, the corners move less, nothing above the mouth moves); rounding draws the lips and cheeks towards the
middle of the mouth, spreading pulls the corners out. Between the lips: a dark oral cavity shaded from the
person's own lip colour, upper teeth with their gaps and shading (lower teeth when the jaw is well open), and
a tongue resting on the floor of the mouth; the inside of the mouth is drawn at four times the crop's
resolution and blended in with soft edges.
"""

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
import torch

from core.sda import face_warp
from core.sda.face_warp import TEETH_RGB, FaceGeometry

_TEETH = np.array(TEETH_RGB, np.float32)
_SUPER = 4  # the inside of the mouth is drawn at this many times the crop's resolution


@dataclass(frozen=True)
class MouthRenderer:
    still: np.ndarray  # RGB uint8 (H, W)
    geometry: FaceGeometry

    @classmethod
    def fit(cls, still: np.ndarray, points: np.ndarray) -> "MouthRenderer":
        return cls(still, FaceGeometry.fit(still, points))

    @cached_property
    def tensors(self) -> dict[str, torch.Tensor]:
        """The geometry as tensors, made once (every training sample renders with them)."""
        return self.geometry.tensors()

    def render(self, opening: float, rounding: float = 0.0) -> np.ndarray:
        """The still with the mouth at `opening` (0 closed … 1 wide open) and `rounding` (−1 spread … 1 rounded)."""
        return self.render_many(np.array([opening]), np.array([rounding]))[0]

    def render_many(self, openings: np.ndarray, roundings: np.ndarray) -> list[np.ndarray]:
        """The still moved by the face's warp to each pose, with the inside of the mouth drawn between the lips."""
        n = len(openings)
        geo = {k: v.expand(n, *v.shape) for k, v in self.tensors.items()}
        opening = torch.as_tensor(np.asarray(openings, np.float32))
        rounding = torch.as_tensor(np.asarray(roundings, np.float32))
        image = torch.from_numpy(self.still).permute(2, 0, 1).float().expand(n, -1, -1, -1)
        warped = face_warp.render(image, geo, opening, rounding).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        mouth = face_warp.lips(geo, opening, rounding)
        frames = []
        for i in range(n):
            frame = np.ascontiguousarray(warped[i])
            gap = float(mouth.gap[i])
            if gap > 0.8:
                self._draw_inside(frame, mouth.upper[i].numpy(), mouth.lower[i].numpy(), gap, float(openings[i]))
            frames.append(frame)
        return frames

    def _draw_inside(self, frame: np.ndarray, upper: np.ndarray, lower: np.ndarray, gap: float, opening: float) -> None:
        geo = self.geometry
        lip, cx, max_gap, mouth_w = geo.lip_color, float(geo.center[0]), float(geo.max_gap), float(geo.mouth_width)
        polygon = np.concatenate([upper, lower[::-1]])
        x0, y0 = np.floor(polygon.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, frame.shape[1]), min(y1, frame.shape[0])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        size = ((x1 - x0) * _SUPER, (y1 - y0) * _SUPER)
        local = (polygon - [x0, y0]) * _SUPER
        ys, xs = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float32)
        xs, ys = xs / _SUPER + x0, ys / _SUPER + y0  # crop pixels of each sample
        top = np.interp(xs, *_sorted(upper))
        bottom = np.interp(xs, *_sorted(lower))
        depth = np.clip((ys - top) / np.maximum(bottom - top, 1e-3), 0, 1)  # 0 at the upper lip, 1 at the lower
        half_w = max(np.ptp(polygon[:, 0]) / 2, 1.0)
        across = np.clip(np.abs(xs - cx) / half_w, 0, 1)  # 0 in the middle, 1 at the corners

        # the cavity: darkest deep in the middle, the lips' colour in shadow towards the corners
        shade = 0.06 + 0.2 * across ** 1.5 + 0.06 * depth
        image = lip * shade[..., None]

        # the tongue lies on the floor of the mouth, seen once the jaw is open
        tongue_top = bottom - (0.25 + 0.25 * min(opening, 1.0)) * (bottom - top) - 0.5
        arch = tongue_top + 0.5 * (bottom - top) * across ** 2
        tongue = np.clip((ys - arch) * _SUPER / 3, 0, 1) * np.clip(gap / (0.25 * max_gap) - 0.6, 0, 1)
        tongue_color = np.clip(lip + 0.8 * (lip - lip.mean()) + 10, 0, 255)
        lit = 0.55 + 0.35 * np.clip(1 - (ys - arch) / np.maximum(bottom - arch, 1e-3), 0, 1) * (1 - across)
        image = image * (1 - tongue[..., None]) + (tongue_color * lit[..., None]) * tongue[..., None]

        # upper teeth under the upper lip, lower teeth above the lower lip when the jaw is well open
        tooth_w = 0.12 * mouth_w
        upper_h = min(0.28 * gap, 0.13 * mouth_w + 1)
        lower_h = min(0.16 * gap, 0.08 * mouth_w) * np.clip(gap / (0.45 * max_gap) - 0.5, 0, 1)
        for edge, height, reach, light in ((top, upper_h, 0.82, 1.0), (bottom - lower_h, lower_h, 0.5, 0.92)):
            if height < 0.3:
                continue
            inside = (ys >= edge) & (ys < edge + height) & (across < reach)
            seam = 1 - 0.22 * np.exp(-((_to_seam(np.abs(xs - cx), tooth_w) / 0.4) ** 2))
            fall = light * (1 - 0.3 * (across / reach) ** 2)  # teeth curve away into the dark at the sides
            gum = 0.85 + 0.15 * np.clip((ys - edge) / max(height * 0.35, 0.3), 0, 1)  # the lip's shadow
            tooth = _TEETH * (fall * seam * gum)[..., None]
            soft = np.clip((reach - across) * 12, 0, 1)[..., None]
            image = np.where(inside[..., None], image * (1 - soft) + tooth * soft, image)

        alpha = np.zeros((size[1], size[0]), np.uint8)
        cv2.fillPoly(alpha, [np.round(local).astype(np.int32)], 255, lineType=cv2.LINE_AA)
        small = cv2.resize(image.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        cover = cv2.resize(alpha.astype(np.float32) / 255, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)[..., None]
        region = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = np.clip(cover * small + (1 - cover) * region, 0, 255).round().astype(np.uint8)


def _to_seam(distance: np.ndarray, tooth_w: float) -> np.ndarray:
    """Pixels from each point `distance` from the middle of the mouth to the nearest gap between two teeth: the
    two front teeth are `tooth_w` wide, the ones beside them a fifth narrower."""
    front = np.minimum(distance, tooth_w - distance)
    side = (distance - tooth_w) / (0.8 * tooth_w)
    side = np.minimum(side - np.floor(side), np.ceil(side) - side) * 0.8 * tooth_w
    return np.where(distance < tooth_w, front, side)


def _sorted(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points[:, 0])
    return points[order, 0], points[order, 1]
