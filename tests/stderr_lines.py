"""stderr without progress: what a failed command says about its failure must still be one line."""

from __future__ import annotations

import re

# edgeport.progress prints "[HH:MM:SS] stage ..." for stages that ran long enough before a failure.
PROGRESS_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def error_lines(err: str) -> list[str]:
    """Non-empty stderr lines that are not progress lines."""
    return [ln for ln in err.splitlines() if ln.strip() and not PROGRESS_LINE.match(ln)]
