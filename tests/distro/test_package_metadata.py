"""The package descriptions agree with each other and with pyproject.toml: one version,
the build script's dependency list is debian/control's, every runtime dependency of
the Python distribution is named by the Debian package and the RPM."""

from __future__ import annotations

import re
import tomllib

import mom
from tests.support.momd import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CONTROL = (REPO / "debian" / "control").read_text()
SPEC = (REPO / "packaging" / "mom-kvm.spec").read_text()

# Python distribution -> (Debian package, RPM package). A new dependency fails the test
# below until it is named here and in debian/control and packaging/mom-kvm.spec.
PACKAGE_NAMES = {
    "prometheus_client": ("python3-prometheus-client", "python3-prometheus_client"),
    "stomp-py": ("python3-stomp", "python3-stomppy"),
    "matplotlib": ("python3-matplotlib", "python3-matplotlib"),
    "rich": ("python3-rich", "python3-rich"),
    "libvirt-python": ("python3-libvirt", "python3-libvirt"),
}


def control_field(name: str) -> str:
    """A field of debian/control, continuation lines joined (the last one wins: the binary package's)."""
    values = re.findall(rf"^{name}:(.*(?:\n[ \t].*)*)", CONTROL, re.M)
    return " ".join(values[-1].split()) if values else ""


def names(field: str) -> set[str]:
    return {re.split(r"[\s(]", item.strip())[0] for item in field.split(",") if item.strip()}


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[\s]", requirement, maxsplit=1)[0]


def test_one_version_everywhere() -> None:
    assert PYPROJECT["project"]["dynamic"] == ["version"]  # from mom.__version__
    changelog = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    assert re.match(rf"mom-kvm \({re.escape(mom.__version__)}-\d+\) ", changelog), changelog
    assert re.search(rf"^Version:\s+{re.escape(mom.__version__)}$", SPEC, re.M)
    for page in ("momd.8", "momctl.1", "mom.conf.5"):
        assert f'"mom-kvm {mom.__version__}"' in (REPO / "doc" / "man" / page).read_text(), page


def test_one_name_everywhere() -> None:
    assert PYPROJECT["project"]["name"] == "mom-kvm"
    assert re.search(r"^Source: mom-kvm$", CONTROL, re.M) and re.search(r"^Package: mom-kvm$", CONTROL, re.M)
    assert re.search(r"^Name:\s+mom-kvm$", SPEC, re.M)


def test_build_script_installs_the_build_depends() -> None:
    script = (REPO / "packaging" / "build-deb.sh").read_text()
    listed = set(re.search(r'^BUILD_DEPS="([^"]*)"', script, re.M).group(1).split())
    build_depends = names(control_field("Build-Depends")) - {"debhelper-compat"}
    assert listed == build_depends | {"build-essential", "debhelper"}


def test_every_runtime_dependency_is_packaged() -> None:
    deb = names(control_field("Depends")) | names(control_field("Recommends")) | names(control_field("Suggests"))
    rpm = set(re.findall(r"^(?:Requires|Recommends|Suggests):\s+(\S+)", SPEC, re.M))
    wanted = [requirement_name(r) for r in PYPROJECT["project"]["dependencies"]]
    wanted += [requirement_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["libvirt"]]
    for dist in wanted:
        assert dist in PACKAGE_NAMES, f"new dependency {dist}: name its packages in PACKAGE_NAMES, " \
                                      "debian/control and packaging/mom-kvm.spec"
        deb_name, rpm_name = PACKAGE_NAMES[dist]
        assert deb_name in deb, f"debian/control does not name {deb_name} ({dist})"
        assert rpm_name in rpm, f"packaging/mom-kvm.spec does not name {rpm_name} ({dist})"
