"""MASUKA: a studio that takes photos to a trained LoRA to images and videos, on one GPU.

Importing this package stays light: torch, diffusers and transformers load only when a job needs them.
"""

__version__ = "0.1.0"
