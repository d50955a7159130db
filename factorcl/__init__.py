"""FactorCL: factorized contrastive learning of shared and unique multimodal information."""

__version__ = "0.1.0"
