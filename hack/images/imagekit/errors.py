"""The one exception the builder reports: a single line saying what to fix."""


class BuildError(Exception):
    """A build cannot go on; str(error) is the whole message, one line."""
