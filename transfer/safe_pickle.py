"""Read ``.pkl`` weight files without running code from them or letting them corrupt memory.

A plain ``pickle.load`` calls whatever global a file names (``os.system`` in a ``__reduce__``), and even an
allow-list of numpy globals is not enough: the ``BUILD`` opcode applies ``__setstate__`` to any object, so a
file can turn a numpy dtype's field into an object field after an array was filled with raw bytes, and
freeing that array then dereferences an address the file chose. This module therefore does not use
``pickle.Unpickler`` at all: :func:`loads` executes the opcodes itself, and

* admits only dicts (``OrderedDict`` too), lists, tuples, sets, strings, bytes, numbers and numpy arrays, and
  reads the known harmless objects of :mod:`transfer.inert` (``argparse.Namespace``, mmengine's ``HistoryBuffer``,
  omegaconf configs) as inert stand-ins holding their state as data;
* builds arrays only through one vetted path: a plain numeric dtype (bool, int, uint, float, complex; no
  object, structured, subarray, string or datetime dtype), a shape, and exactly the bytes that shape needs,
  copied out of the file (a file cannot make it allocate more than it holds);
* applies ``BUILD`` state only to the array and dtype it is building or to a stand-in, once; any other
  ``BUILD``, any other class instantiation, persistent id or extension code is refused;
* bounds nesting depth (:data:`MAX_DEPTH`), the number of objects (:data:`MAX_OBJECTS`), the size of the
  structure written out as a tree with shared references counted each time (:data:`MAX_EXPANDED`: a graph of
  dicts that each hold the previous one twice is refused, not walked for ever), refuses cycles, and reads at
  most :data:`MAX_FILE_BYTES`; dict keys must be plain hashable values.

:func:`scan_torch_file` runs the same machine in scan mode over the pickle inside a ``.pth`` before
``torch.load(weights_only=True)`` sees it: torch's loader refuses unknown globals but not a million-deep
tuple key (it crashes hashing it) or a shared-reference blow-up. That ``torch.load`` maps the same names to the
same stand-ins and builders (:func:`torch_globals`), and :func:`settle_torch` checks what it returned and puts
the numpy arrays in place. Every refusal is a one-line
:class:`UnsafePickleError`. ``transfer/checkpointer.py`` routes Detectron2's checkpointer through here.
"""

from __future__ import annotations

import codecs
import errno
import io
import math
import os
import pickletools
import stat
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from transfer import inert

MAX_DEPTH = 64               # containers inside containers (a weights file needs about 5)
MAX_OBJECTS = 2_000_000      # values a pickle may create (an R50 file creates about 10,000)
MAX_EXPANDED = 4_000_000     # nodes of the structure written out as a tree (shared references counted each time)
MAX_FILE_BYTES = 16 << 30    # the largest weights file read (a wide ResNet-50x4 in fp32 is about 1.5 GB)
MAX_KEY_DEPTH = 8            # tuples inside dict keys
MAX_TORCH_PICKLE_BYTES = 1 << 30  # the pickle inside a torch zip checkpoint (an R50 checkpoint's is ~50 KB)
MAX_INFLATE = 4             # how much larger than the file a torch zip's members may be when read (torch stores them)
TORCH_RECORDS = ("version", ".data/version", "byteorder", ".format_version", ".storage_alignment",
                 ".data/serialization_id")  # the small records torch reads whole; each is a few bytes
_PLAIN_KINDS = "biufc"       # numpy dtype kinds admitted: bool, int, uint, float, complex
_LATIN1 = {"latin1", "latin-1", "iso-8859-1", "iso8859-1"}
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
# bytes per element of torch's storage types (torch.storage._storage_type_to_dtype_map(); UntypedStorage: bytes)
_ELEMENT_SIZE = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "LongStorage": 8, "IntStorage": 4,
                 "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1, "BFloat16Storage": 2,
                 "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8, "QInt8Storage": 1, "QInt32Storage": 4,
                 "QUInt8Storage": 1, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1, "UntypedStorage": 1}


class UnsafePickleError(ValueError):
    """A weights file that is refused (unsafe, unbounded or not a pickle at all); the message is one line."""


class _Refused(inert.Refused):
    """Internal: why the machine refused the file (the caller adds the file name)."""


class _UnknownGlobal(_Refused):
    """Internal: the file names a global that is neither admitted nor a known harmless object."""


class _Malformed(_Refused):
    """Internal: the bytes are not a well-formed pickle (truncated, corrupt, another format)."""


def _short(x: Any) -> str:
    """A value for a message without calling ``repr`` on a structure from the file (it may be deep)."""
    if isinstance(x, (str, bytes)):
        return repr(x[:40])
    if isinstance(x, (int, float, type(None))):
        return repr(x)[:40]
    return f"a {type(x).__name__}"


# ----------------------------------------------------------------------------- vetted numpy constructors

class _NdarrayClass:
    """What ``numpy.ndarray`` resolves to: only an argument of ``_reconstruct``."""


_NDARRAY = _NdarrayClass()


class _Dtype:
    """``numpy.dtype(code, align, copy)`` waiting for its one ``BUILD`` (byte order). Made only through
    ``__new__`` from a plain numeric code, so torch's loader may create it (REDUCE or NEWOBJ) too."""

    __slots__ = ("dtype", "built")

    def __new__(cls, code: Any = None, align: Any = False, copy: Any = True) -> _Dtype:
        self = object.__new__(cls)
        self.dtype, self.built = _plain_dtype(code), False
        return self

    def __setstate__(self, state: Any) -> None:  # torch's BUILD
        self.build(state)

    def build(self, state: Any) -> None:
        if self.built:
            raise _Refused("it applies state to a numpy dtype twice (a known way to corrupt memory)")
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
            raise _Refused(f"it gives the numpy dtype {self.dtype} a state that is not a plain dtype's")
        _, order, subdescr, names, fields = state[:5]
        if subdescr is not None or names is not None or fields is not None or (len(state) == 9 and state[8]):
            raise _Refused(f"it makes the numpy dtype {self.dtype} structured or a subarray; only plain numeric "
                           "arrays are admitted")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)
        elif order not in ("|", "="):
            raise _Refused(f"it gives a numpy dtype the byte order {_short(order)}")
        self.built = True


def _plain_dtype(code: Any) -> np.dtype:
    if isinstance(code, (_Dtype, np.dtype)):
        return code.dtype if isinstance(code, _Dtype) else code
    if not isinstance(code, str) or len(code) > 8:
        raise _Refused(f"it names a numpy dtype by {_short(code)}, not a type code")
    try:
        dt = np.dtype(code)
    except (TypeError, ValueError):
        raise _Refused(f"it names an unknown numpy dtype {code!r}") from None
    if dt.kind not in _PLAIN_KINDS or dt.fields is not None or dt.subdtype is not None or dt.hasobject:
        raise _Refused(f"it holds a numpy dtype {code!r} (kind {dt.kind!r}); only plain numeric arrays are admitted")
    return dt


_make_dtype = _Dtype


class _Array:
    """``numpy.core.multiarray._reconstruct(ndarray, ...)`` waiting for its one ``BUILD`` (shape, dtype, bytes)."""

    __slots__ = ("array",)

    def __new__(cls, kind: Any = None, shape: Any = None, typecode: Any = None) -> _Array:
        if kind is not _NDARRAY:
            raise _Refused("it calls numpy's _reconstruct for something other than numpy.ndarray")
        self = object.__new__(cls)
        self.array = None
        return self

    def __setstate__(self, state: Any) -> None:  # torch's BUILD
        self.build(state)

    def build(self, state: Any) -> None:
        if self.array is not None:
            raise _Refused("it applies state to a numpy array twice")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("it gives a numpy array a state that is not (version, shape, dtype, fortran, data)")
        shape, dtype, fortran, data = state[-4:]
        self.array = _array_from(data, _plain_dtype(dtype), shape, "F" if fortran else "C")


def _shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, tuple) or len(shape) > 32 or \
            not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape):
        raise _Refused(f"it gives a numpy array the shape {_short(shape)}")
    return shape


def _array_from(data: Any, dtype: np.dtype, shape: Any, order: str) -> np.ndarray:
    """The one way an array is made: exactly the bytes its shape needs, copied out of the file."""
    shape = _shape(shape)
    if isinstance(data, str):  # Python 2 pickles read with latin-1
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused(f"it fills a numpy array from a {type(data).__name__}, not raw bytes (an object array?)")
    need = math.prod(shape) * dtype.itemsize
    if need != len(data):
        raise _Refused(f"a {dtype} array of shape {shape} needs {need} bytes, the file gives {len(data)}")
    if order not in ("C", "F"):
        raise _Refused(f"it gives a numpy array the memory order {_short(order)}")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy(order=order)


_reconstruct = _Array


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
    return _array_from(buf, _plain_dtype(dtype), shape, order)


def _scalar(dtype: Any, data: Any = None) -> Any:
    dt = _plain_dtype(dtype)
    return _array_from(data, dt, (), "C").item()


def _latin1_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (latin-1 only; no other codec is looked up)."""
    if not isinstance(text, str) or str(encoding).lower() not in _LATIN1 or errors != "strict":
        raise _Refused(f"it calls _codecs.encode with codec {_short(encoding)} (only latin-1 rebuilds bytes)")
    return codecs.encode(text, "latin1")


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()``: how protocols 0-2 write an empty bytes object (e.g. the data of an empty array)."""
    if args:
        raise _Refused("it calls bytes with arguments (only the empty bytes object is rebuilt)")
    return b""


def _ordered_dict(*args: Any) -> OrderedDict:
    if args:
        raise _Refused("it builds an OrderedDict from arguments instead of from its items")
    return OrderedDict()


def _is_stand_in(x: Any) -> bool:
    return isinstance(x, type) and issubclass(x, inert.Inert)


# module -> name -> what the name resolves to (nothing else is ever looked up)
ALLOWED: dict[str, dict[str, Any]] = {
    "numpy": {"ndarray": _NDARRAY, "dtype": _make_dtype},
    **{m: {"_reconstruct": _reconstruct, "scalar": _scalar, "_frombuffer": _frombuffer} for m in _NUMPY_CORE},
    **{m: {"_frombuffer": _frombuffer} for m in _NUMPY_NUMERIC},
    "collections": {"OrderedDict": _ordered_dict},
    "_codecs": {"encode": _latin1_encode},
    "builtins": {"bytes": _empty_bytes},
    "__builtin__": {"bytes": _empty_bytes},
}
# known harmless objects, read as inert data (transfer/inert.py), and the types omegaconf's metadata names
for _name, _obj in [*inert.STAND_INS.items(), *inert.TYPE_NAMES.items(), ("collections.defaultdict",
                                                                          inert.default_dict)]:
    _module, _, _attr = _name.rpartition(".")
    ALLOWED.setdefault(_module, {}).setdefault(_attr, _obj)
ALLOWED["__builtin__"].update({n: t for n, t in ALLOWED["builtins"].items() if n != "bytes"},
                              long=inert.TYPE_NAMES["builtins.int"], unicode=inert.TYPE_NAMES["builtins.str"])
_CALLABLE = tuple({id(f): f for names in ALLOWED.values() for f in names.values()
                   if callable(f) and not _is_stand_in(f)}.values())  # stand-ins: NEWOBJ only


def torch_globals() -> list[tuple[Any, str]]:
    """What ``torch.serialization.safe_globals`` maps pickled names to in the suite's own ``torch.load``: the
    vetted numpy builders and the inert stand-ins above (torch spells Python 2's ``__builtin__`` as
    ``builtins``; its own ``OrderedDict`` and ``_codecs.encode`` stay)."""
    return [(obj, f"{module}.{name}") for module, names in ALLOWED.items()
            if module not in ("__builtin__", "collections", "_codecs") for name, obj in names.items()] + \
        [(inert.default_dict, "collections.defaultdict")]


# ----------------------------------------------------------------------------- the machine

class _Node:
    """Scan mode: whatever a (torch) pickle builds, as a node with children; nothing is hashed or called."""

    __slots__ = ("children",)

    def __init__(self, children: list | None = None) -> None:
        self.children = children if children is not None else []


class _GlobalNode(_Node):
    """Scan mode: a global, with its ``module.name`` (a storage type's name gives its element size)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class _DictNode(_Node):
    """Scan mode: a dict; its children are its keys and values, in pairs."""

    __slots__ = ()


class _ObjNode(_Node):
    """Scan mode: what calling (REDUCE) or instantiating (NEWOBJ) a global makes, with the global's name."""

    __slots__ = ("name",)

    def __init__(self, children: list, name: str) -> None:
        super().__init__(children)
        self.name = name


def _drop_back_references(target: Any, state: Any) -> None:
    """Scan mode: drop the state entries a stand-in drops when torch applies the state (omegaconf's
    ``_parent``), so that the scan checks exactly the structure torch's loader returns."""
    cls = inert.STAND_INS.get(target.name) if isinstance(target, _ObjNode) else None
    if cls is None or not cls.back_references or not isinstance(state, _DictNode):
        return
    kids = state.children
    state.children = [x for i in range(0, len(kids) - 1, 2)
                      if not (isinstance(kids[i], str) and kids[i] in cls.back_references) for x in kids[i:i + 2]]


_MARK = object()
_CONTAINERS = (dict, list, tuple, set, frozenset)
_INNER = (_Node, inert.Inert, *_CONTAINERS)  # what holds other values (a stand-in: its state)


def _read_string(f: BinaryIO) -> str:
    """``STRING`` (protocol 0): a quoted, escaped Python 2 str, read as latin-1 like ``encoding='latin1'``."""
    data = f.readline()
    if not data.endswith(b"\n") or len(data) < 3 or data[0] not in b"'\"" or data[-2] != data[0]:
        raise _Malformed("a STRING opcode is not a quoted string")
    return codecs.escape_decode(data[1:-2])[0].decode("latin1")


# opcodes with a length prefix: (struct format, decoder); the length is checked against what the file has left
_SIZED: dict[str, tuple[str, Callable[[bytes], Any]]] = {
    "BINBYTES": ("<I", bytes), "BINBYTES8": ("<Q", bytes), "BYTEARRAY8": ("<Q", bytearray),
    "BINUNICODE": ("<I", lambda b: b.decode("utf-8", "surrogatepass")),
    "BINUNICODE8": ("<Q", lambda b: b.decode("utf-8", "surrogatepass")),
    "BINSTRING": ("<i", lambda b: b.decode("latin1")),
    "LONG4": ("<i", lambda b: int.from_bytes(b, "little", signed=True)),
}


def _read_sized(f: BinaryIO, name: str, end: int) -> Any:
    fmt, decode = _SIZED[name]
    head = f.read(struct.calcsize(fmt))
    if len(head) != struct.calcsize(fmt):
        raise _Malformed(f"the file ends inside a {name} opcode (truncated)")
    (n,) = struct.unpack(fmt, head)
    if n < 0 or n > end - f.tell():
        raise _Malformed(f"a {name} opcode claims {n:,} bytes, more than the file has left (truncated or corrupt)")
    data = f.read(n)
    if len(data) != n:
        raise _Malformed(f"the file ends inside a {name} opcode (truncated)")
    return decode(data)


class _Machine:
    """Executes pickle opcodes (``scan``: as :class:`_Node` objects only) within the module's limits."""

    def __init__(self, scan: bool) -> None:
        self.scan = scan
        self.created = 0
        self.keep: list = []             # every container made: kept alive so that its id stays its own
        self.depth: dict[int, int] = {}  # id -> nesting depth so far (a lower bound once shared; _finish is exact)
        self.storages: list[tuple[str, Any, int | None]] = []  # scan: (key, numel, element size) per storage id

    # -- helpers
    def new(self, obj: Any) -> Any:
        self.created += 1
        if self.created > MAX_OBJECTS:
            raise _Refused(f"it creates more than {MAX_OBJECTS:,} objects (a weights file needs far fewer)")
        return obj

    def depth_of(self, x: Any) -> int:
        return self.depth.get(id(x), 1) if isinstance(x, _INNER) else 0

    def container(self, obj: Any, items: list) -> Any:
        """A new container holding ``items``; deep nesting is refused as it is built, before anything hashes it."""
        self.new(obj)
        self.keep.append(obj)
        self.grow(obj, items)
        return obj

    def grow(self, obj: Any, items: list) -> None:
        d = max(self.depth.get(id(obj), 1), 1 + max(map(self.depth_of, items), default=0))
        if d > MAX_DEPTH:
            raise _Refused(f"it nests containers more than {MAX_DEPTH} deep")
        self.depth[id(obj)] = d

    def immutable(self, kind: type, items: list) -> Any:
        """A tuple or frozenset (scan mode: a node)."""
        if self.scan:
            return self.container(_Node(list(items)), items)
        if kind is frozenset:
            items = [self.key(x) for x in items]
        return self.container(kind(items), items)

    def key(self, k: Any, level: int = 0) -> Any:
        """A dict key or set item: plain hashable values only (hashing them cannot recurse far)."""
        if isinstance(k, (str, bytes, int, float, type(None))):
            return k
        if isinstance(k, (tuple, frozenset)) and self.depth_of(k) <= MAX_KEY_DEPTH - level:
            for x in k:
                self.key(x, level + 1)
            return k
        raise _Refused(f"it uses {_short(k)} as a dict key (only strings, numbers and shallow tuples of them)")

    def target(self, obj: Any, kinds: tuple, what: str) -> Any:
        if not isinstance(obj, _Node if self.scan else kinds):
            raise _Malformed(f"it {what} a {type(obj).__name__}")
        return obj

    def global_(self, module: Any, name: Any) -> Any:
        if self.scan:
            return self.new(_GlobalNode(f"{str(module)[:100]}.{str(name)[:100]}"))
        found = ALLOWED.get(str(module), {}).get(str(name))
        if found is None:
            raise _UnknownGlobal(refusal(f"{str(module)[:80]}.{str(name)[:80]}"))
        return found

    # -- the loop
    def run(self, f: BinaryIO, size: int) -> Any:
        """Execute the pickle that starts at ``f``'s position; ``size``: where the file ends (for length checks)."""
        stack: list = []
        marks: list[list] = []
        memo: dict[int, Any] = {}
        code2op = pickletools.code2op
        while True:
            code = f.read(1)
            if not code:
                raise _Malformed("the pickle ends before its STOP opcode (truncated)")
            op = code2op.get(code.decode("latin1"))
            if op is None:
                raise _Malformed(f"byte {code!r} at offset {f.tell() - 1} is not a pickle opcode")
            name = op.name
            if name == "STRING":
                arg = _read_string(f)
            elif name in _SIZED:
                arg = _read_sized(f, name, size)
            elif op.arg is not None:
                try:
                    arg = op.arg.reader(f)
                except (ValueError, UnicodeDecodeError) as e:
                    raise _Malformed(f"opcode {name}: {str(e).splitlines()[0][:100] if str(e) else 'unreadable'}") from None
            else:
                arg = None
            if name == "STOP":
                if len(stack) != 1 or marks:
                    raise _Malformed("the pickle's stack is malformed at STOP")
                return stack[0]
            self.step(name, arg, stack, marks, memo)

    def pop_mark(self, stack: list, marks: list) -> list:
        if not marks:
            raise _Malformed("an opcode needs a MARK that is not there")
        items = stack[:]
        stack[:] = marks.pop()
        return items

    def step(self, name: str, arg: Any, stack: list, marks: list, memo: dict) -> None:  # noqa: C901 (one opcode table)
        scan = self.scan
        if name in ("PROTO", "FRAME"):
            return
        if name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
                    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
                    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
            stack.append(self.new(arg))
        elif name == "BYTEARRAY8":
            stack.append(self.new(arg))
        elif name == "NONE":
            stack.append(None)
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(name == "NEWTRUE")
        elif name == "MARK":
            marks.append(stack[:])
            stack.clear()
        elif name == "POP":
            if stack:
                stack.pop()
            else:
                self.pop_mark(stack, marks)
        elif name == "POP_MARK":
            self.pop_mark(stack, marks)
        elif name == "DUP":
            stack.append(self._top(stack))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = self._top(stack)
        elif name == "MEMOIZE":
            memo[len(memo)] = self._top(stack)
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in memo:
                raise _Malformed(f"it reads memo entry {arg}, which was never stored")
            stack.append(memo[arg])
        elif name == "EMPTY_LIST":
            stack.append(self.container(_Node() if scan else [], []))
        elif name == "EMPTY_DICT":
            stack.append(self.container(_DictNode() if scan else {}, []))
        elif name == "EMPTY_SET":
            stack.append(self.container(_Node() if scan else set(), []))
        elif name == "EMPTY_TUPLE":
            stack.append(self.immutable(tuple, []))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            if len(stack) < n:
                raise _Malformed(f"{name} on a stack of {len(stack)}")
            items = stack[-n:]
            del stack[-n:]
            stack.append(self.immutable(tuple, items))
        elif name == "TUPLE":
            stack.append(self.immutable(tuple, self.pop_mark(stack, marks)))
        elif name == "LIST":
            items = self.pop_mark(stack, marks)
            stack.append(self.container(_Node(items) if scan else items, items))
        elif name == "DICT":
            items = self.pop_mark(stack, marks)
            if len(items) % 2:
                raise _Malformed("DICT with an odd number of items")
            stack.append(self.container(_DictNode(items) if scan else {self.key(items[i]): items[i + 1]
                                                                   for i in range(0, len(items), 2)}, items))
        elif name == "FROZENSET":
            stack.append(self.immutable(frozenset, self.pop_mark(stack, marks)))
        elif name in ("APPEND", "APPENDS"):
            items = [self._pop(stack)] if name == "APPEND" else self.pop_mark(stack, marks)
            target = self.target(self._top(stack), (list,), "appends to")
            self.grow(target, items)
            (target.children if scan else target).extend(items)
        elif name in ("SETITEM", "SETITEMS"):
            if name == "SETITEM":
                value, key = self._pop(stack), self._pop(stack)
                items = [key, value]
            else:
                items = self.pop_mark(stack, marks)
            if len(items) % 2:
                raise _Malformed("SETITEMS with an odd number of items")
            target = self.target(self._top(stack), (dict,), "sets items of")
            self.grow(target, items)
            if scan:
                target.children.extend(items)
            else:
                for i in range(0, len(items), 2):
                    target[self.key(items[i])] = items[i + 1]
        elif name == "ADDITEMS":
            items = self.pop_mark(stack, marks)
            target = self.target(self._top(stack), (set,), "adds items to")
            self.grow(target, items)
            if scan:
                target.children.extend(items)
            else:
                target.update(self.key(x) for x in items)
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            stack.append(self.global_(module, attr))
        elif name == "STACK_GLOBAL":
            attr, module = self._pop(stack), self._pop(stack)
            stack.append(self.global_(module, attr))
        elif name == "REDUCE":
            args, func = self._pop(stack), self._pop(stack)
            if scan:
                made = func.name if isinstance(func, _GlobalNode) else ""
                stack.append(self.container(_ObjNode([func, args], made), [func, args]))
                return
            if not isinstance(args, tuple) or not any(func is f for f in _CALLABLE):
                raise _Refused(f"it calls a {type(func).__name__}, which is not an admitted constructor")
            try:
                stack.append(self.new(func(*args)))
            except TypeError:
                raise _Refused(f"it calls {getattr(func, '__name__', 'a constructor')} with "
                               f"{len(args)} unexpected argument(s)") from None
        elif name == "BUILD":
            state = self._pop(stack)
            target = self._top(stack)
            if scan:
                self.grow(self.target(target, (), "applies state to"), [state])
                _drop_back_references(target, state)
                target.children.append(state)
            elif isinstance(target, (_Array, _Dtype)):
                target.build(state)
            elif isinstance(target, inert.Inert):
                self.grow(target, [state])
                target.__setstate__(state)
            else:
                raise _Refused(f"it applies state (BUILD) to a {type(target).__name__}; only the numpy arrays it "
                               "builds take state")
        elif name == "NEWOBJ":
            args, cls = self._pop(stack), self._pop(stack)
            if scan:
                made = cls.name if isinstance(cls, _GlobalNode) else ""
                stack.append(self.container(_ObjNode([cls, args], made), [cls, args]))
                return
            if not _is_stand_in(cls) or not isinstance(args, tuple):
                raise _Refused(f"it uses the pickle opcode NEWOBJ on a {type(cls).__name__}, which is not a known "
                               "harmless class (only those are made, as inert data)")
            stack.append(self.container(cls(*args), list(args)))
        elif scan and name in ("NEWOBJ_EX", "BINPERSID", "PERSID", "EXT1", "EXT2", "EXT4", "INST", "OBJ",
                               "NEXT_BUFFER", "READONLY_BUFFER"):
            self._scan_other(name, arg, stack, marks)
        else:
            raise _Refused(f"it uses the pickle opcode {name}, which a weights file never needs "
                           "(objects of classes, persistent ids or out-of-band buffers)")

    def _scan_other(self, name: str, arg: Any, stack: list, marks: list) -> None:
        """Scan mode: opcodes torch's own loader judges; only their structure is counted here."""
        n = {"NEWOBJ_EX": 3, "BINPERSID": 1}.get(name, 0)
        if name in ("INST", "OBJ"):
            items = self.pop_mark(stack, marks)
        else:
            items = [self._pop(stack) for _ in range(n)]
        if name == "BINPERSID":
            self._storage_id(items[0])
        if name == "READONLY_BUFFER":
            self._top(stack)
        else:  # PERSID, EXT*, NEXT_BUFFER: leaves
            stack.append(self.container(_Node(items), items))

    def _storage_id(self, pid: Any) -> None:
        """Record a torch storage's persistent id as torch reads it when it allocates the storage:
        ``('storage', type, key, location, numel[, view])`` (zip: 5 items, legacy: 6)."""
        kids = pid.children if isinstance(pid, _Node) and not isinstance(pid, _GlobalNode) else None
        if not kids or len(kids) not in (5, 6) or kids[0] not in ("storage", b"storage"):
            return
        kind, key, numel = kids[1], kids[2], kids[4]
        size = _ELEMENT_SIZE.get(kind.name.split(".")[-1]) if isinstance(kind, _GlobalNode) else None
        key = key.decode("latin1") if isinstance(key, bytes) else key
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise _Refused(f"it names a tensor storage by {_short(key)}")
        ok = isinstance(numel, int) and not isinstance(numel, bool)
        self.storages.append((str(key), numel if ok else None, size))

    @staticmethod
    def _pop(stack: list) -> Any:
        if not stack:
            raise _Malformed("an opcode needs a value on an empty stack")
        return stack.pop()

    @staticmethod
    def _top(stack: list) -> Any:
        if not stack:
            raise _Malformed("an opcode needs a value on an empty stack")
        return stack[-1]


def _children(obj: Any) -> list:
    if isinstance(obj, _Node):
        return obj.children
    if isinstance(obj, inert.Inert):
        return [] if obj._state is inert._UNSET else [obj._state]
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    return list(obj)


def _finish(root: Any, replace: bool, loaded_by_torch: bool = False) -> Any:
    """Check the built structure as a whole (depth, cycles, size as a tree) and, with ``replace``, put the
    finished numpy arrays and dtypes in place of their builders (``loaded_by_torch``: in what torch's loader
    returned, where the objects torch admits stay as they are). Iterative: nothing here recurses."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    done: dict[int, Any] = {}   # id -> replacement (or the object itself)
    visiting: set[int] = set()
    todo: list[tuple[Any, bool]] = [(root, False)]

    def leaf(x: Any) -> bool:
        return not isinstance(x, _INNER)

    while todo:
        obj, after = todo.pop()
        if leaf(obj):
            continue
        i = id(obj)
        if not after:
            if i in done:
                continue
            if i in visiting:
                raise _Refused("it contains a container that holds itself (a cycle)")
            visiting.add(i)
            todo.append((obj, True))
            todo.extend((c, False) for c in _children(obj) if not leaf(c) and id(c) not in done)
            continue
        kids = _children(obj)
        n = 1 + sum(size[id(c)] if not leaf(c) else 1 for c in kids)
        d = 1 + max((depth[id(c)] for c in kids if not leaf(c)), default=0)
        if n > MAX_EXPANDED:
            raise _Refused(f"written out it has more than {MAX_EXPANDED:,} entries (containers shared many times "
                           "over); a weights file has no such structure")
        if d > MAX_DEPTH:
            raise _Refused(f"it nests containers more than {MAX_DEPTH} deep")
        size[i], depth[i] = n, d
        visiting.discard(i)
        done[i] = _replaced(obj, done, loaded_by_torch) if replace else obj
    return _value(root, done, loaded_by_torch) if replace else root


def settle_torch(obj: Any, where: str) -> Any:
    """What ``torch.load`` returned with :func:`torch_globals`, with each numpy array and dtype in place of its
    vetted builder (torch leaves the builder in the data); the structure is checked again as a whole."""
    try:
        return _finish(obj, replace=True, loaded_by_torch=True)
    except inert.Refused as e:
        raise UnsafePickleError(f"{where}: refused to load: {e}; it is unsafe or not a checkpoint") from None


def _value(x: Any, done: dict, loaded_by_torch: bool = False) -> Any:
    if isinstance(x, _Array):
        if x.array is None:
            raise _Refused("it leaves a numpy array without its data")
        return x.array
    if isinstance(x, _Dtype):
        return x.dtype
    if x is _NDARRAY or callable(x) and not _is_stand_in(x) and not loaded_by_torch:
        raise _Refused("it leaves a bare global (a class or function) in the data")
    return done.get(id(x), x) if isinstance(x, _CONTAINERS) else x


def _replaced(obj: Any, done: dict, loaded_by_torch: bool = False) -> Any:
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = _value(v, done, loaded_by_torch)
        return obj
    if isinstance(obj, list):
        obj[:] = [_value(v, done, loaded_by_torch) for v in obj]
        return obj
    if isinstance(obj, tuple):
        new = tuple(_value(v, done, loaded_by_torch) for v in obj)
        return obj if all(a is b for a, b in zip(new, obj)) else new
    return obj  # sets: their items are plain keys


# ----------------------------------------------------------------------------- entry points

def refusal(name: str) -> str:
    """Why a file naming the global ``name`` (not a known harmless object) is refused, and what to do."""
    return (f"it names the global {name}, a stored Python object refused because unpickling it could run arbitrary "
            "code (weights, plain data and known harmless objects are read); export the weights with the library "
            "that made the file (its own export or extract script, run where you trust the file) or pass a "
            "converted .pkl")


def _one_line(where: str, e: BaseException) -> UnsafePickleError:
    if isinstance(e, _UnknownGlobal):
        return UnsafePickleError(f"{where}: refused to load: {e}")
    if isinstance(e, inert.Refused) and not isinstance(e, _Malformed):
        return UnsafePickleError(f"{where}: refused to load: {e}; it is unsafe or not a weights file")
    detail = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    return UnsafePickleError(f"{where}: not a readable weights pickle ({detail}); "
                             "it is truncated, corrupt or not a .pkl weights file")


def _load_stream(f: BinaryIO, where: str, size: int) -> Any:
    try:
        return _finish(_Machine(scan=False).run(f, size), replace=True)
    except (inert.Refused, ValueError, TypeError, OverflowError, MemoryError, EOFError, UnicodeDecodeError) as e:
        raise _one_line(where, e) from None


def loads(data: bytes, where: str = "weights") -> Any:
    """Rebuild the plain data and numpy arrays pickled in ``data`` (module doc); one-line errors."""
    return _load_stream(io.BytesIO(data), where, len(data))


def open_regular(path: str | os.PathLike, what: str = "weights file", max_bytes: int = MAX_FILE_BYTES) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file of at most ``max_bytes`` (a FIFO, device or
    directory would block or never end); raise :class:`UnsafePickleError` with one line otherwise."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except IsADirectoryError:
        raise UnsafePickleError(f"{p}: is a directory, expected a {what}") from None
    except FileNotFoundError:
        raise UnsafePickleError(f"{p}: no such file") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePickleError(f"{p}: a symbolic link loop") from None
        raise UnsafePickleError(f"{p}: cannot be read ({e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, socket or device)"
        raise UnsafePickleError(f"{p}: is {kind}, expected a {what}")
    if st.st_size > max_bytes:
        os.close(fd)
        raise UnsafePickleError(f"{p}: is {st.st_size / 2**30:.1f} GiB, more than the {max_bytes / 2**30:.0f} GiB "
                                f"a {what} may have here")
    if st.st_size == 0:
        os.close(fd)
        raise UnsafePickleError(f"{p}: file is empty (0 bytes); the save or download was interrupted")
    if hasattr(os, "O_NONBLOCK"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb", buffering=1 << 20)


def load(path: str | os.PathLike) -> Any:
    """Read one ``.pkl`` weights file safely; raise :class:`UnsafePickleError` (one line) on any problem."""
    with open_regular(path) as f:
        obj = _load_stream(f, str(path), os.fstat(f.fileno()).st_size)
        if f.read(1):
            raise UnsafePickleError(f"{path}: has data after the end of its pickle; it is corrupt or not a .pkl "
                                    "weights file")
    return obj


def scan_torch_file(path: str | os.PathLike) -> None:
    """Check a torch checkpoint (zip or legacy format) before ``torch.load(weights_only=True)`` reads it: the
    pickled structure against the module's limits, and the memory its storages would take against the file's
    size (:func:`_check_zip`); raise :class:`UnsafePickleError` (one line)."""
    where = str(path)
    with open_regular(path, "checkpoint file") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(4)
        f.seek(0)
        if head == b"PK\x03\x04":  # torch's own test (serialization._is_zipfile); anything else is read as legacy
            try:
                with zipfile.ZipFile(f) as z:
                    _check_zip(z, where, size)
            except UnsafePickleError:
                raise
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError, ValueError,
                    NotImplementedError) as e:  # NotImplementedError: a compression zipfile lacks
                raise UnsafePickleError(f"{where}: truncated or corrupt checkpoint (broken zip archive: "
                                        f"{str(e).splitlines()[0][:80] if str(e) else type(e).__name__}); "
                                        "fetch or save it again") from None
            return
        if head[:1] != b"\x80":  # a legacy torch file starts with a protocol-2 pickle
            raise UnsafePickleError(f"{where}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
        storages: dict[str, int] = {}
        for _ in range(5):  # legacy torch format: magic number, protocol, sys info, the data, storage keys
            if not f.peek(1)[:1]:
                break
            for key, numel, item in _scan(f, where, size):
                storages.setdefault(key, (numel or 0) * (item or 1))  # torch allocates the first one it meets
        declared = sum(storages.values())
        if declared > size:  # the legacy format writes every storage's bytes after the pickles
            raise UnsafePickleError(f"{where}: refused to load: its tensors declare {declared:,} bytes but the file "
                                    f"has {size:,}; it is corrupt or crafted to exhaust memory")


def _ascii_lower(name: str) -> str:
    """How torch's zip reader (miniz) compares names: ASCII letters without case, all else as it is."""
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _check_zip(z: zipfile.ZipFile, where: str, size: int) -> None:
    """Read a torch zip as torch's reader does, and refuse what it could not read safely.

    torch (``PyTorchStreamReader``) takes the first entry's top folder as the archive's prefix, requires every
    entry under it, and finds records by name ignoring ASCII case with a binary search over the sorted names: of
    two names equal but for case (``data.pkl``, ``DATA.PKL``), or one name written twice, either may be the one
    it reads. So: one entry per name ignoring case, the scan reads ``<prefix>/data.pkl`` as torch does, every
    storage that pickle names must exist and hold the bytes it declares, and what torch reads in all (members
    inflated) may be at most :data:`MAX_INFLATE` times the file's size (torch itself stores members uncompressed).
    """
    infos = z.infolist()
    if not infos:
        raise UnsafePickleError(f"{where}: an empty zip archive; not a PyTorch checkpoint")
    prefix = infos[0].filename.split("/", 1)[0] + "/"
    if "/" not in infos[0].filename:
        raise UnsafePickleError(f"{where}: a zip archive whose first entry {infos[0].filename[:60]!r} is not in a "
                                "folder; not a PyTorch checkpoint")
    by_name: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = _ascii_lower(info.filename)
        if name in by_name:
            other = by_name[name].filename
            how = f"{info.filename[:60]!r} twice" if other == info.filename else \
                f"{other[:60]!r} and {info.filename[:60]!r} (torch ignores case)"
            raise UnsafePickleError(f"{where}: refused to load: the zip archive holds {how}, and torch could read "
                                    "either; it is crafted or corrupt")
        if not info.filename.startswith(prefix):
            raise UnsafePickleError(f"{where}: a zip archive with entries outside its folder {prefix!r} "
                                    f"({info.filename[:60]!r}); not a PyTorch checkpoint")
        if info.file_size > MAX_INFLATE * info.compress_size + (1 << 20):
            raise UnsafePickleError(f"{where}: refused to load: its entry {info.filename[:60]!r} inflates "
                                    f"{info.compress_size:,} bytes to {info.file_size:,} (torch stores entries "
                                    "uncompressed); it is crafted to exhaust memory")
        by_name[name] = info
    pickles = [i.filename for i in infos if _ascii_lower(i.filename).endswith("data.pkl")]
    if len(pickles) > 1:
        raise UnsafePickleError(f"{where}: refused to load: the zip archive holds {len(pickles)} pickles "
                                f"({', '.join(repr(p[:60]) for p in pickles[:3])}), a checkpoint one data.pkl; "
                                "it is crafted or corrupt")
    main = by_name.get(_ascii_lower(prefix + "data.pkl"))
    if main is None:
        raise UnsafePickleError(f"{where}: a zip archive without {prefix}data.pkl; not a PyTorch checkpoint")
    if main.file_size > MAX_TORCH_PICKLE_BYTES:  # tensors live beside it, not in it
        raise UnsafePickleError(f"{where}: its data.pkl claims {main.file_size:,} bytes; "
                                "a checkpoint's pickle is small (its tensors are stored beside it)")
    for record in TORCH_RECORDS:
        info = by_name.get(_ascii_lower(prefix + record))
        if info is not None and info.file_size > 1024:
            raise UnsafePickleError(f"{where}: refused to load: its record {info.filename[:60]!r} claims "
                                    f"{info.file_size:,} bytes (torch writes a few); it is crafted or corrupt")
    with z.open(main) as inner:
        storages = _scan(inner, where, main.file_size)
    total = main.file_size
    seen: set[str] = set()
    for key, numel, item in storages:
        info = by_name.get(_ascii_lower(f"{prefix}data/{key}"))
        if info is None:
            raise UnsafePickleError(f"{where}: truncated or corrupt checkpoint (its tensor data {prefix}data/"
                                    f"{key[:40]} is missing); fetch or save it again")
        declared = numel * item if numel is not None and item is not None else 0
        if declared > info.file_size:
            raise UnsafePickleError(f"{where}: refused to load: a tensor storage declares {declared:,} bytes, its "
                                    f"entry {info.filename[:60]!r} holds {info.file_size:,}; it is corrupt or crafted")
        if key not in seen:
            seen.add(key)
            total += info.file_size
    budget = MAX_INFLATE * size + (1 << 20)
    if total > budget:
        raise UnsafePickleError(f"{where}: refused to load: its tensors would take {total:,} bytes, more than "
                                f"{MAX_INFLATE} times the file's {size:,}; it is crafted to exhaust memory")


def _scan(f: BinaryIO, where: str, size: int) -> list[tuple[str, int | None, int | None]]:
    """Scan one pickle; return the storages it names: (key, numel, element size), None where not plain."""
    machine = _Machine(scan=True)
    try:
        _finish(machine.run(f, size), replace=False)
        return machine.storages
    except _Malformed as e:
        raise UnsafePickleError(f"{where}: not a PyTorch checkpoint (unreadable pickle: {e})") from None
    except _Refused as e:
        raise UnsafePickleError(f"{where}: refused to load: {e}; it is unsafe or not a checkpoint") from None
    except (ValueError, TypeError, OverflowError, MemoryError, EOFError, UnicodeDecodeError) as e:
        raise UnsafePickleError(f"{where}: not a PyTorch checkpoint (unreadable pickle: "
                                f"{str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
