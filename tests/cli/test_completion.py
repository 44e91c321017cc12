"""The names cache behind shell completion: what replaces, what adds, what is survived."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptt.cli import completion


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_lists_replace_and_views_add() -> None:
    completion.remember_answer("group.list", {"groups": [{"name": "a"}, {"name": "b"}]})
    completion.remember_answer("group.show", {"name": "c", "members": [{"user": "ann"}]})
    assert completion.known_names("groups") == ["a", "b", "c"]
    assert completion.known_names("users") == ["ann"]
    completion.remember_answer("group.list", {"groups": [{"name": "b"}]})  # a and c are gone
    assert completion.known_names("groups") == ["b"]
    completion.remember_answer("user.list", {"users": [{"name": "zoë"}]})
    assert completion.known_names("users") == ["zoë"]
    completion.remember_answer("user.add", {"name": "x", "token": "secret"})  # not a view
    assert completion.known_names("users") == ["zoë"]
    assert completion.matching("users", "ZO") == ["zoë"]
    assert "secret" not in completion.cache_path().read_text(encoding="utf-8")


def test_a_damaged_or_unwritable_cache_never_fails(cache_home: Path) -> None:
    path = completion.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json", encoding="utf-8")
    assert completion.known_names("groups") == []
    path.write_text('["a list"]', encoding="utf-8")
    assert completion.matching("groups", "") == []
    path.unlink()
    path.parent.chmod(0o500)
    try:
        completion.remember(groups=["g"])  # best effort: no exception
    finally:
        path.parent.chmod(0o700)
