"""The leaderboard: Markdown/CSV/JSON (:mod:`~harness.board.leaderboard`), the static HTML page, plots."""
