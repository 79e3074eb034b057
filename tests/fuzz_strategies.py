"""Hypothesis strategies for malformed input: any protobuf message of the contracts (every field random,
enums out of range, oneofs picked at random), and WebSocket messages of every wrong kind."""

import json

from google.protobuf.descriptor import FieldDescriptor as F
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

_SCALARS = {
    F.TYPE_INT32: st.one_of(st.integers(-3, 70000), st.integers(-(2**31), 2**31 - 1)),
    F.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    F.TYPE_UINT32: st.integers(0, 2**32 - 1),
    F.TYPE_FLOAT: st.floats(width=32, allow_nan=True, allow_infinity=True),
    F.TYPE_DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
    F.TYPE_BOOL: st.booleans(),
    F.TYPE_STRING: st.one_of(st.sampled_from(["", "default", "en", "../../etc/passwd"]), st.text(max_size=60)),
    F.TYPE_BYTES: st.binary(max_size=6000),
    F.TYPE_ENUM: st.integers(-2, 6),
}


def message(cls, overrides: dict | None = None, depth: int = 0) -> st.SearchStrategy:
    """Any instance of protobuf class `cls`; `overrides` maps field names to strategies (to keep a fuzz run
    bounded, e.g. max_tokens)."""
    overrides = overrides or {}
    descriptor = cls.DESCRIPTOR

    def field_strategy(field):
        if field.name in overrides:
            return overrides[field.name]
        if field.type == F.TYPE_MESSAGE:
            sub = message(GetMessageClass(field.message_type), overrides, depth + 1) if depth < 2 else st.none()
            strategy = sub
        else:
            strategy = _SCALARS[field.type]
        if field.is_repeated:
            return st.lists(strategy.filter(lambda v: v is not None), max_size=3)
        return st.one_of(st.none(), strategy)

    @st.composite
    def build(draw):
        values = {}
        oneofs = {o.name: list(o.fields) for o in descriptor.oneofs if not o.name.startswith("_")}
        chosen = {name: draw(st.sampled_from(fields)).name for name, fields in oneofs.items()}
        in_oneof = {f.name for fields in oneofs.values() for f in fields}
        for field in descriptor.fields:
            if field.name in in_oneof and chosen.get(field.containing_oneof.name) != field.name:
                continue
            value = draw(field_strategy(field))
            if value is not None:
                values[field.name] = value
        return cls(**values)

    return build()


_TEXT_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)

_TYPES = st.sampled_from(["hello", "end_of_audio", "ping", "", "HELLO", None, 7, ["hello"], {"a": 1}])


@st.composite
def _typed_json(draw) -> str:
    body = draw(st.dictionaries(st.sampled_from(["version", "token", "avatar_id", "session_id", "audio", "settings",
                                                 "sample_rate", "encoding"]), _TEXT_JSON, max_size=5))
    body["type"] = draw(_TYPES)
    if draw(st.booleans()):
        body["version"] = draw(st.sampled_from([1, 0, 2, -1, "1", 1.5, None]))
    return json.dumps(body)


def ws_message() -> st.SearchStrategy:
    """One client message: text (JSON of wrong shapes, truncated JSON, not JSON, oversized) or binary (audio
    of odd sizes, oversized, random)."""
    text = st.one_of(
        _typed_json(),
        _typed_json().map(lambda s: s[: max(1, len(s) // 2)]),  # truncated
        _TEXT_JSON.map(json.dumps),
        st.text(max_size=200),
        st.integers(70_000, 400_000).map(lambda n: json.dumps({"type": "hello", "token": "x" * n})),  # oversized
    )
    binary = st.one_of(
        st.binary(max_size=4000),
        st.integers(0, 3000).map(lambda n: bytes(2 * n + 1)),  # not whole samples
        st.integers(70_000, 300_000).map(bytes),  # oversized frames
    )
    return st.one_of(text, binary)
