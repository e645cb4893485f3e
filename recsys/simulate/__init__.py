"""Offline A/B simulation: simulated users of a synthetic world react to real ranked feeds.

Why: a product team wants a variant's likely effect before launch. The world's hidden ground truth
(``recsys.world.truth``) decides what each simulated user does with each feed entry, while the feeds
come from the production ranker and the production feature store (driven by
``kolfeed.simulation_runner``), so the readout measures the shipped ranking code.

This package is pure (no store, no web framework): ``config`` (typed knobs), ``schedule`` (who opens
the app when), ``behaviour`` (ground-truth reactions to a page), ``inbox`` (shares waiting for the
friend's next session), ``log`` (the EVENTS table with the world's request-id conventions) and
``engine`` (the loop state tying them together).
"""
