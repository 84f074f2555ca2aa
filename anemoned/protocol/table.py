"""The README's method table, rendered from protocol.methods (the drift
test compares it with the README). `python -m anemoned.protocol.table`
prints it."""
from __future__ import annotations

import dataclasses

from .fields import Text, required, spec_of
from .methods import METHOD_LIST, Method


def _params(method: Method) -> str:
    parts: list[str] = []
    for f in dataclasses.fields(method.params):
        name = f.name if required(f) else f"{f.name}?"
        if f.metadata.get("alt") and parts:
            parts[-1] += f" \\| {name}"
        else:
            parts.append(name)
    return f"`{', '.join(parts)}`" if parts else ""


def _choices(method: Method) -> list[str]:
    out = []
    for f in dataclasses.fields(method.params):
        spec = spec_of(f)
        if isinstance(spec, Text) and spec.choices:
            quoted = [f"`{c}`" for c in spec.choices]
            listed = ", ".join(quoted[:-1]) + " or " + quoted[-1]
            out.append(f"`{f.name}`: {listed}" + (f", default `{f.default}`" if not required(f) else ""))
    return out


def _result(method: Method) -> str:
    if isinstance(method.result, str):
        return method.result
    return "`{" + ", ".join(f.name for f in dataclasses.fields(method.result)) + "}`"


def render() -> str:
    rows = ["| method | params | result |", "|---|---|---|"]
    for method in METHOD_LIST:
        notes = [n for n in (method.note, *_choices(method)) if n]
        result = _result(method) + (f" ({'; '.join(notes)})" if notes else "")
        rows.append(f"| `{method.name}` | {_params(method)} | {result} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(render(), end="")
