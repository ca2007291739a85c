"""Read YAML handed to the suite by a user (configs, weights lists) as plain data, bounded.

PyYAML's ``safe_load`` builds no Python objects, but it still accepts what a careless or hostile file can
use against the reader: an alias bomb (a 1.6 KB document whose nine levels of anchors each repeat the last
nine times: cheap to load, billions of nodes to print or walk), duplicate keys (the last silently wins), and
any file at all (a FIFO blocks, ``/dev/zero`` never ends). :func:`load` reads through
:func:`core.files.read_text` (regular files only, a size limit), refuses duplicate keys with their line, and
refuses a document whose tree, with every alias expanded, has more than :data:`MAX_NODES` nodes. Every
problem is a :class:`YamlError` with one line naming the file.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from core.files import read_text

MAX_YAML_BYTES = 1 << 20   # a Detectron2 config is a few KB, a weights list a few hundred bytes per row
MAX_NODES = 100_000        # values in the document written out as a tree, aliases expanded


class YamlError(ValueError):
    """A YAML file that is refused; the message is one line naming the file."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the base class says so
                break
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {str(key)[:60]!r} is given twice (lines {first} and "
                                f"{key_node.start_mark.line + 1}); remove one", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(doc: Any, limit: int) -> int:
    """Nodes of ``doc`` as a tree (shared references counted each time), counting stops past ``limit``."""
    count, todo = 0, [doc]
    while todo and count <= limit:
        x = todo.pop()
        count += 1
        if isinstance(x, dict):
            todo.extend(x.keys())
            todo.extend(x.values())
        elif isinstance(x, (list, tuple, set)):
            todo.extend(x)
    return count


def loads(text: str, where: str = "YAML") -> Any:
    """The plain data of the YAML ``text`` (module doc); ``where`` names it in errors."""
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as e:
        mark = f" (line {e.problem_mark.line + 1})" if e.problem_mark is not None else ""
        detail = " ".join(str(x) for x in (e.context, e.problem) if x)[:160]
        raise YamlError(f"{where}: not valid YAML{mark}: {detail}") from None
    except yaml.YAMLError as e:
        raise YamlError(f"{where}: not valid YAML: {str(e).splitlines()[0][:160]}") from None
    except RecursionError:
        raise YamlError(f"{where}: nested too deeply to be a config") from None
    if _expanded_size(doc, MAX_NODES) > MAX_NODES:
        raise YamlError(f"{where}: more than {MAX_NODES:,} values once its aliases (*name) are expanded; "
                        "refused as an alias bomb, write the values out")
    return doc


def load(path: str | os.PathLike, what: str = "YAML file", max_bytes: int = MAX_YAML_BYTES) -> Any:
    """The plain data of the YAML file ``path`` (module doc); :class:`YamlError` with one line otherwise."""
    try:
        text = read_text(path, max_bytes, what)
    except ValueError as e:
        raise YamlError(str(e)) from None
    return loads(text, str(path))
