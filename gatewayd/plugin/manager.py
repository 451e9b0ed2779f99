"""Loads plugins from the ``gatewayd`` entry-point group and indexes what they
provide, remembering which distribution each dialect and transport came from.

Hooks are called through pluggy (``manager.hook.gatewayd_transports()``), so
``wrapper=True``, old-style ``hookwrapper``, ``tryfirst`` and ``trylast`` work
as pluggy documents them: the index is built from what the outermost wrapper
hands back. After loading, :meth:`pluggy.PluginManager.check_pending` refuses
any ``@hookimpl`` whose name is not a gatewayd hook (a misspelt hook would
otherwise never run), naming the plugin and its distribution.

Where each object came from is recorded by a wrapper of gatewayd's own, the
innermost one (``trylast``): it sees every implementation's list, in the order
pluggy called them, before any plugin's wrapper. An object that a plugin's
wrapper adds or swaps in is credited to that wrapper's plugin.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from gatewayd.plugin import ENTRY_POINT_GROUP, PROJECT, PluginConfigError, hookimpl, spec
from gatewayd.plugin.entrypoints import entry_points

if TYPE_CHECKING:
    from gatewayd.dialects.base import Dialect, LazyDialect
    from gatewayd.transport import ClientRequest, Transport

__all__ = ["PluginError", "Plugins", "Provided", "load_plugins"]

IN_CODE = "(registered in code)"


class PluginError(Exception):
    """Two plugins claim the same dialect or link kind, or a plugin is broken."""


@dataclass(frozen=True, slots=True)
class Provided:
    """Something a plugin registered, and where it came from."""

    name: str
    summary: str
    plugin: str  # the plugin's registered name (entry-point name)
    distribution: str  # "gatewayd 0.1.0", or "(registered in code)"


class _Manager(pluggy.PluginManager):
    """pluggy's manager, remembering the distribution each entry-point plugin
    came from (``"name version"``)."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.distributions: dict[int, str] = {}


def _origin(manager: _Manager, plugin: object) -> tuple[str, str]:
    name = manager.get_name(plugin) or repr(plugin)
    return name, manager.distributions.get(id(plugin), IN_CODE)


class _Origins:
    """gatewayd's own innermost wrapper: which plugin returned which object."""

    def __init__(self, manager: _Manager) -> None:
        self.manager = manager
        self.by_object: dict[int, tuple[str, str]] = {}
        self.complete: dict[str, bool] = {}

    def _record(self, hook_name: str, results: list[Any]) -> None:
        caller = getattr(self.manager.hook, hook_name)
        # pluggy calls the last registered implementation first and keeps only
        # results that are not None; a None contributes nothing to credit.
        impls = [i for i in reversed(caller.get_hookimpls())
                 if not (i.wrapper or i.hookwrapper)]
        self.complete[hook_name] = len(impls) == len(results)
        if not self.complete[hook_name]:
            return  # an implementation returned None: see of()
        for impl, returned in zip(impls, results, strict=True):
            origin = _origin(self.manager, impl.plugin)
            for obj in returned if isinstance(returned, Iterable) else ():
                self.by_object[id(obj)] = origin

    @hookimpl(wrapper=True, trylast=True)
    def gatewayd_dialects(self) -> Generator[None, list[Any], list[Any]]:
        results = yield
        self._record("gatewayd_dialects", results)
        return results

    @hookimpl(wrapper=True, trylast=True)
    def gatewayd_transports(self) -> Generator[None, list[Any], list[Any]]:
        results = yield
        self._record("gatewayd_transports", results)
        return results

    def of(self, hook_name: str, obj: object) -> tuple[str, str]:
        """Where *obj* came from: its implementation, else the wrappers that
        could have added it, else the only implementation left."""
        if id(obj) in self.by_object:
            return self.by_object[id(obj)]
        impls = [i for i in getattr(self.manager.hook, hook_name).get_hookimpls()
                 if i.plugin is not self]
        wrappers = [i for i in impls if i.wrapper or i.hookwrapper]
        # Recorded per implementation: an unknown object was added by a wrapper.
        candidates = wrappers if wrappers and self.complete.get(hook_name) else impls
        origins = {_origin(self.manager, i.plugin) for i in candidates}
        if len(origins) == 1:
            return origins.pop()
        names = " or ".join(sorted(n for n, _ in origins))
        dists = " or ".join(sorted({d for _, d in origins}))
        return names or "(unknown)", dists or IN_CODE


def _flatten(hook_name: str, results: object) -> list[Any]:
    """One list per implementation, as pluggy collects them, made one list in
    registration order (pluggy calls the last registered first), the order
    ``gatewayd plugins`` lists them and clashes are reported in."""
    if not isinstance(results, list):
        raise PluginError(f"hook {hook_name} returned {type(results).__name__}, not a list "
                          "(a wrapper must return what it received)")
    flat: list[Any] = []
    for returned in reversed(results):
        if not isinstance(returned, Iterable):
            raise PluginError(f"a {hook_name} implementation returned "
                              f"{type(returned).__name__}, not a list")
        flat.extend(returned)
    return flat


class DialectTable(Mapping[str, "Dialect"]):
    """The dialects by name; a :class:`~gatewayd.dialects.base.LazyDialect` is
    imported the first time it is looked up (names and ``in`` import nothing).
    A dialect that fails to import is a :class:`PluginError` naming it."""

    def __init__(self) -> None:
        self._entries: dict[str, Dialect | LazyDialect] = {}

    def add(self, entry: Dialect | LazyDialect) -> None:
        self._entries[entry.name] = entry

    def __getitem__(self, name: str) -> Dialect:
        from gatewayd.dialects.base import LazyDialect

        entry = self._entries[name]
        if not isinstance(entry, LazyDialect):
            return entry
        try:
            dialect = self._entries[name] = entry.load()
        except Exception as exc:
            raise PluginError(f"dialect {name}: cannot load {entry.target}: {exc!r}") from exc
        return dialect

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


class Plugins:
    """The loaded plugins: dialects by name, transports by link kind.

    *disable* names dialects and transports to leave out (``[plugins]
    disable``), which frees their names and kinds for another plugin; a name
    that nothing provides is an error."""

    def __init__(self, manager: _Manager, disable: Iterable[str] = ()) -> None:
        self.manager = manager
        self.disabled = frozenset(disable)
        self.dialects = DialectTable()
        self.transports: dict[str, Transport] = {}
        self.provided_dialects: list[Provided] = []
        self.provided_transports: list[Provided] = []
        self._origins = _Origins(manager)
        manager.register(self._origins, name="gatewayd-origins")
        try:
            self._index()
        finally:
            manager.unregister(self._origins)
        provided = {p.name for p in self.provided_dialects + self.provided_transports}
        unknown = sorted(self.disabled - provided - self._skipped)
        if unknown:
            raise PluginError(f"[plugins] disable names {', '.join(unknown)}, which no plugin"
                              f" provides (known: {', '.join(sorted(provided | self._skipped))})")

    def route(self, request: ClientRequest) -> ClientRequest:
        """*request* as the ``gatewayd_route_link`` implementations decide it
        (unchanged when none does); :class:`~gatewayd.transport.Refused` (or
        another :class:`~gatewayd.transport.TransportError`) when refused."""
        routed: ClientRequest | None = self.manager.hook.gatewayd_route_link(request=request)
        return request if routed is None else routed

    def configure(self, tables: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
        """Hand each ``[plugin.<name>]`` table to its plugin; the problems found,
        as ``(key path, message)`` pairs (``plugin.<name>.<key>``)."""
        problems: list[tuple[str, str]] = []
        for name, table in tables.items():
            try:
                taken = self.manager.hook.gatewayd_configure(name=name, table=dict(table))
            except PluginConfigError as exc:
                problems += [(f"plugin.{name}.{key}" if key else f"plugin.{name}", message)
                             for key, message in exc.problems]
                continue
            if not any(taken):
                problems.append((f"plugin.{name}", f"no plugin named {name!r} takes"
                                 " configuration"))
        return problems

    def preload(self) -> None:
        """:meth:`~gatewayd.transport.Transport.preload` every transport; one
        that fails is a :class:`PluginError` naming it."""
        for transport in {id(t): t for t in self.transports.values()}.values():
            try:
                transport.preload()
            except Exception as exc:
                raise PluginError(f"transport {transport.name}: cannot load: {exc!r}") from exc

    def _call(self, hook_name: str) -> list[Any]:
        caller = getattr(self.manager.hook, hook_name)
        try:
            results = caller()
        except PluginError:
            raise
        except Exception as exc:  # a broken plugin must say who it is
            name, dist = self._raiser(caller.get_hookimpls(), exc)
            raise PluginError(f"plugin {name} (from {dist}): {hook_name} failed: {exc!r}"
                              ) from exc
        return _flatten(hook_name, results)

    def _raiser(self, impls: list[Any], exc: BaseException) -> tuple[str, str]:
        """The plugin whose implementation raised *exc*: the innermost frame
        of the traceback that runs one of the hook's functions."""
        codes = {getattr(i.function, "__code__", None): i.plugin for i in impls}
        found: object = None
        tb = exc.__traceback__
        while tb is not None:
            found = codes.get(tb.tb_frame.f_code, found)
            tb = tb.tb_next
        return _origin(self.manager, found) if found is not None else ("(unknown)", IN_CODE)

    def _index(self) -> None:
        self._skipped: set[str] = set()
        for dialect in self._call("gatewayd_dialects"):
            name, dist = self._origins.of("gatewayd_dialects", dialect)
            if dialect.name in self.disabled:
                self._skipped.add(dialect.name)
                continue
            if dialect.name in self.dialects:
                raise PluginError(
                    f"dialect {dialect.name!r} registered twice (again by {name})")
            self.dialects.add(dialect)
            self.provided_dialects.append(Provided(dialect.name, dialect.summary, name, dist))
        for transport in self._call("gatewayd_transports"):
            name, dist = self._origins.of("gatewayd_transports", transport)
            if transport.name in self.disabled:
                self._skipped.add(transport.name)
                continue
            for kind in sorted(transport.kinds):
                if kind in self.transports:
                    other = self.transports[kind].name
                    raise PluginError(
                        f"link kind {kind!r} served by both {other!r} and {transport.name!r}"
                    )
                self.transports[kind] = transport
            self.provided_transports.append(
                Provided(transport.name, transport.summary, name, dist)
            )


def _check_pending(manager: _Manager) -> None:
    """Refuse an ``@hookimpl`` that names no gatewayd hook."""
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        name, dist = _origin(manager, exc.plugin)
        known = ", ".join(sorted(n for n in vars(manager.hook) if not n.startswith("_")
                                 and getattr(manager.hook, n).has_spec()))
        raise PluginError(f"plugin {name} (from {dist}): {exc} (gatewayd's hooks: {known})"
                          ) from exc


def _code_name(manager: pluggy.PluginManager, plugin: object) -> str:
    """A readable name for a plugin registered in code: its module name, or
    its class name (numbered when taken), rather than pluggy's ``id()``."""
    base = getattr(plugin, "__name__", None) or type(plugin).__name__
    name, n = base, 1
    while manager.has_plugin(name):
        n += 1
        name = f"{base}-{n}"
    return name


def load_plugins(*extra: object, disable: Iterable[str] = ()) -> Plugins:
    """Load every plugin of the entry-point group, plus *extra* objects
    registered in code (tests, embedding), leaving out the dialects and
    transports *disable* names."""
    manager = _Manager()
    manager.add_hookspecs(spec)
    for entry in entry_points(ENTRY_POINT_GROUP):
        if manager.has_plugin(entry.name) or manager.is_blocked(entry.name):
            continue  # as pluggy's load_setuptools_entrypoints: the first one wins
        try:
            plugin = entry.load()
            manager.register(plugin, name=entry.name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"cannot load plugin {entry.name} (from {entry.distribution}):"
                              f" {exc}") from exc
        except Exception as exc:  # a broken third-party plugin must say who it is
            raise PluginError(f"cannot load plugin {entry.name} (from {entry.distribution}):"
                              f" {exc!r}") from exc
        manager.distributions[id(plugin)] = entry.distribution
    for plugin in extra:
        name = _code_name(manager, plugin)
        try:
            manager.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"cannot register plugin {name} ({IN_CODE}): {exc}") from exc
    _check_pending(manager)
    return Plugins(manager, disable)
