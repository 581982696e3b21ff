"""How a stage module runs as `python -m stages.<name>`: a user error (bad params, a corpus that is not in
DiffusionDB's layout) is one clear line on stderr and exit status 2, not a traceback; bugs still show theirs."""
from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(ValueError):
    """Something the user can fix in params or data; the message names the key or file."""


class Unavailable(RuntimeError):
    """A service the stage reads (the Hub, its CDN) still failed after bounded retries; a rerun resumes. Not a
    ValueError, so that no reader's parse-error handler can mistake it for bad data."""


def run(main: Callable[[], object], stage: str) -> None:
    try:
        main()
    except (UserError, Unavailable) as err:
        print(f"stage {stage}: error: {err}", file=sys.stderr)
        sys.exit(2)
