"""Workflows: the only place that knows the order of the pipeline stages."""
