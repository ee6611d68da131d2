"""The leaderboard: :mod:`~harness.board.leaderboard` (``build``), the board model built once from the
records (:mod:`~harness.board.model`), the task sections registry (:mod:`~harness.board.sections`) and
its renderers (Markdown :mod:`~harness.board.render_md`, HTML :mod:`~harness.board.render_html`, CSV and
JSON :mod:`~harness.board.render_csv`).  See docs/BOARD.md."""
