"""Training datasets: ingest and validate images, preprocess, find duplicates, caption, export and import."""
