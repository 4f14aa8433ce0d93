"""LoRA training for Flux.1, SD3.5 and SDXL: options, data caching, the loop, checkpoints, export and runs."""
