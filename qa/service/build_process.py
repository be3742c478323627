"""``python -m qa.service.build_process [NICE]``: one index build in a process of its own.

The service's writer (``qa.service.writes.ProcessBuild``) starts it with the service's
settings as JSON on stdin. It lowers its own CPU priority first, so the build runs on the
cycles that search leaves idle, and prints one JSON line: ``{"report": ...}`` or
``{"error": message}``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from qa.config import Settings
from qa.errors import QAError


def main(argv: list[str]) -> int:
    if argv and hasattr(os, "nice"):
        os.nice(int(argv[0]))
    # Exactly the parent's settings: model_validate_json does not read the environment again.
    settings = Settings.model_validate_json(sys.stdin.read())
    try:
        from qa.service.wiring import make_embedder
        from qa.service.writes import build_in_process

        report = build_in_process(settings, make_embedder(settings))
    except QAError as exc:
        sys.stdout.write(json.dumps({"error": exc.message}, ensure_ascii=False) + "\n")
        return 1
    sys.stdout.write(json.dumps({"report": dataclasses.asdict(report)}, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
