"""The built-in switch's control panel on NATS: what plays the people at the ends.

A real switch gets calls from the phone network and its users' phones; the built-in one
gets them here, from `cloudcc simulate` and the end-to-end tests (request/reply, JSON):

| subject | request | reply |
|---|---|---|
| `switch.builtin.call` | `PlaceCall` | `{"channel_id": ...}` |
| `switch.builtin.party` | `SetParty` (how the person at an address behaves) | `{}` |
| `switch.builtin.dtmf` | `{"channel_id", "digit"}` | `{}` |
| `switch.builtin.hangup` | `{"channel_id", "cause"}` | `{}` |
| `switch.builtin.channels` | `{}` | `{"channels": [ChannelState...]}` |
| `switch.builtin.hears` | `{"listener", "speaker"}` | `{"hears": bool}` |

Errors come back as `{"error": "..."}`. The panel is for the embedded set-up, whose NATS
listens on the loopback only; it is never served next to a production switch.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from telephony_bridge.driver import VAR_TENANT, SwitchError
from telephony_bridge.switch import BuiltinSwitch, Party

log = logging.getLogger(__name__)

PREFIX = "switch.builtin"


class PartySpec(msgspec.Struct, frozen=True, kw_only=True):
    """`switch.Party` on the wire (times in switch seconds)."""

    answer_after: float | None = 1.0
    hang_up_after: float | None = None
    digits: str = ""
    abandon_after: float | None = None
    reject: str | None = None

    def party(self) -> Party:
        return Party(
            answer_after=self.answer_after,
            hang_up_after=self.hang_up_after,
            digits=self.digits,
            abandon_after=self.abandon_after,
            reject=self.reject,
        )


class PlaceCall(msgspec.Struct, frozen=True, kw_only=True):
    """A caller dials `hotline`. With `tenant`, the call comes from one of that tenant's
    own phones (its user directory tags it), and `hotline` may be an extension or any
    outside number."""

    caller_number: str
    hotline: str
    party: PartySpec = PartySpec()
    tenant: str | None = None


class SetParty(msgspec.Struct, frozen=True, kw_only=True):
    address: str
    party: PartySpec


class Dtmf(msgspec.Struct, frozen=True, kw_only=True):
    channel_id: str
    digit: str


class HangUp(msgspec.Struct, frozen=True, kw_only=True):
    channel_id: str
    cause: str = "NORMAL_CLEARING"


class Hears(msgspec.Struct, frozen=True, kw_only=True):
    listener: str
    speaker: str


class SwitchPanel:
    def __init__(self, nc: NatsClient, switch: BuiltinSwitch) -> None:
        self.nc, self.switch = nc, switch
        self._subs: list[Any] = []

    async def start(self) -> None:
        for verb in ("call", "party", "dtmf", "hangup", "channels", "hears"):
            self._subs.append(await self.nc.subscribe(f"{PREFIX}.{verb}", cb=self._serve))

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs = []

    async def _serve(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        try:
            reply = await self._answer(verb, msg.data or b"{}")
        except (msgspec.DecodeError, msgspec.ValidationError, SwitchError, ValueError) as error:
            reply = {"error": f"{type(error).__name__}: {error}"}
        if msg.reply:
            await msg.respond(msgspec.json.encode(reply))

    async def _answer(self, verb: str, data: bytes) -> Any:
        sw = self.switch
        if verb == "call":
            call = msgspec.json.decode(data, type=PlaceCall)
            return {
                "channel_id": sw.place_inbound_call(
                    call.caller_number,
                    call.hotline,
                    party=call.party.party(),
                    variables={VAR_TENANT: call.tenant} if call.tenant else None,
                )
            }
        if verb == "party":
            spec = msgspec.json.decode(data, type=SetParty)
            sw.set_party(spec.address, spec.party.party())
            return {}
        if verb == "dtmf":
            dtmf = msgspec.json.decode(data, type=Dtmf)
            sw.dtmf(dtmf.channel_id, dtmf.digit)
            return {}
        if verb == "hangup":
            hangup = msgspec.json.decode(data, type=HangUp)
            await sw.hangup(hangup.channel_id, hangup.cause)
            return {}
        if verb == "channels":
            return {"channels": await sw.channels()}
        hears = msgspec.json.decode(data, type=Hears)
        return {"hears": sw.hears(hears.listener, hears.speaker)}
