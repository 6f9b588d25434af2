"""Building container image tarballs from host files, without a registry or daemon.

Used by hack/images/build.py; standard library only.
"""
