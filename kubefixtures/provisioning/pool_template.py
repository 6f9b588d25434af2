"""An operator-maintained pool's template: an environment rendered once, by
``kubefixtures pool create``, into YAML whose only placeholders are ``${namespace}``,
``${session_id}`` and ``${secret:NAME}``, which the operator fills for every copy.

The operator needs neither the sources (a chart, a kustomization, files on someone's
machine) nor helm or kubectl: it renders the template as a plain manifest file, with a new
namespace, session id and secrets per copy. The template is made by rendering the sources
with unique tokens in place of the namespace, the session id and each secret, and putting
the placeholders back where the tokens came out. That is exact only if the sources used
those values verbatim (a chart that hashes or base64-encodes a secret would carry the
token's digest, not the copy's): so ``template_of`` checks that the template's pool key,
computed as every session computes it (kubefixtures.provisioning.reused.reuse_key), is the
sources' own, and refuses the environment otherwise. The operator checks it again for every
Pool it reads: a copy is never labelled with a key it does not have.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from kubefixtures.errors import KubefixturesError
from kubefixtures.provisioning.base import EnvironmentSpec
from kubefixtures.rendering import RenderContext, Secrets, render_sources

if TYPE_CHECKING:
    from kubefixtures.settings import Settings

__all__ = ["TEMPLATE_FILE", "PoolTemplate", "copy_spec", "template_key", "template_of"]

TEMPLATE_FILE = "pool-template.yaml"  # how errors about a template name it


class _TokenSecrets(Secrets):
    """A token per secret name: letters and digits only, as a generated secret is."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, str] = {}

    def get(self, name: str) -> str:
        if name not in self.tokens:
            self.tokens[name] = f"kfpoolsecret{secrets.token_hex(10)}"
        return self.tokens[name]


@dataclass(frozen=True)
class PoolTemplate:
    """What a Pool object stores: the environment's name, its template, and its key."""

    environment: str
    template: str
    key: str


def template_of(spec: EnvironmentSpec, settings: Settings) -> PoolTemplate:
    """The template of ``spec`` (its values and image overrides applied); KubefixturesError
    when the sources do not use the namespace, session id or secrets verbatim."""
    from kubefixtures.provisioning.reused import reuse_key

    namespace = f"kfpoolns{secrets.token_hex(10)}"
    session_id = f"kfpoolsession{secrets.token_hex(10)}"
    tokens = _TokenSecrets()
    context = RenderContext(
        namespace=namespace,
        session_id=session_id,
        environment=spec.name,
        values=spec.values,
        values_files=spec.values_files,
        secrets=tokens,
        image_overrides=settings.image_overrides,
    )
    objects = render_sources(spec.sources, context)
    # JSON is YAML: one document per object. A literal `${` in the output is escaped first.
    text = "\n".join(f"---\n{json.dumps(obj.manifest, sort_keys=True)}" for obj in objects).replace(
        "${", "$${"
    )
    placeholders = {namespace: "${namespace}", session_id: "${session_id}"}
    placeholders.update({token: f"${{secret:{name}}}" for name, token in tokens.tokens.items()})
    for token, placeholder in placeholders.items():
        text = text.replace(token, placeholder)
    template = PoolTemplate(environment=spec.name, template=text + "\n", key="")
    key = reuse_key(spec, settings)
    if template_key(template) != key:
        raise KubefixturesError(
            f"environment {spec.name!r} cannot be kept by the operator: its sources transform "
            "${namespace}, ${session_id} or a ${secret:...} (a chart that encodes or hashes "
            "one), so copies rendered from a template would differ from a session's own"
        )
    return replace(template, key=key)


def template_key(template: PoolTemplate) -> str:
    """The pool key of the template's copies, as a session computes it for its environment."""
    from kubefixtures.provisioning.reused import reuse_key
    from kubefixtures.settings import Settings

    with tempfile.TemporaryDirectory(prefix="kubefixtures-pool-") as scratch:
        # The template has the image overrides applied already: none again.
        return reuse_key(copy_spec(template, Path(scratch)), Settings())


def copy_spec(template: PoolTemplate, directory: Path) -> EnvironmentSpec:
    """The spec of one copy: the template, written to ``directory``, as its only source."""
    path = directory / TEMPLATE_FILE
    path.write_text(template.template, encoding="utf-8")
    return EnvironmentSpec(name=template.environment, sources=(path,))
