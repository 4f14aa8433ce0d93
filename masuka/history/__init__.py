"""Everything made and run, read back: one browser over generations (images, videos) and jobs (training runs,
caption passes, downloads), the detail of one entry, its actions, and the dashboard figures.

An entry is named by a key: ``g<id>`` for a generations row, ``j<id>`` for a jobs row.
"""
