"""Sharing environments between pytest-xdist workers: a worker's part (``workers``: joining
the run before its first test, saying when it is done) and the run's state file
(``state``: who manages which environment, who is attached, who failed). The plugin imports
``workers`` from its hooks; ``state`` (pydantic, filelock) only on workers of a suite that
declares environments.
"""
