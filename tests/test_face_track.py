"""The clip stage's face tracking on videos the test makes: a head that moves and comes closer stays framed; a
scene cut, a second face in view, or another person's face keeps a clip out of the face set, with the reason."""

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.sda.face_rig import crop, find_face
from core.sda.model import SdaConfig
from pipelines.steps.clip import other_people
from pipelines.face_track import track_face
from pipelines.sda.synthetic import default_photo

pytestmark = pytest.mark.contract

FPS = 25
W, H = 640, 360
CFG = SdaConfig()


def _write(path: Path, frames: list[np.ndarray]) -> Path:
    ffmpeg = subprocess.Popen(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
                               "-s", f"{W}x{H}", "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "veryfast",
                               "-pix_fmt", "yuv420p", str(path)], stdin=subprocess.PIPE)
    for frame in frames:
        ffmpeg.stdin.write(frame.tobytes())
    ffmpeg.stdin.close()
    assert ffmpeg.wait() == 0
    return path


def _scene(face: np.ndarray, x: float, y: float, size: float, background=(70, 90, 110), second=None) -> np.ndarray:
    """A frame with `face` (a portrait) `size` px tall, its centre at (x, y); optionally a second portrait."""
    frame = np.zeros((H, W, 3), np.uint8)
    frame[:] = background
    for portrait, cx, cy, s in [(face, x, y, size)] + ([second] if second else []):
        pw = int(s * portrait.shape[1] / portrait.shape[0])
        small = cv2.resize(portrait, (pw, int(s)), interpolation=cv2.INTER_AREA)
        x0, y0 = int(cx - pw / 2), int(cy - s / 2)
        visible = small[max(0, -y0) : max(0, H - y0), max(0, -x0) : max(0, W - x0)]  # what is inside the frame
        frame[max(0, y0) : max(0, y0) + visible.shape[0], max(0, x0) : max(0, x0) + visible.shape[1]] = visible
    return frame


def _track(path: Path, seconds: float):
    return track_face(path, 0.0, seconds, (W, H), FPS, CFG.height, CFG.width)


def _portrait(photo: np.ndarray) -> np.ndarray:
    """Head and shoulders around the photo's face (the face about 40% of the portrait's width)."""
    left, top, right, bottom = find_face(photo)
    side = int(2.5 * (right - left))
    cx, cy = (left + right) // 2, (top + bottom) // 2
    return crop(photo, (cx - side // 2, cy - side // 2, cx + side // 2, cy + side // 2), side, side)


@pytest.fixture(scope="module")
def faces():
    """The default avatar's face, and another person's (Grace Hopper's portrait, shipped with matplotlib)."""
    from matplotlib import cbook

    hopper = cv2.cvtColor(cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))), cv2.COLOR_BGR2RGB)
    return _portrait(default_photo()), _portrait(hopper)


def test_a_head_that_moves_and_comes_closer_stays_framed(tmp_path, faces):
    me, _ = faces
    steps = 3 * FPS  # 3 s: across the frame and from 200 to 300 px tall
    frames = [_scene(me, 180 + 280 * t, 170 + 20 * t, 200 + 100 * t) for t in np.linspace(0, 1, steps)]
    track = _track(_write(tmp_path / "moving.mp4", frames), 3.0)
    assert track.has_face and not track.problem and len(track.frames) == steps
    # in the crop, the face keeps its place and size: the nose tip and the eye distance barely move
    nose = track.points[:, 30]
    eyes = np.linalg.norm(track.points[:, 45] - track.points[:, 36], axis=1)
    assert np.ptp(nose, axis=0).max() < 0.08 * CFG.width, np.ptp(nose, axis=0)
    assert np.ptp(eyes) < 0.1 * eyes.mean()


def test_a_scene_cut_or_a_second_face_keeps_the_clip_out_with_the_reason(tmp_path, faces):
    me, other = faces
    cut = [_scene(me, 320, 180, 260)] * FPS + [_scene(me, 200, 200, 180, background=(200, 170, 60))] * FPS
    track = _track(_write(tmp_path / "cut.mp4", cut), 2.0)
    assert not track.has_face and "scene cut" in track.problem and "1.0 s" in track.problem
    two = [_scene(me, 200, 180, 240, second=(other, 470, 180, 220))] * (2 * FPS)
    track = _track(_write(tmp_path / "two.mp4", two), 2.0)
    assert not track.has_face and "2 faces" in track.problem
    leaving = [_scene(me, x, 180, 260) for x in np.linspace(320, 1000, 3 * FPS)]  # walks out of the picture
    track = _track(_write(tmp_path / "leaving.mp4", leaving), 3.0)
    assert not track.has_face and "in view on" in track.problem


def test_a_clip_showing_another_person_is_told_apart_from_the_target(tmp_path, faces):
    me, other = faces
    identities = {}
    for name, face, x in [("a", me, 250), ("b", me, 380), ("c", me, 320), ("d", other, 320)]:
        track = _track(_write(tmp_path / f"{name}.mp4", [_scene(face, x, 180, 250)] * FPS), 1.0)
        assert track.has_face
        identities[name] = track.identity
    strangers = other_people(identities)
    assert set(strangers) == {"d"} and "another person" in strangers["d"]
