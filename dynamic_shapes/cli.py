"""One convention for every script: arguments, errors, exit codes and progress.

Exit codes: 0 on success, 2 for bad arguments (argparse's), 1 for anything else that fails,
130 on Ctrl-C. A failure is one line on stderr, `script: what went wrong`; `--verbose` adds
the traceback.
"""

import argparse
import contextlib
import ipaddress
import math
import re
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from dynamic_shapes.files import check_writable, check_writable_folder

EXIT_FAILURE, EXIT_INTERRUPTED = 1, 130


def make_parser(script_file, description) -> argparse.ArgumentParser:
    """An argument parser for a script, with the --verbose every script takes; the arguments it
    parses carry the script's name for run()."""
    parser = argparse.ArgumentParser(
        prog=Path(script_file).name,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show a traceback when something fails"
    )
    parser.set_defaults(prog=parser.prog)
    return parser


def main(parse_args, work, argv=None) -> int:
    """A script's whole command: `argv` parsed by its `parse_args` (argparse exits 2 on a bad
    argument, before any work), then `work(args)` run as run() runs it; the exit code."""
    args = parse_args(argv)
    return run(args, lambda: work(args))


def run(args, work) -> int:
    """Runs `work()` for a script whose parser (make_parser) gave `args`, and returns the exit
    code: what `work` returns (None: 0), 1 with one line for any error, or 130 on Ctrl-C."""
    try:
        return work() or 0
    except KeyboardInterrupt:
        print_error(args.prog, "interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:
        if args.verbose:
            traceback.print_exc()
        print_error(args.prog, error)
        return EXIT_FAILURE


def interrupt_on_sigterm() -> None:
    """Makes SIGTERM end the script as Ctrl-C does, with KeyboardInterrupt: what it started (a
    server, a daemon) is then stopped either way."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(*_):
    raise KeyboardInterrupt


def print_error(script: str, error) -> None:
    """Prints an error for people on stderr: each of its lines after the script's name."""
    for line in str(error).splitlines() or [type(error).__name__]:
        print(f"{script}: {line}", file=sys.stderr)


# Argument types: each refuses a bad value with argparse's exit code 2, before any work.


def positive(text) -> int:
    return _integer(text, 1, "1 or more")


def non_negative(text) -> int:
    return _integer(text, 0, "0 or more")


def integer_in(least: int, most: int):
    """An argument type for an integer from `least` to `most`: a field of fixed width (a
    server's 32- or 64-bit one) refused at parse time rather than when it is written."""

    def integer(text) -> int:
        value = _integer(text, least, f"{least} or more")
        if value > most:
            raise argparse.ArgumentTypeError(f"must be {most} or less: {text}")
        return value

    return integer


# A TCP port.
port = integer_in(1, 65535)


# A DNS name: labels of letters, digits and '-' (not at either end), joined by dots.
HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def host(text) -> str:
    """A host name or an IP address: it becomes part of URLs."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if len(text) > 253 or not HOSTNAME.fullmatch(text):
            raise argparse.ArgumentTypeError(f"not a host name or IP address: {text!r}") from None
    return text


def url_host(host: str) -> str:
    """A host as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def seconds(text) -> float:
    """A duration: a finite number of seconds above 0 (not nan, not inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds: {text}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text}")
    return value


def _integer(text, least, words) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {words}: {text}")
    return value


def checked(check):
    """An argument type from a function that returns the value or raises ValueError saying
    why not."""

    def argument(text):
        try:
            return check(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return argument


def output_file(text) -> Path:
    """A path a file can be written to: checked now, so that a long run cannot end with
    nowhere to put its results."""
    try:
        return check_writable(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def output_folder(text) -> Path:
    """A folder files can be written into, existing or new: checked now, like output_file."""
    try:
        return check_writable_folder(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


class Progress:
    """One status line on stderr, rewritten in place on a terminal."""

    def __init__(self):
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()

    def __call__(self, text):
        line = f"[{time.monotonic() - self.start:5.1f} s] {text}"
        if self.tty:
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def ticking(self, text, every=5.0):
        """Says `text` now, and again every `every` seconds until the block ends: a slow step
        (an engine build) shows that it is still going."""
        stop = threading.Event()

        def tick():
            while not stop.wait(every):
                self(f"{text} ...")

        self(text)
        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()

    def done(self):
        if self.tty:
            print(file=sys.stderr)
