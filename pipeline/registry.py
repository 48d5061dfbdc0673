"""The implementations behind declared plug-ins (inference backends, camera sources).

A kind is declared in a light module the config schema reads (pipeline/infer/plugins.py,
pipeline/sources/plugins.py: its key and the module that implements it); the implementing class
registers itself under that key with a class decorator when its module is imported, and `get(key)`
imports that module on first use. So no class exists that the schema does not accept, and nothing
heavy is imported until a config asks for it.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any, Callable, Generic, TypeVar

C = TypeVar("C", bound=type)


class ImplementationRegistry(Generic[C]):
    def __init__(self, noun: str, key_label: str, declared: tuple[str, ...], declared_in: str,
                 decorator: str, plugin: Callable[[str], Any], error: type[Exception]) -> None:
        """noun/key_label/declared_in/decorator: the words of the error messages ("backend",
        "backend type_key", "pipeline/infer/plugins.py", "@register_backend"); declared: the declared
        keys; plugin(key): the declaration (its `.implementation` module), ValueError naming the known
        keys for an unknown one; error: what a class that may not register raises."""
        self._noun, self._key_label, self._declared = noun, key_label, declared
        self._declared_in, self._decorator, self._plugin, self._error = declared_in, decorator, plugin, error
        self._classes: dict[str, C] = {}

    def register(self, cls: C) -> C:
        """The class decorator's work: `cls.type_key` must be declared and not taken by another class."""
        key = getattr(cls, "type_key", None)
        if not isinstance(key, str) or not key:
            raise self._error(f"{cls.__name__} must declare a non-empty type_key")
        if key not in self._declared:
            raise self._error(f"{self._key_label} {key!r} is not declared in {self._declared_in} "
                              f"(declared: {', '.join(self._declared)})")
        if key in self._classes and self._classes[key] is not cls:
            raise self._error(f"{self._key_label} {key!r} is already registered by {self._classes[key].__name__}")
        self._classes[key] = cls
        return cls

    def get(self, key: str) -> C:
        """The class registered for a declared key, importing its module on first use."""
        plugin = self._plugin(key)  # ValueError naming the known keys
        if key not in self._classes:
            import_module(plugin.implementation)
        cls = self._classes.get(key)
        if cls is None:
            raise TypeError(f"{plugin.implementation} registers no {self._noun} for {key!r} ({self._decorator})")
        return cls
