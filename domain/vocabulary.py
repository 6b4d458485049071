"""The contact-center words every aggregate shares (FEATURES.md), as string enums.

String enums, so that they read well in stored events, on the wire and in read models,
and so that a value from an API body or a fact is checked once: `Channel(value)`.
"""

from __future__ import annotations

from enum import StrEnum


class Package(StrEnum):
    """What a tenant bought (OP2, OP3): each includes the features of the one before."""

    BASIC = "basic"  # SIP trunk only (B1-B5)
    CALL_CENTER = "call_center"  # CC1-CC24
    CONTACT_CENTER = "contact_center"  # CC + CT2-CT18


class Role(StrEnum):
    """Who a user is (OP4)."""

    OPERATOR = "operator"  # the carrier or dealer; not inside a tenant's contact center
    TENANT_ADMIN = "tenant_admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"


class EndpointKind(StrEnum):
    """Where an agent is reached (AX4-AX6, CC7)."""

    SIP_PHONE = "sip_phone"
    IP_PHONE = "ip_phone"
    WEBRTC = "webrtc"
    MOBILE = "mobile"


class Presence(StrEnum):
    """An agent's state as supervisors see it (CC16)."""

    OFFLINE = "offline"
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    BREAK = "break"


class Channel(StrEnum):
    """The kind of thread a conversation is (CT2)."""

    CALL = "call"
    CHAT = "chat"
    EMAIL = "email"
    SMS = "sms"
    FACEBOOK_COMMENT = "facebook_comment"
    MESSENGER = "messenger"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class RoutingPolicy(StrEnum):
    """How a queue picks an agent (CC9-CC11, AX11, AX12)."""

    SKILL = "skill"  # CC9: best skill level for the queue's required skills
    STICKY = "sticky"  # CC10: the agent who last talked with the customer, else skill
    ROUND_ROBIN = "round_robin"  # AX12
    DEPARTMENT = "department"  # AX11: any available agent of the queue's department
