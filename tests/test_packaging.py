"""Packaging cannot drift. The wheel (pyproject.toml) ships the client and `rsvp` (rsvp/), the native gRPC
server (grpc_server.py), the operator tools (ops/, the `ops` extra) and what they run of chalicelib/; never
harness/, tests/, bench/, devserver/ or scripts/. Each shipped piece's third-party imports are declared in the
base dependencies or its extra; chalicelib/ holds only what Lambda runs (app.py reaches every module of it);
the dev lock pins exactly what requirements-dev.in pulls in. Module owners are read from the installed
distributions' metadata (the .venv that make builds from the lock)."""

import ast
import functools
import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
import zipfile

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from harness.moto import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OWN_NAME = canonicalize_name(PYPROJECT["project"]["name"])
FIRST_PARTY = {"rsvp", "chalicelib", "ops", "grpc_server", "app", "harness", "tests", "bench", "devserver", "scripts"}
NEVER_SHIPPED = {"harness", "tests", "bench", "devserver", "scripts", "app"}
# what each shipped piece is started from, and the extras that install what it needs beyond the base
SHIPPED = {
    "rsvp": (["rsvp.cli", "rsvp.client"], ["client", "cli"]),
    "grpc_server": (["grpc_server"], ["grpc"]),
    "ops": (["ops.checker", "ops.migrate"], ["ops"]),
}
# installed by the tools themselves, never pinned by pip freeze
BOOTSTRAP = {"pip", "setuptools", "wheel"}


def source_of(module: str):
    """The file of a first-party module, or None (a name imported from a module, or third-party)."""
    for candidate in (ROOT / (module.replace(".", "/") + ".py"), ROOT / module.replace(".", "/") / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imports_of(module: str, top_level_only: bool = False) -> set:
    """Absolute names a first-party module imports (lazy ones too, unless top_level_only), and for
    `from m import n` both m and m.n."""
    path = source_of(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".") if node.level else []
            base = (
                ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                if node.level
                else node.module
            )
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def reached(starts: list, top_level_only: bool = False) -> tuple:
    """(first-party modules reached from `starts`, third-party modules they import)."""
    seen, third, pending = set(), set(), list(starts)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        if module.split(".")[0] not in FIRST_PARTY:
            third.add(module)
            continue
        if source_of(module) is None:
            continue
        seen.add(module)
        pending += imports_of(module, top_level_only)
    return seen, {module for module in third if module.split(".")[0] not in sys.stdlib_module_names}


@functools.lru_cache(maxsize=1)
def _distributions_of_packages() -> dict:
    return importlib.metadata.packages_distributions()


@functools.cache
def owners(module: str) -> frozenset:
    """The distributions that install `module` (namespace packages such as google.* have several)."""
    parts = module.split(".")
    candidates = _distributions_of_packages().get(parts[0], [])
    if len(candidates) <= 1:
        return frozenset(canonicalize_name(name) for name in candidates)
    folder = "/".join(parts[:2])
    return frozenset(
        canonicalize_name(name)
        for name in candidates
        if any(
            str(file).startswith(folder + "/") or str(file) == folder + ".py"
            for file in importlib.metadata.distribution(name).files or ()
        )
    )


def requirement_names(requirements: list) -> set:
    return {canonicalize_name(Requirement(r).name) for r in requirements} - {OWN_NAME}


def installed_by(extras: list) -> set:
    """What `pip install '.[extras]'` declares: the base, the extras and the extras they name."""
    project = PYPROJECT["project"]
    wanted, names, pending = set(), requirement_names(project["dependencies"]), list(extras)
    while pending:
        extra = pending.pop()
        if extra in wanted:
            continue
        wanted.add(extra)
        for text in project["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == OWN_NAME:
                pending += list(requirement.extras)
            else:
                names.add(canonicalize_name(requirement.name))
    return names


def test_each_shipped_piece_declares_what_it_imports_in_its_extras():
    seen_third = set()
    for piece, (starts, extras) in SHIPPED.items():
        _, third = reached(starts)
        seen_third |= third
        declared = installed_by(extras)
        undeclared = {module: sorted(owners(module)) for module in third if not owners(module) & declared}
        assert all(owners(module) for module in third), third
        assert not undeclared, f"{piece}: declare these in pyproject.toml (its extras {extras}): {undeclared}"
    assert {"google.protobuf", "botocore.session", "grpc", "boto3"} <= seen_third  # lazy imports are seen too


def test_pyproject_declares_nothing_that_is_not_imported():
    used = set().union(*(owners(module) for starts, _ in SHIPPED.values() for module in reached(starts)[1]))
    data_only = {"tzdata"}  # read by zoneinfo, never imported
    everything = installed_by(list(PYPROJECT["project"]["optional-dependencies"]))
    assert everything - used - data_only == set()


def test_the_client_and_cli_need_only_protobuf():
    """`pip install .` must give a working `rsvp`: its import-time needs (through every first-party module it
    imports at import time) are the base dependencies."""
    base = requirement_names(PYPROJECT["project"]["dependencies"])
    modules, third = reached(["rsvp.cli", "rsvp.client"], top_level_only=True)
    assert "chalicelib.gen.reservation_pb2" in modules
    for module in third:
        assert owners(module) <= base, module


def test_chalicelib_holds_only_what_lambda_runs():
    """Every module of chalicelib/ is reached from app.py (the Lambda entry point), and none imports the test
    and benchmark harness, the operator tools or the servers: nothing in it is there for tests only."""
    everything = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "chalicelib").rglob("*.py")
    }
    lambda_modules, _ = reached(["app"])
    assert everything - lambda_modules == set(), "imported by no Lambda code: move it beside its users"
    for module in everything:
        outside = {name for name in imports_of(module) if name.split(".")[0] in FIRST_PARTY - {"chalicelib"}}
        assert not outside, (module, outside)


def test_the_wheel_ships_the_tools_and_nothing_of_the_harness(tmp_path):
    """Built from the tracked files, as `pip install .` builds it."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    source = tmp_path / "source"
    for name in tracked.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {
        "rsvp",
        "chalicelib",
        "ops",
        "grpc_server.py",
        f"{wheel.name.split('-')[0]}-0.1.0.dist-info",
    }
    assert not [name for name in names if name.split("/")[0] in NEVER_SHIPPED or name.startswith("rsvp/gen")]
    assert {"chalicelib/gen/reservation_pb2.py", "ops/checker.py", "ops/migrate.py", "rsvp/cli.py"} <= set(names)
    shipped_code = {
        name.removesuffix(".py").replace("/", ".").removesuffix(".__init__") for name in names if name.endswith(".py")
    }
    needed, _ = reached([start for starts, _ in SHIPPED.values() for start in starts])
    assert needed <= shipped_code, needed - shipped_code  # every module the shipped pieces import is in it
    metadata = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-')[0]}-0.1.0.dist-info/METADATA").decode()
    assert 'Requires-Dist: boto3>=1.31; extra == "ops"' in metadata


def _requirements(path) -> list:
    requirements = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            requirements += _requirements(path.parent / line[3:].strip())
        elif line:
            requirements.append(Requirement(line))
    return requirements


def _closure(requirements: list) -> set:
    """Every distribution that installing `requirements` brings, by the installed metadata."""
    extras_of, pending = {}, list(requirements)
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in extras_of and set(requirement.extras) <= extras_of[name]:
            continue
        extras = extras_of.setdefault(name, set())
        extras |= set(requirement.extras)
        for text in importlib.metadata.requires(requirement.name) or ():
            needed = Requirement(text)
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in extras | {""}):
                pending.append(needed)
    return set(extras_of)


def test_the_dev_lock_pins_exactly_what_requirements_dev_in_pulls_in():
    locked = _requirements(ROOT / "requirements-dev.txt")
    assert all(str(r.specifier).startswith("==") for r in locked), "the lock pins every package"
    pinned = {canonicalize_name(r.name) for r in locked}
    pulled_in = _closure(_requirements(ROOT / "requirements-dev.in")) - BOOTSTRAP
    assert pulled_in - pinned == set(), "regenerate requirements-dev.txt (its header says how)"
    assert pinned - pulled_in == set(), "pinned but nothing needs it: name it in requirements-dev.in or drop it"


def test_lambda_requirements_stay_minimal():
    assert [canonicalize_name(r.name) for r in _requirements(ROOT / "requirements.txt")] == ["protobuf"]
