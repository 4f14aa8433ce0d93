"""LoRA files: inspected before use (``files``), listed per user (``library``), brought in from an upload, a
Hugging Face repo or CivitAI (``imports``). Making them active on a pipeline is :mod:`masuka.image.adapters`."""
