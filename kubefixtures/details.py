"""What a test gets: the details of a running environment, and the ``Environment`` handle.

``EnvironmentDetails`` is also the details file format (JSON, versioned): another process
(``KUBEFIXTURES_DETAILS=FILE pytest``) can attach to an environment from it alone, so it
carries generated secrets. They are ``SecretStr``: masked in repr, str and ordinary dumps,
revealed only by ``to_json(reveal_secrets=True)`` and in the file, which is written 0600.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    SecretStr,
    ValidationError,
    field_serializer,
)

from kubefixtures.control import Controls
from kubefixtures.errors import KubefixturesError
from kubefixtures.limits import MAX_FILE_BYTES, read_text

__all__ = [
    "DETAILS_VERSION",
    "Environment",
    "EnvironmentDetails",
    "ObjectRef",
    "ServiceDetails",
]

DETAILS_VERSION: Literal[1] = 1


class ServiceDetails(BaseModel):
    """A Service of the environment as seen from the test process: on 127.0.0.1 (through
    port-forwards or the direct route's splices), or at its ClusterIP (route "service")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    namespace: str
    host: str = Field(
        default="127.0.0.1",
        description="where tests connect: 127.0.0.1, or the Service's ClusterIP (route service)",
    )
    port: int = Field(description="port at host of the Service's first port")
    ports: dict[int, int] = Field(description="Service port -> port at host")
    named_ports: dict[str, int] = Field(
        default_factory=dict, description="Service port name -> port at host"
    )
    url: str | None = Field(
        default=None, description="http(s)://host:port of the port named http or https"
    )
    route: Literal["forward", "direct", "service", "mixed"] = Field(
        default="forward",
        description="how the ports reach the pods: forward (through the apiserver), "
        "direct (straight to the pod's IP), service (host is the Service's ClusterIP, "
        "routed by the cluster), mixed (some ports forward, some direct)",
    )

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the first port, as socket APIs want it."""
        return (self.host, self.port)


class ObjectRef(BaseModel):
    """One applied object."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


class EnvironmentDetails(BaseModel):
    """Everything needed to use a running environment (the details file format)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = DETAILS_VERSION
    name: str
    namespace: str
    context: str | None = None
    session_id: str
    services: dict[str, ServiceDetails] = Field(default_factory=dict)
    objects: list[ObjectRef] = Field(default_factory=list)
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # The values ``kubefixtures up`` rendered it with (a run attaching to it renders its
    # objects with them); empty: the declaration's own.
    values: dict[str, Any] = Field(default_factory=dict)
    ready_seconds: float = 0.0
    # Added after version 1 was first written: optional, so older files still read.
    phases: dict[str, float] = Field(
        default_factory=dict,
        description="seconds spent in each phase of the setup (kubefixtures.timing.PHASES)",
    )
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_serializer("secrets")
    def _serialize_secrets(
        self, secrets: dict[str, SecretStr], info: FieldSerializationInfo
    ) -> dict[str, Any]:
        reveal = bool(info.context and info.context.get("reveal_secrets"))
        if reveal:
            return {name: value.get_secret_value() for name, value in secrets.items()}
        return {name: str(value) for name, value in secrets.items()}

    def to_json(self, *, reveal_secrets: bool = False, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent, context={"reveal_secrets": reveal_secrets})

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the details file: mode 0600, atomically (readers never see half a file)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:  # mkstemp: 0600
                stream.write(self.to_json(reveal_secrets=True) + "\n")
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> EnvironmentDetails:
        """Read a details file; errors name the file and the first bad field."""
        try:
            text = read_text(path, limit=MAX_FILE_BYTES)
        except OSError as error:
            raise KubefixturesError(f"{path}: cannot read the details file: {error}") from None
        except ValueError as error:  # not UTF-8, too large
            raise KubefixturesError(f"{path}: the details file {error}") from None
        try:
            return cls.model_validate_json(text)
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "(file)"
            if first["loc"] == ("version",):
                problem = f"version {first.get('input')!r} is not {DETAILS_VERSION}"
                problem += " (written by another kubefixtures release?)"
            else:
                problem = first["msg"]
            raise KubefixturesError(f"{path}: details field {field}: {problem}") from None


class Environment(Controls):
    """The value of an environment fixture: a running environment in its own namespace,
    with controls to act on it (``logs``, ``exec``, ``restart``, ...; kubefixtures.control)."""

    def __init__(self, details: EnvironmentDetails, objects: Sequence[Mapping[str, Any]]) -> None:
        self._details = details
        self._objects = tuple(objects)

    @property
    def name(self) -> str:
        return self._details.name

    @property
    def namespace(self) -> str:
        return self._details.namespace

    @property
    def context(self) -> str | None:
        """The kubeconfig context the environment lives in (None: in-cluster config)."""
        return self._details.context

    @property
    def session_id(self) -> str:
        return self._details.session_id

    @property
    def objects(self) -> tuple[Mapping[str, Any], ...]:
        """The objects that were applied, as rendered (placeholders filled, images overridden)."""
        return self._objects

    @property
    def services(self) -> Mapping[str, ServiceDetails]:
        return MappingProxyType(self._details.services)

    @property
    def secrets(self) -> Mapping[str, str]:
        """Generated ``${secret:NAME}`` values used by this environment, by NAME."""
        return MappingProxyType(
            {name: value.get_secret_value() for name, value in self._details.secrets.items()}
        )

    @property
    def details(self) -> EnvironmentDetails:
        return self._details

    def __repr__(self) -> str:
        return (
            f"Environment(name={self.name!r}, namespace={self.namespace!r}, "
            f"services={sorted(self.services)})"
        )
