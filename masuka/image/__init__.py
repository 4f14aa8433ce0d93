"""Text-to-image: pipeline loading, LoRAs, generation and A1111-compatible metadata."""
