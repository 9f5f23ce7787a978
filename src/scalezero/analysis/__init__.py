"""Metrics, energy attribution, statistics, aggregation and projections."""
