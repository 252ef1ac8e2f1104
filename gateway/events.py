"""Events the gateway publishes: who may be notified, and how to address them (no names)."""

from nrm.events import Event


class UserChanged(Event):
    """A user was created, changed or deactivated: notify keeps its recipients from this."""

    type = "nrm.gateway.user.changed.v1"
    subject_field = "user_id"

    user_id: str
    org_id: str
    roles: list[str]
    language: str
    active: bool


class OrganizationChanged(Event):
    type = "nrm.gateway.organization.changed.v1"
    subject_field = "org_id"

    org_id: str
    sector: str
    active: bool
