"""Mutual-information critics and contrastive lower/upper bound estimators."""
