"""Catalog of base models and the tools to download and manage them."""
