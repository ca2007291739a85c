"""The bounded readers every user-supplied file goes through: core.files, core.safe_yaml, core.names."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from core import files, names, safe_yaml


def _bomb(levels: int = 9) -> str:
    """The classic alias bomb: each level repeats the previous one nine times (9**levels leaves)."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_yaml_plain_data_and_bom(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_bytes(b"\xef\xbb\xbfa: 1\nb: [x, 2]\n")
    assert safe_yaml.load(f) == {"a": 1, "b": ["x", 2]}


def test_yaml_python_tag_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    f = tmp_path / "a.yaml"
    f.write_text(f'a: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(safe_yaml.YamlError, match=r"a\.yaml: not valid YAML \(line 1\)"):
        safe_yaml.load(f)
    assert not marker.exists()


def test_yaml_duplicate_key_names_both_lines() -> None:
    with pytest.raises(safe_yaml.YamlError, match=r"key 'label' is given twice \(lines 2 and 4\)"):
        safe_yaml.loads("- path: a.pkl\n  label: x\n  input_format: RGB\n  label: y\n", "list.yaml")
    assert safe_yaml.loads("a: {k: 1}\nb: {k: 2}\n") == {"a": {"k": 1}, "b": {"k": 2}}  # same key, two mappings


def test_yaml_alias_bomb_refused_fast() -> None:
    t0 = time.monotonic()
    with pytest.raises(safe_yaml.YamlError, match="alias bomb"):
        safe_yaml.loads(_bomb(), "bomb.yaml")
    assert time.monotonic() - t0 < 5
    assert safe_yaml.loads(_bomb(3))["l2"][0][0][0] == "lol"  # 729 leaves: aliases themselves are allowed


def test_yaml_fifo_and_device_do_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "list.yaml"
    os.mkfifo(fifo)
    done: list[str] = []

    def read() -> None:
        for p in (fifo, Path("/dev/zero")):
            try:
                safe_yaml.load(p)
            except safe_yaml.YamlError as e:
                done.append(str(e))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    assert done == [f"{fifo}: is a FIFO (named pipe), not a regular file; expected a YAML file",
                    "/dev/zero: is a device, not a regular file; expected a YAML file"]


def test_yaml_size_limit_and_encoding(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * 2000 + "\n")
    with pytest.raises(safe_yaml.YamlError, match=r"is 2.0 KiB, more than the 1000 bytes allowed"):
        safe_yaml.load(big, max_bytes=1000)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: caf\xe9\n")
    with pytest.raises(safe_yaml.YamlError, match=r"not UTF-8 text \(byte 7\)"):
        safe_yaml.load(latin)
    with pytest.raises(safe_yaml.YamlError, match="no-such.yaml: cannot read"):
        safe_yaml.load(tmp_path / "no-such.yaml")


def test_brief_never_builds_a_long_repr() -> None:
    assert files.brief("x" * 10_000) == repr("x" * 58)[:59] + "…"
    assert len(files.brief("x" * 10_000)) == 60
    assert files.brief(["a"] * 10**6) == "a list of 1000000 items"
    assert files.brief("RGB") == "'RGB'"


@pytest.mark.parametrize("bad, why", [
    ("a\u200bb", r"invisible formatting character \(U\+200B\) at position 2"),
    ("moco\x1b[31m", r"control character \(U\+001B\) at position 5"),
    ("a\x00b", r"control character \(U\+0000\)"),
    ("line\nbreak", r"control character \(U\+000A\)"),
    ("\u202eevil", r"invisible formatting character \(U\+202E\)"),
    ("x" * 129, "129 characters, more than the 128 allowed"),
    ("  ", "is empty"),
    (False, "must be text, not bool"),
])
def test_names_refused(bad: object, why: str) -> None:
    assert names.name_problem(bad, "label") is not None
    with pytest.raises(ValueError, match=why):
        names.clean_name(bad, "label")  # type: ignore[arg-type]


def test_names_nfc_makes_look_alikes_equal() -> None:
    assert names.clean_name(" cafe\u0301 ") == names.clean_name("caf\u00e9") == "caf\u00e9"
    assert names.clean_name("MoCo v2 (800 ep)") == "MoCo v2 (800 ep)"
