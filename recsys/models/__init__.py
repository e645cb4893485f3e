"""Models behind one contract (see ``base.Recommender``); ``registry`` maps config names to classes."""
