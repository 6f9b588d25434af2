"""Provisioning: what brings an environment up and down for a fixture.

``base`` holds what every provisioning shares (the spec, the protocol, the collaborators it
is given, the inspection builder); ``dispatch.provisioning_for`` chooses among ``fresh``
(a namespace of its own, new or ``reused``), ``attached`` (a details file) and ``shared``
(xdist). Importing the package costs nothing: the modules are imported when needed.
"""
