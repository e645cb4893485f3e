"""One router per API area: feed, events, admin, health."""
