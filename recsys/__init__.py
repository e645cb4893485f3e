"""Pure domain and algorithms of kolfeed: no web, no Redis, no training loop."""
