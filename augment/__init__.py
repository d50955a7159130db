"""Unimodal and unique (cross-modal-conditioned) augmentations."""
