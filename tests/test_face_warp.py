"""The warp that moves a photo's own pixels (core.sda.face_warp) and the head's procedural motion
(services.sda.head_motion), on a face they were not built around (Grace Hopper's portrait)."""

import math

import cv2
import numpy as np
import pytest
import torch
from matplotlib import cbook

from core.sda import face_warp
from core.sda.face_rig import FaceRig, blink, find_face, landmarks
from core.sda.face_warp import FaceGeometry
from services.sda.head_motion import HeadMotion

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def face():
    photo = cv2.cvtColor(cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))), cv2.COLOR_BGR2RGB)
    geometry = FaceGeometry.fit(photo, FaceRig.from_photo(photo).photo_points)
    return photo, geometry, {k: v[None] for k, v in geometry.tensors().items()}


def _render(face, opening, rounding=0.0, head=(0, 0, 0, 0, 0, 0), cavity=None, weight=1.0):
    photo, _, geo = face
    image = torch.from_numpy(photo).permute(2, 0, 1).float()[None]
    out = face_warp.render(image, geo, torch.tensor([float(opening)]), torch.tensor([float(rounding)]), cavity,
                           torch.tensor([float(weight)]), torch.tensor([head], dtype=torch.float32))
    return out[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def test_at_rest_the_photo_comes_back_exactly(face):
    photo, geometry, _ = face
    cavity = torch.zeros(1, 3, 16, 32)
    assert np.array_equal(_render(face, geometry.rest_opening, cavity=cavity, weight=0.0), photo)


def test_opening_drops_the_jaw_and_leaves_everything_above_the_mouth(face):
    photo, geometry, geo = face
    gaps = [float(face_warp.lips(geo, torch.tensor([o]), torch.tensor([0.0])).gap) for o in (0.2, 0.6, 1.0)]
    assert gaps[0] < gaps[1] < gaps[2]
    frame = _render(face, 1.0, cavity=torch.full((1, 3, 16, 32), 20.0))
    upper_lip = int(geometry.upper_inner[:, 1].min()) - 2
    assert np.array_equal(frame[:upper_lip], photo[:upper_lip])  # eyes, nose, hair: the photo's own pixels
    lips = face_warp.lips(geo, torch.tensor([1.0]), torch.tensor([0.0]))
    middle = int((lips.upper[0, 2, 1] + lips.lower[0, 2, 1]) / 2)
    mouth = frame[middle - 2 : middle + 3, int(geometry.center[0])]
    assert mouth.mean() < 60  # the inside of the mouth, painted dark between the parted lips


def test_a_turn_of_the_head_moves_the_face_but_not_the_frames_edges(face):
    photo, geometry, _ = face
    frame = _render(face, geometry.rest_opening, head=(math.radians(2.0), 0.01, 0.01, 0.3, 0.1, 0.0))
    eyes = slice(int(geometry.center[1] - 0.9 * geometry.face_height), int(geometry.center[1] - 0.4 * geometry.face_height))
    assert np.abs(frame[eyes].astype(int) - photo[eyes]).mean() > 2  # the face moved
    edge = max(2, int(0.01 * min(photo.shape[:2])))
    for strip in (np.s_[:edge], np.s_[-edge:], np.s_[:, :edge], np.s_[:, -edge:]):
        assert np.abs(frame[strip].astype(int) - photo[strip]).max() <= 1  # the frame's edges stay put


def test_training_gradients_reach_the_pose_and_the_inside_of_the_mouth(face):
    photo, _, geo = face
    image = torch.from_numpy(photo).permute(2, 0, 1).float()[None] / 127.5 - 1
    opening = torch.tensor([0.7], requires_grad=True)
    rounding = torch.tensor([0.2], requires_grad=True)
    cavity = torch.zeros(1, 3, 16, 32, requires_grad=True)
    face_warp.render(image, geo, opening, rounding, cavity).square().mean().backward()
    assert opening.grad.abs() > 0 and rounding.grad.abs() > 0 and cavity.grad.abs().sum() > 0


def test_the_eyes_look_aside_and_the_brows_stay(face):
    photo, geometry, _ = face
    frame = _render(face, geometry.rest_opening, head=(0, 0, 0, 0, 0.12, 0.0))
    points = FaceRig.from_photo(photo).photo_points
    for eye in (points[36:42], points[42:48]):
        (x0, y0), (x1, y1) = eye.min(axis=0).astype(int), eye.max(axis=0).astype(int) + 1
        inside = np.abs(frame[y0:y1, x0:x1].astype(int) - photo[y0:y1, x0:x1]).mean()
        assert inside > 3  # the iris moved
    brows = int(points[17:27, 1].min())
    assert np.array_equal(frame[:brows], photo[:brows])  # the brows and the forehead above them did not


def _eye_aspect(points: np.ndarray) -> float:
    """How open the eyes are (the eye aspect ratio of dlib's landmarks, both eyes' mean)."""
    return float(np.mean([(np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])) / (2 * np.linalg.norm(e[0] - e[3]))
                          for e in (points[36:42], points[42:48])]))


def test_a_blink_shuts_the_eyes_behind_glasses_and_opens_them_again(face):
    """dlib, which did not draw the lids, reads the eyes as shut at the blink's deepest frame (under 80% of their
    open aspect: the benches' blink count) and partly shut at its first."""
    photo, _, _ = face
    box = find_face(photo)
    points = landmarks(photo, box)
    openness = [_eye_aspect(landmarks(blink(photo, points, amount), box)) for amount in (0.0, 0.4, 1.0)]
    assert openness[2] < 0.8 * openness[0] and openness[2] < openness[1] < openness[0], openness
    assert blink(photo, points, 0.0) is photo


def test_the_head_sways_gently_and_nods_at_stressed_syllables():
    motion = HeadMotion(25, np.random.default_rng(1))
    quiet = np.array([motion.step(-120.0, 0.0) for _ in range(250)])  # ten seconds at rest
    assert np.degrees(np.abs(quiet[:, 0]).max()) < 3 and np.abs(quiet[:, 1:3]).max() < 0.03
    assert 2 <= np.count_nonzero(np.abs(np.diff(quiet[:, 4])) > 0.01) <= 30  # the eyes jump now and then
    assert np.degrees(quiet[:, 0].std()) > 0.1  # it is alive
    assert np.abs(np.diff(quiet[:, :4], axis=0)).max() < 0.01  # and the head is smooth: no jumps
    syllables = [-60.0] * 10 + [-20.0] * 5  # a loud syllable after a quiet stretch, again and again
    talking = np.array([motion.step(loud, 1.0) for loud in syllables * 8])
    nods = talking[:, 2] - quiet[: len(talking), 2].mean()
    assert nods.max() > 0.008  # the head dips on the syllables


def test_every_stream_starts_from_the_photos_pose_and_then_sways_its_own_way():
    """The avatar's still is a stream's first frame: it is the same picture wherever it is drawn."""
    streams = [HeadMotion(25, np.random.default_rng(seed)) for seed in (1, 2)]
    first = [motion.step(-120.0, 0.0) for motion in streams]
    assert np.array_equal(first[0], first[1]) and np.abs(first[0]).max() < 1e-6
    later = [np.array([motion.step(-120.0, 0.0) for _ in range(100)]) for motion in streams]
    assert np.abs(later[0][-25:, 0] - later[1][-25:, 0]).max() > np.radians(0.05)  # then each sways its own way
    assert np.abs(np.diff(later[0][:, :4], axis=0)).max() < 0.01  # coming in smoothly
