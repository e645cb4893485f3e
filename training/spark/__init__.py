"""The Spark engine (``engine: {name: spark}``): the data side and the fit of a training run on Apache
Spark, writing the same run directory as the local engine.

Why a separate package: only a run that asks for Spark imports pyspark (and starts a JVM); the local
engine, serving and the tests of everything else never pay for it.

Split of work: Spark reads and validates the inputs, maps ids to keys and dense indices, builds every
graph as aggregated edges and fits MLlib ALS; the driver collects the aggregated edges and the
factors (far smaller than the events) and hands them to the local exporter, so ``kolfeed serve``,
``kolfeed eval`` and reload see a run directory they already know.
"""
