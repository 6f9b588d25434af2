"""Hypothesis profiles for the fuzz suite.

"ci" (chosen when CI=true) bounds the whole suite to about a minute on a shared 2-core
runner and keeps no example database (a clean clone has none to replay); "dev" is the
default for local runs, a little smaller, with the database kept in .hypothesis/ so a
failure found once is replayed first next time; "thorough" is for a longer hunt by hand
(`--hypothesis-profile=thorough`, hypothesis's own option, overrides the choice). None has
a deadline: the machine is shared, and a slow example is not a bug here.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=250,
    deadline=None,
    database=None,
    derandomize=False,
    print_blob=True,
    # Some strategies build large byte strings on purpose (frames near the caps).
    suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
