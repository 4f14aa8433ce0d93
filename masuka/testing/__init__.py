"""Stand-ins shared by the test suite and ``python -m masuka bench load``: loopback HTTP servers that speak the
remote APIs MASUKA uses, with fault injection. The app itself never imports this package.
"""
