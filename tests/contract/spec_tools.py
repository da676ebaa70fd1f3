"""Load provider OpenAPI 3.0 specs from ../shared/specs and validate JSON instances against their schemas.

OpenAPI 3.0 schemas are almost JSON Schema; the differences handled here are ``nullable`` (becomes a
``"null"`` type or an ``anyOf`` with null), boolean ``exclusiveMinimum``/``exclusiveMaximum``, and keywords
JSON Schema does not know (``discriminator``, ``example``, ``xml``...), which are dropped. ``$ref`` pointers
stay as they are: the converted spec is the root document, so any pointer into it (including
``#/components/schemas/Event/properties/phoneNumber``) resolves, and recursive schemas are fine.

    spec = OpenApiSpec.load("vsco-workspace/workspace-openapi.json")
    spec.validate(body, spec.response_schema("/address-book", "get", 200))
    spec.validate(error, spec.component("responses", "unauthorizedError"))
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

__all__ = ["SPECS_DIR", "OpenApiSpec", "SpecError", "to_json_schema"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SPECS_DIR = (PROJECT_ROOT / ".." / "shared" / "specs").resolve()
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

_DROP = {"discriminator", "example", "examples", "xml", "externalDocs", "deprecated", "nullable"}
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")

format_checker = FormatChecker()


@format_checker.checks("ulid")
def _is_ulid(value: object) -> bool:
    return not isinstance(value, str) or bool(_ULID.match(value))


class SpecError(AssertionError):
    """An instance does not match the spec, or the spec has no such operation/response."""


def to_json_schema(node: Any) -> Any:
    """Convert one OpenAPI 3.0 schema (or a whole spec document) to JSON Schema 2020-12, recursively."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: to_json_schema(value) for key, value in node.items()
           if key not in _DROP and not key.startswith("x-")}
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), bool):
            if out.pop(bound) and limit in out:
                out[bound] = out.pop(limit)
    if node.get("nullable") is True:
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif kind is None:
            return {"anyOf": [out, {"type": "null"}]}
    return out


def _pointer_get(document: Any, pointer: str) -> Any:
    node = document
    for part in pointer.lstrip("#/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


class OpenApiSpec:
    """One provider spec: its operations, parameters and response schemas, ready for validation."""

    def __init__(self, document: Mapping[str, Any], name: str = "spec") -> None:
        self.name = name
        self.raw = document
        self.document = to_json_schema(dict(document))
        self._validators: dict[str, Draft202012Validator] = {}

    @classmethod
    def load(cls, relative_path: str) -> OpenApiSpec:
        """Load ``../shared/specs/<relative_path>`` (JSON, or YAML if PyYAML is installed); cached."""
        return _load(relative_path)

    # --- schemas ------------------------------------------------------------------------------------------

    def ref(self, pointer: str) -> dict[str, Any]:
        """A schema that validates against whatever ``pointer`` (``#/components/...``) designates."""
        _pointer_get(self.document, pointer)  # fail early on a typo
        return {"$ref": pointer}

    def component(self, section: str, name: str) -> dict[str, Any]:
        """``component("schemas", "Error")``, or ``component("responses", "unauthorizedError")`` (its JSON)."""
        if section == "responses":
            response = self._deref(self.raw["components"]["responses"][name])
            return self._content_schema(response, f"components.responses.{name}")
        return self.ref(f"#/components/{section}/{name}")

    def operations(self) -> Iterator[tuple[str, str]]:
        for path, item in self.raw["paths"].items():
            for method in item:
                if method in HTTP_METHODS:
                    yield path, method

    def operation(self, path: str, method: str) -> Mapping[str, Any]:
        try:
            return self.raw["paths"][path][method.lower()]
        except KeyError:
            raise SpecError(f"{self.name}: no operation {method.upper()} {path}") from None

    def parameters(self, path: str, method: str) -> dict[tuple[str, str], Mapping[str, Any]]:
        """(location, name) -> parameter object, path-level and operation-level, with $refs resolved."""
        item = self.raw["paths"][path]
        params = [*item.get("parameters", ()), *self.operation(path, method).get("parameters", ())]
        resolved = [self._deref(param) for param in params]
        return {(param["in"], param["name"]): param for param in resolved}

    def response_schema(self, path: str, method: str, status: int | str,
                        content_type: str = "application/json") -> dict[str, Any]:
        responses = self.operation(path, method).get("responses", {})
        response = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
        if response is None:
            raise SpecError(f"{self.name}: {method.upper()} {path} documents no {status} response")
        return self._content_schema(self._deref(response), f"{method.upper()} {path} {status}", content_type)

    def documents_response(self, path: str, method: str, status: int) -> bool:
        return str(status) in self.operation(path, method).get("responses", {})

    def _content_schema(self, response: Mapping[str, Any], where: str,
                        content_type: str = "application/json") -> dict[str, Any]:
        content = response.get("content") or {}
        media = content.get(content_type)
        if media is None or "schema" not in media:
            raise SpecError(f"{self.name}: {where} has no {content_type} body")
        return to_json_schema(media["schema"])  # type: ignore[no-any-return]

    def _deref(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        seen = 0
        while "$ref" in node:
            node = _pointer_get(self.raw, node["$ref"])
            seen += 1
            if seen > 20:
                raise SpecError(f"{self.name}: $ref loop")
        return node

    # --- validation ---------------------------------------------------------------------------------------

    def validator(self, schema: Mapping[str, Any]) -> Draft202012Validator:
        key = json.dumps(schema, sort_keys=True)
        cached = self._validators.get(key)
        if cached is None:
            root = {**self.document, **schema}  # refs resolve against the converted spec document
            cached = self._validators[key] = Draft202012Validator(root, format_checker=format_checker)
        return cached

    def errors(self, instance: Any, schema: Mapping[str, Any]) -> list[ValidationError]:
        return sorted(self.validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))

    def validate(self, instance: Any, schema: Mapping[str, Any]) -> None:
        """Raise ``SpecError`` listing every violation (with the JSON path of each)."""
        errors = self.errors(instance, schema)
        if errors:
            lines = [f"/{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:300]}" for e in errors[:20]]
            raise SpecError(f"{self.name}: {len(errors)} schema violation(s):\n" + "\n".join(lines))


@cache
def _load(relative_path: str) -> OpenApiSpec:
    path = SPECS_DIR / relative_path
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        document = yaml.safe_load(text)
    else:
        document = json.loads(text)
    return OpenApiSpec(document, name=relative_path)
