"""Benchmarks (not tests): each module measures one area and writes JSON + a plot to bench/results/."""
