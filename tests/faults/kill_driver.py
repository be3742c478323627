"""Runs `qa index` in child processes that kill themselves (SIGKILL, as `kill -9` does) at
an instrumented point of the build: the n-th call of a function, before or after it runs.

The driver imports qa, numpy, FAISS and jieba once and forks a child per build, so twenty
kills cost twenty builds, not twenty interpreter start-ups. One JSON request per stdin line
({"corpus", "index", "target": "numpy.save", "nth": 3, "when": "before"}), one JSON answer
per stdout line ({"signal": 9} when the child was killed, {"exit": code} when the point was
never reached and the build ended by itself).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from typing import Any


def _instrument(target: str, nth: int, when: str) -> None:
    module_name, attr = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    original = getattr(module, attr)
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, attr, wrapper)


def _child(req: dict[str, Any]) -> None:
    from qa.cli import main

    _instrument(req["target"], req["nth"], req["when"])
    try:
        main(["index", "--corpus", req["corpus"], "--index", req["index"]])
    except SystemExit as exc:
        os._exit(int(exc.code or 0))
    os._exit(0)


def serve() -> None:
    import faiss  # noqa: F401 - imported before forking, like everything the build uses
    import jieba

    import qa.cli  # noqa: F401
    import qa.index.build  # noqa: F401
    import qa.index.vectors.faiss  # noqa: F401

    jieba.setLogLevel(60)
    jieba.initialize()
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            _child(req)
        _, status = os.waitpid(pid, 0)
        answer = ({"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status)
                  else {"exit": os.WEXITSTATUS(status)})
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    serve()
