"""Config tables as frozen dataclasses, checked with every problem reported.

A table is a :class:`Section` subclass: a frozen, keyword-only dataclass whose fields
are declared with :func:`setting` (the description docs/config.md shows, bounds, a
pattern, a `check` function). :func:`parse` turns a TOML table into an instance or
raises :class:`Invalid` listing every problem with its key path; a section built in
Python is checked by the same rules when it is created (relative paths then resolve
against the current directory) and raises :class:`Invalid` too.

Types understood: ``str``, ``int``, ``float``, ``bool``, ``Path``, ``Literal[...]``,
``X | None``, ``tuple[X, ...]``, ``dict[K, V]``, ``Any``, nested sections, and
``str | Section`` (a value or a table). Values keep their TOML types: a string is
never a number, a boolean never a number; an integer is a float. ``None`` is only a
default (TOML has no null). Messages follow pydantic's wording, which earlier releases
printed, so check-config reads as before.

A field's `check(value, context)` runs after the type and bounds passed (never on
``None``); it returns
the value to keep (a resolved path, say) or raises ``ValueError`` whose text is the
message. A section's ``_check()`` runs once every field is valid, for rules across
fields; its ``ValueError`` is reported at the section's own key path.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

__all__ = ["Context", "Invalid", "Location", "Section", "Spec", "parse", "setting", "spec_of",
           "type_hints"]

Location = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Context:
    """What checks may depend on: the folder relative paths resolve against,
    whether files must exist, whether a file without ports is acceptable."""

    base: Path
    check_files: bool = False
    need_ports: bool = True


class Invalid(ValueError):
    """Problems found, each ``(key path, message)``; the path is relative to the
    table that was checked."""

    def __init__(self, problems: list[tuple[Location, str]]) -> None:
        super().__init__("; ".join(
            f"{'.'.join(map(str, loc))}: {message}" if loc else message
            for loc, message in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Spec:
    """One field's rules besides its type (see :func:`setting`)."""

    description: str
    alias: str | None = None
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    check: Callable[[Any, Context], Any] | None = None
    check_default: bool = False
    key: Callable[[Any], Any] | None = None
    exclude: bool = False


REQUIRED: Any = dataclasses.MISSING


def setting(default: Any = REQUIRED, *, factory: Callable[[], Any] | None = None,
            description: str, **rules: Any) -> Any:
    """A section's field: `default` (or `factory`), its description and its rules.

    Rules: `alias` (the TOML key, when it differs from the field's name), `gt`, `ge`,
    `le` (numbers), `min_length`, `max_length`, `pattern` (strings, the pattern
    anchored by the caller), `check(value, context)`, `check_default` (run `check`
    on the default too), `key` (converts and checks a dict's keys, ValueError on
    a bad one), `exclude` (not a TOML key).
    """
    metadata = {"spec": Spec(description=description, **rules)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def spec_of(item: dataclasses.Field[Any]) -> Spec:
    """The rules :func:`setting` attached to a field."""
    spec: Spec = item.metadata["spec"]
    return spec


class Section:
    """Base of the config tables (subclasses are frozen keyword-only dataclasses)."""

    def __post_init__(self) -> None:
        values = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}  # type: ignore[arg-type]
        problems: list[tuple[Location, str]] = []
        checked = _check_fields(type(self), values, Context(Path.cwd()), (), problems,
                                from_toml=False)
        if problems:
            raise Invalid(problems)
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        try:
            self._check()
        except ValueError as error:
            raise Invalid([((), str(error))]) from None

    def _check(self) -> None:
        """Rules across fields; raise ValueError."""


def parse(cls: type[Section], table: Any, context: Context) -> Any:
    """An instance of `cls` from a TOML table; :class:`Invalid` lists every problem."""
    problems: list[tuple[Location, str]] = []
    result = _section(cls, table, context, (), problems)
    if problems:
        raise Invalid(problems)
    return result


_MISSING = object()
_NO_RULES = Spec("")
_hints: dict[type, dict[str, Any]] = {}


def type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a section's fields."""
    hints = _hints.get(cls)
    if hints is None:
        hints = _hints[cls] = typing.get_type_hints(cls)
    return hints


def _section(cls: type[Section], table: Any, context: Context, loc: Location,
             problems: list[tuple[Location, str]]) -> Any:
    if not isinstance(table, dict):
        problems.append((loc, "Input should be a table"))
        return _MISSING
    before = len(problems)
    values = _check_fields(cls, table, context, loc, problems, from_toml=True)
    known = {spec_of(item).alias or item.name for item in dataclasses.fields(cls)  # type: ignore[arg-type]
             if not spec_of(item).exclude}
    problems.extend(((*loc, key), "unknown key") for key in table if key not in known)
    if len(problems) > before:
        return _MISSING
    instance = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(instance, name, value)
    try:
        instance._check()
    except ValueError as error:
        problems.append((loc, str(error)))
        return _MISSING
    return instance


def _check_fields(cls: type[Section], values: dict[str, Any], context: Context,
                  loc: Location, problems: list[tuple[Location, str]], *,
                  from_toml: bool) -> dict[str, Any]:
    """Each field of `cls` checked; `values` by TOML key (from_toml) or field name."""
    hints = type_hints(cls)
    checked: dict[str, Any] = {}
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        spec = spec_of(item)
        key = (spec.alias or item.name) if from_toml else item.name
        value = values.get(key, _MISSING) if not (from_toml and spec.exclude) else _MISSING
        where = (*loc, key)
        if value is _MISSING:
            if item.default is not dataclasses.MISSING:
                value = item.default
            elif item.default_factory is not dataclasses.MISSING:
                value = item.default_factory()
            else:
                problems.append((where, "required key is missing"))
                continue
            if not spec.check_default:
                checked[item.name] = value
                continue
        before = len(problems)
        value = _value(hints[item.name], value, spec, context, where, problems)
        if len(problems) == before and spec.check is not None and value is not None:
            try:
                value = spec.check(value, context)
            except ValueError as error:
                problems.append((where, str(error)))
        checked[item.name] = value
    return checked


def _shown(value: Any) -> str:
    if not isinstance(value, str | int | float | bool):
        return ""
    text = repr(value)
    return f" (got {text if len(text) <= 40 else text[:37] + '...'})"


def _choice(choice: Any) -> str:
    return repr(choice) if isinstance(choice, str) else str(choice)


def _value(kind: Any, value: Any, spec: Spec, context: Context, loc: Location,
           problems: list[tuple[Location, str]]) -> Any:
    """`value` checked against type `kind` and the bounds of `spec`."""
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(kind) if arg is not type(None)]
        if value is None and len(options) < len(get_args(kind)):
            return None
        if len(options) == 1:
            return _value(options[0], value, spec, context, loc, problems)
        table = next(arg for arg in options if isinstance(arg, type) and issubclass(arg, Section))
        if isinstance(value, dict | table):
            return _value(table, value, spec, context, loc, problems)
        if isinstance(value, str):
            return _value(str, value, spec, context, loc, problems)
        problems.append((loc, "Input should be a string or a table" + _shown(value)))
        return value
    if origin is Literal:
        choices = get_args(kind)
        if isinstance(value, bool) and not any(isinstance(c, bool) for c in choices):
            numbers = all(isinstance(c, int | float) for c in choices)
            problems.append((loc, "Input should be a number, not a boolean" if numbers else
                             _one_of(choices) + _shown(value)))
            return value
        for choice in choices:
            numbers = isinstance(value, int | float) and isinstance(choice, int | float)
            if value == choice and (type(value) is type(choice) or numbers):
                return choice
        problems.append((loc, _one_of(choices) + _shown(value)))
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            problems.append((loc, "Input should be an array"))
            return value
        (item_kind, _ellipsis) = get_args(kind)
        return tuple(_value(item_kind, item, _NO_RULES, context, (*loc, index), problems)
                     for index, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            problems.append((loc, "Input should be a table"))
            return value
        _key_kind, value_kind = get_args(kind)
        result = {}
        for key, item in value.items():
            if spec.key is not None:
                try:
                    key = spec.key(key)
                except ValueError as error:
                    problems.append(((*loc, key), str(error)))
            item = _value(value_kind, item, _NO_RULES, context, (*loc, str(key)), problems)
            result[key] = item
        return result
    if isinstance(kind, type) and issubclass(kind, Section):
        if isinstance(value, kind):
            return value
        return _section(kind, value, context, loc, problems)
    if kind is Any:
        return value
    if kind is bool:
        if not isinstance(value, bool):
            problems.append((loc, "Input should be a valid boolean" + _shown(value)))
        return value
    if kind is Path:
        if isinstance(value, str | os.PathLike):
            return Path(value)
        problems.append((loc, "Input should be a path string" + _shown(value)))
        return value
    if kind is str:
        if not isinstance(value, str):
            problems.append((loc, "Input should be a valid string" + _shown(value)))
            return value
        return _string_rules(value, spec, loc, problems)
    if kind in (int, float):
        wanted = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, wanted):
            name = "a valid integer" if kind is int else "a valid number"
            problems.append((loc, f"Input should be {name}" + _shown(value)))
            return value
        _number_rules(value, spec, loc, problems)
        return float(value) if kind is float else value
    raise TypeError(f"config type {kind!r} is not supported")


def _one_of(choices: tuple[Any, ...]) -> str:
    shown = [_choice(choice) for choice in choices]
    listed = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]
    return f"Input should be {listed}"


def _string_rules(value: str, spec: Spec, loc: Location,
                  problems: list[tuple[Location, str]]) -> str:
    for bound, word, broken in ((spec.min_length, "least", spec.min_length is not None
                                 and len(value) < spec.min_length),
                                (spec.max_length, "most", spec.max_length is not None
                                 and len(value) > spec.max_length)):
        if broken:
            plural = "" if bound == 1 else "s"
            problems.append((loc, f"String should have at {word} {bound} character{plural}"
                             + _shown(value)))
            return value
    if spec.pattern is not None and not re.search(spec.pattern, value):
        problems.append((loc, f"String should match pattern '{spec.pattern}'" + _shown(value)))
    return value


def _number_rules(value: float, spec: Spec, loc: Location,
                  problems: list[tuple[Location, str]]) -> None:
    for bound, words, broken in (
            (spec.gt, "greater than", spec.gt is not None and not value > spec.gt),
            (spec.ge, "greater than or equal to", spec.ge is not None and not value >= spec.ge),
            (spec.le, "less than or equal to", spec.le is not None and not value <= spec.le)):
        if broken:
            problems.append((loc, f"Input should be {words} {bound}" + _shown(value)))
            return
