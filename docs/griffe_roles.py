"""A griffe extension for rsd's site: Sphinx roles in docstrings become cross-references.

rsd's docstrings name other objects Sphinx-style (``:func:`solve```,
``:class:`rsd.training.Setting```). mkdocstrings does not read roles, so before a
docstring is rendered each role becomes an autorefs link to the object's entry in the
API reference, ``[`solve`][rsd.theory.solve]``, when the name is public (in the
``__all__`` of the docstring's own package, or written out from ``rsd.``), and plain
code otherwise. Loaded by the ``extensions`` option of mkdocstrings in mkdocs.yml.
"""

from __future__ import annotations

import importlib
import re

import griffe

PACKAGES = ("theory", "quantities", "networks", "data", "training", "fitting", "sweeps",
            "experiments", "bench")
ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|data|obj|mod|exc|const):`~?\.?([^`]+)`")


def _public():
    """{"rsd.<package>": set of names in its __all__}."""
    return {f"rsd.{p}": set(importlib.import_module(f"rsd.{p}").__all__) for p in PACKAGES}


class RolesToCrossrefs(griffe.Extension):
    def __init__(self):
        super().__init__()
        self.public = _public()

    def _target(self, name, path):
        """The API-reference identifier for ``name`` seen from the object ``path``, or None."""
        if name.startswith("rsd."):
            parts = name.split(".")
            package = ".".join(parts[:2])
            if package in self.public and (len(parts) == 2 or parts[2] in self.public[package]):
                return name
            return None
        package = ".".join(path.split(".")[:2])
        if name.split(".")[0] in self.public.get(package, ()):
            return f"{package}.{name}"
        return None

    def _rewrite(self, text, path):
        def link(match):
            name = match.group(1).strip()
            label = name.removesuffix("()")
            target = self._target(label, path)
            return f"[`{name}`][{target}]" if target else f"`{name}`"

        return ROLE.sub(link, text)

    def on_object(self, *, obj, **kwargs):
        if obj.is_alias or obj.docstring is None:
            return
        if obj.path.startswith("rsd."):
            obj.docstring.value = self._rewrite(obj.docstring.value, obj.path)
