"""The proto is a contract: the RFC's names and numbers stay, generated code stays fresh."""
import subprocess
import sys

from chalicelib.gen import reservation_pb2 as pb
from scripts.gen_protos import DESTINATIONS
from harness.moto import ROOT

# From the RFC: message -> {field name: number}
RFC_FIELDS = {
    "Reservation": {"id": 1, "user_id": 2, "status": 3, "resource_id": 4, "start": 5, "end": 6, "note": 7},
    "ReserveRequest": {"reservation": 1}, "ReserveResponse": {"reservation": 1},
    "ConfirmRequest": {"id": 1}, "ConfirmResponse": {"reservation": 1},
    "UpdateRequest": {"id": 1, "status": 2, "note": 3}, "UpdateResponse": {"reservation": 1},
    "CancelRequest": {"id": 1}, "CancelResponse": {"reservation": 1},
    "GetRequest": {"id": 1}, "GetResponse": {"reservation": 1},
    "QueryRequest": {"user_id": 1, "resource_id": 2, "status": 3, "start": 4, "end": 5},
}
RFC_METHODS = {
    "reserve": ("ReserveRequest", "ReserveResponse", False), "confirm": ("ConfirmRequest", "ConfirmResponse", False),
    "update": ("UpdateRequest", "UpdateResponse", False), "cancel": ("CancelRequest", "CancelResponse", False),
    "get": ("GetRequest", "GetResponse", False), "Query": ("QueryRequest", "Reservation", True),
}


def test_generated_code_is_fresh(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for name, folder in DESTINATIONS.items():
        fresh = (tmp_path / folder / name).read_text()
        assert (ROOT / folder / name).read_text() == fresh, f"{folder}/{name} is stale: run `make protos`"


def test_rfc_fields_and_numbers_are_unchanged():
    assert pb.DESCRIPTOR.package == "reservation"
    for message, fields in RFC_FIELDS.items():
        descriptor = pb.DESCRIPTOR.message_types_by_name[message]
        for name, number in fields.items():
            assert descriptor.fields_by_name[name].number == number, (message, name)
    status = pb.DESCRIPTOR.enum_types_by_name["ReservationStatus"]
    assert {v.name: v.number for v in status.values} == {"UNKNOWN": 0, "PENDING": 1, "CONFIRMED": 2, "BLOCKED": 3}


def test_rfc_methods_are_unchanged():
    service = pb.DESCRIPTOR.services_by_name["ReservationService"]
    for name, (request, response, streaming) in RFC_METHODS.items():
        method = service.methods_by_name[name]
        assert (method.input_type.name, method.output_type.name, method.server_streaming) == \
            (request, response, streaming)


def test_domain_statuses_are_the_wire_statuses():
    """chalicelib.model.Status keeps the domain free of protobuf; a value added to the proto must be
    added there too (with the rules it follows), or the service would refuse it as unknown."""
    from chalicelib.model import Status

    wire = {v.name: v.number for v in pb.DESCRIPTOR.enum_types_by_name["ReservationStatus"].values}
    assert {status.name: status.value for status in Status} == wire
