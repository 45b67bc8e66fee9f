"""The data directory of ``agensbus up``: where it is by default, and that one run holds it."""

import os
from pathlib import Path

import pytest

from services.runtime.data_dir import LOCK_FILE, DataDirInUse, default_data_dir, holding


def test_the_default_follows_xdg_data_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_data_dir() == tmp_path / "data" / "agensbus"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for unusable in ("", "relative/data"):
        monkeypatch.setenv("XDG_DATA_HOME", unusable)
        assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "agensbus"


def test_a_held_directory_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    with holding(directory):
        assert (directory / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(DataDirInUse) as raised, holding(directory):
            pass
    message = str(raised.value)
    assert message.startswith(f"{directory} is in use by another agensbus up (pid {os.getpid()})")
    assert "\n" not in message
    # Released at the end of the block: the next run takes it.
    with holding(directory):
        pass
