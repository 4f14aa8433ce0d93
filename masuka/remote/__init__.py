"""Talking to outside services over HTTP: retries that honour each service's hints, health, timing knobs.

Shared by the remote video providers, the remote training backends and the prompt optimizer's endpoint.
"""
