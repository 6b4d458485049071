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
| `switch.builtin.answer` | `{"channel_id"}`: the person a leg rings picks up | `{}` |
| `switch.builtin.register` | `{"address"}`: a browser softphone is there | `{"registrations": n}` |
| `switch.builtin.unregister` | `{"address"}`: one of its browsers left | `{"registrations": n}` |

A browser softphone (CC7, web.pages.phone) is a person at an address who answers by
hand: while at least one browser is registered at an address, the party there never
answers by itself and waits for `answer`; when the last one leaves, whatever party was set
there before comes back. The switch carries signalling only, no audio.

Errors come back as `{"error": "..."}`. The panel is for the embedded set-up, whose NATS
listens on the loopback only; it is never served next to a production switch.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

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


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    channel_id: str


class Registration(msgspec.Struct, frozen=True, kw_only=True):
    address: Annotated[str, msgspec.Meta(min_length=1)]


# A softphone: nobody answers until the browser's user clicks (the ring times out by itself).
SOFTPHONE = Party(answer_after=None)


class SwitchPanel:
    def __init__(self, nc: NatsClient, switch: BuiltinSwitch) -> None:
        self.nc, self.switch = nc, switch
        self._subs: list[Any] = []
        # Per address: how many browsers are registered, and the party set before them.
        self._softphones: dict[str, tuple[int, Party | None]] = {}

    async def start(self) -> None:
        verbs = ("call", "party", "dtmf", "hangup", "channels", "hears")
        for verb in (*verbs, "answer", "register", "unregister"):
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
        if verb == "answer":
            sw.pick_up(msgspec.json.decode(data, type=Answer).channel_id)
            return {}
        if verb in ("register", "unregister"):
            address = msgspec.json.decode(data, type=Registration).address
            return {"registrations": self._register(address, 1 if verb == "register" else -1)}
        hears = msgspec.json.decode(data, type=Hears)
        return {"hears": sw.hears(hears.listener, hears.speaker)}

    def _register(self, address: str, step: int) -> int:
        count, before = self._softphones.get(address, (0, None))
        if count == 0 and step < 0:
            return 0
        if count == 0:
            before = self.switch.swap_party(address, SOFTPHONE)
        count += step
        if count == 0:
            self.switch.swap_party(address, before)
            del self._softphones[address]
        else:
            self._softphones[address] = (count, before)
        return count
