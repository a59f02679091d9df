"""Helpers the tests share."""

import os
import subprocess
import sys

from scenario import HERE


def run_script(*args, env=None, timeout=300):
    """Runs `python3 <args>` in the project folder and returns the completed process."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=HERE,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
