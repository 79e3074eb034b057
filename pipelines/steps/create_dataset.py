"""Step 1, create_dataset: download a video (a URL or a playlist, with yt-dlp) or take a local file, and extract
each source's audio as 16 kHz mono. Outputs: `source/<k>.<ext>` (the media as downloaded) and `audio/<k>.wav`."""

import shutil
from pathlib import Path

from tqdm import tqdm

from core.atomic import atomic_dir
from pipelines.ffmpeg import extract_audio, probe
from pipelines.options import Options
from pipelines.workspace import PipelineError, Workspace

NEEDS: list[str] = []


def key(ws: Workspace, opts: Options) -> dict:
    return {"url": opts.url}


def _download(url: str, folder: Path) -> list[Path]:
    import yt_dlp

    options = {
        "outtmpl": str(folder / "%(playlist_index|0)03d-%(id).40s.%(ext)s"),
        "format": "bv*+ba/b",
        "quiet": True,
        "no_warnings": True,
        "noprogress": False,
        "restrictfilenames": True,
        "retries": 2,
        "socket_timeout": 30,
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            ydl.download([url])
    except yt_dlp.utils.DownloadError as err:
        raise PipelineError(f"could not download {url}: {str(err).removeprefix('ERROR: ')[:300]}") from None
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith((".part", ".ytdl")))
    if not files:
        raise PipelineError(f"nothing was downloaded from {url}")
    return files


def run(ws: Workspace, opts: Options) -> dict:
    if not opts.url:
        raise PipelineError("create_dataset needs --url: a video URL, a playlist URL, or a local file")
    local = Path(opts.url).expanduser()
    sources = []
    with atomic_dir(ws.root / "source") as source_dir, atomic_dir(ws.root / "audio") as audio_dir:
        if local.exists():
            if not local.is_file():
                raise PipelineError(f"{local} is not a file")
            files = [Path(shutil.copy(local, source_dir / f"000{local.suffix.lower()}"))]
        else:
            if "://" not in opts.url:
                raise PipelineError(f"{opts.url} is neither an existing file nor a URL")
            files = _download(opts.url, source_dir)
        for index, media in enumerate(tqdm(files, desc="extracting audio", unit="file")):
            info = probe(media)
            if not info.has_audio:
                raise PipelineError(f"{media.name} has no audio track: the pipeline needs the person's voice")
            source_id = f"{index:03d}"
            extract_audio(media, audio_dir / f"{source_id}.wav")
            sources.append({
                "id": source_id,
                "media": f"source/{media.name}",
                "audio": f"audio/{source_id}.wav",
                "duration_s": round(info.duration_s, 3),
                "video": {"width": info.width, "height": info.height} if info.has_video else None,
            })
    return {"origin": opts.url, "sources": sources}
