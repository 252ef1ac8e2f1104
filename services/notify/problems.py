"""A 422 that names the offending field, shaped like the kernel's validation errors."""

from __future__ import annotations

from nrm.errors import Invalid


def invalid_field(field: str, message: str, *, where: str = "body") -> Invalid:
    # The message is ours; the submitted value is never echoed (it may be personal data).
    return Invalid(
        message,
        extra={"errors": [{"loc": [where, field], "msg": message, "type": "value_error"}]},
    )
