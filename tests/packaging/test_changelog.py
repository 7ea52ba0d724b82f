"""Release notes: antsibull-changelog assembles changelogs/fragments into
CHANGELOG.rst and changelogs/changelog.yaml for the version in galaxy.yml.

CI lints every fragment and builds the release notes in a copy of the
checkout (the release itself, `antsibull-changelog release` in the checkout,
is the maintainer's step: it consumes the fragments). A change of the product
(plugins/, roles/, playbooks/, meta/runtime.yml) needs a fragment: with
KUMA_MESH_CHANGELOG_BASE set to a git ref (a pull request's target branch),
the diff from there must add or change one; without it, the release being
prepared must have notes at all.
"""

import glob
import os
import shutil
import subprocess

import pytest
import yaml

from collection_build import BIN, ROOT, galaxy_meta

PRODUCT = ("plugins/", "roles/", "playbooks/", "meta/runtime.yml")


@pytest.fixture(scope="module")
def changelog_tool():
    path = os.path.join(BIN, "antsibull-changelog")
    if not os.path.exists(path):
        message = "antsibull-changelog is not in %s: install requirements-dev.txt (scripts/bootstrap)" % BIN
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def tool_env():
    # antsibull-changelog finds the new modules with this venv's ansible-doc.
    return dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""), NO_COLOR="1")


def sh(cmd, cwd=ROOT, check=True):
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    if check:
        assert proc.returncode == 0, "$ %s\n%s" % (" ".join(cmd), proc.stdout)
    return proc


def fragments(root=ROOT):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(root, "changelogs", "fragments", "*.y*ml")))


def released():
    with open(os.path.join(ROOT, "changelogs", "changelog.yaml")) as f:
        return (yaml.safe_load(f) or {}).get("releases") or {}


def test_fragments_and_changelog_yaml_lint_clean(changelog_tool):
    out = sh([changelog_tool, "lint"]).stdout
    assert not out.strip(), out
    out = sh([changelog_tool, "lint-changelog-yaml", os.path.join("changelogs", "changelog.yaml")]).stdout
    assert not out.strip(), out


def test_release_notes_build_for_the_version_in_galaxy_yml(changelog_tool, tmp_path):
    version = galaxy_meta()["version"]
    if version in released():
        pytest.skip("%s is released already: bump galaxy.yml's version for the next one" % version)
    assert fragments(), "the release of %s has no changelog fragment" % version
    files = sh(["git", "ls-files", "--cached", "--others", "--exclude-standard"]).stdout.split()
    copy = str(tmp_path / "checkout")
    for rel in files:
        if os.path.isfile(os.path.join(ROOT, rel)):
            os.makedirs(os.path.dirname(os.path.join(copy, rel)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, rel), os.path.join(copy, rel))
    sh([changelog_tool, "release"], cwd=copy)

    with open(os.path.join(copy, "changelogs", "changelog.yaml")) as f:
        release = yaml.safe_load(f)["releases"][version]
    assert sorted(release["fragments"]) == fragments()
    assert fragments(copy) == [], "the release did not consume its fragments"
    modules = sorted(os.path.splitext(os.path.basename(p))[0]
                     for p in glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py")))
    known = {m["name"] for r in released().values() for m in r.get("modules", [])}
    assert sorted(m["name"] for m in release.get("modules", [])) == sorted(set(modules) - known)
    with open(os.path.join(copy, "CHANGELOG.rst")) as f:
        notes = f.read()
    assert "\nv%s\n" % version in notes
    for section in release["changes"]:
        for entry in release["changes"][section]:
            assert entry.split()[0] in notes, entry


def test_product_changes_come_with_a_fragment():
    base = os.environ.get("KUMA_MESH_CHANGELOG_BASE")
    if not base:
        pytest.skip("KUMA_MESH_CHANGELOG_BASE is not set (a git ref to compare with, e.g. origin/main)")
    changed = sh(["git", "diff", "--name-only", "--diff-filter=ACMRD", base + "...HEAD"]).stdout.split()
    product = [f for f in changed if f.startswith(PRODUCT)]
    notes = [f for f in changed if f.startswith("changelogs/fragments/")]
    assert not product or notes, ("these changes of the product since %s have no changelog fragment "
                                  "(changelogs/fragments/<topic>.yml): %s" % (base, product))
