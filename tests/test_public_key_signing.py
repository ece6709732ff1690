"""Public-key signed entries in the model-signing format, as users meet them: saved on a
"laptop" with an elliptic-curve private key, checked on a "CI" that holds only the public key,
verified by model-signing's own command line, refused after any change."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

pytest.importorskip(
    "model_signing", reason="the signing extra: pip install pytest-persist[signing]"
)

SUITE = """
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


@pytest.mark.persist_roundtrip(backends=["pickle", "joblib", "skops"])
def test_model(persist_roundtrip):
    X, y = load_iris(return_X_y=True)
    persist_roundtrip(LogisticRegression(max_iter=300).fit(X, y), X, y)
"""
BACKENDS = ("pickle", "joblib", "skops")


def write_key(path: Path, key, *, mode: int = 0o600, password: bytes | None = None) -> Path:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    path.chmod(mode)
    return path


def write_public(path: Path, key) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
def laptop(tmp_path):
    """An EC P-256 key pair: the private key (mode 0600) and its public key."""
    private = ec.generate_private_key(ec.SECP256R1())
    return (
        write_key(tmp_path / "laptop.pem", private),
        write_public(tmp_path / "laptop.pub.pem", private),
    )


def save(pytester: pytest.Pytester, key: Path, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_models=SUITE)
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--persist-save=store", f"--persist-key-file={key}", *args
    )


def check(pytester, monkeypatch, tmp_path, *args: str) -> tuple[pytest.RunResult, dict]:
    """``pytest --persist-load`` as on another machine: a fresh config home, no per-user key,
    no test files."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "ci-config"))
    for test_file in pytester.path.glob("test_*.py"):
        test_file.unlink()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-rA", "--persist-load=store", "--persist-report=r.json", *args
    )
    records = json.loads((pytester.path / "r.json").read_text())["records"]
    return result, {r["backend"]: r for r in records}


def entries(pytester) -> list[Path]:
    return sorted(p for p in (pytester.path / "store").iterdir() if p.is_dir())


def key_id(public: Path) -> str:
    return "ec:" + hashlib.sha256(public.read_bytes()).hexdigest()[:16]


def test_laptop_to_ci_with_only_the_public_key(pytester, monkeypatch, tmp_path, laptop):
    private, public = laptop
    saved = save(pytester, private)
    assert saved.ret == 0, saved.stdout.str()
    for entry in entries(pytester):
        names = {p.name for p in entry.iterdir()}
        assert {"model.sig", "attestation.json", "entry.json"} <= names, names
        assert "signature.json" not in names  # no HMAC secret involved

    result, by_backend = check(pytester, monkeypatch, tmp_path, f"--persist-trust-key={public}")
    assert result.ret == 0, result.stdout.str()
    for backend in BACKENDS:
        signature = by_backend[backend]["details"]["signature"]
        assert signature == {
            "status": "trusted",
            "key_id": key_id(public),
            "scheme": "model-signing ecdsa-P-256",
        }

    # without the public key, the pickles are refused, naming the key that signed them
    result, by_backend = check(pytester, monkeypatch, tmp_path)
    assert by_backend["pickle"]["kind"] == "load_error"
    assert (
        f"signed by key {key_id(public)}, which is not trusted here"
        in by_backend["pickle"]["error"]
    )
    assert by_backend["skops"]["kind"] == "passed"  # skops loads without a signature


def test_model_signings_own_verifier_accepts_and_rejects(pytester, laptop):
    private, public = laptop
    assert save(pytester, private, "-k", "test_model").ret == 0
    entry = entries(pytester)[0]

    def verify() -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "model_signing", "verify", "key"]
        command += ["--signature", str(entry / "model.sig"), "--public_key", str(public)]
        command += ["--ignore-paths", str(entry / "model.sig"), str(entry)]
        return subprocess.run(command, capture_output=True, text=True)

    accepted = verify()
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    manifest = json.loads((entry / "entry.json").read_text())
    (entry / "entry.json").write_text(json.dumps(dict(manifest, test_id="t.py::forged")))
    rejected = verify()
    assert rejected.returncode != 0
    assert "entry.json" in rejected.stdout + rejected.stderr


def test_the_attestation_says_what_was_tested_and_is_covered(pytester, laptop):
    private, _ = laptop
    assert save(pytester, private).ret == 0
    for entry in entries(pytester):
        statement = json.loads((entry / "attestation.json").read_text())
        manifest = json.loads((entry / "entry.json").read_text())
        assert statement["_type"] == "https://in-toto.io/Statement/v1"
        assert statement["predicateType"] == "https://pytest-persist.dev/attestation/tested/v1"
        predicate = statement["predicate"]
        assert predicate["test_id"] == manifest["test_id"]
        assert predicate["backend"] == manifest["backend"]
        assert predicate["outcome"] == "passed"
        assert predicate["compared_methods"] == manifest["methods"]
        assert predicate["environment"] == manifest["environment"]
        subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
        for name, digest in subjects.items():
            assert hashlib.sha256((entry / name).read_bytes()).hexdigest() == digest
        assert manifest["artifact"] in subjects and "data.npz" in subjects


@pytest.mark.parametrize("change", ["artifact", "attestation", "added-file", "other-bundle"])
def test_any_change_after_signing_is_refused(pytester, monkeypatch, tmp_path, laptop, change):
    private, public = laptop
    assert save(pytester, private, "-k", "test_model").ret == 0
    by_name = {e.name.rsplit("--", 1)[1].split("-")[0]: e for e in entries(pytester)}
    entry = by_name["pickle"]
    if change == "artifact":  # rehashed in entry.json, as someone without the key can
        artifact = entry / "artifact.pkl"
        artifact.write_bytes(artifact.read_bytes() + b"\n")
        manifest = json.loads((entry / "entry.json").read_text())
        manifest["files"]["artifact.pkl"] = {
            "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
            "size": artifact.stat().st_size,
        }
        (entry / "entry.json").write_text(json.dumps(manifest, indent=2))
        said = "changed since model.sig signed it"
    elif change == "attestation":  # rewrite what it was shown to do
        statement = json.loads((entry / "attestation.json").read_text())
        statement["predicate"]["outcome"] = "mismatch"
        (entry / "attestation.json").write_text(json.dumps(statement))
        manifest = json.loads((entry / "entry.json").read_text())
        manifest["files"]["attestation.json"] = {
            "sha256": hashlib.sha256((entry / "attestation.json").read_bytes()).hexdigest(),
            "size": (entry / "attestation.json").stat().st_size,
        }
        (entry / "entry.json").write_text(json.dumps(manifest, indent=2))
        said = "attestation.json"
    elif change == "added-file":  # listed in entry.json, unknown to the signature
        manifest = json.loads((entry / "entry.json").read_text())
        (entry / "extra.bin").write_bytes(b"x")
        manifest["files"]["extra.bin"] = {"sha256": hashlib.sha256(b"x").hexdigest(), "size": 1}
        (entry / "entry.json").write_text(json.dumps(manifest, indent=2))
        said = "extra.bin"
    else:  # a genuine bundle, over another entry's files
        shutil.copyfile(by_name["joblib"] / "model.sig", entry / "model.sig")
        said = "model.sig"
    result, by_backend = check(pytester, monkeypatch, tmp_path, f"--persist-trust-key={public}")
    record = by_backend["pickle"]
    assert record["kind"] == "load_error", result.stdout.str()
    assert "its signature is invalid" in record["error"] and said in record["error"], record
    assert by_backend["joblib"]["kind"] == "passed"


def test_an_entry_signed_by_another_key_is_not_trusted(pytester, monkeypatch, tmp_path, laptop):
    _, public = laptop
    other = ec.generate_private_key(ec.SECP384R1())
    other_file = write_key(tmp_path / "other.pem", other)
    other_public = write_public(tmp_path / "other.pub.pem", other)
    assert save(pytester, other_file, "-k", "test_model").ret == 0
    result, by_backend = check(pytester, monkeypatch, tmp_path, f"--persist-trust-key={public}")
    assert by_backend["pickle"]["kind"] == "load_error"
    assert (
        f"signed by key {key_id(other_public)}, which is not trusted here"
        in by_backend["pickle"]["error"]
    )
    # trusting it: P-384 works too
    result, by_backend = check(
        pytester, monkeypatch, tmp_path, f"--persist-trust-key={other_public}"
    )
    assert result.ret == 0, result.stdout.str()
    assert by_backend["pickle"]["details"]["signature"]["scheme"] == "model-signing ecdsa-P-384"


def test_an_encrypted_key_takes_its_passphrase_from_the_environment(
    pytester, monkeypatch, tmp_path
):
    private = ec.generate_private_key(ec.SECP256R1())
    key = write_key(tmp_path / "enc.pem", private, password=b"correct horse")
    public = write_public(tmp_path / "enc.pub.pem", private)
    missing = save(pytester, key, "-k", "test_model")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{key}: an encrypted private key and no passphrase" in missing.stderr.str()
    monkeypatch.setenv("PYTEST_PERSIST_KEY_PASSPHRASE", "wrong")
    wrong = save(pytester, key, "-k", "test_model")
    assert wrong.ret == pytest.ExitCode.USAGE_ERROR
    assert "is not the passphrase of this key" in wrong.stderr.str()
    monkeypatch.setenv("PYTEST_PERSIST_KEY_PASSPHRASE", "correct horse")
    assert save(pytester, key, "-k", "test_model").ret == 0
    monkeypatch.delenv("PYTEST_PERSIST_KEY_PASSPHRASE")
    result, by_backend = check(pytester, monkeypatch, tmp_path, f"--persist-trust-key={public}")
    assert result.ret == 0 and by_backend["pickle"]["details"]["signature"]["status"] == "trusted"


@pytest.mark.parametrize("problem", ["public-as-private", "loose", "k1-curve", "ed25519", "rsa"])
def test_a_key_that_cannot_sign_is_a_usage_error_and_nothing_is_saved(
    pytester, tmp_path, laptop, problem
):
    private, public = laptop
    if problem == "public-as-private":
        key, said = public, "a public key; --persist-key-file (persist_key_file) signs"
        public.chmod(0o600)
    elif problem == "loose":
        key, said = private, "key file is readable or writable by others (mode 0644)"
        private.chmod(0o644)
    elif problem == "k1-curve":
        key = write_key(tmp_path / "k1.pem", ec.generate_private_key(ec.SECP256K1()))
        said = "on curve secp256k1, which model-signing does not sign with"
    elif problem == "ed25519":
        key = write_key(tmp_path / "ed.pem", ed25519.Ed25519PrivateKey.generate())
        said = "model-signing signs with elliptic-curve keys (P-256, P-384 or P-521)"
    else:
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = write_key(tmp_path / "rsa.pem", rsa.generate_private_key(65537, 2048))
        said = "model-signing signs with elliptic-curve keys"
    result = save(pytester, key)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert str(key) in result.stderr.str() and said in result.stderr.str(), result.stderr.str()
    assert not (pytester.path / "store").exists() or not entries(pytester)


def test_a_private_key_is_not_a_key_to_trust(pytester, monkeypatch, tmp_path, laptop):
    private, _ = laptop
    assert save(pytester, private, "-k", "test_model").ret == 0
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "ci-config"))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--persist-load=store", f"--persist-trust-key={private}"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"{private}: a private key; --persist-trust-key" in result.stderr.str()


def test_a_private_key_is_hidden_from_the_loader_child_a_public_key_is_not(laptop):
    """The files a loader child must not read (its sandbox hides them) hold the private key,
    never the public one (which needs no protection)."""
    from pytest_persist.store.signing import TrustPolicy

    private, public = laptop
    policy = TrustPolicy.from_options(key_file=private, trust_key_files=[public])
    assert str(private) in policy.secret_files()
    assert str(public) not in policy.secret_files()


def test_the_readme_commands_work_as_written(pytester, monkeypatch, tmp_path):
    """The README's key-pair block, run line by line as written (openssl, then pytest)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("openssl ecparam", 1)[1].split("```", 1)[0]
    lines = ["openssl ecparam" + block.splitlines()[0], *block.splitlines()[1:]]
    commands = [line.split("#", 1)[0].strip() for line in lines if line.strip()]
    assert len(commands) == 4 and commands[2].startswith("pytest --persist-save")
    pytester.makepyfile(test_models=SUITE)
    for command in commands[:3]:
        if command.startswith("pytest"):
            command = f"{sys.executable} -m {command} -p no:cacheprovider"
        done = subprocess.run(command, shell=True, cwd=pytester.path, capture_output=True)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "ci-config"))  # another machine
    (pytester.path / "test_models.py").unlink()
    ci = subprocess.run(
        f"{sys.executable} -m {commands[3]} -p no:cacheprovider -rA",
        shell=True,
        cwd=pytester.path,
        capture_output=True,
        text=True,
    )
    assert ci.returncode == 0, ci.stdout
    assert ci.stdout.count("PASSED persist_load::") == len(BACKENDS), ci.stdout
