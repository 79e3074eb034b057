"""The synthetic talking face the generator learns from, judged by a landmark detector and by its pixels, on a
face it was not built around (Grace Hopper's portrait, in colour and in grey)."""

import cv2
import numpy as np
import pytest
from matplotlib import cbook

from core.sda.face_rig import FaceRig, landmarks
from pipelines.sda.mouth_render import MouthRenderer

pytestmark = pytest.mark.unit


def _hopper(grey: bool = False) -> np.ndarray:
    photo = cv2.cvtColor(cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))), cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) if grey else photo


@pytest.fixture(scope="module")
def face():
    rig = FaceRig.from_photo(_hopper(), 256, 192)
    return rig, MouthRenderer.fit(rig.still, rig.points)


def _mouth(rig: FaceRig, frame: np.ndarray) -> np.ndarray:
    box = (*rig.points.min(axis=0) - 8, *rig.points.max(axis=0) + 8)
    return landmarks(frame, box)[48:68]


def test_the_lips_part_as_far_as_the_opening_asks(face):
    rig, renderer = face
    gaps = []
    for opening in (0.1, 0.5, 1.0):
        mouth = _mouth(rig, renderer.render(opening))
        gaps.append(mouth[[17, 18, 19], 1].mean() - mouth[[13, 14, 15], 1].mean())
    assert gaps[0] < gaps[1] < gaps[2] and gaps[2] > 3 * max(gaps[0], 2.0)


def test_rounded_lips_are_narrower_than_spread_ones(face):
    rig, renderer = face
    width = {r: np.ptp(_mouth(rig, renderer.render(0.5, r))[:12, 0]) for r in (-1.0, 0.0, 1.0)}
    assert width[1.0] < 0.9 * width[0.0] and width[-1.0] > width[0.0]


def test_an_open_mouth_shows_teeth_a_dark_cavity_and_a_tongue(face):
    rig, renderer = face
    frame = renderer.render(1.0)
    mouth = _mouth(rig, frame)  # the detector's inner lip middles: 62 above, 66 below
    x = int(round(mouth[[14, 18], 0].mean()))
    column = frame[int(mouth[14, 1]) + 1 : int(mouth[18, 1]) - 1, x - 1 : x + 2].astype(np.float32).mean(axis=1)
    brightness, lips = column.mean(axis=1), renderer.geometry.lip_color.mean()
    third = len(column) // 3
    assert brightness[:third].max() > max(lips, 140)  # light teeth under the upper lip
    cavity = brightness[third : 2 * third].min()
    assert cavity < 0.45 * lips  # dark behind them
    floor = column[2 * third :]
    tongue = floor[np.argmax(floor[:, 0] - floor[:, 1])]  # the reddest row (lower teeth may show below it)
    assert tongue.mean() > cavity + 30 and tongue[0] - tongue[1] > 20  # a red tongue, lit, on the mouth's floor


def test_a_grey_face_gets_a_grey_mouth():
    rig = FaceRig.from_photo(_hopper(grey=True), 256, 192)
    renderer = MouthRenderer.fit(rig.still, rig.points)
    frame = renderer.render(1.0, 0.5).astype(np.int16)
    assert np.abs(frame - frame.mean(axis=2, keepdims=True)).max() <= 12  # teeth a touch warm at most
