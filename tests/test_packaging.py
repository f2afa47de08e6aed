"""Packaging cannot drift: pyproject declares what rsvp/ and chalicelib/ import, and the dev lock
pins exactly what requirements-dev.in pulls in. Module owners are read from the installed
distributions' metadata (the .venv that make builds from the lock)."""
import ast
import importlib.metadata
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from harness.moto import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OWN_NAME = canonicalize_name(PYPROJECT["project"]["name"])
FIRST_PARTY = {"rsvp", "chalicelib"}
# installed by the tools themselves, never pinned by pip freeze
BOOTSTRAP = {"pip", "setuptools", "wheel"}


def imported_modules(*folders: str) -> dict:
    """{dotted module: first file importing it} of every absolute import, lazy ones included."""
    found = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def third_party(modules: dict) -> dict:
    return {name: where for name, where in modules.items()
            if name.split(".")[0] not in sys.stdlib_module_names | FIRST_PARTY}


def owners(module: str) -> set:
    """The distributions that install `module` (namespace packages such as google.* have several)."""
    parts = module.split(".")
    candidates = importlib.metadata.packages_distributions().get(parts[0], [])
    if len(candidates) <= 1:
        return {canonicalize_name(name) for name in candidates}
    folder = "/".join(parts[:2])
    return {canonicalize_name(name) for name in candidates
            if any(str(file).startswith(folder + "/") or str(file) == folder + ".py"
                   for file in importlib.metadata.distribution(name).files or ())}


def declared() -> set:
    project = PYPROJECT["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {canonicalize_name(Requirement(r).name) for r in requirements} - {OWN_NAME}


def test_pyproject_declares_every_third_party_import_of_rsvp_and_chalicelib():
    modules = third_party(imported_modules("rsvp", "chalicelib"))
    assert {"google.protobuf", "botocore.session", "grpc"} <= set(modules)  # the scan sees lazy imports too
    undeclared = {}
    for module, where in modules.items():
        owned_by = owners(module)
        assert owned_by, f"{module} (imported in {where}) belongs to no installed distribution"
        if not owned_by & declared():
            undeclared[module] = (where, sorted(owned_by))
    assert not undeclared, f"declare these in pyproject.toml (dependencies or an extra): {undeclared}"


def test_pyproject_declares_nothing_that_is_not_imported():
    used = set().union(*(owners(m) for m in third_party(imported_modules("rsvp", "chalicelib"))))
    data_only = {"tzdata"}  # read by zoneinfo, never imported
    assert declared() - used - data_only == set()


def test_the_client_and_cli_need_only_protobuf():
    """`pip install .` must give a working `rsvp`: its import-time needs are the base dependencies."""
    base = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    needed = set()
    for path in ("rsvp/client.py", "rsvp/cli.py", "chalicelib/gen/reservation_pb2.py"):
        tree = ast.parse((ROOT / path).read_text())
        for node in tree.body:  # top level only: botocore for signing is imported when signing
            if isinstance(node, ast.Import):
                needed |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                needed.add(node.module)
    for module in third_party({name: "" for name in needed}):
        assert owners(module) <= base, module


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
