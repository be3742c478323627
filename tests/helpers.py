"""Small helpers shared by the answer, LLM and MCP tests."""

from __future__ import annotations

import dataclasses
import json

from qa.retrieve.search import Searcher


def parse_sse(text: str) -> list[tuple[str, dict]]:
    """``[(event, data), ...]`` of a complete server-sent-events body."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def force_answerable(searcher: Searcher, value: bool = True) -> Searcher:
    """Make every search of ``searcher`` say ``answerable=value``. The confidence is
    calibrated on the real model's cosines, which the fake embedder never reaches; tests of
    what /answer does with either verdict should not depend on that calibration."""
    search = searcher.search

    def forced(*args, **kwargs):
        return dataclasses.replace(search(*args, **kwargs), answerable=value)

    searcher.search = forced  # type: ignore[method-assign]
    return searcher
