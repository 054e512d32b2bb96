"""Evaluation: feature decoding accuracy and reconstruction identification metrics."""
