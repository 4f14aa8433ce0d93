"""Upscaling: model upscalers (ESRGAN-family files through spandrel) run tile by tile, and the "detail" upscale
(A1111's SD upscale) that repaints the enlarged picture tile by tile with a diffusion model."""
