"""The bounds every image request is checked against: steps, picture sides and seeds.

Their own module so that what checks a value against them (a request, a saved default) need not import
generation.
"""

MAX_STEPS = 200
MAX_SEED = 2**32 - 1  # what torch.Generator.manual_seed takes from every tool that shares seeds (A1111, ComfyUI)
MIN_SIDE, MAX_SIDE = 64, 2048
