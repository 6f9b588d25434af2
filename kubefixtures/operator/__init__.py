"""The garbage-collecting operator: deletes managed namespaces whose session is gone.

Run it with ``kubefixtures operator`` or ``kopf run -A -m kubefixtures.operator`` (importing
this package registers its kopf handlers). The pytest plugin never imports it.
"""

from __future__ import annotations

from kubefixtures.operator import handlers, login
from kubefixtures.operator.config import OperatorConfig

__all__ = ["OperatorConfig", "handlers", "login"]
