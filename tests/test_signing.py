"""The signing module on its own: keys, key files, signatures of entry.json."""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
import stat

import pytest

from pytest_persist.store.signing import (
    SIGNATURE_FILE,
    SigningKey,
    SigningKeyError,
    TrustPolicy,
    check_signature,
    load_key_file,
    own_key,
    sign_entry,
    user_key_path,
)


def _entry(tmp_path, text='{"files": {}}\n'):
    directory = tmp_path / "entry"
    directory.mkdir()
    (directory / "entry.json").write_text(text)
    return directory


def test_signature_statuses(tmp_path):
    directory = _entry(tmp_path)
    data = (directory / "entry.json").read_bytes()
    mine, other = SigningKey(secrets.token_bytes(32), "a"), SigningKey(secrets.token_bytes(32), "b")
    assert check_signature(directory, data, [mine]).status == "unsigned"
    sign_entry(directory, mine)
    assert check_signature(directory, data, [other, mine]).trusted
    untrusted = check_signature(directory, data, [other])
    assert (untrusted.status, untrusted.key_id) == ("untrusted", mine.key_id)
    changed = check_signature(directory, data.replace(b"{}", b"{ }"), [mine])
    assert changed.status == "invalid" and "does not match" in changed.why
    signature = json.loads((directory / SIGNATURE_FILE).read_text())
    assert signature["algorithm"] == "hmac-sha256" and signature["key_id"] == mine.key_id
    assert mine.key_id != other.key_id and mine.secret.hex() not in json.dumps(signature)


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        ("zz" * 32, 0o600, "not a pytest-persist key"),
        ("ab" * 16, 0o600, "not a pytest-persist key"),
        ("ab" * 32, 0o640, r"readable or writable by others \(mode 0640\)"),
        ("ab" * 32, 0o400, None),
    ],
)
def test_key_files(tmp_path, content, mode, message):
    path = tmp_path / "k"
    path.write_text(content + "\n")
    path.chmod(mode)
    if message is None:
        assert load_key_file(path).secret == bytes.fromhex(content)
    else:
        with pytest.raises(SigningKeyError, match=message) as info:
            load_key_file(path)
        assert str(path) in str(info.value)


def test_key_from_the_environment_wins(tmp_path, monkeypatch):
    secret = secrets.token_bytes(32)
    monkeypatch.setenv("PYTEST_PERSIST_KEY", secret.hex())
    assert own_key(tmp_path / "no-such-file").secret == secret
    monkeypatch.setenv("PYTEST_PERSIST_KEY", "nope")
    with pytest.raises(SigningKeyError, match="environment variable PYTEST_PERSIST_KEY"):
        TrustPolicy.from_options()


def _create(_: int) -> str:
    return own_key(create=True).key_id


def test_concurrent_first_saves_share_one_user_key(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert own_key() is None  # checking never creates a key
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        ids = pool.map(_create, range(8))
    assert len(set(ids)) == 1
    path = user_key_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["key"]  # no temporary files left
    assert own_key().key_id == ids[0]
