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

import cv2
import numpy as np

from core.sda.face_rig import INNER_LIPS, JAW, OUTER_LIPS

_TEETH = np.array([236, 231, 220], np.float32)
_SUPER = 4  # the inside of the mouth is drawn at this many times the crop's resolution
_ROUND_PULL = 0.22  # how far full rounding draws the mouth's sides towards its middle (share of their distance)
_SPREAD_PUSH = 0.10  # how far full spreading pushes them out


@dataclass(frozen=True)
class MouthRenderer:
    still: np.ndarray  # RGB uint8 (H, W)
    field: np.ndarray  # (H, W) float32: share of the jaw displacement each pixel takes
    lips_field: np.ndarray  # (H, W) float32: share of the rounding/spreading each pixel takes
    center: np.ndarray  # (2,) middle of the mouth
    upper_inner: np.ndarray  # (5, 2) upper inner lip, left corner to right corner
    lower_inner: np.ndarray  # (5, 2) lower inner lip, right corner to left corner
    lower_weights: np.ndarray  # (5,) field value under each lower inner lip point
    neutral_gap: float  # lip gap of the still, pixels
    max_gap: float  # lip gap at opening 1, pixels
    mouth_width: float  # outer lip corners apart, pixels
    lip_color: np.ndarray  # (3,) float32: the person's lips, measured on the still

    @classmethod
    def fit(cls, still: np.ndarray, points: np.ndarray) -> "MouthRenderer":
        h, w = still.shape[:2]
        inner = points[INNER_LIPS]
        upper = inner[[0, 1, 2, 3, 4]]
        lower = inner[[4, 5, 6, 7, 0]]
        corners_x = (inner[0, 0], inner[4, 0])
        outer = points[OUTER_LIPS]
        mouth_w = float(np.ptp(outer[:, 0]))
        jaw = points[JAW]
        chin_y = jaw[8, 1]
        center = np.array([(corners_x[0] + corners_x[1]) / 2, inner[:, 1].mean()], np.float32)
        half_jaw = max(np.ptp(jaw[:, 0]) * 0.42, mouth_w)
        xs = np.arange(w, dtype=np.float32)
        ys = np.arange(h, dtype=np.float32)[:, None]
        order = np.argsort(upper[:, 0])
        line = np.interp(xs, upper[order, 0], upper[order, 1])  # upper inner lip, flat past the corners
        outside = np.maximum(0, np.maximum(corners_x[0] - xs, xs - corners_x[1]))
        ramp = 1.0 + outside * 0.8  # sharp inside the mouth, soft over the cheeks
        wy = np.clip((ys - line) / ramp, 0, 1)
        fall = max(0.25 * (chin_y - line.min()), 4.0)
        wy = wy * np.clip(1 - (ys - chin_y) / fall, 0, 1)  # the neck below the chin barely moves
        wx = np.cos(np.clip(np.abs(xs - center[0]) / half_jaw, 0, 1) * np.pi / 2) ** 2
        field = (wy * wx).astype(np.float32)
        lips_field = np.exp(-(((xs - center[0]) / (0.75 * mouth_w)) ** 2) - ((ys - center[1]) / (0.55 * mouth_w)) ** 2)
        lower_weights = wx[np.clip(lower[:, 0].round().astype(int), 0, w - 1)]
        neutral_gap = float(np.mean(lower[1:4, 1]) - np.mean(upper[1:4, 1]))
        return cls(still, field, lips_field.astype(np.float32), center, upper, lower, lower_weights.astype(np.float32),
                   max(neutral_gap, 0.0), 0.45 * mouth_w, mouth_w, _lip_color(still, outer, inner))

    def render(self, opening: float, rounding: float = 0.0) -> np.ndarray:
        """The still with the mouth at `opening` (0 closed … 1 wide open) and `rounding` (−1 spread … 1 rounded)."""
        h, w = self.field.shape
        rounding = float(np.clip(rounding, -1, 1))
        pull = _ROUND_PULL * rounding if rounding > 0 else _SPREAD_PUSH * rounding
        shift = float(np.clip(opening, 0, 1.2)) * self.max_gap - self.neutral_gap
        shift *= 1 - 0.25 * max(rounding, 0)  # rounded lips open less far
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        squeeze = pull * self.lips_field
        source_x = grid_x + squeeze / (1 - squeeze) * (grid_x - self.center[0])
        frame = cv2.remap(self.still, source_x, grid_y - shift * self.field, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        gap = self.neutral_gap + shift
        if gap > 0.8:
            upper = self._moved(self.upper_inner, pull, 0.0)
            lower = self._moved(self.lower_inner, pull, shift * self.lower_weights)
            if rounding > 0:  # a rounded mouth is a rounder hole: the middle of each lip bows away
                upper[1:4, 1] -= 0.12 * rounding * gap * np.array([0.6, 1.0, 0.6])
                lower[1:4, 1] += 0.12 * rounding * gap * np.array([0.6, 1.0, 0.6])
            self._draw_inside(frame, upper, lower, gap, opening)
        return frame

    def _moved(self, points: np.ndarray, pull: float, down) -> np.ndarray:
        """Lip points where the rounding/spreading and the jaw put them (the inverse of the remap's x)."""
        moved = points.copy()
        weight = pull * self.lips_field[np.clip(points[:, 1].round().astype(int), 0, self.field.shape[0] - 1),
                                        np.clip(points[:, 0].round().astype(int), 0, self.field.shape[1] - 1)]
        moved[:, 0] = self.center[0] + (points[:, 0] - self.center[0]) * (1 - weight)
        moved[:, 1] += down
        return moved

    def _draw_inside(self, frame: np.ndarray, upper: np.ndarray, lower: np.ndarray, gap: float, opening: float) -> None:
        polygon = np.concatenate([upper, lower])
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
        across = np.clip(np.abs(xs - self.center[0]) / half_w, 0, 1)  # 0 in the middle, 1 at the corners

        # the cavity: darkest deep in the middle, the lips' colour in shadow towards the corners
        shade = 0.06 + 0.2 * across ** 1.5 + 0.06 * depth
        image = self.lip_color * shade[..., None]

        # the tongue lies on the floor of the mouth, seen once the jaw is open
        tongue_top = bottom - (0.25 + 0.25 * min(opening, 1.0)) * (bottom - top) - 0.5
        arch = tongue_top + 0.5 * (bottom - top) * across ** 2
        tongue = np.clip((ys - arch) * _SUPER / 3, 0, 1) * np.clip(gap / (0.25 * self.max_gap) - 0.6, 0, 1)
        tongue_color = np.clip(self.lip_color + 0.8 * (self.lip_color - self.lip_color.mean()) + 10, 0, 255)
        lit = 0.55 + 0.35 * np.clip(1 - (ys - arch) / np.maximum(bottom - arch, 1e-3), 0, 1) * (1 - across)
        image = image * (1 - tongue[..., None]) + (tongue_color * lit[..., None]) * tongue[..., None]

        # upper teeth under the upper lip, lower teeth above the lower lip when the jaw is well open
        tooth_w = 0.12 * self.mouth_width
        upper_h = min(0.28 * gap, 0.13 * self.mouth_width + 1)
        lower_h = min(0.16 * gap, 0.08 * self.mouth_width) * np.clip(gap / (0.45 * self.max_gap) - 0.5, 0, 1)
        for edge, height, reach, light in ((top, upper_h, 0.82, 1.0), (bottom - lower_h, lower_h, 0.5, 0.92)):
            if height < 0.3:
                continue
            inside = (ys >= edge) & (ys < edge + height) & (across < reach)
            seam = 1 - 0.22 * np.exp(-((_to_seam(np.abs(xs - self.center[0]), tooth_w) / 0.4) ** 2))
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


def _lip_color(still: np.ndarray, outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The median colour between the outer and the inner lip line (the lips themselves), or of the outer mouth when
    the lips are too thin to measure."""
    lips = np.zeros(still.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(outer).astype(np.int32)], 1)
    mouth = lips.copy()
    cv2.fillPoly(lips, [np.round(inner).astype(np.int32)], 0)
    chosen = lips if lips.sum() >= 12 else mouth
    return np.median(still[chosen.astype(bool)], axis=0).astype(np.float32)
