"""Security basics that are about the code itself rather than one request."""
import ast

from harness.moto import ROOT


def test_dynamodb_expressions_are_never_built_from_values():
    """Every value reaches DynamoDB through ExpressionAttributeValues/Names: each *Expression is a
    plain string literal in chalicelib/store.py, never an f-string or a concatenation."""
    tree = ast.parse((ROOT / "chalicelib" / "store.py").read_text())
    expressions = []
    for node in ast.walk(tree):
        pairs = []
        if isinstance(node, ast.Dict):
            pairs = [(k.value, v) for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)]
        elif isinstance(node, ast.Call):
            pairs = [(k.arg, k.value) for k in node.keywords if k.arg]
        for name, value in pairs:
            if isinstance(name, str) and name.endswith("Expression"):
                expressions.append((name, value))
    assert len(expressions) >= 8
    built = [(name, ast.unparse(value)) for name, value in expressions
             if not (isinstance(value, ast.Constant) and isinstance(value.value, str))]
    assert built == []


def test_ids_cannot_name_other_items():
    """Reservation ids must be canonical UUIDs, so no id can address a slot, user or request item."""
    from chalicelib.errors import ServiceError
    from chalicelib.service import check_reservation_id

    for forged in ("x#RSV", "RES#room-1", "../RSV", "00000000-0000-4000-8000-000000000000#", " 0", ""):
        try:
            check_reservation_id(forged)
            raise AssertionError(f"{forged!r} was accepted")
        except ServiceError as error:
            assert error.code.connect_name == "invalid_argument"
