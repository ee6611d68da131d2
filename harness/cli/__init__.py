"""The command line: ``attriboard run|leaderboard|validate|verify|pr-check|list|schema`` (:mod:`harness.cli.main`) and the pull-request check (:mod:`harness.cli.prcheck`)."""
