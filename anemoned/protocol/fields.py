"""Parameter constraints as data, and the one decoder that applies them.

A method's params are a frozen, keyword-only dataclass whose fields carry
their constraint in `metadata["spec"]` (made by `param`). `decode` turns a
request's params object into an instance, or raises INVALID_PARAMS naming
the first bad field; `encode` turns an instance back into the params
object (what a person did not set is left out). Stdlib only: anemonectl
imports this too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from .wire import ErrorCode, RpcError, invalid_params

T = TypeVar("T")
REQUIRED: Any = dataclasses.MISSING


@dataclass(frozen=True)
class Text:
    max_len: int = 4096
    choices: tuple[str, ...] = ()

    def check(self, name: str, value: Any) -> Any:
        if not isinstance(value, str):
            raise invalid_params(name, "must be a string")
        if len(value) > self.max_len:
            raise invalid_params(name, f"must be at most {self.max_len} characters")
        if self.choices and value not in self.choices:
            listed = " or ".join(self.choices) if len(self.choices) == 2 else "one of " + ", ".join(self.choices)
            raise invalid_params(name, f"must be {listed}")
        return value


@dataclass(frozen=True)
class Whole:
    lo: int = 0
    hi: int = 2**31

    def check(self, name: str, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_params(name, "must be a whole number")
        if not self.lo <= value <= self.hi:
            raise invalid_params(name, f"must be from {self.lo} to {self.hi}")
        return value


@dataclass(frozen=True)
class Flag:
    def check(self, name: str, value: Any) -> Any:
        if not isinstance(value, bool):
            raise invalid_params(name, "must be true or false")
        return value


@dataclass(frozen=True)
class TextList:
    max_items: int = 1000

    def check(self, name: str, value: Any) -> Any:
        if not isinstance(value, list) or len(value) > self.max_items or not all(isinstance(v, str) for v in value):
            raise invalid_params(name, "must be a list of strings")
        return tuple(value)  # frozen all the way down


@dataclass(frozen=True)
class Object:
    def check(self, name: str, value: Any) -> Any:
        if not isinstance(value, dict):
            raise invalid_params(name, "must be an object")
        return value


Spec = Text | Whole | Flag | TextList | Object


def param(spec: Spec, default: Any = REQUIRED, doc: str = "", alt: bool = False) -> Any:
    """A params field: its constraint, its default (none: required), what
    it means, and whether it is the alternative of the field before it
    (the README writes `a? | b?`)."""
    meta = {"spec": spec, "doc": doc, "alt": alt}
    return dataclasses.field(default=default, metadata=meta)


def required(f: dataclasses.Field) -> bool:  # type: ignore[type-arg]
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def spec_of(f: dataclasses.Field) -> Spec:  # type: ignore[type-arg]
    return f.metadata["spec"]


def decode(cls: type[T], raw: dict[str, Any]) -> T:
    """Params object -> instance of cls. Fields are checked in declaration
    order, then unknown names; null counts as absent. Raises RpcError
    (INVALID_PARAMS, data.field) naming the first bad field."""
    if not isinstance(raw, dict):
        raise RpcError(ErrorCode.INVALID_PARAMS, "params: must be an object (named parameters)", {"field": "params"})
    values: dict[str, Any] = {}
    known = dataclasses.fields(cls)  # type: ignore[arg-type]
    for f in known:
        value = raw.get(f.name)
        if value is None:
            if required(f):
                raise invalid_params(f.name, "is required")
            continue
        values[f.name] = spec_of(f).check(f.name, value)
    names = {f.name for f in known}
    for name in raw:
        if name not in names:
            raise invalid_params(name, "unknown parameter")
    return cls(**values)


def encode(params: Any) -> dict[str, Any]:
    """Instance -> params object, leaving out None and unchanged defaults:
    the daemon applies the same defaults (they are these)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if value is None or (not required(f) and value == f.default):
            continue
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
