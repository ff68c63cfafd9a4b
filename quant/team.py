"""A team of forked processes, the calling one among them, working through a list of jobs.

For a one-shot command (`mfc quantize`): the caller has made every job before it forks, so
a worker inherits them and needs only a job's number. The numbers go through one pipe that
every member reads 4 bytes at a time (a pipe read is atomic: each number goes to exactly
one reader, in order); a worker reports each finished number, or its error, on a pipe of
its own. There is no executor, no pickled job, no result thread and no idle coordinator:
with `--threads 2` one worker is forked and the caller quantizes beside it, where a process
pool forks two workers and keeps a third process waking for every result (~0.1 s of CPU
on SmolLM2, a tenth of its whole Q4_0 run).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import struct
from collections.abc import Callable

from quant.child_process import die_with_parent
from quant.errors import QuantError

_NUMBER = struct.Struct("<I")
_FAILED = 0xFFFFFFFF  # then the length and pickle of the exception
_FEED = 1024  # numbers per write: 4 KiB, one atomic pipe write


def died() -> QuantError:
    return QuantError(
        "a quantize worker process died (killed, or out of memory?)",
        hint="try fewer worker processes (--threads)",
    )


class _Feed:
    """The job numbers not yet in the pipe, written as it has room (it holds 16K)."""

    def __init__(self, fd: int, count: int) -> None:
        self.fd, self.next, self.count = fd, 0, count
        os.set_blocking(fd, False)
        self.top_up()

    def top_up(self) -> None:
        while self.next < self.count:
            end = min(self.count, self.next + _FEED)
            try:
                os.write(self.fd, b"".join(_NUMBER.pack(i) for i in range(self.next, end)))
            except BlockingIOError:
                return
            self.next = end
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _take(fd: int) -> int | None:
    """The next number from the pipe, None at its end (BlockingIOError: none there now)."""
    b = os.read(fd, _NUMBER.size)
    return _NUMBER.unpack(b)[0] if b else None


def _worker(jobs: int, results: int, run: Callable[[int], object]) -> None:
    """A forked member: run numbers until the pipe ends; never returns into the caller's
    stack (whose `finally` blocks would remove the output being written)."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        die_with_parent()
        if os.getppid() == 1:  # the caller is already gone
            os._exit(1)
        poller = select.poll()
        poller.register(jobs, select.POLLIN)
        while True:
            try:
                i = _take(jobs)
            except BlockingIOError:
                poller.poll()
                continue
            if i is None:
                break
            run(i)
            os.write(results, _NUMBER.pack(i))
    except BaseException as exc:
        code = 1
        with contextlib.suppress(BaseException):
            import pickle

            try:  # as it is (a QuantError, an OSError such as a full disk), else described
                payload = pickle.dumps(exc)
                pickle.loads(payload)  # some exceptions pickle but cannot be rebuilt
            except Exception:
                payload = pickle.dumps(RuntimeError(f"a quantize worker failed: {exc!r}"))
            data = _NUMBER.pack(_FAILED) + _NUMBER.pack(len(payload)) + payload
            while data:
                data = data[os.write(results, data) :]
    finally:
        os._exit(code)


class _Member:
    """The caller's end of one forked worker: its pid and its report pipe."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid, self.fd, self.buf = pid, fd, b""
        os.set_blocking(fd, False)

    def read(self, done: Callable[[int], None]) -> bool:
        """Take its reports (raising its error); False once it has exited cleanly."""
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return True
            if not data:
                break
            self.buf += data
            while len(self.buf) >= 4:
                (i,) = _NUMBER.unpack_from(self.buf)
                if i == _FAILED:
                    break
                done(i)
                self.buf = self.buf[4:]
        if len(self.buf) >= 8:
            import pickle

            (size,) = _NUMBER.unpack_from(self.buf, 4)
            raise pickle.loads(self.buf[8 : 8 + size])
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        if status:
            raise died()
        return False

    def stop(self) -> None:
        if self.pid:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            self.pid = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def run_team(
    count: int, run: Callable[[int], object], members: int, done: Callable[[int], None]
) -> None:
    """Run jobs 0..count-1 (`run(i)`) in this process and `members - 1` forked ones, taking
    them in order; `done(i)` is called here for each finished job, in the order they finish.
    The caller must have no other thread (a fork copies only the calling one)."""
    jobs, feed_fd = os.pipe()
    feed = _Feed(feed_fd, count)
    team: list[_Member] = []
    try:
        for _ in range(members - 1):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                feed.close()
                for m in team:
                    os.close(m.fd)
                _worker(jobs, w, run)
            os.close(w)
            team.append(_Member(pid, r))
        os.set_blocking(jobs, False)  # shared with the workers, which poll when it is empty
        while True:
            feed.top_up()
            team = [m for m in team if m.read(done)]
            try:
                i = _take(jobs)
            except BlockingIOError:  # the workers took what was there: take the next
                if feed.next >= feed.count:
                    break
                i, feed.next = feed.next, feed.next + 1
            if i is None:
                break
            run(i)
            done(i)
        while team:  # wait for the workers' last jobs
            select.select([m.fd for m in team], [], [])
            team = [m for m in team if m.read(done)]
    finally:
        feed.close()
        os.close(jobs)
        for m in team:
            m.stop()
