"""The generation queue: image jobs as rows in SQLite that outlive the browser tab and the process.

``jobs`` adds, lists and controls the rows and holds the claim a worker makes inside a transaction;
``worker`` works claimed jobs (one at a time per GPU slot) through one :class:`~masuka.queue.context.QueueContext`;
``tasks`` holds what each kind of job does.
"""
