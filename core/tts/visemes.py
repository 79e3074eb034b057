"""IPA phoneme → viseme class: the mouth shape each sound makes. Training draws its synthetic talking clips by them
(pipelines/sda/speech_script.py); in a reply the face closes its lips at the voice's LIPS_CLOSED ones."""

LIPS_CLOSED = "PP"  # the viseme of p, b and m: the lips meet

_VISEME_OF = {}
for viseme, phonemes in {
    LIPS_CLOSED: "pbm",   # lips closed
    "FF": "fv",           # lower lip to teeth
    "TH": "θð",           # tongue between teeth
    "DD": "tdnlɾ",        # tongue to ridge
    "kk": "kgŋɡx",        # back of tongue
    "CH": "ʃʒʧʤ",         # rounded, teeth close
    "SS": "sz",           # teeth close
    "RR": "ɹrɚɝ",         # slight rounding
    "aa": "aɑɐæʌ",        # open
    "E": "eɛə",          # mid open
    "I": "iɪj",          # spread
    "O": "oɔɒ",          # rounded open
    "U": "uʊwɵ",          # rounded closed
    "sil": " ^$_.,!?;:",  # silence and pauses
}.items():
    for ph in phonemes:
        _VISEME_OF[ph] = viseme


def viseme_of(phoneme: str) -> str:
    """Viseme class of one IPA phoneme; `hh` (neutral, slightly open) for anything else, e.g. h or glottal stops."""
    return _VISEME_OF.get(phoneme, "hh")
