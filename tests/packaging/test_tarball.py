"""The tarball carries the product only, installs without the network, and
works from where it is installed: every module and role has its manual,
every playbook passes a syntax check.

The allow-list below is the product (issue 13, section 3); a new top-level
file or directory shows up here as a failure until it is either listed here
or kept out of the tarball by galaxy.yml's build_ignore.
"""

import fnmatch
import glob
import os

from collection_build import ROOT, galaxy_meta, load_json, run, tool

ALLOWED = [
    "MANIFEST.json", "FILES.json",
    "README.md", "LICENSE", "CHANGELOG.rst",
    "requirements.txt", "bindep.txt",
    "meta/", "meta/*.yml",
    "plugins/", "plugins/*/", "plugins/*/*.py", "plugins/filter/*.yml",  # filter docs beside their code
    "roles/", "roles/*/", "roles/*/*/", "roles/*/*/*",
    "playbooks/", "playbooks/*.yml", "playbooks/*/", "playbooks/*/*",
    "docs/", "docs/*.md", "docs/*.yml", "docs/*/", "docs/*/*",
    "changelogs/", "changelogs/config.yaml", "changelogs/changelog.yaml",
    "changelogs/fragments/", "changelogs/fragments/*.yml", "changelogs/fragments/*.yaml",
]
# Never in the product, whatever the allow-list above grows into.
FORBIDDEN = ["tests/*", "molecule/*", "bench/*", "scripts/*", "constraints/*", ".*", "*/.*",
             "requirements-dev.txt", "pytest.ini", "*.pyc", "*/__pycache__/*", "*.tar.gz"]
REQUIRED = ["LICENSE", "README.md", "meta/runtime.yml", "meta/execution-environment.yml",
            "requirements.txt", "bindep.txt", "changelogs/changelog.yaml", "changelogs/config.yaml"]


def product_files(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def names(pattern, strip_ext=True):
    found = [os.path.basename(p.rstrip("/")) for p in product_files(pattern)]
    return sorted(os.path.splitext(n)[0] if strip_ext else n for n in found if not n.startswith("_"))


MODULES = names("plugins/modules/*.py")
ROLES = names("roles/*/", strip_ext=False)
PLAYBOOKS = names("playbooks/*.yml")


def test_tarball_holds_the_product_only(installed_collection):
    members = installed_collection.members
    outside = [m for m in members if not any(fnmatch.fnmatchcase(m, p) for p in ALLOWED)]
    assert not outside, "not on the allow-list of tests/packaging/test_tarball.py: %s" % outside
    forbidden = [m for m in members if any(fnmatch.fnmatchcase(m, p) for p in FORBIDDEN)]
    assert not forbidden, "development files in the tarball: %s" % forbidden
    expected = (REQUIRED + product_files("plugins/*/*.py") + product_files("playbooks/*.yml")
                + product_files("roles/*/*/*") + product_files("docs/*.md")
                + product_files("changelogs/fragments/*.yml"))
    missing = sorted(set(expected) - set(members))
    assert not missing, "product files missing from the tarball: %s" % missing


def test_license_agrees_with_galaxy_yml(installed_collection):
    assert galaxy_meta()["license"] == ["Apache-2.0"]
    with open(os.path.join(installed_collection.path, "LICENSE")) as f:
        text = f.read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer


def test_no_file_names_another_licence(installed_collection):
    # galaxy.yml and LICENSE say Apache-2.0; a header naming GPL or COPYING
    # (a file the collection does not have) would say otherwise.
    named = []
    for dirpath, _dirs, files in os.walk(installed_collection.path):
        for name in files:
            path = os.path.join(dirpath, name)
            if name == "LICENSE" or name.endswith(".json"):
                continue
            with open(path, errors="replace") as f:
                text = f.read()
            if "General Public License" in text or "COPYING" in text or "GPL-" in text:
                named.append(os.path.relpath(path, installed_collection.path))
    assert not named, "these files name a licence other than Apache-2.0: %s" % sorted(named)


def test_galaxy_yml_names_no_unreal_urls():
    # The repository those URLs named does not exist: an URL comes back only
    # once it is real (and then this test goes with it).
    meta = galaxy_meta()
    assert not [k for k in ("repository", "documentation", "issues", "homepage") if meta.get(k)]


def test_every_module_has_its_manual_from_the_installed_collection(installed_collection):
    c = installed_collection
    listed = load_json(run([tool("ansible-doc"), "-t", "module", "--list", "--json", "kuma.mesh"],
                           env=c.env, cwd=c.home))
    assert sorted(listed) == ["kuma.mesh." + m for m in MODULES]
    docs = load_json(run([tool("ansible-doc"), "-t", "module", "--json"] + ["kuma.mesh." + m for m in MODULES],
                         env=c.env, cwd=c.home))
    assert sorted(docs) == ["kuma.mesh." + m for m in MODULES]
    for name, doc in docs.items():
        assert doc["doc"]["filename"].startswith(c.path + os.sep), (name, doc["doc"]["filename"])
        for section in ("doc", "examples", "return"):
            assert doc.get(section), "%s has no %s" % (name, section)
        assert doc["doc"]["options"], name


def test_every_role_has_its_manual_from_the_installed_collection(installed_collection):
    c = installed_collection
    listed = load_json(run([tool("ansible-doc"), "-t", "role", "--list", "--json", "kuma.mesh"],
                           env=c.env, cwd=c.home))
    assert sorted(listed) == ["kuma.mesh." + r for r in ROLES]
    docs = load_json(run([tool("ansible-doc"), "-t", "role", "--json"] + ["kuma.mesh." + r for r in ROLES],
                         env=c.env, cwd=c.home))
    assert sorted(docs) == ["kuma.mesh." + r for r in ROLES]
    for role, doc in docs.items():
        assert doc["path"] == c.path, (role, doc["path"])
        assert doc["entry_points"]["main"]["options"], role


def test_every_playbook_passes_a_syntax_check_from_the_installed_collection(installed_collection):
    c = installed_collection
    assert PLAYBOOKS, "no playbooks found"
    out = run([tool("ansible-playbook"), "--syntax-check", "-i", "localhost,"]
              + ["kuma.mesh." + p for p in PLAYBOOKS], env=c.env, cwd=c.home)
    for p in PLAYBOOKS:
        assert os.path.join(c.path, "playbooks", p + ".yml") in out, out
