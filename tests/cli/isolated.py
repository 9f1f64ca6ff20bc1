"""`python -m phonesync …` as a fresh process: none of the caller's PHONESYNC_* settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def isolated_phonesync(
    cwd: Path, words: tuple[str, ...], *, home: Path, state: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run phonesync WORDS in `cwd` with HOME=`home`, XDG_STATE_HOME=`state`, no PHONESYNC_*
    from outside but `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PHONESYNC_")}
    base |= {"HOME": str(home), "XDG_STATE_HOME": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "phonesync", *words],
        cwd=cwd,
        env=base | env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
