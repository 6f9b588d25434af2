"""Turning sources (YAML files, directories of them, Helm charts) into Kubernetes objects.

Everything here happens before anything is created in the cluster, so every mistake in a
source is reported while there is still nothing to clean up. Errors name the file, the line
and, for placeholders, the placeholder.

Placeholders in YAML sources:
- ``${name}`` is replaced by ``values["name"]`` (``${a.b}`` reaches into nested values), or by
  a built-in: ``${namespace}``, ``${session_id}``, ``${environment}``;
- ``${secret:NAME}`` is a random value generated once per test session: the same everywhere
  in the session, different in the next one;
- ``$${`` stands for a literal ``${``.
Helm charts use their own templating: their ``values`` are passed to ``helm template``, and
placeholders inside those values (``{"password": "${secret:db}"}``) are filled first.
"""

from __future__ import annotations

import bisect
import json
import re
import secrets
import string
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubefixtures.declarations import BUILTIN_PLACEHOLDERS
from kubefixtures.errors import RenderError
from kubefixtures.executables import OutputTooLarge, find_tool, run_bounded
from kubefixtures.limits import MAX_FILE_BYTES, MAX_TOOL_OUTPUT_BYTES, describe_size, read_text
from kubefixtures.yamlinput import ExpansionBudget, YAMLInputError, load_document, load_documents

__all__ = [
    "BUILTIN_PLACEHOLDERS",
    "KUSTOMIZATION_FILES",
    "RenderContext",
    "RenderedObject",
    "Secrets",
    "apply_image_overrides",
    "find_helm",
    "parse_manifests",
    "render_sources",
    "render_text",
    "substitute",
]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*"
_VALUE_PLACEHOLDER = re.compile(_NAME)
_SECRET_PLACEHOLDER = re.compile(r"secret:([A-Za-z0-9][A-Za-z0-9_.-]*)")
# `$${` is an escape; otherwise `${` starts a placeholder that must close on the same line.
_TOKEN = re.compile(r"\$\$\{|\$\{(?P<body>[^}\n]*)(?P<close>\}?)")
# What YAML reads as a line break (YAML 1.1 counts NEL, LS and PS too).
_LINE_BREAK = re.compile("[\r\n\x85\u2028\u2029]")
_YAML_SUFFIXES = (".yaml", ".yml", ".json")
# The names kustomize looks for in a directory.
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_RENDER_TIMEOUT_SECONDS = 120  # helm template, kubectl kustomize
_SECRET_LENGTH = 24


class Secrets:
    """Per-session generated secrets: ``get(name)`` returns the same value all session long."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        with self._lock:
            if name not in self._values:
                alphabet = string.ascii_letters + string.digits
                # A letter first: YAML never reads the value as a number, bool or null.
                self._values[name] = secrets.choice(string.ascii_letters) + "".join(
                    secrets.choice(alphabet) for _ in range(_SECRET_LENGTH - 1)
                )
            return self._values[name]

    def __repr__(self) -> str:
        return f"Secrets(names={sorted(self._values)})"


@dataclass
class RenderContext:
    """What placeholders can refer to, plus the overrides applied to every rendered object."""

    namespace: str
    session_id: str
    environment: str
    values: Mapping[str, Any] = field(default_factory=dict)
    # YAML files of values, merged in order, under ``values`` (which win).
    values_files: Sequence[Path] = ()
    secrets: Secrets = field(default_factory=Secrets)
    image_overrides: Mapping[str, str] = field(default_factory=dict)
    used_secrets: set[str] = field(default_factory=set)

    def builtins(self) -> dict[str, str]:
        return {
            "environment": self.environment,
            "namespace": self.namespace,
            "session_id": self.session_id,
        }

    def secret(self, name: str) -> str:
        self.used_secrets.add(name)
        return self.secrets.get(name)


@dataclass(frozen=True)
class RenderedObject:
    """One Kubernetes object and where it came from (``file:line``)."""

    manifest: dict[str, Any]
    location: str

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def api_version(self) -> str:
        return str(self.manifest["apiVersion"])

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


# --- placeholders -------------------------------------------------------------------------


def substitute(
    text: str,
    file: str,
    lookup: Callable[[str], str | None],
    location_of: Callable[[int], str] | None = None,
) -> str:
    """Fill the placeholders of ``text``; ``lookup`` returns None for an unknown one.

    ``file`` is only used in error messages, which read ``file:line: ...`` (or
    ``location_of(line): ...``).
    """
    line_starts = [0] + [match.end() for match in re.finditer(r"\n", text)]

    def line_of(offset: int) -> int:
        return bisect.bisect_right(line_starts, offset)

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        line = line_of(match.start())
        where = location_of(line) if location_of else f"{file}:{line}"
        body = match.group("body")
        if not match.group("close"):
            raise RenderError(where, f"unterminated placeholder {match.group(0)!r}")
        placeholder = "${" + body + "}"
        if not (_VALUE_PLACEHOLDER.fullmatch(body) or _SECRET_PLACEHOLDER.fullmatch(body)):
            raise RenderError(
                where,
                f"invalid placeholder {placeholder} "
                "(use ${name}, ${a.b} or ${secret:NAME}; write $${ for a literal ${)",
            )
        value = lookup(body)
        if value is None:
            raise RenderError(where, f"unknown placeholder {placeholder}")
        if _LINE_BREAK.search(value):
            # Substitution is textual: a line break would let a value add keys, list items
            # or whole objects to the manifest instead of filling in one scalar.
            raise RenderError(
                where,
                f"the value of {placeholder} spans several lines, which would change the "
                "YAML around it; pass json.dumps(text) for multi-line text",
            )
        return value

    return _TOKEN.sub(replace, text)


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    # Lists and mappings become JSON, which is YAML flow syntax.
    return json.dumps(value)


def _lookup_in(
    context: RenderContext, known_values: Mapping[str, Any]
) -> Callable[[str], str | None]:
    builtins = context.builtins()

    def lookup(body: str) -> str | None:
        secret = _SECRET_PLACEHOLDER.fullmatch(body)
        if secret:
            return context.secret(secret.group(1))
        if body in builtins:
            return builtins[body]
        current: Any = known_values
        for part in body.split("."):
            if not isinstance(current, Mapping) or part not in current:
                return None
            current = current[part]
        return _scalar_text(current)

    return lookup


def _resolve_values(context: RenderContext) -> Any:
    """The values with placeholders inside their strings filled (built-ins and secrets only)."""
    lookup = _lookup_in(context, {})

    def resolve(value: Any, path: str) -> Any:
        if isinstance(value, str):
            return substitute(value, f"values[{path}]", lookup)
        if isinstance(value, Mapping):
            return {
                key: resolve(item, f"{path}.{key}" if path else str(key))
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [resolve(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return value

    merged: dict[str, Any] = {}
    for path in context.values_files:
        merged = _merged(merged, _values_file(path))
    return resolve(_merged(merged, context.values), "")


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; mappings merge key by key (as Helm merges values)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _values_file(path: Path) -> Mapping[str, Any]:
    try:
        loaded = load_document(read_text(path))
    except YAMLInputError as error:
        where = f"{path}:{error.line}" if error.line is not None else str(path)
        raise RenderError(where, f"invalid YAML: {error.problem}") from None
    except (OSError, ValueError) as error:  # unreadable, not UTF-8, too large
        raise RenderError(str(path), f"values file cannot be read: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise RenderError(
            str(path), f"a values file must hold a mapping, not {type(loaded).__name__}"
        )
    return loaded


# --- YAML ---------------------------------------------------------------------------------


def parse_manifests(
    text: str,
    file: str,
    location_of: Callable[[int], str] | None = None,
    budget: ExpansionBudget | None = None,
) -> list[RenderedObject]:
    """Every object in a multi-document YAML ``text`` (``kind: List`` items flattened).

    ``location_of(line)`` turns a 1-based line into the location shown in errors (Helm output
    maps it back to the template it came from); by default ``file:line``. The YAML is read
    within kubefixtures.yamlinput's bounds (nesting, alias expansion against ``budget``,
    no duplicate keys).
    """

    def where(line: int) -> str:
        return location_of(line) if location_of else f"{file}:{line}"

    objects: list[RenderedObject] = []
    try:
        for line, document in load_documents(text, budget=budget):
            objects.extend(_objects_of(document, where(line)))
    except YAMLInputError as error:
        raise RenderError(where(error.line) if error.line else file, error.problem) from None
    return objects


def _objects_of(document: Any, where: str) -> Iterator[RenderedObject]:
    if document is None:
        return
    if not isinstance(document, dict):
        raise RenderError(where, f"a document must be a mapping, not {type(document).__name__}")
    for key in ("apiVersion", "kind"):
        if not isinstance(document.get(key), str) or not document[key]:
            raise RenderError(where, f"object without {key}")
    if document["kind"].endswith("List") and isinstance(document.get("items"), list):
        for item in document.get("items") or []:
            yield from _objects_of(item, where)
        return
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise RenderError(where, f"{document['kind']} without metadata.name")
    if document["kind"] == "Namespace":
        raise RenderError(
            where,
            "Namespace objects are not allowed: kubefixtures creates the environment's "
            "namespace; refer to it as ${namespace}",
        )
    yield RenderedObject(manifest=document, location=where)


# --- sources ------------------------------------------------------------------------------


def render_sources(sources: Sequence[Path], context: RenderContext) -> list[RenderedObject]:
    """Render every source in order; raise RenderError on the first problem."""
    values = _resolve_values(context)
    lookup = _lookup_in(context, values)
    budget = ExpansionBudget()  # for all the sources together
    objects: list[RenderedObject] = []
    for source in sources:
        if _is_chart(source):
            objects.extend(_render_chart(source, context, values, budget))
        elif _is_kustomization(source):
            objects.extend(_render_kustomization(source, lookup, budget))
        elif source.is_dir():
            files = sorted(
                path
                for path in source.rglob("*")
                if path.suffix in _YAML_SUFFIXES
                and path.is_file()
                and not any(part.startswith(".") for part in path.relative_to(source).parts)
            )
            if not files:
                raise RenderError(str(source), "no .yaml, .yml or .json files in this directory")
            for path in files:
                if path.name in KUSTOMIZATION_FILES:
                    # Read as manifests it would fail on "Kustomization without metadata.name".
                    raise RenderError(
                        str(path),
                        "a kustomization inside a directory of manifests: give its directory "
                        f"({path.parent}) as the source to render it with kustomize",
                    )
            for path in files:
                objects.extend(_render_file(path, lookup, budget))
        elif source.is_file():
            objects.extend(_render_file(source, lookup, budget))
        else:
            raise RenderError(str(source), "no such file or directory")
    _check_duplicates(objects)
    for rendered in objects:
        _check_namespace(rendered, context.namespace)
        apply_image_overrides(rendered.manifest, context.image_overrides)
    return objects


def render_text(text: str, file: str, context: RenderContext) -> list[RenderedObject]:
    """Render YAML ``text`` as if read from ``file`` (named in errors): objects handed over
    in code (``env.apply({...})``) go through the same rules as sources."""
    lookup = _lookup_in(context, _resolve_values(context))
    objects = parse_manifests(substitute(text, file, lookup), file, budget=ExpansionBudget())
    _check_duplicates(objects)
    for rendered in objects:
        _check_namespace(rendered, context.namespace)
        apply_image_overrides(rendered.manifest, context.image_overrides)
    return objects


def _is_chart(source: Path) -> bool:
    return (source.is_dir() and (source / "Chart.yaml").is_file()) or (
        source.is_file() and source.name.endswith(".tgz")
    )


def _is_kustomization(source: Path) -> bool:
    return source.is_dir() and any((source / name).is_file() for name in KUSTOMIZATION_FILES)


def _render_file(
    path: Path, lookup: Callable[[str], str | None], budget: ExpansionBudget
) -> list[RenderedObject]:
    try:
        text = read_text(path, limit=MAX_FILE_BYTES)
    except OSError as error:
        raise RenderError(str(path), f"cannot be read: {error.strerror or error}") from None
    except ValueError as error:  # not UTF-8, too large
        raise RenderError(str(path), str(error)) from None
    return parse_manifests(substitute(text, str(path), lookup), str(path), budget=budget)


def _check_duplicates(objects: Sequence[RenderedObject]) -> None:
    seen: dict[tuple[str, str, str], str] = {}
    for rendered in objects:
        group = rendered.api_version.rpartition("/")[0]
        key = (group, rendered.kind, rendered.name)
        if key in seen:
            raise RenderError(rendered.location, f"{rendered} is also defined at {seen[key]}")
        seen[key] = rendered.location


def _check_namespace(rendered: RenderedObject, namespace: str) -> None:
    declared = rendered.manifest["metadata"].get("namespace")
    if declared not in (None, "", namespace):
        raise RenderError(
            rendered.location,
            f"{rendered} sets metadata.namespace {declared!r}; leave it out or use ${{namespace}}",
        )


# --- Helm ---------------------------------------------------------------------------------


def find_helm() -> str:
    """The helm executable: on PATH, else next to the Python executable (a venv's bin/)."""
    return _find_renderer("helm", "the helm CLI is needed to render Helm charts")


def _find_renderer(tool: str, needed: str) -> str:
    found = find_tool(tool)
    if found is None:
        raise RenderError(
            tool,
            f"{needed} but was found neither on PATH nor next to {sys.executable} "
            "(`kubefixtures cluster up` links the cluster's kubectl and helm there)",
        )
    return str(found)


def _run_renderer(command: list[str], source: Path, what: str) -> tuple[int, bytes, str]:
    """Run a rendering tool (helm template, kubectl kustomize) within time and output
    bounds: its exit status, stdout, and the end of its stderr as text."""
    try:
        done = run_bounded(command, timeout=_RENDER_TIMEOUT_SECONDS, limit=MAX_TOOL_OUTPUT_BYTES)
    except subprocess.TimeoutExpired:
        raise RenderError(
            str(source), f"{what} took more than {_RENDER_TIMEOUT_SECONDS} s"
        ) from None
    except OutputTooLarge:
        raise RenderError(
            str(source), f"{what} printed more than {describe_size(MAX_TOOL_OUTPUT_BYTES)}"
        ) from None
    except OSError as error:  # not executable, vanished since it was found
        raise RenderError(str(source), f"{what} could not run: {error}") from None
    return done.returncode, done.stdout, done.stderr.decode("utf-8", errors="replace")


def _decoded(output: bytes, source: Path, tool: str, what: str) -> str:
    try:
        return output.decode("utf-8")
    except UnicodeDecodeError as error:
        line = output.count(b"\n", 0, error.start) + 1
        raise RenderError(
            f"{source} ({tool} output line {line})", f"{what} printed text that is not UTF-8"
        ) from None


def _render_chart(
    chart: Path, context: RenderContext, values: Any, budget: ExpansionBudget
) -> list[RenderedObject]:
    helm = find_helm()
    release = re.sub(r"[^a-z0-9-]+", "-", context.environment.lower()).strip("-")[:53] or "env"
    with tempfile.TemporaryDirectory(prefix="kubefixtures-helm-") as scratch:
        values_file = Path(scratch) / "values.json"
        # Values may hold generated secrets: the file is private and deleted right after.
        values_file.touch(mode=0o600)
        values_file.write_text(json.dumps(values), encoding="utf-8")
        command = [
            helm, "template", release, str(chart),
            "--namespace", context.namespace,
            "--skip-tests",
            "--include-crds",  # the chart's crds/ directory, applied first like any CRD
            "--values", str(values_file),
        ]  # fmt: skip
        returncode, stdout, stderr = _run_renderer(command, chart, "helm template")
    if returncode != 0:
        raise _helm_error(chart, stderr)
    output = _decoded(stdout, chart, "helm", "helm template")
    return parse_manifests(output, str(chart), _helm_locator(output, chart), budget)


# `template: web/templates/x.yaml:9:18: ...`, `parse error at (web/templates/x.yaml:3): ...`,
# `YAML parse error on web/templates/x.yaml: ...`, `execution error at (web/charts/...)`
_HELM_TEMPLATE = re.compile(
    r"(?P<template>[\w.-]+/(?:charts/[\w.-]+/)*(?:templates|crds)/[^\s:()\"]+)"
    r"(?::(?P<line>\d+))?(?::\d+)?"
)


def _helm_error(chart: Path, stderr: str) -> RenderError:
    """One line: the template (under the chart directory) and line, then helm's reason."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")] or lines or ["no output"]
    message = errors[-1].removeprefix("Error: ")
    found = _HELM_TEMPLATE.search(message)
    if found is None:
        return RenderError(str(chart), f"helm template failed: {message}")
    template = chart / found.group("template").partition("/")[2]
    where = f"{template}:{found.group('line')}" if found.group("line") else str(template)
    reason = message[found.end() :].lstrip("):; ") or message
    # `executing "web/templates/x.yaml" at <.Values.a.b>: nil pointer ...`: the part after
    reason = re.sub(r'^executing "[^"]*" at ', "", reason)
    return RenderError(where, f"helm template failed: {reason}")


def _helm_locator(output: str, chart: Path) -> Callable[[int], str]:
    """Map a line of helm's output to the template it came from (``# Source: chart/x.yaml``)."""
    sources: list[tuple[int, str]] = []
    for number, line in enumerate(output.splitlines(), start=1):
        if line.startswith("# Source: "):
            template = line.removeprefix("# Source: ").strip()
            # helm names templates "<chart name>/templates/x.yaml"; show them under the chart dir
            sources.append((number, str(chart / template.partition("/")[2])))

    def location_of(line: int) -> str:
        index = bisect.bisect_right([start for start, _ in sources], line) - 1
        if index < 0:
            return f"{chart} (helm output line {line})"
        start, template = sources[index]
        return f"{template} (rendered line {line - start})"

    return location_of


# --- kustomize --------------------------------------------------------------------------


def _render_kustomization(
    directory: Path, lookup: Callable[[str], str | None], budget: ExpansionBudget
) -> list[RenderedObject]:
    """``kubectl kustomize DIR`` (the kustomize built into kubectl: no plugins, no Helm
    inflation, load restrictions as kustomize sets them), then the placeholders."""
    kubectl = _find_renderer(
        "kubectl", "kubectl (its built-in kustomize) is needed to render kustomizations"
    )
    what = "kubectl kustomize"
    returncode, stdout, stderr = _run_renderer(
        [kubectl, "kustomize", str(directory.absolute())], directory, what
    )
    if returncode != 0:
        raise _kustomize_error(directory, stderr)
    output = _decoded(stdout, directory, "kustomize", what)
    location_of = _kustomize_locator(output, directory)
    return parse_manifests(
        substitute(output, str(directory), lookup, location_of), str(directory), location_of, budget
    )


# kubectl builds that log through klog print `E1201 10:45:48.337682  8313 run.go:72]
# "command failed" err="<Go-quoted message>"` instead of `error: <message>`.
_KLOG_ERROR = re.compile(r'^[EF]\d{4} [^\]]*\] "[^"]*" err="(?P<message>(?:[^"\\]|\\.)*)"')


def _kustomize_error(directory: Path, stderr: str) -> RenderError:
    """One line: the directory, then kustomize's own message (kubectl prints it after
    ``error:``, sometimes over several lines, or as a klog line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        logged = _KLOG_ERROR.match(line)
        if logged:
            message = _unquoted(logged.group("message"))
            break
    else:
        starts = [index for index, line in enumerate(lines) if line.lower().startswith("error:")]
        message = " ".join(lines[starts[0] :] if starts else lines[-1:]) or "no output"
        message = re.sub(r"^error:\s*", "", message, flags=re.IGNORECASE)
    return RenderError(str(directory), f"kustomize failed: {' '.join(message.split())}")


def _unquoted(go_quoted: str) -> str:
    try:
        return str(json.loads(f'"{go_quoted}"'))  # Go's escapes are JSON's, but for \x..
    except ValueError:
        return go_quoted.replace('\\"', '"')


def _kustomize_locator(output: str, directory: Path) -> Callable[[int], str]:
    """Map a line of kustomize's output to the object it belongs to: kustomize keeps no
    trace of the file an object came from, but its kind and name find it."""
    documents: list[tuple[int, str]] = []  # (first line, "kind/name")
    start, kind, name, in_metadata = 1, "", "", False
    for number, line in enumerate([*output.splitlines(), "---"], start=1):
        if line.startswith("---"):
            documents.append((start, f"{kind.lower()}/{name}" if kind and name else ""))
            start, kind, name, in_metadata = number + 1, "", "", False
        elif line.startswith("kind:"):
            kind = line.removeprefix("kind:").strip().strip("'\"")
        elif line.startswith("metadata:"):
            in_metadata = True
        elif not line.startswith(" "):
            in_metadata = False
        elif in_metadata and not name and line.startswith("  name:"):
            name = line.removeprefix("  name:").strip().strip("'\"")
    starts = [first for first, _ in documents]

    def location_of(line: int) -> str:
        index = bisect.bisect_right(starts, line) - 1
        found = documents[index][1] if index >= 0 else ""
        return f"{directory} ({found + ', ' if found else ''}kustomize output line {line})"

    return location_of


# --- images -------------------------------------------------------------------------------


def _normalised(image: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/", "library/"):
        if image.startswith(prefix):
            return image.removeprefix(prefix)
    return image


def _repository(image: str) -> str:
    image = image.partition("@")[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > slash else image


def _override_for(image: str, overrides: Mapping[str, str]) -> str | None:
    normalised = {_normalised(name): target for name, target in overrides.items()}
    exact = normalised.get(_normalised(image))
    if exact is not None:
        return exact
    return normalised.get(_repository(_normalised(image)))


def _pod_specs(node: Any) -> Iterator[dict[str, Any]]:
    """Every pod spec in an object, whatever the kind (Deployment, CronJob, custom resources)."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield node
        for value in node.values():
            yield from _pod_specs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _pod_specs(value)


def apply_image_overrides(manifest: dict[str, Any], overrides: Mapping[str, str]) -> None:
    """Replace container images in place; an overridden container pulls IfNotPresent.

    Overrides point at images loaded into the cluster's nodes, which a pull policy of
    ``Always`` (the default for ``:latest`` and untagged images) would try to fetch.
    """
    if not overrides:
        return
    for spec in _pod_specs(manifest):
        for key in ("initContainers", "containers", "ephemeralContainers"):
            for container in spec.get(key) or []:
                if not isinstance(container, dict) or not isinstance(container.get("image"), str):
                    continue
                replacement = _override_for(container["image"], overrides)
                if replacement is not None:
                    container["image"] = replacement
                    if container.get("imagePullPolicy") in (None, "Always"):
                        container["imagePullPolicy"] = "IfNotPresent"
