"""OpenAI-compatible REST for developers: transcription, chat (streaming), speech, and an avatar video endpoint.

Each call goes through the stage interfaces (`stages.py`), and chat, speech and video run their part of the
reply's processors (`reply_processors.py`): what a conversation's reply passes through, a REST answer passes
through too. `model` and `voice` accept `default` (or may be left out); another name selects a loaded one, and
an unknown name is a 404 whose message lists what is available.
"""

import asyncio
import contextlib
import io
import json
import time
import uuid
import wave
from collections.abc import AsyncIterator

import numpy as np
import soundfile
from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from core.audio import encode_linear16
from services.gateway import reply_processors
from services.gateway.access import Principal
from services.gateway.consent_http import avatar_consent, consent_from_form
from services.gateway.mp4 import mp4
from services.gateway.reply_processors import ReplyContext, VideoLost
from services.gateway.rest_auth import requires
from services.gateway.rest_errors import error_body
from services.gateway.rest_limits import MAX_UPLOAD_BYTES, rate_limited, read_upload, stage_place
from services.gateway.stages import (
    Face, Finish, Frame, Generation, ListenConfig, ReplyRequest, SpeechChunk, StageFailed, Stages, Transcript,
    TurnMeta, Usage, VideoOut, Voice,
)

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

_HTTP_OF = {"not_found": 404, "invalid_argument": 400, "unavailable": 503, "busy": 429, "timeout": 504}


def _http_error(err: StageFailed) -> HTTPException:
    return HTTPException(_HTTP_OF.get(err.kind, 502), err.message)


def _stages(request: Request) -> Stages:
    return request.app.state.stages


def _meta() -> TurnMeta:
    return TurnMeta(f"rest-{uuid.uuid4().hex}", 0)


async def _one(item) -> AsyncIterator:
    yield item


def _default(name: str | None) -> str:
    return "" if name in (None, "", "default") else name


async def _read_audio(request: Request, upload: UploadFile) -> tuple[np.ndarray, int]:
    """An uploaded WAV, FLAC or OGG as mono float32. Refused by its length before it is decoded (413): a few
    megabytes of FLAC or Ogg can hold hours of audio."""
    data = await read_upload(upload, MAX_UPLOAD_BYTES, "the file")
    return await asyncio.to_thread(_decode_audio, data, request.app.state.settings.max_upload_audio_s)


def _decode_audio(data: bytes, longest_s: float) -> tuple[np.ndarray, int]:
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            if sound.channels > 8 or sound.samplerate > 192_000:
                raise HTTPException(400, f"{sound.channels} channels at {sound.samplerate} Hz: at most 8 at 192 kHz")
            if sound.frames > longest_s * sound.samplerate:
                raise HTTPException(413, f"the audio lasts {sound.frames / sound.samplerate:.0f} s; at most "
                                         f"{longest_s:.0f} s")
            mono = np.concatenate([block.mean(axis=1) for block in sound.blocks(
                65536, dtype="float32", always_2d=True, frames=int(longest_s * sound.samplerate))] or [np.zeros(0)])
            return mono.astype(np.float32), sound.samplerate
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        raise HTTPException(400, f"could not read the audio file (WAV, FLAC or OGG): {err}") from None


def _wav(pcm: bytes, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


@router.post("/audio/transcriptions", dependencies=[Depends(rate_limited("rest"))])
async def transcriptions(request: Request, file: UploadFile = File(...), model: str = Form("default"),
                         language: str = Form(""), response_format: str = Form("json")):
    """Transcribe an audio file (OpenAI `audio.transcriptions`)."""
    if response_format not in ("json", "text", "verbose_json"):
        raise HTTPException(400, "response_format must be json, text or verbose_json")
    samples, rate = await _read_audio(request, file)
    pcm = encode_linear16(samples)
    step = rate * 2  # one second of audio a message
    config = ListenConfig(sample_rate=rate, encoding="linear16", partial_results=False, end_of_turn_silence_ms=1000,
                          end_of_turn="silence", language=language, model=_default(model))

    async def audio():
        for start in range(0, len(pcm), step):
            yield pcm[start : start + step]

    finals: list[Transcript] = []
    try:
        async with stage_place(request):
            async for event in _stages(request).asr.listen(config, audio(), _meta().session_id):
                if isinstance(event, Transcript) and event.final:
                    finals.append(event)
    except StageFailed as err:
        raise _http_error(err) from None
    text = " ".join(t.text for t in finals if t.text)
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format == "json":
        return {"text": text}
    words = [{"word": w.w, "start": w.start, "end": w.end, "probability": w.p} for t in finals for w in t.words]
    return {"task": "transcribe", "language": language or "en", "duration": len(samples) / rate, "text": text,
            "words": words}


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: list[str] | str | None = None
    seed: int | None = None
    avatar_id: str | None = None


def _reply_request(body: ChatRequest) -> ReplyRequest:
    *earlier, last = body.messages
    if last.role != "user":
        raise HTTPException(400, "the last message must come from the user")
    system = " ".join(m.content for m in earlier if m.role == "system")
    history = [{"role": m.role, "content": m.content} for m in earlier if m.role in ("user", "assistant")]
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    generation = Generation(model=_default(body.model), system_prompt=system, max_tokens=body.max_tokens or 0,
                            temperature=body.temperature, top_p=body.top_p or 0, stop=stop, seed=body.seed or 0)
    return ReplyRequest(last.content, history, _default(body.avatar_id), _meta(), generation)


def _usage(usage: Usage) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens}}


@router.post("/chat/completions", dependencies=[Depends(rate_limited("rest"))])
async def chat_completions(request: Request, body: ChatRequest):
    """Chat with the text engine (OpenAI `chat.completions`), streamed as server-sent events when `stream`."""
    reply = ReplyContext(_reply_request(body))
    text_part = reply_processors.part(reply_processors.reply_processors(_stages(request)), "text", "text")
    completion_id, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body.model or "default"
    place = stage_place(request)
    await place.__aenter__()  # held until the answer is whole, or the client went away
    made = reply_processors.run(text_part, reply)
    try:
        first = await anext(made, None)  # surfaces an unknown model or a bad argument before any byte is sent
    except StageFailed as err:
        await made.aclose()
        await place.__aexit__(None, None, None)
        raise _http_error(err) from None

    async def items() -> AsyncIterator[str | Finish]:
        try:
            async with contextlib.aclosing(made):  # the client went away: the generation stops
                if first is not None:
                    yield first
                    async for item in made:
                        yield item
        finally:
            await place.__aexit__(None, None, None)

    if not body.stream:
        text, finish = "", Finish("stop")
        try:
            async for item in items():
                if isinstance(item, Finish):
                    finish = item
                else:
                    text += item
        except StageFailed as err:
            raise _http_error(err) from None
        return {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": finish.reason}],
                "usage": _usage(finish.usage)}

    def chunk(delta: dict, finish: Finish | None = None) -> str:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish.reason if finish else None}]}
        if finish is not None:
            body["usage"] = _usage(finish.usage)
        return f"data: {json.dumps(body)}\n\n"

    async def events():
        try:
            async for item in items():
                yield chunk({}, item) if isinstance(item, Finish) else chunk({"content": item})
            yield "data: [DONE]\n\n"
        except StageFailed as err:  # the stream broke midway: say so, in the stream, and end it
            error = _http_error(err)
            yield f"data: {json.dumps(error_body(error.status_code, f'the text engine failed: {error.detail}'))}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


class SpeechRequest(BaseModel):
    model: str | None = None
    input: str = Field(max_length=4000)
    voice: str | None = None
    response_format: str = "wav"
    speed: float = Field(default=1.0, ge=0.5, le=2.0)
    sample_rate: int = Field(default=0, ge=0, le=48000)


@router.post("/audio/speech", dependencies=[Depends(rate_limited("rest"))])
async def speech(request: Request, body: SpeechRequest):
    """Speak text (OpenAI `audio.speech`); WAV or raw 16-bit PCM."""
    if _default(body.model):
        raise HTTPException(404, f"unknown model {body.model!r}; available: default")
    if body.response_format not in ("wav", "pcm"):
        raise HTTPException(400, "response_format must be wav or pcm")
    reply = ReplyContext(ReplyRequest(body.input, [], "", _meta()),
                         Voice(_default(body.voice), body.speed, body.sample_rate))
    speech_part = reply_processors.part(reply_processors.reply_processors(_stages(request)), "speech", "speech")
    pcm, rate = bytearray(), body.sample_rate
    try:
        async with (stage_place(request),
                    contextlib.aclosing(reply_processors.run(speech_part, reply, _one(body.input))) as made):
            async for chunk in made:
                if isinstance(chunk, SpeechChunk):
                    pcm += chunk.pcm
                    rate = chunk.rate
    except StageFailed as err:
        raise _http_error(err) from None
    if body.response_format == "pcm":
        return Response(bytes(pcm), media_type="audio/L16", headers={"X-Sample-Rate": str(rate or 22050)})
    return Response(_wav(bytes(pcm), rate or 22050), media_type="audio/wav")


@router.post("/avatar/video", response_class=Response, dependencies=[Depends(rate_limited("rest"))])
async def avatar_video(request: Request, audio: UploadFile = File(...), photo: UploadFile | None = File(None),
                       avatar_id: str = Form("default"), consent_person: str = Form(""),
                       consent_evidence: UploadFile | None = File(None),
                       consent_scopes: str = Form("video_export,face"), consent_recorded_by: str = Form(""),
                       principal: Principal = Depends(requires("rest"))):
    """An MP4 of the avatar (or of the face in `photo`) speaking the uploaded audio, with a signed C2PA manifest
    saying its frames were generated. An avatar whose person did not consent to video export (or withdrew) is
    refused with 403; a photo needs its person's consent on record as `POST /v1/avatars` does (`consent_person`,
    `consent_evidence`; `consent_scopes` must hold video_export and face), else 422."""
    if photo is None:
        consent = avatar_consent(request, avatar_id, "video_export")
    else:
        consent = await consent_from_form(request, "a video of a photo", consent_person, consent_evidence,
                                          consent_scopes, consent_recorded_by, principal,
                                          needs=("video_export", "face"))
    samples, rate = await _read_audio(request, audio)
    if rate % 25:
        raise HTTPException(400, f"sample rate {rate} Hz is not a whole number of samples per 25 fps frame")
    face = Face(_default(avatar_id), await photo.read(10 * 1024 * 1024) if photo is not None else b"")
    pcm = encode_linear16(samples)
    step = rate * 2 // 5  # 200 ms a chunk
    reply = ReplyContext(ReplyRequest("", [], face.avatar_id, _meta()), face=face, video=VideoOut(jpeg_quality=90),
                         audio_rate=rate)
    animation_part = reply_processors.part(reply_processors.reply_processors(_stages(request)), "animation",
                                           "animation")

    async def chunks():
        for start in range(0, len(pcm), step):
            yield SpeechChunk(pcm[start : start + step], rate=rate)

    frames: list[bytes] = []
    try:
        async with (stage_place(request),
                    contextlib.aclosing(reply_processors.run(animation_part, reply, chunks())) as made):
            async for item in made:
                if isinstance(item, VideoLost):
                    raise item.error
                if isinstance(item, Frame):
                    frames.append(item.image)
    except StageFailed as err:
        raise _http_error(err) from None
    video = await asyncio.to_thread(mp4, frames, 25, pcm, rate)
    signed = await asyncio.to_thread(request.app.state.provenance.sign_video, video,
                                     "" if photo is not None else face.avatar_id or "default", consent, samples, rate)
    return Response(signed, media_type="video/mp4")
