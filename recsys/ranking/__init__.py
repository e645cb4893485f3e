"""Feed ranking: candidates → filters → scoring → diversity → reasons (pure library code, no I/O deps)."""
