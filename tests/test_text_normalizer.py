"""What the voice is given to say: written forms read as a person would read them aloud."""

import pytest

from core.tts.text_normalizer import normalize

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("written, said", [
    ("It is 5 mm wide.", "It is five millimeters wide."),
    ("Drive at 60 km/h, or 40mph.", "Drive at sixty kilometers per hour, or forty miles per hour."),
    ("Mm-hmm, go on.", "Mm-hmm, go on."),  # a backchannel, not millimeters
    ("The KM marker", "The KM marker"),
    ("Dr. Smith paid $3.50 on the 2nd at 7:05.",
     "doctor Smith paid three dollars and fifty cents on the second at seven oh five."),
])
def test_written_forms_are_read_aloud(written, said):
    assert normalize(written) == said
