"""Moves a face photo's own pixels: the mouth opens, rounds and spreads, the head sways and nods, the brows rise.

Everything the viewer sees is the photo's pixels moved by one warp, except the inside of the mouth (the cavity
between the lips, where the photo has no pixels to move), which is painted from a small texture. The warp is a
displacement field fitted once per face from its 68 landmarks (`FaceGeometry.fit`, at any resolution):
- the jaw: the lower lip, chin and jaw drop as the mouth opens, most in the middle, nothing above the upper lip;
- the lips: rounding draws them and the cheeks towards the middle of the mouth, spreading pulls the corners out;
- the head: a small turn about the neck and a shift, over the head and its surroundings, fading to nothing at
  the frame's edges so the background stays still;
- the brows: lifted over the brows and forehead;
- the eyes: the iris and the white shift inside the lids (gaze).

`warp` computes where each pixel's content comes from, once for both uses: `render` samples it with torch, so
that training sees the frames the service shows and gradients flow to the generator's mouth pose and cavity
texture; `render_photo` samples it bicubically (the eyes with a Lanczos filter) for the service, one frame at a time.
"""

from dataclasses import dataclass, fields

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from core.sda.face_rig import INNER_LIPS, JAW, OUTER_LIPS

ROUND_PULL = 0.22  # how far full rounding draws the mouth's sides towards its middle (share of their distance)
SPREAD_PUSH = 0.10  # how far full spreading pushes them out
MAX_OPENING = 1.2
TEETH_RGB = (236, 231, 220)  # the teeth's colour: the targets' drawn mouth and the generator's painted one
_EDGE = 2.0  # the cavity's outline is soft over this many pixels, and nothing of it shows past that


@dataclass(frozen=True)
class FaceGeometry:
    """One face's warp, fitted from its landmarks at one image size (all lengths in that image's pixels)."""

    field: np.ndarray  # (H, W): share of the jaw's drop each pixel takes
    lips_field: np.ndarray  # (H, W): share of the rounding/spreading each pixel takes
    head_weight: np.ndarray  # (H, W): share of the head's motion each pixel takes (0 at the frame's edges)
    brow_field: np.ndarray  # (H, W): share of the brows' lift each pixel takes
    gaze_field: np.ndarray  # (H, W): share of the gaze's shift each pixel takes (the inside of each eye)
    center: np.ndarray  # (2,) middle of the mouth
    pivot: np.ndarray  # (2,) the neck, where the head turns
    upper_inner: np.ndarray  # (5, 2) upper inner lip, left to right
    lower_inner: np.ndarray  # (5, 2) lower inner lip, left to right
    upper_pull: np.ndarray  # (5,) lips_field under each upper point
    lower_pull: np.ndarray  # (5,) lips_field under each lower point
    lower_drop: np.ndarray  # (5,) field under each lower point
    neutral_gap: np.ndarray  # () lip gap of the photo
    max_gap: np.ndarray  # () lip gap at opening 1
    mouth_width: np.ndarray  # ()
    face_height: np.ndarray  # () brows to chin
    brow_gap: np.ndarray  # () brows to eyes
    eye_width: np.ndarray  # ()
    lip_color: np.ndarray  # (3,) the person's lips, 0-255
    moving: np.ndarray  # (4,) left, top, right, bottom of the part any motion reaches (the rest stays as it is)
    eyes: np.ndarray  # (4,) left, top, right, bottom of the brows and eyes (resampled with the sharpest filter)

    @classmethod
    def fit(cls, image: np.ndarray, points: np.ndarray) -> "FaceGeometry":
        h, w = image.shape[:2]
        inner = points[INNER_LIPS]
        upper = _left_to_right(inner[[0, 1, 2, 3, 4]])
        lower = _left_to_right(inner[[4, 5, 6, 7, 0]])
        outer = points[OUTER_LIPS]
        mouth_w = float(np.ptp(outer[:, 0]))
        jaw = points[JAW]
        chin_y = jaw[8, 1]
        corners_x = (upper[0, 0], upper[-1, 0])
        center = np.array([(corners_x[0] + corners_x[1]) / 2, inner[:, 1].mean()], np.float32)
        half_jaw = max(np.ptp(jaw[:, 0]) * 0.42, mouth_w)
        xs = np.arange(w, dtype=np.float32)
        ys = np.arange(h, dtype=np.float32)[:, None]
        line = np.interp(xs, upper[:, 0], upper[:, 1])  # upper inner lip, flat past the corners
        outside = np.maximum(0, np.maximum(corners_x[0] - xs, xs - corners_x[1]))
        wy = np.clip((ys - line) / (1.0 + outside * 0.8), 0, 1)  # sharp inside the mouth, soft over the cheeks
        fall = max(0.25 * (chin_y - line.min()), 4.0)
        wy = wy * np.clip(1 - (ys - chin_y) / fall, 0, 1)  # the neck below the chin barely moves
        wx = np.cos(np.clip(np.abs(xs - center[0]) / half_jaw, 0, 1) * np.pi / 2) ** 2
        field = (wy * wx).astype(np.float32)
        lips_field = _bump(((xs - center[0]) / (1.5 * mouth_w)) ** 2 + ((ys - center[1]) / (1.1 * mouth_w)) ** 2)
        brows = points[17:27]
        brow_y = brows[:, 1].mean()
        face_h = max(chin_y - brow_y, 8.0)
        eyes_y = points[36:48, 1].mean()
        brow_gap = max(eyes_y - brow_y, 2.0)
        brow_field = _bump(((xs - brows[:, 0].mean()) / (0.9 * np.ptp(brows[:, 0]) + 1)) ** 2
                           + ((ys - brow_y) / (2.0 * brow_gap)) ** 2) * np.clip((eyes_y - ys) / brow_gap, 0, 1)
        gaze_field = np.zeros((h, w), np.float32)
        eye_w = float(np.mean([np.ptp(points[36:42, 0]), np.ptp(points[42:48, 0])]))
        for eye in (points[36:42], points[42:48]):  # the iris and the white move inside the lids, the lids stay
            cx, cy = eye.mean(axis=0)
            half_h = max(np.ptp(eye[:, 1]) / 2, 1.0)
            gaze_field = np.maximum(gaze_field, _bump(((xs - cx) / (0.55 * np.ptp(eye[:, 0]) + 1)) ** 2
                                                      + ((ys - cy) / (1.2 * half_h + 1)) ** 2))
        middle = np.array([points[:, 0].mean(), brow_y - 0.1 * face_h], np.float32)
        spread = ((xs - middle[0]) / (1.0 * face_h)) ** 2 + ((ys - middle[1]) / (1.35 * face_h)) ** 2
        head = _smoothstep((2.25 - spread) / 1.25) * _edge_fade(h, w)  # the head, fading out at 1.5 its size
        at = lambda f, p: f[np.clip(p[:, 1].round().astype(int), 0, h - 1), np.clip(p[:, 0].round().astype(int), 0, w - 1)]
        neutral_gap = float(np.mean(lower[1:4, 1]) - np.mean(upper[1:4, 1]))
        return cls(
            field=field, lips_field=lips_field.astype(np.float32),
            head_weight=head.astype(np.float32), brow_field=brow_field.astype(np.float32),
            gaze_field=gaze_field,
            center=center, pivot=np.array([jaw[8, 0], chin_y + 0.3 * face_h], np.float32),
            upper_inner=upper, lower_inner=lower, upper_pull=at(lips_field, upper).astype(np.float32),
            lower_pull=at(lips_field, lower).astype(np.float32), lower_drop=(wx[np.clip(lower[:, 0].round().astype(int),
                                                                                      0, w - 1)]).astype(np.float32),
            neutral_gap=np.float32(max(neutral_gap, 0.0)), max_gap=np.float32(0.45 * mouth_w),
            mouth_width=np.float32(mouth_w), face_height=np.float32(face_h), brow_gap=np.float32(brow_gap),
            eye_width=np.float32(eye_w),
            lip_color=_lip_color(image, outer, inner),
            moving=_extent((field > 0) | (lips_field > 0) | (brow_field > 0) | (gaze_field > 0) | (head > 0)),
            eyes=_eyes_box(points, h, w),
        )

    @property
    def rest_opening(self) -> float:
        """The opening that leaves the photo's own mouth as it is."""
        return float(self.neutral_gap / self.max_gap)

    def tensors(self, device=None) -> dict[str, torch.Tensor]:
        """The geometry as float tensors (a dataset's samples stack them into a batch)."""
        return {f.name: torch.as_tensor(np.asarray(getattr(self, f.name), np.float32), device=device)
                for f in fields(self)}


def _extent(mask: np.ndarray) -> np.ndarray:
    """The bounding box (left, top, right, bottom; right and bottom exclusive) of a mask's True pixels."""
    ys, xs = np.nonzero(mask)
    if not xs.size:
        return np.zeros(4, np.float32)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _eyes_box(points: np.ndarray, h: int, w: int) -> np.ndarray:
    """The brows and eyes with a margin of a fifth of the eyes' span (left, top, right, bottom)."""
    (x0, y0), (x1, y1) = points[17:27].min(axis=0), points[36:48].max(axis=0)
    margin = 0.2 * (x1 - x0)
    return np.array([max(x0 - margin, 0), max(y0 - margin, 0), min(x1 + margin, w), min(y1 + margin, h)],
                    np.float32).round()


def _bump(r2: np.ndarray) -> np.ndarray:
    """1 at the middle, falling smoothly to exactly 0 where `r2` (a squared, scaled distance) reaches 1."""
    return (np.clip(1 - r2, 0, 1) ** 2).astype(np.float32)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _left_to_right(points: np.ndarray) -> np.ndarray:
    return points[np.argsort(points[:, 0], kind="stable")].astype(np.float32)


def _edge_fade(h: int, w: int, still: float = 0.02, share: float = 0.08) -> np.ndarray:
    """0 over the outer `still` of the frame, rising smoothly to 1 over the next `share` of it."""
    ramp_y = np.clip((np.minimum(np.arange(h), np.arange(h)[::-1]) - still * h) / max(share * h, 1), 0, 1)
    ramp_x = np.clip((np.minimum(np.arange(w), np.arange(w)[::-1]) - still * w) / max(share * w, 1), 0, 1)
    return np.outer(_smoothstep(ramp_y), _smoothstep(ramp_x)).astype(np.float32)


def _lip_color(image: np.ndarray, outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The median colour between the outer and the inner lip line (the lips themselves), or of the outer mouth when
    the lips are too thin to measure."""
    lips = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(outer).astype(np.int32)], 1)
    mouth = lips.copy()
    cv2.fillPoly(lips, [np.round(inner).astype(np.int32)], 0)
    chosen = lips if lips.sum() >= 12 else mouth
    return np.median(image[chosen.astype(bool)], axis=0).astype(np.float32)


@dataclass
class Lips:
    """Where the inner lips are for each of N mouth poses (image pixels), and how far apart."""

    upper: torch.Tensor  # (N, 5, 2) left to right
    lower: torch.Tensor  # (N, 5, 2) left to right
    gap: torch.Tensor  # (N,)
    pull: torch.Tensor  # (N,) rounding's draw (> 0) or spreading's push (< 0)
    shift: torch.Tensor  # (N,) the jaw's drop at the middle of the lower lip


def lips(geo: dict[str, torch.Tensor], opening: torch.Tensor, rounding: torch.Tensor) -> Lips:
    """The inner lips at `opening` (0 closed … 1 wide open) and `rounding` (−1 spread … 1 rounded), each (N,), for
    geometries batched as (N, ...)."""
    rounding = rounding.clamp(-1, 1)
    pull = torch.where(rounding > 0, ROUND_PULL * rounding, SPREAD_PUSH * rounding)
    shift = opening.clamp(0, MAX_OPENING) * geo["max_gap"] - geo["neutral_gap"]
    shift = shift * (1 - 0.25 * rounding.clamp(min=0))  # rounded lips open less far
    cx = geo["center"][:, None, 0]

    def moved(points, weight, drop):
        x = cx + (points[..., 0] - cx) * (1 - pull[:, None] * weight)
        return torch.stack([x, points[..., 1] + drop], dim=-1)

    upper = moved(geo["upper_inner"], geo["upper_pull"], torch.zeros_like(geo["upper_pull"]))
    lower = moved(geo["lower_inner"], geo["lower_pull"], shift[:, None] * geo["lower_drop"])
    gap = geo["neutral_gap"] + shift
    bow = 0.12 * rounding.clamp(min=0) * gap.clamp(min=0)  # a rounded mouth is a rounder hole
    profile = torch.tensor([0.0, 0.6, 1.0, 0.6, 0.0], device=opening.device)
    upper = upper - torch.stack([torch.zeros_like(upper[..., 0]), bow[:, None] * profile], dim=-1)
    lower = lower + torch.stack([torch.zeros_like(lower[..., 0]), bow[:, None] * profile], dim=-1)
    return Lips(upper, lower, gap, pull, shift)


_FIELDS = ("field", "lips_field", "head_weight", "brow_field", "gaze_field")


@dataclass
class Warp:
    """Where each output pixel of N frames (of a window of them) takes its content from (source pixel
    coordinates), and the mouth."""

    left: int  # the window's place in the frame
    top: int
    source_x: torch.Tensor  # (N, H, W)
    source_y: torch.Tensor
    head_x: torch.Tensor  # (N, H, W): where the head's motion alone takes it (the mouth's outline is drawn there)
    head_y: torch.Tensor
    mouth: Lips


def warp(geo: dict[str, torch.Tensor], opening: torch.Tensor, rounding: torch.Tensor, head: torch.Tensor | None,
         h: int, w: int, window: tuple[int, int, int, int] | None = None) -> Warp:
    """The warp of N frames of an H×W image (or of `window`: left, top, right, bottom of it): opening and rounding
    (N,), `head` (N, 6): turn (radians), shift right and down (face heights), brows' lift (their distance to the
    eyes), gaze right and down (shares of an eye's width), or None for a still head."""
    n = opening.shape[0]
    x0, y0, x1, y1 = window or (0, 0, w, h)
    if window is not None:
        geo = {**geo, **{k: geo[k][:, y0:y1, x0:x1] for k in _FIELDS}}
    ys, xs = torch.meshgrid(torch.arange(y0, y1, dtype=opening.dtype, device=opening.device),
                            torch.arange(x0, x1, dtype=opening.dtype, device=opening.device), indexing="ij")
    qx, qy = xs.expand(n, y1 - y0, x1 - x0), ys.expand(n, y1 - y0, x1 - x0)
    if head is not None:
        qx, qy = _head_source(geo, head, qx, qy)
    mouth = lips(geo, opening, rounding)
    squeeze = mouth.pull[:, None, None] * geo["lips_field"]
    cx = geo["center"][:, 0, None, None]
    sx = qx + squeeze / (1 - squeeze) * (qx - cx)
    sy = qy - mouth.shift[:, None, None] * geo["field"]
    return Warp(x0, y0, sx, sy, qx, qy, mouth)


def render(
    image: torch.Tensor,
    geo: dict[str, torch.Tensor],
    opening: torch.Tensor,
    rounding: torch.Tensor,
    cavity: torch.Tensor | None = None,
    cavity_weight: torch.Tensor | None = None,
    head: torch.Tensor | None = None,
) -> torch.Tensor:
    """N frames of the face, differentiably (training): `image` (N, 3, H, W) any range, geometry batched (N, ...),
    opening and rounding (N,), `cavity` (N, 3, h, w) in the image's range painted between the lips (None: the warp
    alone), `cavity_weight` (N,) how much of it shows, `head` as `warp` takes it."""
    n, _, h, w = image.shape
    moved = warp(geo, opening, rounding, head, h, w)
    grid = torch.stack([moved.source_x / max(w - 1, 1) * 2 - 1, moved.source_y / max(h - 1, 1) * 2 - 1], dim=-1)
    frames = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    if cavity is None:
        return frames
    window, cover, inside = _cavity(geo, moved, cavity, cavity_weight, h, w)
    (x0, y0), (x1, y1) = window
    mixed = frames[:, :, y0:y1, x0:x1] * (1 - cover) + inside * cover
    frames = frames.clone() if frames.requires_grad else frames  # the window read above stays as it was
    frames[:, :, y0:y1, x0:x1] = mixed
    return frames


def render_photo(image: np.ndarray, geo: dict[str, torch.Tensor], opening: float, rounding: float,
                 cavity: torch.Tensor, cavity_weight: float, head: np.ndarray) -> np.ndarray:
    """One frame for a viewer (serving): `image` RGB uint8, geometry batched (1, ...), `cavity` (1, 3, h, w) in
    0-255. The same warp as `render`, sampled bicubically, and the eyes and brows with a Lanczos filter (a head
    moved by a fraction of a pixel stays sharp: bilinear sampling would halve the fine detail of the eyes and hair,
    bicubic keeps most of it and Lanczos, at twice bicubic's cost, a little more where a viewer looks)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in geo["moving"][0])
    if x1 <= x0 or y1 <= y0:
        return image.copy()
    moved = warp(geo, torch.tensor([opening]), torch.tensor([rounding]), torch.from_numpy(head)[None], h, w,
                 (x0, y0, x1, y1))
    frame = image.copy()
    source_x, source_y = moved.source_x[0].numpy(), moved.source_y[0].numpy()
    frame[y0:y1, x0:x1] = cv2.remap(image, source_x, source_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    ex0, ey0, ex1, ey1 = (int(v) for v in geo["eyes"][0])
    ex0, ey0, ex1, ey1 = max(ex0, x0), max(ey0, y0), min(ex1, x1), min(ey1, y1)
    if ex1 > ex0 and ey1 > ey0:
        eyes = np.s_[ey0 - y0 : ey1 - y0, ex0 - x0 : ex1 - x0]
        frame[ey0:ey1, ex0:ex1] = cv2.remap(image, source_x[eyes], source_y[eyes], cv2.INTER_LANCZOS4,
                                            borderMode=cv2.BORDER_REPLICATE)
    if cavity_weight <= 0:
        return frame
    ((x0, y0), (x1, y1)), cover, inside = _cavity(geo, moved, cavity, torch.tensor([cavity_weight]), h, w)
    region = torch.from_numpy(frame[y0:y1, x0:x1]).permute(2, 0, 1).float()[None]
    mixed = region * (1 - cover) + inside * cover
    frame[y0:y1, x0:x1] = mixed[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    return frame


def _cavity(geo, moved: Warp, cavity: torch.Tensor, weight: torch.Tensor | None, h: int, w: int):
    """The window the open mouth can cover, how much each pixel of it is inside the mouth (N, 1, h', w'), and the
    cavity texture there (N, 3, h', w')."""
    (x0, y0), (x1, y1) = _mouth_window(geo, moved.mouth, h, w)
    height, width = moved.head_x.shape[1:]
    x0, y0 = max(x0, moved.left), max(y0, moved.top)  # inside the warped window
    x1, y1 = max(min(x1, moved.left + width), x0 + 1), max(min(y1, moved.top + height), y0 + 1)
    local = np.s_[:, y0 - moved.top : y1 - moved.top, x0 - moved.left : x1 - moved.left]
    cover, u, v = _between_lips(moved.mouth, moved.head_x[local], moved.head_y[local])
    if weight is not None:
        cover = cover * weight[:, None, None]
    inside = F.grid_sample(cavity, torch.stack([u, v], dim=-1), mode="bilinear", padding_mode="border",
                           align_corners=True)
    return ((x0, y0), (x1, y1)), cover[:, None], inside


def _mouth_window(geo, mouth: Lips, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The part of the frame the open mouth can cover (over all N frames), with room for the head's motion."""
    points = torch.cat([mouth.upper, mouth.lower], dim=1).detach()
    margin = 3 + 0.08 * float(geo["face_height"].max())
    low, high = points.amin(dim=(0, 1)) - margin, points.amax(dim=(0, 1)) + margin
    x0, y0 = max(int(low[0]), 0), max(int(low[1]), 0)
    return (x0, y0), (max(min(int(high[0]) + 1, w), x0 + 1), max(min(int(high[1]) + 1, h), y0 + 1))


def _head_source(geo, head, qx, qy):
    """Where each output pixel's content comes from once the head has turned, shifted, raised its brows and moved
    its eyes. The turn and shift are one rigid motion, each pixel taking `head_weight` of it: its offset is affine in
    x and y, so it is summed from a row and a column before the weight multiplies it once."""
    turn, right, down, brow, gaze_x, gaze_y = head.unbind(-1)
    px, py = geo["pivot"][:, 0], geo["pivot"][:, 1]
    face = geo["face_height"]
    ax, ay = px + right * face, py + down * face  # where the pivot's content comes from
    cos, sin = torch.cos(turn), torch.sin(turn)
    col = lambda v: v[:, None, None]
    xs, ys = qx[:, :1, :], qy[:, :, :1]  # the window's columns (N, 1, W) and rows (N, H, 1)
    weight = geo["head_weight"]
    offset_x = (col(cos - 1) * xs + col(px - cos * ax - sin * ay)) + col(sin) * ys
    offset_y = (col(-sin) * xs + col(py + sin * ax - cos * ay)) + col(cos - 1) * ys
    eye = geo["eye_width"][:, None, None] * geo["gaze_field"]  # looking right: the iris shows what was left of it
    sx = qx + weight * offset_x - col(gaze_x) * eye
    sy = qy + weight * offset_y + col(brow * geo["brow_gap"]) * geo["brow_field"] - col(gaze_y) * eye
    return sx, sy


def _between_lips(mouth: Lips, x: torch.Tensor, y: torch.Tensor):
    """How much each pixel lies inside the open mouth (N, H, W), and its place in the cavity texture (u across from
    the left corner to the right, v down from the upper lip to the lower, both −1 … 1)."""
    top = _interp(x, mouth.upper[..., 0], mouth.upper[..., 1])
    bottom = _interp(x, mouth.lower[..., 0], mouth.lower[..., 1])
    left = torch.minimum(mouth.upper[:, 0, 0], mouth.lower[:, 0, 0])[:, None, None]
    right = torch.maximum(mouth.upper[:, -1, 0], mouth.lower[:, -1, 0])[:, None, None]
    edge = lambda d: (0.5 + d / _EDGE).clamp(0, 1)
    open_ = (mouth.gap - 0.8).clamp(0, 1)[:, None, None]
    cover = edge(y - top) * edge(bottom - y) * edge(x - left) * edge(right - x) * open_
    u = ((x - left) / (right - left).clamp(min=1.0)).clamp(0, 1) * 2 - 1
    v = ((y - top) / (bottom - top).clamp(min=1.0)).clamp(0, 1) * 2 - 1
    return cover, u, v


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation per row: x (N, H, W), xp and fp (N, K) with xp increasing; flat past the ends."""
    n = x.shape[0]
    flat = x.reshape(n, -1).contiguous()
    index = torch.searchsorted(xp.detach().contiguous(), flat.detach()).clamp(1, xp.shape[1] - 1)
    x0, x1 = xp.gather(1, index - 1), xp.gather(1, index)
    f0, f1 = fp.gather(1, index - 1), fp.gather(1, index)
    t = ((flat - x0) / (x1 - x0).clamp(min=1e-3)).clamp(0, 1)
    return (f0 + t * (f1 - f0)).reshape(x.shape)
