"""The session report: what each environment's setup spent its time on, the tests' outcome
and the namespaces kept, as terminal summary lines and as ``--kubefixtures-report`` files.

- ``collect``: gathered while the session runs (on each xdist worker, merged by the
  controller); cheap to import, pydantic only once there is something to record.
- ``model``: the report's format (pydantic; ``schema.json`` is its published JSON Schema).
- ``html``: the waterfall page; ``files``: writing ``FILE.json`` or ``FILE.html``.
- ``header``: the ``pytest_report_header`` line (the kubeconfig only, never the cluster).
"""
