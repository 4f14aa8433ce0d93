"""The bounds every image request is checked against: steps and picture sides.

Their own module so that what checks a value against them (a request, a saved default) need not import
generation.
"""

MAX_STEPS = 200
MIN_SIDE, MAX_SIDE = 64, 2048
