"""The estimator registry: name -> estimator class, for the built-ins and for installed packages.

An estimator is registered with `register_estimator` (the built-ins call it in their modules)
or by an installed package through the entry-point group ``binaryvae.estimators``::

    [project.entry-points."binaryvae.estimators"]
    my-est = "my_package.module:MyEstimator"

The entry points are read lazily, at the first use of the registry (`ESTIMATORS`, the family
registry `binaryvae.models.families.FAMILY_CLASSES`, hence `binaryvae train --family
bernoulli-my-est`, the sweep grid and `compare`). A package whose entry point fails to load is
named in a one-line `BadInput`.

A registered class is an ``nn.Module`` with ``forward(logits, f, generator) ->
EstimatorOutput`` (binaryvae.models.estimators) and the class attributes

- ``unbiased`` (bool): its gradient estimate's mean is the exact gradient of its objective;
- ``takes_learning_signal`` (bool): f(b) enters as a score-function weight and the option
  ``learning_signal`` applies;
- ``samples_per_step`` (int, or a property of the instance): decoder evaluations per image;
- ``from_options(options)`` (classmethod): an instance from `binaryvae.config.ModelOptions`;

and optionally ``setup(latent_dim)`` (called once after ``from_options`` with the number of
bits, for an estimator with parameters whose shapes depend on it: relax's network),
``relaxed_inputs = True`` (f is also called on soft bits in [0, 1], a relaxation's), and
``objective`` ("expectation", the default: it estimates grad E_q[f(b)]; or
"iwae": grad E[log 1/K sum_k exp f(b_k)], f the log importance weight, K = ``samples``) and
``learning_signal`` (None: the option's; "elbo": it always needs the log importance weight).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from importlib import import_module
from typing import Any

from torch import nn

from binaryvae.errors import BadInput

__all__ = [
    "BUILTIN_MODULES",
    "ENTRY_POINT_GROUP",
    "OBJECTIVES",
    "ESTIMATORS",
    "EstimatorRegistry",
    "register_estimator",
    "family_name",
]

ENTRY_POINT_GROUP = "binaryvae.estimators"
OBJECTIVES = ("expectation", "iwae")
# the modules that register the built-in estimators (imported before the entry points)
BUILTIN_MODULES = (
    "binaryvae.models.estimators",
    "binaryvae.models.published",
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def _check_class(name: str, cls: Any) -> None:
    """BadInput naming what ``cls`` lacks to be an estimator class."""
    qualified = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__name__', cls)}"
    where = f"estimator {name!r} ({qualified})"
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise BadInput(f"{where} must be a torch.nn.Module subclass")
    for attr in ("unbiased", "takes_learning_signal"):
        if not isinstance(getattr(cls, attr, None), bool):
            raise BadInput(f"{where} must set the class attribute {attr} to True or False")
    if not hasattr(cls, "samples_per_step"):
        raise BadInput(f"{where} must set samples_per_step (decoder evaluations per image)")
    if not callable(getattr(cls, "from_options", None)):
        raise BadInput(f"{where} must define the classmethod from_options(options)")
    objective = getattr(cls, "objective", "expectation")
    if objective not in OBJECTIVES:
        raise BadInput(f"{where}: objective must be one of {', '.join(OBJECTIVES)}, got "
                       f"{objective!r}")  # fmt: skip
    if getattr(cls, "learning_signal", None) not in (None, "elbo"):
        raise BadInput(f"{where}: learning_signal must be None or 'elbo'")


def family_name(name: str) -> str:
    """The family an estimator registered as ``name`` trains: ``bernoulli-<name>`` unless it
    was registered with another (``straight-through`` trains ``bernoulli-st``)."""
    return ESTIMATORS.family_of(name)


class EstimatorRegistry(Mapping):
    """name -> estimator class, in registration order; reading it first loads the entry points
    of group ``binaryvae.estimators`` (once). Register with `register_estimator`."""

    def __init__(self) -> None:
        self._classes: dict[str, type[nn.Module]] = {}
        self._families: dict[str, str] = {}
        self._sources: dict[str, str] = {}
        self._loaded = False  # entry points read
        self._version = 0  # bumped at every registration (the family registry caches on it)

    # ---------------------------------------------------------------- registration
    def register(self, name: str, cls: type[nn.Module], family: str | None = None,
                 replace: bool = False, source: str = "") -> type[nn.Module]:  # fmt: skip
        if not isinstance(name, str) or not _NAME.match(name):
            raise BadInput(
                f"estimator name {name!r} must be lower-case letters, digits and '-' "
                "(at most 64, starting with a letter or digit)"
            )
        _check_class(name, cls)
        fam = family if family is not None else f"bernoulli-{name}"
        if not isinstance(fam, str) or not _NAME.match(fam):
            raise BadInput(f"family name {fam!r} of estimator {name!r} is not a valid name")
        old = self._classes.get(name)
        if old is not None and old is not cls and not replace:
            raise BadInput(
                f"estimator {name!r} is already registered ({self._sources.get(name) or old!r}); "
                f"{source or 'register_estimator'} cannot register {cls.__name__} under the "
                "same name (pass replace=True to override it)"
            )
        taken = [n for n, f in self._families.items() if f == fam and n != name]
        if taken:
            raise BadInput(f"family {fam!r} already trains estimator {taken[0]!r}")
        self._classes[name] = cls
        self._families[name] = fam
        self._sources[name] = source or f"{cls.__module__}.{cls.__qualname__}"
        self._version += 1
        return cls

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and plugins replacing a class); KeyError if unknown."""
        del self._classes[name]
        del self._families[name]
        self._sources.pop(name, None)
        self._version += 1

    # ---------------------------------------------------------------- entry points
    def load_entry_points(self) -> None:
        """Register every entry point of group ``binaryvae.estimators`` (done once, lazily)."""
        if self._loaded:
            return
        self._loaded = True  # set first: a plugin importing binaryvae must not recurse
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            package = ep.dist.name if getattr(ep, "dist", None) is not None else ep.module
            if ep.name in self._classes and self._sources.get(ep.name) == f"package {package}":
                continue
            try:
                cls = ep.load()
            except Exception as e:  # noqa: BLE001 - any failure of a plugin is named, one line
                self._loaded = False
                msg = str(e).splitlines()[0] if str(e) else ""
                raise BadInput(
                    f"estimator {ep.name!r} of package {package!r} (entry point "
                    f"{ep.value!r} in group {ENTRY_POINT_GROUP}) failed to load: "
                    f"{type(e).__name__}: {msg}"
                ) from None
            try:
                self.register(ep.name, cls, source=f"package {package}")
            except BadInput as e:
                self._loaded = False
                raise BadInput(f"package {package!r}: {e}") from None

    def _ensure(self) -> None:
        if not self._loaded:
            for module in BUILTIN_MODULES:  # the built-ins first: a plugin cannot take a name
                import_module(module)
            self.load_entry_points()

    # ---------------------------------------------------------------- mapping
    def __getitem__(self, name: str) -> type[nn.Module]:
        self._ensure()
        return self._classes[name]

    def __iter__(self) -> Iterator[str]:
        self._ensure()
        return iter(list(self._classes))

    def __len__(self) -> int:
        self._ensure()
        return len(self._classes)

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return name in self._classes

    def family_of(self, name: str) -> str:
        """The family name that trains estimator ``name``."""
        self._ensure()
        return self._families[name]

    def source_of(self, name: str) -> str:
        """Where estimator ``name`` came from (its class, or ``package <dist>``)."""
        self._ensure()
        return self._sources[name]

    @property
    def version(self) -> int:
        """Changes whenever the registry does (after the entry points are read)."""
        self._ensure()
        return self._version

    def __repr__(self) -> str:
        return f"EstimatorRegistry({list(self._classes)})"


# the one registry: ``binaryvae.models.estimators.ESTIMATORS`` is this object
ESTIMATORS = EstimatorRegistry()


def register_estimator(name: str, cls: type[nn.Module], *, family: str | None = None,
                       replace: bool = False) -> type[nn.Module]:  # fmt: skip
    """Register the estimator class ``cls`` as ``name``: the family ``bernoulli-<name>`` (or
    ``family``) then trains with it everywhere (`binaryvae train --family`, the sweep grid,
    `compare`). ``cls`` carries its properties as class attributes (module docstring);
    BadInput for an invalid name or class, or a name taken by another class (unless
    ``replace``). Returns ``cls``."""
    return ESTIMATORS.register(name, cls, family=family, replace=replace)
