"""Variants of one kind (dataset formats, tracker rules) found by name.

A built-in variant `<name>` is the module `<package>.<name>`, which defines `attribute`
(e.g. `mosam_train/data/formats/davis.py` defines `FORMAT`): adding one is writing that
module (and its config), with no table to edit. A variant defined elsewhere (a plug-in,
a test) joins at run time with `register`. Modules are imported on first use, so a
variant's dependencies (a video decoder, say) load only when it is used.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """The `kind` variants: modules of `package` that define `attribute`, plus registered
    entries. `accepts` tells an entry of this kind from anything else; `register_with`
    names the function users call to register one (for the error messages)."""

    def __init__(
        self,
        kind: str,
        package: str,
        attribute: str,
        accepts: Callable[[object], bool],
        register_with: str,
    ) -> None:
        self.kind = kind
        self.package = package
        self.attribute = attribute
        self.accepts = accepts
        self.register_with = register_with  # the public function that calls `register`
        self.registered: dict[str, T] = {}
        self._defines = re.compile(rf"^{attribute}\s*[:=]", re.MULTILINE)

    def builtin_names(self) -> list[str]:
        """Modules of the package that define the attribute (read, not imported)."""
        spec = importlib.util.find_spec(self.package)
        names = []
        for info in pkgutil.iter_modules(spec.submodule_search_locations if spec else []):
            module_spec = importlib.util.find_spec(f"{self.package}.{info.name}")
            origin = module_spec.origin if module_spec else None
            if origin and origin.endswith(".py"):
                with open(origin, encoding="utf-8") as f:
                    if self._defines.search(f.read()):
                        names.append(info.name)
        return names

    def names(self) -> list[str]:
        """Every known name, sorted."""
        return sorted({*self.builtin_names(), *self.registered})

    def register(self, name: str, entry: T) -> T:
        """Make `entry` known as `name`. The same entry again changes nothing; another
        entry under a known name is refused, so a plug-in never silently replaces one."""
        if not self.accepts(entry):
            raise TypeError(f"{self.kind} {name!r}: {entry!r} is not a {self.kind}")
        taken = self.registered.get(name)
        if (taken is not None and taken is not entry) or (
            taken is None and name in self.builtin_names()
        ):
            raise ValueError(
                f"{self.kind} {name!r} is already known ({self.package}.{name} or registered "
                f"before). Fix: register yours under another name."
            )
        self.registered[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry named `name` (importing its module on first use)."""
        if name in self.registered:
            return self.registered[name]
        if name.isidentifier() and name in self.builtin_names():
            module = importlib.import_module(f"{self.package}.{name}")
            entry = getattr(module, self.attribute)
            if not self.accepts(entry):
                raise TypeError(
                    f"{module.__file__}: {self.attribute} = {entry!r} is not a {self.kind}. "
                    f"Fix: set {self.attribute} to the module's {self.kind}."
                )
            return entry
        raise ValueError(
            f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}. Fix: use one of "
            f"those, add the module {self.package}.{name} defining {self.attribute}, or "
            f"register yours with {self.register_with}."
        )
