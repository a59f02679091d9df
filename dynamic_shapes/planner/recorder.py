"""Recording a running service's workload: each request's shapes appended to a JSON Lines file
(workloads.py reads it), so that the profiles can be planned for what the service really saw.

A server calls `recorder.record(shapes)` once per request it serves, with the request's
{input name: shape} (the arrays' `.shape`, never the arrays). The recorder is meant to sit on
the serving path, so:

- Cheap: the line is formatted from the shapes' integers directly (the names' JSON spelling is
  made once per name) and written with one fstat and one os.write; no json.dumps, no buffering
  layer. A full recorder only counts.
- Line-atomic: the file is opened with O_APPEND and each line goes out in one os.write of the
  complete line, so lines from several threads, recorders or processes never interleave, and a
  process that dies leaves whole lines behind. A file found ending mid-line (a writer that
  was not this one stopped in the middle of one) is first ended with a newline, so that the
  torn line stays a line of its own, which the reader skips and counts.
- Bounded: a line is written only while the file, with it, stays within max_bytes (the size
  is the file's own, from fstat, so recorders in other processes count too; two processes
  that write at the same moment may each add one line past it). Once a line does not fit, the
  recorder is full: it stops appending, touches the file no more and counts what it drops.
  Stopping, rather than rotating, keeps the file that a planner may be reading whole and
  unmoved, and costs a full recorder nothing per request.
- Harmless: a failure to write (a full disk) is kept in `error`, the recorder stops, and the
  request it was recording is served all the same: a workload file is never worth a failed
  request.
- Thread-safe: one lock around the size check and the write, so that within a process the
  bound is exact.
"""

import json
import os
import threading
from pathlib import Path


class WorkloadRecorder:
    """Appends each recorded request's shapes to `path` as one JSON line, while the file stays
    within `max_bytes`. `recorded` and `dropped` count the requests written and not written."""

    def __init__(self, path, max_bytes: int):
        if not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes is {max_bytes!r}; give the file's largest size in bytes")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.recorded = 0
        self.dropped = 0
        self.error = None
        self._names = {}
        self._lock = threading.Lock()
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as error:
            raise ValueError(f"cannot record the workload to {self.path}: {error}") from None
        self._full = False
        self._pending = self._ends_mid_line()

    def _ends_mid_line(self) -> bytes:
        """b"\\n" where the file ends in the middle of a line, else b""."""
        with open(self.path, "rb") as file:
            file.seek(0, os.SEEK_END)
            if file.tell() == 0:
                return b""
            file.seek(-1, os.SEEK_END)
            return b"" if file.read(1) == b"\n" else b"\n"

    def line(self, shapes) -> bytes:
        """The JSON line for a request's {input name: shape}, its newline included."""
        names = self._names
        parts = []
        for name, shape in shapes.items():
            quoted = names.get(name)
            if quoted is None:
                quoted = names[name] = json.dumps(str(name))
            # int() refuses anything that is not a number, so no line is ever not JSON.
            parts.append(f"{quoted}: [{', '.join([str(int(size)) for size in shape])}]")
        return ("{" + ", ".join(parts) + "}\n").encode()

    def record(self, shapes) -> None:
        """Appends one request's shapes {input name: shape tuple}, or counts it as dropped
        where the file is full, closed, or could not be written."""
        if self._full:
            # Read without the lock: a stale False only means one more trip through it.
            with self._lock:
                self.dropped += 1
            return
        data = self.line(shapes)
        with self._lock:
            if self._full:
                self.dropped += 1
                return
            try:
                data = self._pending + data
                if os.fstat(self._fd).st_size + len(data) > self.max_bytes:
                    self._full = True
                    self.dropped += 1
                    return
                written = os.write(self._fd, data)
            except OSError as error:
                self._stop(error)
                return
            if written != len(data):
                # Only a full disk writes part of a line; the reader skips what it left.
                self._stop(OSError(f"wrote {written} of {len(data)} bytes to {self.path}"))
                return
            self._pending = b""
            self.recorded += 1

    def _stop(self, error) -> None:
        self.error = error
        self._full = True
        self.dropped += 1

    @property
    def full(self) -> bool:
        """Whether the recorder has stopped appending (full, failed or closed)."""
        return self._full

    def close(self) -> None:
        """Stops recording and closes the file; later requests count as dropped."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                self._full = True

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()
