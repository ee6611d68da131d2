"""The T5 leaderboard sections as Markdown lines (kept for callers of the older interface; the
board itself builds them as structured sections in :mod:`tasks.sanity.board`)."""

from __future__ import annotations

from typing import Iterable

from harness.board import render_md
from tasks.sanity.board import (BIAS_ANCHOR, SANITY_ANCHOR, bias_blocks, notes_blocks,  # noqa: F401
                                sanity_blocks, write_plots)


def board_notes(b) -> list[str]:
    """The removal-operator notes under a board, as Markdown lines."""
    return render_md.blocks(notes_blocks(b))


def render_sections(boards: Iterable) -> list[str]:
    """The "Metric bias" and "Sanity checks" sections as Markdown lines (empty when no record carries them)."""
    boards = list(boards)
    return render_md.blocks(bias_blocks(boards) + sanity_blocks(boards))
