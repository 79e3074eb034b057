"""Renders a face crop with its mouth opened by a given amount: the synthetic talking-face frames.

The lower face (below the upper inner lip) is pulled down or up by a smooth displacement field fitted once per
face from its landmarks — the jaw drops, the corners move less, nothing above the mouth moves — and a mouth
cavity with a hint of upper teeth is drawn between the lips. `opening` 0 is a closed mouth, 1 wide open.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from core.sda.face_rig import INNER_LIPS, JAW, OUTER_LIPS

_CAVITY = (45, 14, 18)
_TEETH = (228, 222, 212)
_SUBPIXEL = 4  # fixed-point bits for anti-aliased polygons


@dataclass(frozen=True)
class MouthRenderer:
    still: np.ndarray  # RGB uint8 (H, W)
    field: np.ndarray  # (H, W) float32: share of the jaw displacement each pixel takes
    upper_inner: np.ndarray  # (5, 2) upper inner lip, left corner to right corner
    lower_inner: np.ndarray  # (5, 2) lower inner lip, right corner to left corner
    lower_weights: np.ndarray  # (5,) field value under each lower inner lip point
    neutral_gap: float  # lip gap of the still, pixels
    max_gap: float  # lip gap at opening 1, pixels

    @classmethod
    def fit(cls, still: np.ndarray, points: np.ndarray) -> "MouthRenderer":
        h, w = still.shape[:2]
        inner = points[INNER_LIPS]
        upper = inner[[0, 1, 2, 3, 4]]
        lower = inner[[4, 5, 6, 7, 0]]
        corners_x = (inner[0, 0], inner[4, 0])
        mouth_w = float(np.ptp(points[OUTER_LIPS][:, 0]))
        jaw = points[JAW]
        chin_y = jaw[8, 1]
        cx = (corners_x[0] + corners_x[1]) / 2
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
        wx = np.cos(np.clip(np.abs(xs - cx) / half_jaw, 0, 1) * np.pi / 2) ** 2
        field = (wy * wx).astype(np.float32)
        lower_weights = wx[np.clip(lower[:, 0].round().astype(int), 0, w - 1)]
        neutral_gap = float(np.mean(lower[1:4, 1]) - np.mean(upper[1:4, 1]))
        return cls(still, field, upper, lower, lower_weights.astype(np.float32), max(neutral_gap, 0.0), 0.35 * mouth_w)

    def render(self, opening: float) -> np.ndarray:
        """The still with the mouth at `opening` (0 closed … 1 wide open)."""
        h, w = self.field.shape
        shift = float(np.clip(opening, 0, 1.2)) * self.max_gap - self.neutral_gap
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        frame = cv2.remap(self.still, grid_x, grid_y - shift * self.field, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        gap = self.neutral_gap + shift
        if gap > 0.8:
            lower = self.lower_inner.copy()
            lower[:, 1] += shift * self.lower_weights
            cavity = np.concatenate([self.upper_inner, lower])
            _fill(frame, cavity, _CAVITY)
            teeth = self.upper_inner.copy()
            teeth_lower = teeth[::-1].copy()
            teeth_lower[:, 1] += min(0.3 * gap, 0.12 * self.max_gap + 1)
            _fill(frame, np.concatenate([teeth, teeth_lower]), _TEETH)
        return frame


def _fill(frame: np.ndarray, polygon: np.ndarray, color: tuple[int, int, int]) -> None:
    pts = np.round(polygon * (1 << _SUBPIXEL)).astype(np.int32)
    cv2.fillPoly(frame, [pts], color, lineType=cv2.LINE_AA, shift=_SUBPIXEL)
