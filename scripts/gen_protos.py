"""Generate the Python code of protos/reservation.proto.

The message classes go to chalicelib/gen (shipped to Lambda, used by every
adapter and client); the grpcio and connect-python client stubs go to tests/gen,
where their only users are (the native gRPC server needs no stubs: it serves
chalicelib.api.METHODS through grpcio's generic handlers).
protoc writes `import reservation_pb2`, which only works from the output
folder itself, so that import is rewritten to the package path.

    python scripts/gen_protos.py            # write the files
    python scripts/gen_protos.py --out DIR  # write them under DIR instead
"""

import argparse
import pathlib
import shutil
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
PROTO = "reservation.proto"
PLAIN_IMPORT = "import reservation_pb2 as reservation__pb2"
PACKAGE_IMPORT = "from chalicelib.gen import reservation_pb2 as reservation__pb2"
# generated file name -> folder (relative to the repository root)
DESTINATIONS = {
    "reservation_pb2.py": "chalicelib/gen",
    "reservation_pb2.pyi": "chalicelib/gen",
    "reservation_pb2_grpc.py": "tests/gen",
    "reservation_connect.py": "tests/gen",
}


def generate(out_root: pathlib.Path) -> list[pathlib.Path]:
    plugin = shutil.which("protoc-gen-connect-python", path=str(pathlib.Path(sys.executable).parent))
    if plugin is None:
        raise SystemExit("protoc-gen-connect-python not found beside this Python; run `make venv`")
    with tempfile.TemporaryDirectory() as raw:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"-I{pathlib.Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            f"--plugin=protoc-gen-connect-python={plugin}",
            f"--connect-python_out={raw}",
            str(PROTO_DIR / PROTO),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        written = []
        for name, folder in DESTINATIONS.items():
            text = (pathlib.Path(raw) / name).read_text()
            text = text.replace(PLAIN_IMPORT, PACKAGE_IMPORT)
            target = out_root / folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            written.append(target)
        return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", type=pathlib.Path, default=ROOT, help="root folder to write under (default: the repository)"
    )
    options = parser.parse_args()
    for path in generate(options.out):
        print(path)


if __name__ == "__main__":
    main()
