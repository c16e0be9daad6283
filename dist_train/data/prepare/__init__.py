"""Offline dataset builders: synthetic data, frame extraction, verification, store packing.
Nothing here runs during training; the online readers live one folder up."""
