"""What both the harness and a sandboxed worker import: the submission loader, the output checks and word aggregation, the name registry, provenance and code hashes."""
