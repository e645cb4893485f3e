"""A seeded synthetic social-commerce world with a hidden ground truth.

``kolfeed world --scale tiny --seed 1 --out DIR`` writes:

- ``users/items/kols/posts/follows/friends/events.parquet`` typed as ``recsys.schema``
  (friends listed in both directions; ids dense 0..n-1),
- ``split/train.parquet``, ``split/test.parquet``, ``split/split.json`` (chronological cut),
- ``truth/*.npy`` + ``truth/params.json``: load with ``GroundTruth.load(DIR)``,
- ``world.json``: scale, seed, config, counts, categories, time range, generator version.

Modules: ``config`` (scale presets), ``priors`` (domain numbers), ``truth`` (ground truth and the
behaviour model), ``entities`` (static world), ``events`` (day simulation and share cascades),
``write``/``split`` (files), ``generate`` (orchestration; documents request ids and cascades).
"""
