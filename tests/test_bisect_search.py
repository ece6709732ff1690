"""The bisection's search, the release lists and the installed set, without building any
environment: a fake tester says which environments pass (it tests the search, not
persistence)."""

from __future__ import annotations

import json

import pytest
from packaging.version import Version

from pytest_persist.environments.bisect import (
    BROKEN,
    FAIL,
    PASS,
    Bisection,
    Change,
    Trial,
    dependents_first,
    differences,
)
from pytest_persist.environments.installed import freeze_lines, installed_set, package_index
from pytest_persist.environments.releases import installable_versions, releases_between

SKLEARN = ["1.2.2", "1.3.0", "1.3.1", "1.3.2", "1.4.0", "1.4.2", "1.5.0", "1.6.1", "1.9.1"]
SAVED = {"scikit-learn": "1.2.2", "numpy": "1.26.4", "scipy": "1.11.4", "joblib": "1.3.2"}
HERE = {"scikit-learn": "1.9.1", "numpy": "2.4.6", "scipy": "1.17.1", "joblib": "1.6.0"}
REQUIRES = {"scikit-learn": ["numpy", "scipy", "joblib"], "scipy": ["numpy"]}


def hgb_like(moves):
    """Loads and predicts up to scikit-learn 1.3.0, breaks from 1.3.1 (a patch release); an
    old scikit-learn does not import with numpy 2 (an incoherent environment)."""
    sklearn = Version(moves.get("scikit-learn", SAVED["scikit-learn"]))
    numpy = Version(moves.get("numpy", SAVED["numpy"]))
    if numpy.major >= 2 and sklearn < Version("1.4.2"):
        return Trial(moves, BROKEN, "scikit-learn does not import with numpy 2")
    if sklearn >= Version("1.3.1"):
        return Trial(moves, FAIL, "method_error: Buffer dtype mismatch")
    return Trial(moves, PASS)


def releases(change, before):
    if change.package == "scikit-learn":
        return SKLEARN
    return [change.saved, change.here]


def search(tester, saved=SAVED, here=HERE, **options):
    changes = dependents_first(differences(saved, here), REQUIRES, ["scikit-learn", "numpy"])
    lines = []
    finding = Bisection(changes, tester, releases, progress=lines.append, **options).run()
    return finding, lines


def test_finds_the_patch_release_that_breaks():
    finding, lines = search(hgb_like)
    assert finding.status == "found", finding.message
    assert finding.first_bad == {"package": "scikit-learn", "version": "1.3.1"}
    assert finding.last_good == {"package": "scikit-learn", "version": "1.3.0"}
    assert finding.message.startswith("breaks at scikit-learn 1.3.1 (passes with 1.3.0)")
    assert finding.good.status == PASS and finding.bad.status == FAIL
    assert finding.bad.moves == {"scikit-learn": "1.3.1"}
    assert len(finding.trials) <= 8  # 1 baseline, 1 all changes, log2 of each list, 1 confirm
    assert any("[1] the saved environment, rebuilt" in line for line in lines)
    # the confirmation (everything else as here, scikit-learn at 1.3.0) cannot be built
    assert any("cannot be tried with the other changes as here" in n for n in finding.notes)


def test_harmless_changes_are_named():
    def breaks_at_130(moves):
        sklearn = Version(moves.get("scikit-learn", SAVED["scikit-learn"]))
        return Trial(moves, FAIL if sklearn >= Version("1.3.0") else PASS, "load_error")

    finding, _ = search(breaks_at_130)
    assert finding.first_bad == {"package": "scikit-learn", "version": "1.3.0"}
    assert finding.last_good == {"package": "scikit-learn", "version": "1.2.2"}
    harmless = {c.package for c in finding.harmless}
    assert harmless == {"numpy", "scipy", "joblib"}
    assert "numpy 1.26.4 -> 2.4.6" in finding.message and "harmless" in finding.message


def test_the_package_whose_move_breaks_is_found_among_others():
    def numpy_breaks(moves):
        numpy = Version(moves.get("numpy", SAVED["numpy"]))
        return Trial(moves, FAIL if numpy.major >= 2 else PASS, "mismatch")

    finding, _ = search(numpy_breaks)
    assert finding.culprit.package == "numpy"
    assert finding.first_bad == {"package": "numpy", "version": "2.4.6"}
    # scikit-learn and scipy moved before numpy in the order and passed
    assert {"scikit-learn", "scipy"} <= {c.package for c in finding.harmless}


def test_not_reproducible_when_the_saved_environment_fails():
    finding, _ = search(lambda moves: Trial(moves, FAIL, "load_error: broken from the start"))
    assert finding.status == "not_reproducible"
    assert "cannot be reproduced" in finding.message and "broken from the start" in finding.message
    assert len(finding.trials) == 1


def test_not_found_when_every_change_passes():
    finding, _ = search(lambda moves: Trial(moves, PASS))
    assert finding.status == "not_found"
    assert "does not show" in finding.message


def test_an_added_package_is_tried_after_the_version_changes():
    here = {**HERE, "sklearn-intelex": "2025.1"}

    def patched(moves):
        return Trial(moves, FAIL if "sklearn-intelex" in moves else PASS, "mismatch")

    finding, _ = search(patched, here=here)
    assert finding.status == "found"
    assert finding.first_bad == {"package": "sklearn-intelex", "version": "2025.1"}
    assert finding.message.startswith("breaks when sklearn-intelex 2025.1 is installed")
    assert {c.package for c in finding.harmless} >= {"scikit-learn", "numpy"}


def test_broken_environments_are_skipped_and_can_hide_the_boundary():
    def nothing_between(moves):
        sklearn = moves.get("scikit-learn", SAVED["scikit-learn"])
        if sklearn not in ("1.2.2", "1.9.1"):
            return Trial(moves, BROKEN, "no wheel")
        return hgb_like(moves) if sklearn == "1.2.2" else Trial(moves, FAIL, "x")

    finding, _ = search(nothing_between)
    assert finding.status == "found"
    assert (finding.last_good["version"], finding.first_bad["version"]) == ("1.2.2", "1.9.1")
    assert any("could be installed" in n for n in finding.notes)


def test_gives_up_after_the_budget():
    finding, _ = search(hgb_like, max_trials=3)
    assert finding.status == "inconclusive" and "gave up after 3" in finding.message


def test_each_environment_is_tried_once():
    seen = []

    def counting(moves):
        seen.append(tuple(sorted(moves.items())))
        return hgb_like(moves)

    search(counting)
    assert len(seen) == len(set(seen))


def test_dependents_come_before_what_they_require():
    changes = differences(
        {"scikit-learn": "1", "numpy": "1", "scipy": "1", "pandas": "1", "a": "1", "b": "1"},
        {"scikit-learn": "2", "numpy": "2", "scipy": "2", "pandas": "2", "a": "2", "b": "2",
         "lightgbm": "4"},
    )  # fmt: skip
    requires = {
        "scikit-learn": ["numpy", "scipy"],
        "scipy": ["numpy"],
        "pandas": ["numpy"],
        "lightgbm": ["numpy", "scipy"],
        "a": ["b"],
        "b": ["a"],  # a cycle
    }
    order = [c.package for c in dependents_first(changes, requires, ["scikit-learn", "numpy"])]
    assert order.index("scikit-learn") < order.index("scipy") < order.index("numpy")
    assert order.index("pandas") < order.index("numpy")
    assert order[-1] == "lightgbm"  # added packages after every version change
    assert sorted(order) == sorted(c.package for c in changes)


def test_differences():
    changes = differences({"a": "1", "b": "1", "c": "1"}, {"a": "1", "b": "2", "d": "1"})
    assert changes == [Change("b", "1", "2"), Change("c", "1", None), Change("d", None, "1")]
    assert changes[1].describe() == "c 1 -> absent"


# ----------------------------------------------------------------------------------------------
# releases


def wheel(name, version, tag, requires=None, yanked=False):
    return {
        "filename": f"{name}-{version}-{tag}.whl",
        "requires-python": requires,
        "yanked": yanked,
    }


FILES = [
    wheel("scikit_learn", "1.2.2", "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"),
    wheel("scikit_learn", "1.3.0", "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"),
    wheel("scikit_learn", "1.3.1", "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"),
    wheel("scikit_learn", "1.3.2", "cp311-cp311-manylinux_2_17_x86_64", yanked="broken"),
    wheel("scikit_learn", "1.4.0", "cp312-cp312-manylinux_2_17_x86_64"),  # not for 3.11
    wheel("scikit_learn", "1.4.1", "cp311-cp311-win_amd64"),  # not this platform
    wheel("scikit_learn", "1.5.0", "py3-none-any", requires=">=3.12"),  # not this Python
    wheel("scikit_learn", "1.5.1rc1", "py3-none-any"),
    wheel("scikit_learn", "1.6.0", "py3-none-any"),
    {"filename": "scikit_learn-1.6.1.tar.gz", "requires-python": None},  # sdist only
]


def test_installable_versions_for_this_interpreter():
    versions = [str(v) for v in installable_versions(FILES, "3.11.7")]
    assert versions == ["1.2.2", "1.3.0", "1.3.1", "1.5.1rc1", "1.6.0"]


def test_releases_between_in_order_both_ways(tmp_path, monkeypatch):
    import pytest_persist.environments.releases as releases_module

    monkeypatch.setattr(releases_module, "project_files", lambda name, **kw: FILES)
    assert releases_between("scikit-learn", "1.2.2", "1.9.1", "3.11.7") == [
        "1.2.2", "1.3.0", "1.3.1", "1.6.0", "1.9.1"
    ]  # fmt: skip
    assert releases_between("scikit-learn", "1.6.0", "1.2.2", "3.11.7") == [
        "1.6.0", "1.3.1", "1.3.0", "1.2.2"
    ]  # fmt: skip


def test_release_lists_are_cached(tmp_path, monkeypatch):
    import pytest_persist.environments.releases as releases_module

    calls = []

    class Answer:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, *args):
            return json.dumps({"files": FILES}).encode()

    def urlopen(request, timeout):
        calls.append(request.full_url)
        assert request.get_header("Accept") == "application/vnd.pypi.simple.v1+json"
        return Answer()

    monkeypatch.setattr(releases_module.urllib.request, "urlopen", urlopen)
    for _ in range(2):
        files = releases_module.project_files("Scikit_Learn", cache_dir=tmp_path)
    assert files == FILES
    assert calls == ["https://pypi.org/simple/scikit-learn/"]


# ----------------------------------------------------------------------------------------------
# the installed set


def test_installed_set_lists_every_distribution():
    from importlib import metadata

    import sklearn

    installed = installed_set()
    names = {d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions()}
    assert set(installed["distributions"]) == names
    assert installed["distributions"]["scikit-learn"] == sklearn.__version__
    assert installed["python"].count(".") == 2
    lines = freeze_lines(installed)
    assert f"scikit-learn=={sklearn.__version__}" in lines


def test_freeze_lines_for_direct_installs():
    installed = {
        "distributions": {"a": "1.0", "b": "2.0", "c": "3.0", "d": "4.0"},
        "direct": {
            "b": {"url": "file:///src/b", "editable": True},
            "c": {"url": "https://example.org/c.git", "vcs": "git", "commit": "abc123"},
            "d": {"url": "file:///wheels/d-4.0-py3-none-any.whl"},
        },
    }
    assert freeze_lines(installed) == [
        "a==1.0",
        "-e file:///src/b",
        "c @ git+https://example.org/c.git@abc123",
        "d @ file:///wheels/d-4.0-py3-none-any.whl",
    ]


def test_the_index_is_read_without_credentials(monkeypatch, tmp_path):
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = https://user:secret@mirror.example/simple\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    for variable in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL", "UV_INDEX",
                     "UV_EXTRA_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("UV_EXTRA_INDEX_URL", "https://token@extra.example/simple")
    index = package_index()
    assert index["index_url"] == "https://mirror.example/simple"
    assert index["extra_index_urls"] == ["https://extra.example/simple"]
    assert "secret" not in json.dumps(index) and "token" not in json.dumps(index)
    assert str(config) in index["sources"] and "UV_EXTRA_INDEX_URL" in index["sources"]


def test_entries_record_the_installed_set_and_older_ones_still_read(tmp_path):
    import sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from store_helpers import store_model

    from pytest_persist.store.entries import StoreError, read_entry

    X, y = load_iris(return_X_y=True)
    entry = store_model(tmp_path / "store", LogisticRegression(max_iter=500).fit(X, y), X, y)
    installed = entry.manifest["installed"]
    assert installed["distributions"]["scikit-learn"] == sklearn.__version__
    assert entry.environment["scikit-learn"] == sklearn.__version__  # unchanged beside it
    manifest_path = entry.path / "entry.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["installed"]  # as saved before it was recorded
    manifest_path.write_text(json.dumps(manifest))
    assert "installed" not in read_entry(entry.path).manifest
    manifest["installed"] = {"distributions": ["numpy"]}
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match=r"installed\.distributions"):
        read_entry(entry.path)
