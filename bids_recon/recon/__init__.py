"""Reconstruction stage: optimize images so their DNN features match decoded features."""
