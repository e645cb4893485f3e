"""Online feature store: what users just did. Backends chosen by URL (memory://, redis://)."""
