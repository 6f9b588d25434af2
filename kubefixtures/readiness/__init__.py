"""When is an object ready, and why not: the rules (``rules``, pure functions over JSON)
and the wait that applies them to what the watches see (``wait``)."""
