"""The proto is a contract: the RFC's names and numbers stay, the names the issues gave exist, generated code
stays fresh (the messages in chalicelib/gen, the grpcio and connect-python stubs in tests/gen)."""

import subprocess
import sys

from chalicelib.gen import reservation_pb2 as pb
from harness.moto import ROOT
from scripts.gen_protos import DESTINATIONS

# From the RFC: message -> {field name: number}
RFC_FIELDS = {
    "Reservation": {"id": 1, "user_id": 2, "status": 3, "resource_id": 4, "start": 5, "end": 6, "note": 7},
    "ReserveRequest": {"reservation": 1},
    "ReserveResponse": {"reservation": 1},
    "ConfirmRequest": {"id": 1},
    "ConfirmResponse": {"reservation": 1},
    "UpdateRequest": {"id": 1, "status": 2, "note": 3},
    "UpdateResponse": {"reservation": 1},
    "CancelRequest": {"id": 1},
    "CancelResponse": {"reservation": 1},
    "GetRequest": {"id": 1},
    "GetResponse": {"reservation": 1},
    "QueryRequest": {"user_id": 1, "resource_id": 2, "status": 3, "start": 4, "end": 5},
}
RFC_METHODS = {
    "reserve": ("ReserveRequest", "ReserveResponse", False),
    "confirm": ("ConfirmRequest", "ConfirmResponse", False),
    "update": ("UpdateRequest", "UpdateResponse", False),
    "cancel": ("CancelRequest", "CancelResponse", False),
    "get": ("GetRequest", "GetResponse", False),
    "Query": ("QueryRequest", "Reservation", True),
}
RFC_STATUSES = {"UNKNOWN": 0, "PENDING": 1, "CONFIRMED": 2, "BLOCKED": 3}

# What later issues named: they must keep these names and numbers too, now that clients use them.
ADDED_FIELDS = {
    "Reservation": {"units": 8, "expires_at": 9},
    "ReserveRequest": {"request_id": 2, "hold_for": 3},
    "QueryRequest": {"page_size": 6, "page_token": 7, "desc": 8},
    "Resource": {
        "id": 1,
        "name": 2,
        "labels": 3,
        "capacity": 4,
        "min_duration": 5,
        "max_duration": 6,
        "step": 7,
        "buffer_before": 8,
        "buffer_after": 9,
        "min_notice": 10,
        "max_advance": 11,
        "hold_for": 12,
        "time_zone": 13,
    },
    "RescheduleRequest": {"id": 1, "start": 2, "end": 3, "resource_id": 4},
    "ReservationConflict": {
        "resource_id": 1,
        "requested": 2,
        "conflicts": 3,
        "total": 4,
        "full_window": 5,
        "units_free": 6,
    },
    "OutcomeUnknown": {"reservation_id": 1, "request_id": 2},
}
ADDED_METHODS = {
    "filter": ("FilterRequest", "FilterResponse", False),
    "reschedule": ("RescheduleRequest", "RescheduleResponse", False),
    "define_resource": ("DefineResourceRequest", "DefineResourceResponse", False),
    "get_resource": ("GetResourceRequest", "GetResourceResponse", False),
    "list_resources": ("ListResourcesRequest", "ListResourcesResponse", False),
    "delete_resource": ("DeleteResourceRequest", "DeleteResourceResponse", False),
    "availability": ("AvailabilityRequest", "AvailabilityResponse", False),
    "find_slots": ("FindSlotsRequest", "FindSlotsResponse", False),
    "changes": ("ChangesRequest", "ChangesResponse", False),
    "listen": ("ListenRequest", "ChangeEvent", True),
}
SERVICE = pb.DESCRIPTOR.services_by_name["ReservationService"]


def test_generated_code_is_fresh(tmp_path):
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    assert set(DESTINATIONS.values()) == {"chalicelib/gen", "tests/gen"}
    for name, folder in DESTINATIONS.items():
        fresh = (tmp_path / folder / name).read_text()
        assert (ROOT / folder / name).read_text() == fresh, f"{folder}/{name} is stale: run `make protos`"


def _fields(message: str) -> dict:
    return {field.name: field.number for field in pb.DESCRIPTOR.message_types_by_name[message].fields}


def test_rfc_fields_and_numbers_are_unchanged():
    assert pb.DESCRIPTOR.package == "reservation"
    for message, fields in RFC_FIELDS.items():
        assert _fields(message).items() >= fields.items(), message


def test_rfc_statuses_are_unchanged_and_expired_is_added_as_4():
    status = pb.DESCRIPTOR.enum_types_by_name["ReservationStatus"]
    assert {v.name: v.number for v in status.values} == {**RFC_STATUSES, "EXPIRED": 4}


def _method(name: str) -> tuple:
    method = SERVICE.methods_by_name[name]
    return method.input_type.name, method.output_type.name, method.server_streaming


def test_rfc_methods_are_unchanged():
    for name, shape in RFC_METHODS.items():
        assert _method(name) == shape, name


def test_the_names_the_issues_gave_exist():
    assert {name: _method(name) for name in ADDED_METHODS} == ADDED_METHODS
    for message, fields in ADDED_FIELDS.items():
        assert _fields(message).items() >= fields.items(), message
    assert set(SERVICE.methods_by_name) == set(RFC_METHODS) | set(ADDED_METHODS)
    fields = pb.DESCRIPTOR.message_types_by_name["Resource"].fields_by_name
    assert fields["labels"].message_type.GetOptions().map_entry
    assert {
        name: fields[name].message_type.full_name for name in ("min_duration", "step", "hold_for")
    } == dict.fromkeys(("min_duration", "step", "hold_for"), "google.protobuf.Duration")
    assert (
        pb.DESCRIPTOR.message_types_by_name["Reservation"].fields_by_name["expires_at"].message_type.full_name
        == "google.protobuf.Timestamp"
    )


def test_field_numbers_are_never_reused_within_a_message():
    for message in pb.DESCRIPTOR.message_types_by_name.values():
        numbers = [field.number for field in message.fields]
        assert len(numbers) == len(set(numbers)), message.name


def test_domain_enums_are_the_wire_enums():
    """chalicelib.model keeps the domain free of protobuf; a value added to the proto must be added there too
    (with the rules it follows), or the service would refuse it as unknown."""
    from chalicelib.model import ChangeKind, Status

    wire = {v.name: v.number for v in pb.DESCRIPTOR.enum_types_by_name["ReservationStatus"].values}
    assert {status.name: status.value for status in Status} == wire
    kinds = {v.number: v.name for v in pb.DESCRIPTOR.enum_types_by_name["ChangeKind"].values}
    assert {kind.value: kind.name for kind in ChangeKind} == {**kinds, 0: "UNKNOWN"}
