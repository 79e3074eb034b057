"""The figures in docs/reliability.md, written by the tests that measure them.

A test that measures one calls `record(name, text)`: the text between `<!-- name -->` and `<!-- /name -->` in
the document becomes `text` with the day it was measured. A figure no test measured in a run keeps its last
value and its date.
"""

import datetime
import re

from tests.stack import ROOT

DOC = ROOT / "docs" / "reliability.md"


def record(name: str, text: str) -> None:
    doc = DOC.read_text()
    place = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.S)
    if not place.search(doc):
        raise KeyError(f"{DOC.name} has no place for the figure {name!r}")
    figure = f"<!-- {name} -->{text} (measured {datetime.date.today().isoformat()})<!-- /{name} -->"
    DOC.write_text(place.sub(lambda _: figure, doc, count=1))
