"""Background jobs whose results are taken back in submission order (the encoders' pipelines).

The streaming GIF and WebP encoders run their per-frame work (Pillow's quantiser, libwebp; both
release the GIL) here, so it overlaps with the caller and with writing the previous frame. At most
a few frames are in flight: ``take(keep)`` waits for the oldest ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Job:
    """A submitted job: its future and the caller's notes about it (which it may update)."""

    future: Future
    info: dict[str, Any] = field(default_factory=dict)


class OrderedJobs:
    """``submit`` jobs to ``workers`` threads; ``take`` yields ``(result, job)`` oldest first."""

    def __init__(self, workers: int = 1) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="animatediff-encode")
        self.jobs: deque[Job] = deque()

    def submit(self, work: Callable[[], Any], **info: Any) -> Job:
        """Run ``work()`` in the background; ``info`` is kept with the job."""
        job = Job(self.executor.submit(work), info)
        self.jobs.append(job)
        return job

    @property
    def newest(self) -> Job | None:
        return self.jobs[-1] if self.jobs else None

    def take(self, keep: int = 0) -> Iterator[tuple[Any, Job]]:
        """Finished results, oldest first, until only ``keep`` jobs are left (waits for each;
        re-raises a job's exception)."""
        while len(self.jobs) > keep:
            job = self.jobs.popleft()
            yield job.future.result(), job

    def shutdown(self) -> None:
        """Drop jobs not started yet and wait for the running ones (no results are taken)."""
        self.jobs.clear()
        self.executor.shutdown(wait=True, cancel_futures=True)
