"""kubefixtures: real services on Kubernetes for your pytest suite."""

__version__ = "0.1.0"
