"""Command subjects: a command goes out only on its own tenant's subject."""

from __future__ import annotations

from uuid import UUID

import pytest

from connectors import commands as messages
from domain.vocabulary import Channel
from telephony_bridge import commands as telephony

ORIGINATE = telephony.Originate(
    command_id="1", tenant_id="acme", hotline=None, to_number="0912345678"
)
STOP = telephony.StopRinging(
    command_id="2",
    tenant_id="acme",
    call_id=UUID(int=1),
    call_ref="c",
    agent_id=UUID(int=2),
    reason="timed_out",
)
SEND = messages.SendMessage(command_id="3", tenant_id="acme", channel=Channel.SMS, to="0912")


def test_a_telephony_command_goes_on_its_own_tenants_subject() -> None:
    assert telephony.subject("acme", ORIGINATE) == "cmd.acme.telephony.originate"
    assert telephony.subject("acme", STOP) == "cmd.acme.telephony.stopringing"


@pytest.mark.parametrize("command", [ORIGINATE, STOP])
def test_a_telephony_command_is_not_routed_to_another_tenant(
    command: telephony.Command,
) -> None:
    with pytest.raises(ValueError, match="globex"):
        telephony.subject("globex", command)


def test_a_message_command_goes_on_its_own_tenants_subject() -> None:
    assert messages.subject("acme", SEND) == "cmd.acme.sms.send"


def test_a_message_command_is_not_routed_to_another_tenant() -> None:
    with pytest.raises(ValueError, match="globex"):
        messages.subject("globex", SEND)
