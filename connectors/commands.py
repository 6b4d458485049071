"""Outbound message commands: what process managers ask a channel connector to send.

Subjects `cmd.<tenant>.<channel>.send` (`<tenant>` is eventstore.layout's tenant token,
`<channel>` a `Channel` value: `sms`, `email`, `messenger`...); each connector subscribes
to its own channel's subject in a queue group, so several instances share the load.
Payload: JSON of one Struct tagged by its class name in "type", as for the telephony
commands (telephony_bridge.commands). `command_id` is the id of the decision that caused
the send, so a connector that gets it twice sends once.

Commands are requests, not history: whether the message went out comes back as facts
(connectors.facts), and only those change the domain.
"""

from __future__ import annotations

from typing import Annotated, Final
from uuid import UUID

import msgspec

from domain.vocabulary import Channel
from eventstore.layout import tenant_token

PREFIX: Final = "cmd"
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class SendMessage(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Send one message to one address on a messaging channel (campaigns, CT14).

    At most one of `text` (sent as is) and `template_id` (a reply template the connector
    renders for the customer). A campaign send carries neither for now: campaigns hold no
    message content in the domain yet. `campaign_id`, `customer_id` and `attempt` say
    which campaign attempt the send is, so its delivery fact can be matched back to it.
    """

    command_id: NonEmpty
    tenant_id: NonEmpty
    channel: Channel
    to: NonEmpty
    text: str | None = None
    template_id: UUID | None = None
    campaign_id: UUID | None = None
    customer_id: UUID | None = None
    attempt: int | None = None

    def __post_init__(self) -> None:
        # Raised inside decode too, where msgspec turns it into a ValidationError.
        if self.channel is Channel.CALL:
            raise ValueError("a call is placed with telephony_bridge.commands.Originate")
        if self.text is not None and self.template_id is not None:
            raise ValueError("a message is either text or a template, not both")


AnyCommand = SendMessage

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyCommand)


def subject(tenant_id: str, command: SendMessage) -> str:
    """The subject to send `command` on; `tenant_id` must be the command's own tenant, so
    that no command is routed to another tenant's connector."""
    if tenant_id != command.tenant_id:
        raise ValueError(
            f"a command of tenant {command.tenant_id!r} is not sent as tenant {tenant_id!r}"
        )
    return f"{PREFIX}.{tenant_token(tenant_id)}.{command.channel.value}.send"


def encode(command: SendMessage) -> bytes:
    return _encoder.encode(command)


def decode(payload: bytes) -> AnyCommand:
    return _decoder.decode(payload)
