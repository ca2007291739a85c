"""Stand-ins for the harmless objects that training checkpoints pickle beside the weights.

DINO, PixPro, SoCo and SlotCon store their ``argparse.Namespace``; mmengine stores ``HistoryBuffer`` objects
in ``message_hub``; Lightning with Hydra stores omegaconf configs in ``hyper_parameters``. Unpickling the real
classes would run their code, so each known name (module AND qualname, exactly) resolves to a stand-in class
of this module instead: creating one takes no arguments and runs nothing, and its pickled state (a dict, applied
once) is stored as the plain data the loader built, never interpreted. :meth:`Inert.as_dict` reads it.

omegaconf nodes hold their parent (``_parent``): that back-reference is dropped when the state is stored (and
by the scan in :mod:`transfer.safe_pickle` at the same point), so what is read has no cycle. Both loaders use
:data:`STAND_INS`: ``safe_pickle`` for ``.pkl`` files, and ``torch.load(weights_only=True)`` through
``torch.serialization.safe_globals`` around the suite's own calls only (:func:`transfer.safe_pickle.torch_globals`).
"""

from __future__ import annotations

from typing import Any, ClassVar


class Refused(Exception):
    """Why a file is refused while it is read (the loader adds the file's name); one line."""


_UNSET: Any = object()


class Inert:
    """A known harmless object read as data: its pickled name and state; none of its class's code runs."""

    __slots__ = ("_state",)
    pickled_as: ClassVar[str] = ""
    back_references: ClassVar[tuple[str, ...]] = ()   # state keys that point back up the structure (dropped)

    def __new__(cls, *args: Any) -> Inert:
        if cls is Inert:
            raise Refused("it creates the abstract stand-in itself")
        if args:
            raise Refused(f"it creates a {cls.pickled_as} with {len(args)} argument(s); it is pickled without any")
        self = object.__new__(cls)
        object.__setattr__(self, "_state", _UNSET)
        return self

    def __setstate__(self, state: Any) -> None:
        """``BUILD``: store the state once (a dict); drop the back-references; nothing else happens."""
        if self._state is not _UNSET:
            raise Refused(f"it applies state to a {self.pickled_as} twice")
        if type(state) is not dict:
            raise Refused(f"it gives a {self.pickled_as} a state that is a {type(state).__name__}, not a dict")
        for key in self.back_references:
            state.pop(key, None)
        object.__setattr__(self, "_state", state)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a stand-in for {self.pickled_as} is read-only")

    def as_dict(self) -> dict:
        """The pickled state (the real object's attributes), as a new dict; empty if none was applied."""
        return {} if self._state is _UNSET else dict(self._state)

    def __repr__(self) -> str:  # never the state: it may be deep
        n = 0 if self._state is _UNSET else len(self._state)
        return f"<inert {self.pickled_as}: {n} field(s), read as data>"

    def __getstate__(self) -> dict:  # copy.deepcopy and pickle of the stand-in itself
        return self.as_dict()


class TypeName:
    """A type that omegaconf metadata names (``typing.Any``, ``builtins.dict``): only its name; not callable."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a type name is read-only")

    def __repr__(self) -> str:
        return f"<type name {self.name}>"


def _stand_in(name: str, back_references: tuple[str, ...] = ()) -> type[Inert]:
    qualname = name.rsplit(".", 1)[1]
    return type(f"Inert{qualname}", (Inert,), {"__slots__": (), "pickled_as": name,
                                                "back_references": back_references, "__module__": __name__})


_OMEGACONF_NODES = ("omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig",
                    *(f"omegaconf.nodes.{n}" for n in ("AnyNode", "StringNode", "IntegerNode", "FloatNode",
                                                       "BooleanNode", "BytesNode", "PathNode")))

# "module.qualname" as pickled -> its stand-in class (exact names only: a lookalike elsewhere is refused)
STAND_INS: dict[str, type[Inert]] = {
    name: _stand_in(name, ("_parent",) if name in _OMEGACONF_NODES else ())
    for name in ("argparse.Namespace", "mmengine.logging.history_buffer.HistoryBuffer",
                 "omegaconf.base.ContainerMetadata", "omegaconf.base.Metadata", *_OMEGACONF_NODES)
}

# types omegaconf's metadata names (builtins as torch and Python 3 spell them)
TYPE_NAMES: dict[str, TypeName] = {
    name: TypeName(name) for name in ("typing.Any", *(f"builtins.{t}" for t in
                                                       ("dict", "list", "str", "int", "float", "bool", "bytes")))
}


def default_dict(factory: Any = None) -> dict:
    """``collections.defaultdict(factory)`` (omegaconf's resolver cache) read as a plain dict; the factory must
    be a named type or absent, and is never called."""
    if factory is not None and not isinstance(factory, TypeName) and \
            not (isinstance(factory, type) and issubclass(factory, Inert)):
        raise Refused(f"it builds a defaultdict whose factory is a {type(factory).__name__}")
    return {}
