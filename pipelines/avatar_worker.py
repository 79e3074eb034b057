"""`python -m pipelines.avatar_worker`: makes the avatars that users ask the gateway for from one photo.

It takes jobs from the Redis queue (`core.avatar_jobs`), at most `WORKER_CONCURRENCY` at a time, runs
each (`pipelines.sda.photo_avatar`), and reports stage and progress on the job; a heartbeat tells readers it is
alive. Scale it with replicas: each takes the next job when it has a free slot. Prometheus metrics on
`WORKER_PORT` (`/metrics`; any other path answers too, as liveness).
"""

import asyncio
import logging
import os
import signal
import socket

from prometheus_client import Counter, Gauge, start_http_server
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.avatar_bundle import AvatarsDir
from core.avatar_jobs import AvatarJobs, Job
from core.consent import Consent
from core.errors import BadRequest, Refused
from core.sda.face_rig import FaceError, read_photo
from pipelines.sda.photo_avatar import make_avatar

log = logging.getLogger("pipelines.avatar_worker")

JOBS = Counter("avatar_worker_jobs_total", "Avatar jobs finished, by outcome", ["outcome"])
RUNNING = Gauge("avatar_worker_jobs_running", "Avatar jobs running on this worker now")


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WORKER_", env_file=".env", extra="ignore")

    redis_url: str = Field(default="redis://127.0.0.1:6379/0",
                           validation_alias=AliasChoices("REDIS_URL", "WORKER_REDIS_URL"))
    avatars_dir: AvatarsDir
    host: str = "127.0.0.1"  # where its metrics listen (the image: 0.0.0.0)
    port: int = Field(default=9105, ge=1, le=65535)  # Prometheus metrics
    concurrency: int = Field(default=1, ge=1)  # jobs at once (each fine-tunes on every CPU core it is given)
    heartbeat_s: float = Field(default=5.0, gt=0)
    # A running job whose heartbeat is older than this is failed by whoever reads it (the worker died).
    lease_s: float = Field(default=60.0, gt=0)
    # The quick avatar's fine-tune: steps of batch 4, and synthetic sentences spoken in the photo's face.
    steps: int = Field(default=150, ge=1)
    sentences: int = Field(default=40, ge=2)
    log_level: str = "INFO"


class Worker:
    def __init__(self, settings: WorkerSettings, jobs: AvatarJobs):
        self._settings = settings
        self._jobs = jobs
        self._name = f"{socket.gethostname()}:{os.getpid()}"
        self._running: set[str] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def run(self) -> None:
        log.info("avatar worker %s: up to %d job(s) at a time, avatars in %s", self._name,
                 self._settings.concurrency, self._settings.avatars_dir)
        beating = asyncio.create_task(self._heartbeat())
        tasks: set[asyncio.Task] = set()
        try:
            while True:
                await self._slots.acquire()
                job = await self._jobs.claim(self._name, self._settings.lease_s)
                if job is None:
                    self._slots.release()
                    continue
                task = asyncio.create_task(self._run_job(job))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            beating.cancel()

    async def give_up(self, reason: str) -> None:
        """Fail every job running here (the worker is stopping)."""
        for avatar_id in sorted(self._running):
            await self._jobs.finish(avatar_id, "failed", error=reason, stage="stopped")
            JOBS.labels("failed").inc()

    async def _heartbeat(self) -> None:
        while True:
            if self._running:
                await self._jobs.beat(sorted(self._running))
            await asyncio.sleep(self._settings.heartbeat_s)

    async def _run_job(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        self._running.add(job.avatar_id)
        RUNNING.inc()
        stage = "starting"

        def progress(name: str, done: float) -> None:  # called from the training thread
            nonlocal stage
            stage = name
            asyncio.run_coroutine_threadsafe(self._jobs.progress(job.avatar_id, name, done), loop)

        log.info("job %s: started", job.avatar_id)
        try:
            await asyncio.to_thread(
                lambda: make_avatar(read_photo(job.photo), job.avatar_id, self._settings.avatars_dir,
                                    Consent.parse(job.consent), progress, job.name, self._settings.steps,
                                    self._settings.sentences))
        except (FaceError, BadRequest, Refused) as err:  # the photo, or the consent: a reason for a person
            await self._fail(job, stage, str(err))
        except Exception as err:  # noqa: BLE001 - any failure of one job is reported on it; the worker goes on
            log.exception("job %s failed", job.avatar_id)
            await self._fail(job, stage, f"{type(err).__name__}: {err}")
        else:
            await self._jobs.finish(job.avatar_id, "done")
            JOBS.labels("done").inc()
            log.info("job %s: done", job.avatar_id)
        finally:
            self._running.discard(job.avatar_id)
            RUNNING.dec()
            self._slots.release()

    async def _fail(self, job: Job, stage: str, reason: str) -> None:
        await self._jobs.finish(job.avatar_id, "failed", error=reason, stage=stage)
        JOBS.labels("failed").inc()


async def _main(settings: WorkerSettings) -> None:
    jobs = AvatarJobs.from_url(settings.redis_url)
    worker = Worker(settings, jobs)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    working = asyncio.create_task(worker.run())
    await stopped.wait()
    working.cancel()
    await worker.give_up("the worker was stopped while running this job; send the photo again")
    await jobs.close()
    os._exit(0)  # a fine-tune in its thread cannot be interrupted: its job is already failed, so leave it


def main() -> None:
    settings = WorkerSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start_http_server(settings.port, addr=settings.host)
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
