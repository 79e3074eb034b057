"""Turns written text into words a voice can say: numbers, money, percentages, ordinals, abbreviations, symbols."""

import re

from num2words import num2words

_ABBREVIATIONS = {
    "mr.": "mister", "mrs.": "missus", "ms.": "miss", "dr.": "doctor", "prof.": "professor", "st.": "saint",
    "jr.": "junior", "sr.": "senior", "vs.": "versus", "etc.": "et cetera", "e.g.": "for example",
    "i.e.": "that is", "approx.": "approximately", "no.": "number", "dept.": "department", "min.": "minutes",
}
# Units are read as units only after a number: "5 mm" is five millimeters, "Mm-hmm" is a backchannel.
_UNITS = {"km": "kilometers", "kg": "kilograms", "cm": "centimeters", "mm": "millimeters",
          "km/h": "kilometers per hour", "mph": "miles per hour"}
_SYMBOLS = {
    "&": " and ", "%": " percent", "+": " plus ", "=": " equals ", "@": " at ", "#": " number ",
    "°c": " degrees Celsius", "°f": " degrees Fahrenheit", "°": " degrees", "×": " times ", "÷": " divided by ",
    "/": " slash ", "*": " ", "_": " ", "~": " about ", "<": " less than ", ">": " more than ",
}
_CURRENCIES = {"$": ("dollar", "cent"), "€": ("euro", "cent"), "£": ("pound", "penny"), "¥": ("yen", "sen")}

_MONEY = re.compile(r"([$€£¥])\s?(\d[\d,]*)(?:\.(\d{1,2}))?(\s?(?:million|billion|thousand))?")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_YEAR = re.compile(r"\b(1[1-9]\d\d|20\d\d)\b(?!\s*(?:%|percent|[.,]\d))")
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_ABBREV = re.compile(
    r"(?<!\w)(" + "|".join(re.escape(a) for a in sorted(_ABBREVIATIONS, key=len, reverse=True)) + r")(?!\w)",
    re.IGNORECASE,
)
_UNIT = re.compile(
    r"(?<=\d)\s?(" + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True)) + r")(?!\w)",
    re.IGNORECASE,
)
_MARKDOWN = re.compile(r"[*_`#>|\[\]{}]+")
_SPACES = re.compile(r"\s+")


def _plural(word: str, n: float) -> str:
    if n == 1:
        return word
    return "pence" if word == "penny" else "yen" if word == "yen" else word + "s"


def _money(match: re.Match) -> str:
    major_name, minor_name = _CURRENCIES[match.group(1)]
    major = int(match.group(2).replace(",", ""))
    minor = int((match.group(3) or "0").ljust(2, "0"))
    scale = (match.group(4) or "").strip()
    if scale:
        return f"{num2words(major)} {scale} {_plural(major_name, 2)}"
    spoken = f"{num2words(major)} {_plural(major_name, major)}"
    if minor:
        spoken += f" and {num2words(minor)} {_plural(minor_name, minor)}"
    return spoken


def _number(match: re.Match) -> str:
    text = match.group(0).replace(",", "")
    try:
        value = float(text) if "." in text else int(text)
    except ValueError:
        return match.group(0)
    spoken = num2words(value)
    return spoken.replace("-", " ")


def _time(match: re.Match) -> str:
    hours, minutes = int(match.group(1)), int(match.group(2))
    if hours > 24 or minutes > 59:
        return match.group(0)
    if minutes == 0:
        return f"{num2words(hours)} o'clock"
    if minutes < 10:
        return f"{num2words(hours)} oh {num2words(minutes)}"
    return f"{num2words(hours)} {num2words(minutes)}"


def normalize(text: str) -> str:
    """Expand `text` into speakable words. Unknown characters are left for the voice's phonemizer to skip."""
    text = _MARKDOWN.sub(" ", text)
    text = _ABBREV.sub(lambda m: _ABBREVIATIONS[m.group(1).lower()], text)
    text = _UNIT.sub(lambda m: " " + _UNITS[m.group(1).lower()], text)
    text = _MONEY.sub(_money, text)
    text = _TIME.sub(_time, text)
    text = _ORDINAL.sub(lambda m: num2words(int(m.group(1)), to="ordinal"), text)
    text = _YEAR.sub(lambda m: num2words(int(m.group(1)), to="year"), text)
    text = _NUMBER.sub(_number, text)
    for symbol, spoken in _SYMBOLS.items():
        text = text.replace(symbol, spoken)
    return _SPACES.sub(" ", text).strip()
