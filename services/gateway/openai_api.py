"""OpenAI-compatible REST for developers: transcription, chat (streaming), speech, and an avatar video endpoint.

`model` and `voice` accept `default` (or may be left out); another name selects a loaded one, and an unknown
name is a 404 whose message lists what is available.
"""

import asyncio
import io
import json
import subprocess
import tempfile
import time
import uuid
import wave
from pathlib import Path

import grpc
import numpy as np
import soundfile
from avatar.asr.v1 import asr_pb2
from avatar.common.v1 import common_pb2
from avatar.llm.v1 import llm_pb2
from avatar.sda.v1 import sda_pb2
from avatar.tts.v1 import tts_pb2
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from core.audio import encode_linear16
from services.gateway.grpc_streams import bidi
from services.gateway.rest_errors import error_body

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

_HTTP_OF = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
_ROLES = {"user": llm_pb2.ROLE_USER, "assistant": llm_pb2.ROLE_ASSISTANT}
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


def _http_error(err: grpc.aio.AioRpcError) -> HTTPException:
    return HTTPException(_HTTP_OF.get(err.code(), 502), err.details() or err.code().name)


def _default(name: str | None) -> str:
    return "" if name in (None, "", "default") else name


async def _read_audio(upload: UploadFile) -> tuple[np.ndarray, int]:
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"the file exceeds {MAX_UPLOAD_BYTES} bytes")
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        raise HTTPException(400, f"could not read the audio file (WAV, FLAC or OGG): {err}") from None
    return samples.mean(axis=1), rate


def _wav(pcm: bytes, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


@router.post("/audio/transcriptions")
async def transcriptions(request: Request, file: UploadFile = File(...), model: str = Form("default"),
                         language: str = Form(""), response_format: str = Form("json")):
    """Transcribe an audio file (OpenAI `audio.transcriptions`)."""
    if response_format not in ("json", "text", "verbose_json"):
        raise HTTPException(400, "response_format must be json, text or verbose_json")
    samples, rate = await _read_audio(file)
    fmt = common_pb2.AudioFormat(sample_rate_hz=rate, encoding=common_pb2.LINEAR16, channels=1)
    pcm = encode_linear16(samples)
    step = rate * 2  # one second of audio a message

    async def requests():
        yield asr_pb2.StreamingRecognizeRequest(config=asr_pb2.RecognitionConfig(
            format=fmt, language=language, model=_default(model), end_of_turn_silence_ms=1000,
            end_of_turn=asr_pb2.RecognitionConfig.END_OF_TURN_SILENCE))
        for start in range(0, len(pcm), step):
            yield asr_pb2.StreamingRecognizeRequest(audio=pcm[start : start + step])

    finals = []
    try:
        async for response in bidi(request.app.state.clients.asr.StreamingRecognize, requests(), timeout=600):
            if response.WhichOneof("result") == "hypothesis" and response.hypothesis.is_final:
                finals.append(response.hypothesis)
    except grpc.aio.AioRpcError as err:
        raise _http_error(err) from None
    text = " ".join(h.transcript for h in finals if h.transcript)
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format == "json":
        return {"text": text}
    words = [{"word": w.word, "start": w.start_s, "end": w.end_s, "probability": w.confidence}
             for h in finals for w in h.words]
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


def _generate_request(body: ChatRequest) -> llm_pb2.GenerateRequest:
    *earlier, last = body.messages
    if last.role != "user":
        raise HTTPException(400, "the last message must come from the user")
    system = " ".join(m.content for m in earlier if m.role == "system")
    history = [llm_pb2.ChatMessage(role=_ROLES[m.role], content=m.content) for m in earlier if m.role in _ROLES]
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    params = llm_pb2.GenerationParams(max_tokens=body.max_tokens or 0, top_p=body.top_p or 0, stop=stop,
                                      seed=body.seed or 0)
    if body.temperature is not None:
        params.temperature = body.temperature
    return llm_pb2.GenerateRequest(avatar_id=_default(body.avatar_id), persona=llm_pb2.Persona(system_prompt=system),
                                   history=history, user_text=last.content, params=params, model=_default(body.model))


_FINISH = {llm_pb2.STOP: "stop", llm_pb2.LENGTH: "length", llm_pb2.STOP_SEQUENCE: "stop"}


def _usage(usage: llm_pb2.Usage) -> dict:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens}}


@router.post("/chat/completions")
async def chat_completions(request: Request, body: ChatRequest):
    """Chat with the text engine (OpenAI `chat.completions`), streamed as server-sent events when `stream`."""
    generate = _generate_request(body)
    llm = request.app.state.clients.llm
    completion_id, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body.model or "default"
    call = llm.Generate(generate, timeout=300)
    try:
        first = await call.read()  # surfaces NOT_FOUND / INVALID_ARGUMENT before any byte is sent
    except grpc.aio.AioRpcError as err:
        raise _http_error(err) from None

    async def responses():
        response = first
        while response is not grpc.aio.EOF:
            yield response
            response = await call.read()

    if not body.stream:
        text, finish, usage = "", "stop", llm_pb2.Usage()
        try:
            async for response in responses():
                text += response.delta
                if response.finish_reason:
                    finish, usage = _FINISH[response.finish_reason], response.usage
        except grpc.aio.AioRpcError as err:
            raise _http_error(err) from None
        return {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                "usage": _usage(usage)}

    async def events():
        try:
            async for response in responses():
                delta = {"content": response.delta} if response.delta else {}
                finish = _FINISH.get(response.finish_reason) if response.finish_reason else None
                chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                if response.finish_reason:
                    chunk["usage"] = _usage(response.usage)
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"
        except grpc.aio.AioRpcError as err:  # the stream broke midway: say so, in the stream, and end it
            error = _http_error(err)
            yield f"data: {json.dumps(error_body(error.status_code, f'the text engine failed: {error.detail}'))}\n\n"
        finally:
            call.cancel()  # the client went away: the generation stops

    return StreamingResponse(events(), media_type="text/event-stream")


class SpeechRequest(BaseModel):
    model: str | None = None
    input: str = Field(max_length=4000)
    voice: str | None = None
    response_format: str = "wav"
    speed: float = Field(default=1.0, ge=0.5, le=2.0)
    sample_rate: int = Field(default=0, ge=0, le=48000)


@router.post("/audio/speech")
async def speech(request: Request, body: SpeechRequest):
    """Speak text (OpenAI `audio.speech`); WAV or raw 16-bit PCM."""
    if _default(body.model):
        raise HTTPException(404, f"unknown model {body.model!r}; available: default")
    if body.response_format not in ("wav", "pcm"):
        raise HTTPException(400, "response_format must be wav or pcm")
    config = tts_pb2.SynthesisConfig(voice=_default(body.voice), speaking_rate=body.speed,
                                     sample_rate_hz=body.sample_rate)

    async def requests():
        yield tts_pb2.SynthesizeRequest(config=config)
        yield tts_pb2.SynthesizeRequest(text=body.input)

    pcm, rate = bytearray(), body.sample_rate
    try:
        async for response in bidi(request.app.state.clients.tts.StreamingSynthesize, requests(), timeout=120):
            if response.WhichOneof("result") == "audio":
                pcm += response.audio.pcm
                rate = response.audio.format.sample_rate_hz
    except grpc.aio.AioRpcError as err:
        raise _http_error(err) from None
    if body.response_format == "pcm":
        return Response(bytes(pcm), media_type="audio/L16", headers={"X-Sample-Rate": str(rate or 22050)})
    return Response(_wav(bytes(pcm), rate or 22050), media_type="audio/wav")


@router.post("/avatar/video", response_class=Response)
async def avatar_video(request: Request, audio: UploadFile = File(...), photo: UploadFile | None = File(None),
                       avatar_id: str = Form("default")):
    """An MP4 of the avatar (or of the face in `photo`) speaking the uploaded audio."""
    samples, rate = await _read_audio(audio)
    if rate % 25:
        raise HTTPException(400, f"sample rate {rate} Hz is not a whole number of samples per 25 fps frame")
    face = await photo.read(10 * 1024 * 1024) if photo is not None else b""
    fmt = common_pb2.AudioFormat(sample_rate_hz=rate, encoding=common_pb2.LINEAR16, channels=1)
    pcm = encode_linear16(samples)
    config = sda_pb2.AnimateConfig(avatar_id=_default(avatar_id), face_image=face, audio_format=fmt,
                                   image_encoding=sda_pb2.JPEG, jpeg_quality=90)
    step = rate * 2 // 5  # 200 ms a message

    async def requests():
        yield sda_pb2.AnimateRequest(config=config)
        for start in range(0, len(pcm), step):
            yield sda_pb2.AnimateRequest(audio=pcm[start : start + step])
        yield sda_pb2.AnimateRequest(end_of_segment=sda_pb2.EndOfSegment())

    with tempfile.TemporaryDirectory(prefix="avatar-video-") as tmp:
        folder = Path(tmp)
        frames = 0
        try:
            async for response in bidi(request.app.state.clients.sda.StreamingAnimate, requests(), timeout=600):
                kind = response.WhichOneof("result")
                if kind == "frame":
                    (folder / f"{frames:06d}.jpg").write_bytes(response.frame.image)
                    frames += 1
                elif kind == "segment_end":
                    break
        except grpc.aio.AioRpcError as err:
            raise _http_error(err) from None
        (folder / "audio.wav").write_bytes(_wav(pcm, rate))
        command = ["ffmpeg", "-loglevel", "error", "-y", "-framerate", "25", "-i", str(folder / "%06d.jpg"),
                   "-i", str(folder / "audio.wav"), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                   "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:a", "aac", "-shortest", str(folder / "out.mp4")]
        result = await asyncio.to_thread(subprocess.run, command, capture_output=True)
        if result.returncode != 0:
            raise HTTPException(500, f"ffmpeg failed: {result.stderr.decode(errors='replace')[-300:]}")
        return Response((folder / "out.mp4").read_bytes(), media_type="video/mp4")
