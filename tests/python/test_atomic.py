"""lowbit._atomic: whole files or none, with the permissions a plain write would give."""

from __future__ import annotations

import os
import stat

import pytest

from lowbit._atomic import atomic_write, atomic_write_text


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_new_file_gets_the_umask_default_and_a_replaced_file_keeps_its_mode(tmp_path):
    old = os.umask(0o027)
    try:
        p = atomic_write_text(tmp_path / "a.md", "one")
        assert p.read_text() == "one" and _mode(p) == 0o640  # 0666 & ~027, not mkstemp's 0600
        os.chmod(p, 0o604)
        atomic_write_text(p, "two")
        assert p.read_text() == "two" and _mode(p) == 0o604
    finally:
        os.umask(old)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = atomic_write_text(tmp_path / "t.csv", "kept")

    def half(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(p, half)
    assert p.read_text() == "kept" and [x.name for x in tmp_path.iterdir()] == ["t.csv"]
