"""Video generation: remote providers (one module each) and a local diffusers pipeline, run as resumable jobs."""
