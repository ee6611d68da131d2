"""The engine: task contract and registry, the run loop that builds every record, records, verify, validation, official runs, memory measurement."""
