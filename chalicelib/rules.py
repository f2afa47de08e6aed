"""A resource's rules applied to one requested window: duration, grid, notice, horizon, units.

Shape and time rules (duration, grid, units) are INVALID_ARGUMENT: the request
can never succeed as written. Rules that depend on when it is asked (notice,
horizon) are FAILED_PRECONDITION: the same request succeeds at another time.
Every message names the rule and the allowed value.
"""

from .errors import failed, invalid
from .layout import Shape
from .model import MAX_NS, MIN_NS, NANOS_PER_SECOND, Resource
from .timegrid import Grid
from .validate import duration_text, iso

LONGEST_NS = 380 * 86400 * NANOS_PER_SECOND  # the default shape's limit, for every resource
EARLIEST_NS = MIN_NS


def check_window(
    resource: Resource | None,
    shape: Shape,
    start_ns: int,
    end_ns: int,
    units: int,
    now_ns: int,
    start_field: str,
    end_field: str,
    units_field: str,
) -> None:
    """Raise the first rule of `resource` that [start, end) with `units` breaks (None: no rules)."""
    check_length(resource, shape, end_ns - start_ns, units, end_field, units_field)
    if resource is not None:
        check_grid(resource, start_ns, end_ns, start_field, end_field)
        check_timing(resource, start_ns, now_ns, start_field)


def check_length(
    resource: Resource | None, shape: Shape, length: int, units: int, end_field: str, units_field: str
) -> None:
    """The rules that hold wherever the reservation is placed: duration, units, what storage holds."""
    if length > LONGEST_NS:
        raise invalid(end_field, f"a reservation lasts at most {LONGEST_NS // 86400 // NANOS_PER_SECOND} days")
    if resource is None:
        if units > 1:
            raise invalid(units_field, f"resource has capacity 1, got {units} units (define it with a capacity)")
        return
    name = resource.id
    if units > resource.capacity:
        raise invalid(units_field, f"{name} has capacity {resource.capacity}, got {units} units")
    if resource.min_duration_ns and length < resource.min_duration_ns:
        raise invalid(
            end_field,
            f"{name} takes reservations of at least {duration_text(resource.min_duration_ns)} "
            f"(min_duration), got {duration_text(length)}",
        )
    if resource.max_duration_ns and length > resource.max_duration_ns:
        raise invalid(
            end_field,
            f"{name} takes reservations of at most {duration_text(resource.max_duration_ns)} "
            f"(max_duration), got {duration_text(length)}",
        )
    padded = length + resource.buffer_before_ns + resource.buffer_after_ns
    if padded > shape.longest_ns():
        raise invalid(
            end_field,
            f"{name} stores reservations of at most {duration_text(shape.longest_ns())} "
            f"with their buffers, got {duration_text(padded)}",
        )


def check_grid(resource: Resource, start_ns: int, end_ns: int, start_field: str, end_field: str) -> None:
    if resource.step_ns:
        grid = Grid(resource.step_ns, resource.time_zone)
        for field, instant in ((start_field, start_ns), (end_field, end_ns)):
            if not grid.contains(instant):
                raise invalid(
                    field,
                    f"{resource.id} takes reservations on a {duration_text(resource.step_ns)} grid (step) from "
                    f"local midnight ({resource.time_zone or 'UTC'}): {grid.describe(instant)} is not "
                    f"on it; the next grid time is {grid.describe(grid.next_point(instant))}",
                )


def check_timing(resource: Resource, start_ns: int, now_ns: int, start_field: str) -> None:
    if resource.min_notice_ns and start_ns < now_ns + resource.min_notice_ns:
        raise failed(
            f"{start_field}: {resource.id} needs {duration_text(resource.min_notice_ns)} notice "
            f"(min_notice): start at {iso(now_ns + resource.min_notice_ns)} or later"
        )
    if resource.max_advance_ns and start_ns > now_ns + resource.max_advance_ns:
        raise failed(
            f"{start_field}: {resource.id} takes reservations at most "
            f"{duration_text(resource.max_advance_ns)} ahead (max_advance): start at "
            f"{iso(now_ns + resource.max_advance_ns)} or earlier"
        )


def padding(resource: Resource | None) -> tuple:
    """(buffer_before, buffer_after) a new reservation of the resource is stored with."""
    if resource is None:
        return 0, 0
    return resource.buffer_before_ns, resource.buffer_after_ns


def hold_expiry(resource: Resource | None, requested_hold_ns: int | None, now_ns: int) -> int:
    """When a new PENDING reservation's hold expires (0: never)."""
    hold = requested_hold_ns if requested_hold_ns is not None else (resource.hold_for_ns if resource else 0)
    if hold and now_ns + hold > MAX_NS:
        raise invalid("hold_for", "would expire after year 9999")
    return now_ns + hold if hold else 0
