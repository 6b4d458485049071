"""Behaviour of eventstore.transcoder.MsgspecTranscoder, the stored-event payload codec."""

from __future__ import annotations

import math
import os
import struct
from collections import OrderedDict
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum, Flag, IntEnum, StrEnum, auto
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Transcoder,
    Transcoding,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)
from eventsourcing.tests.application import ExampleApplicationTestCase
from eventsourcing.tests.persistence import (
    CustomType1AsDict,
    CustomType2AsDict,
    Mydict,
    MyInt,
    MyList,
    MyStr,
    TranscoderTestCase,
)
from eventsourcing.utils import get_topic

from eventstore.transcoder import (
    MalformedPayloadError,
    MsgspecTranscoder,
    UnknownTypeTagError,
)

# Types used in payloads live at module level: their topics must resolve.


class Priority(Enum):
    LOW = "low"
    HIGH = "high"


class Skill(IntEnum):
    VOICE = 1
    CHAT = 2


class Channel(StrEnum):
    VOICE = "voice"
    EMAIL = "email"


class Perm(Flag):
    LISTEN = auto()
    BARGE = auto()


class Money(msgspec.Struct, frozen=True):
    amount: Decimal
    currency: str


class Caller(msgspec.Struct):
    number: str
    seen_at: datetime
    tags: tuple[str, ...] = ()


class QueueEntry(msgspec.Struct):
    caller: Caller
    priority: Priority
    quote: Money
    history: list[Caller] = msgspec.field(default_factory=list)
    by_channel: dict[str, Money] = msgspec.field(default_factory=dict)


class Patch(msgspec.Struct):
    note: str | msgspec.UnsetType = msgspec.UNSET


class Extension:
    """A custom non-Struct type, to exercise register()."""

    def __init__(self, number: int) -> None:
        self.number = number

    def __eq__(self, other: object) -> bool:
        return type(other) is Extension and other.number == self.number

    def __hash__(self) -> int:
        return hash(self.number)


class ExtensionAsInt(Transcoding):
    type = Extension
    name = "extension_int"

    def encode(self, obj: Extension) -> int:
        return obj.number

    def decode(self, data: int) -> Extension:
        return Extension(data)


# Transcodings for the builtin subclasses TranscoderTestCase round-trips. Its
# test_dict_subclass expects the tag "mydict" on the wire, i.e. a registered
# transcoding, which is how an application would support such a type.


class MydictAsDict(Transcoding):
    type = Mydict
    name = "mydict"

    def encode(self, obj: Mydict[Any, Any]) -> dict[Any, Any]:
        return dict(obj)

    def decode(self, data: dict[Any, Any]) -> Mydict[Any, Any]:
        return Mydict(data)


class MyListAsList(Transcoding):
    type = MyList
    name = "mylist"

    def encode(self, obj: MyList[Any]) -> list[Any]:
        return list(obj)

    def decode(self, data: list[Any]) -> MyList[Any]:
        return MyList(data)


class MyStrAsStr(Transcoding):
    type = MyStr
    name = "mystr"

    def encode(self, obj: MyStr) -> str:
        return str(obj)

    def decode(self, data: str) -> MyStr:
        return MyStr(data)


class MyIntAsInt(Transcoding):
    type = MyInt
    name = "myint"

    def encode(self, obj: MyInt) -> int:
        return int(obj)

    def decode(self, data: int) -> MyInt:
        return MyInt(data)


class TestMsgspecTranscoderConformance(TranscoderTestCase):
    """eventsourcing's own transcoder conformance suite, run unmodified.

    It registers the same transcodings as eventsourcing's JSONTranscoder test,
    plus transcodings for its builtin-subclass types; unlike that test, nothing
    is skipped (tuples, dict/list/str/int subclasses all round-trip).
    """

    def construct_transcoder(self) -> Transcoder:
        transcoder = MsgspecTranscoder()
        transcoder.register(CustomType1AsDict())
        transcoder.register(CustomType2AsDict())
        transcoder.register(UUIDAsHex())
        transcoder.register(MydictAsDict())
        transcoder.register(MyListAsList())
        transcoder.register(MyStrAsStr())
        transcoder.register(MyIntAsInt())
        return transcoder


@pytest.fixture
def transcoder() -> MsgspecTranscoder:
    return MsgspecTranscoder()


def round_trip(transcoder: MsgspecTranscoder, obj: Any) -> Any:
    return transcoder.decode(transcoder.encode(obj))


def test_tz_aware_datetime_round_trips_with_its_offset(transcoder: MsgspecTranscoder) -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    original = datetime(2024, 3, 31, 1, 59, 59, 123456, tzinfo=ist)

    copy = round_trip(transcoder, {"at": original})["at"]

    assert copy == original
    assert copy.utcoffset() == timedelta(hours=5, minutes=30)
    # Same instant is not enough: the wall-clock reading must be the stored one.
    assert copy.replace(tzinfo=None) == original.replace(tzinfo=None)


def test_datetime_offset_with_seconds_is_not_rounded(transcoder: MsgspecTranscoder) -> None:
    # Amsterdam's 1900 local mean time; RFC 3339 (msgspec's format) cannot
    # express it, so the ISO fallback must be taken.
    lmt = timezone(timedelta(minutes=19, seconds=32))
    original = datetime(1900, 1, 1, 12, 0, tzinfo=lmt)

    copy = round_trip(transcoder, original)

    assert copy == original
    assert copy.utcoffset() == timedelta(minutes=19, seconds=32)


def test_utc_datetime_round_trips_as_utc(transcoder: MsgspecTranscoder) -> None:
    original = datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)

    copy = round_trip(transcoder, original)

    assert copy == original
    assert copy.utcoffset() == timedelta(0)


def test_naive_datetime_stays_naive(transcoder: MsgspecTranscoder) -> None:
    original = datetime(2024, 1, 2, 3, 4, 5, 6)

    copy = round_trip(transcoder, original)

    assert copy == original
    assert copy.tzinfo is None


def test_date_and_time_round_trip_as_their_own_types(transcoder: MsgspecTranscoder) -> None:
    original = {
        "day": date(2024, 2, 29),
        "opens": time(8, 30),
        "closes": time(17, 0, 0, 500, tzinfo=timezone(timedelta(hours=-3))),
    }

    copy = round_trip(transcoder, original)

    assert copy == original
    assert type(copy["day"]) is date
    assert type(copy["opens"]) is time
    assert copy["closes"].utcoffset() == timedelta(hours=-3)


@pytest.mark.parametrize(
    "text",
    ["0.1", "1.10", "-0", "1E+30", "12345678901234567890.123456789012345678901", "-1.5E-40"],
)
def test_decimal_round_trips_exactly_never_through_float(
    transcoder: MsgspecTranscoder, text: str
) -> None:
    original = Decimal(text)

    data = transcoder.encode({"amount": original})
    copy = transcoder.decode(data)["amount"]

    assert type(copy) is Decimal
    # str() also compares exponent and sign, which == ignores (1.10 == 1.1).
    assert str(copy) == str(original)
    assert f'"{text}"'.encode() in data


def test_decimal_nan_and_infinity_round_trip(transcoder: MsgspecTranscoder) -> None:
    copy = round_trip(transcoder, [Decimal("NaN"), Decimal("-Infinity")])

    assert copy[0].is_nan()
    assert copy[1] == Decimal("-Infinity")


def test_uuid_round_trips_as_uuid(transcoder: MsgspecTranscoder) -> None:
    original = uuid4()

    copy = round_trip(transcoder, {"id": original})["id"]

    assert type(copy) is UUID
    assert copy == original


def test_big_ints_round_trip_exactly(transcoder: MsgspecTranscoder) -> None:
    original = [2**64, -(2**200) + 1, 10**40 + 7]

    assert round_trip(transcoder, original) == original


@pytest.mark.parametrize("value", [0.1, -0.0, 1e-310, 1.7976931348623157e308, math.inf, -math.inf])
def test_floats_round_trip_bit_for_bit(transcoder: MsgspecTranscoder, value: float) -> None:
    copy = round_trip(transcoder, value)

    assert type(copy) is float
    assert struct.pack("<d", copy) == struct.pack("<d", value)


def test_nan_float_round_trips_instead_of_becoming_null(transcoder: MsgspecTranscoder) -> None:
    copy = round_trip(transcoder, {"x": math.nan})["x"]

    assert type(copy) is float
    assert math.isnan(copy)


def test_bool_and_none_keep_their_identity(transcoder: MsgspecTranscoder) -> None:
    copy = round_trip(transcoder, [True, False, None, 1, 0])

    assert copy == [True, False, None, 1, 0]
    assert [type(v) for v in copy] == [bool, bool, type(None), int, int]


def test_bytes_round_trip(transcoder: MsgspecTranscoder) -> None:
    original = bytes(range(256))

    assert round_trip(transcoder, {"blob": original}) == {"blob": original}


def test_tuples_come_back_as_tuples_and_lists_as_lists(transcoder: MsgspecTranscoder) -> None:
    original = {"t": (1, ("a", [2, (3,)]), ()), "l": [(1, 2), []]}

    copy = round_trip(transcoder, original)

    assert copy == original
    assert type(copy["t"]) is tuple
    assert type(copy["t"][1][1]) is list
    assert type(copy["t"][1][1][1]) is tuple
    assert type(copy["l"]) is list


def test_sets_round_trip_and_equal_sets_encode_identically(transcoder: MsgspecTranscoder) -> None:
    original = {"s": {3, 1, 2}, "f": frozenset({"b", "a"}), "mixed": {1, "a"}}

    copy = round_trip(transcoder, original)

    assert copy == original
    assert type(copy["s"]) is set
    assert type(copy["f"]) is frozenset
    assert transcoder.encode({1, 2, 3}) == transcoder.encode({3, 2, 1})


def test_nested_structs_round_trip_as_their_own_classes(transcoder: MsgspecTranscoder) -> None:
    tz = timezone(timedelta(hours=-7))
    caller = Caller("+15551234", datetime(2024, 5, 1, 9, 0, tzinfo=tz), ("vip",))
    entry = QueueEntry(
        caller=caller,
        priority=Priority.HIGH,
        quote=Money(Decimal("19.990"), "USD"),
        history=[Caller("+15550000", datetime(2024, 4, 1, 8, 0, tzinfo=tz))],
        by_channel={"voice": Money(Decimal("0.05"), "EUR")},
    )
    original = {"entry": entry, "in_list": [caller], "in_dict": {"k": entry.quote}}

    copy = round_trip(transcoder, original)

    assert copy == original
    assert type(copy["entry"]) is QueueEntry
    assert type(copy["entry"].caller) is Caller
    assert type(copy["entry"].quote) is Money
    assert type(copy["entry"].history[0]) is Caller
    assert type(copy["entry"].by_channel["voice"]) is Money
    assert type(copy["entry"].caller.tags) is tuple
    assert copy["entry"].priority is Priority.HIGH
    assert str(copy["entry"].quote.amount) == "19.990"
    assert type(copy["in_list"][0]) is Caller
    assert type(copy["in_dict"]["k"]) is Money


def test_struct_is_recorded_by_its_eventsourcing_topic(transcoder: MsgspecTranscoder) -> None:
    data = transcoder.encode(Money(Decimal(1), "GBP"))

    assert get_topic(Money).encode() in data


def test_unset_struct_field_stays_unset(transcoder: MsgspecTranscoder) -> None:
    copy = round_trip(transcoder, Patch())

    assert copy.note is msgspec.UNSET
    assert round_trip(transcoder, Patch(note="x")) == Patch(note="x")


def test_enum_members_come_back_as_the_same_member(transcoder: MsgspecTranscoder) -> None:
    original = [Priority.LOW, Skill.CHAT, Channel.EMAIL, Perm.LISTEN | Perm.BARGE]

    copy = round_trip(transcoder, original)

    assert copy == original
    for before, after in zip(original, copy, strict=True):
        assert type(after) is type(before)
        assert after is before


def test_dict_shaped_like_an_envelope_is_not_mistaken_for_one(
    transcoder: MsgspecTranscoder,
) -> None:
    original = {"_type_": "uuid_hex", "_data_": "not-a-uuid"}

    assert round_trip(transcoder, original) == original
    assert round_trip(transcoder, {"nested": [original]}) == {"nested": [original]}


def test_event_shaped_state_round_trips(transcoder: MsgspecTranscoder) -> None:
    # What eventsourcing's Mapper hands over: the event __dict__ minus id/version.
    state = {
        "timestamp": datetime.now(UTC),
        "originator_topic": "domain.call:Call",
        "agent_id": uuid4(),
        "skills": (Skill.VOICE,),
        "price": Decimal("0.0125"),
        "meta": {"attempt": 2, "ok": True, "note": None, "ratio": 0.75},
    }

    assert round_trip(transcoder, state) == state


def test_reads_payloads_written_by_eventsourcing_json_transcoder(
    transcoder: MsgspecTranscoder,
) -> None:
    legacy = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        legacy.register(transcoding)
    state = {
        "id": uuid4(),
        "at": datetime(2023, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=9))),
        "amount": Decimal("3.140"),
        "items": [1, "two", {"three": 3.0}],
    }

    assert transcoder.decode(legacy.encode(state)) == state
    assert legacy.decode(transcoder.encode(state)) == state


def test_registered_transcoding_extends_the_supported_types(
    transcoder: MsgspecTranscoder,
) -> None:
    transcoder.register(ExtensionAsInt())

    assert round_trip(transcoder, {"ext": [Extension(4021)]}) == {"ext": [Extension(4021)]}


def test_reserved_tags_cannot_be_registered_over(transcoder: MsgspecTranscoder) -> None:
    class Hijack(ExtensionAsInt):
        name = "msgspec_struct"

    with pytest.raises(ValueError, match="msgspec_struct"):
        transcoder.register(Hijack())


@pytest.mark.parametrize(
    "obj",
    [
        object(),
        {"a": Extension(1)},
        OrderedDict(a=1),
        MyStr("builtin subclass, unregistered"),
        bytearray(b"x"),
    ],
    ids=["object", "nested-custom", "ordereddict", "str-subclass", "bytearray"],
)
def test_unsupported_type_is_refused_on_encode(transcoder: MsgspecTranscoder, obj: Any) -> None:
    with pytest.raises(TranscodingNotRegisteredError, match="is not serializable"):
        transcoder.encode(obj)


def test_non_str_dict_keys_are_refused_rather_than_stringified(
    transcoder: MsgspecTranscoder,
) -> None:
    with pytest.raises(TypeError, match="Dict keys must be str"):
        transcoder.encode({1: "a"})


def test_self_referencing_object_is_refused_on_encode(transcoder: MsgspecTranscoder) -> None:
    loop: list[Any] = []
    loop.append(loop)

    with pytest.raises(ValueError, match="self-referencing"):
        transcoder.encode(loop)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00\xff\xfe", b'{"a":', b'{"a":1} trailing', b'"\xff"', b"NaN", b"[1e400]"],
    ids=["empty", "binary", "truncated", "trailing", "bad-utf8", "nan-literal", "overflow"],
)
def test_garbage_bytes_are_rejected_with_a_value_error(
    transcoder: MsgspecTranscoder, garbage: bytes
) -> None:
    with pytest.raises(MalformedPayloadError, match="not valid JSON") as caught:
        transcoder.decode(garbage)

    assert isinstance(caught.value, ValueError)


def test_unknown_type_tag_is_rejected_naming_the_tag(transcoder: MsgspecTranscoder) -> None:
    data = b'{"ok":1,"deep":[{"_type_":"no_such_tag","_data_":1}]}'

    with pytest.raises(UnknownTypeTagError, match="'no_such_tag'") as caught:
        transcoder.decode(data)

    # Catchable both as the strict ValueError and as JSONTranscoder's TypeError.
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TranscodingNotRegisteredError)


def test_unknown_struct_topic_is_rejected_naming_the_topic(
    transcoder: MsgspecTranscoder,
) -> None:
    data = b'{"_type_":"msgspec_struct","_data_":["no_such_module_xyz:Gone",{}]}'

    with pytest.raises(UnknownTypeTagError, match="no_such_module_xyz:Gone"):
        transcoder.decode(data)


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b'{"_type_":"uuid_hex","_data_":"zz"}', "uuid_hex"),
        # A number must not sneak into Decimal() via a float.
        (b'{"_type_":"decimal_str","_data_":1.5}', "decimal_str"),
        (b'{"_type_":"datetime_iso","_data_":"yesterday"}', "datetime_iso"),
        (b'{"_type_":"bytes_b64","_data_":"***"}', "bytes_b64"),
        (b'{"_type_":"float_str","_data_":"1.0"}', "float_str"),
        (b'{"_type_":"tuple_as_list","_data_":"ab"}', "tuple_as_list"),
        (b'{"_type_":7,"_data_":1}', "Type tag must be a string"),
        (b'{"_type_":"msgspec_struct","_data_":"x"}', r"\[topic, value\] pair"),
        # A topic naming something other than a Struct must never be called.
        (b'{"_type_":"msgspec_struct","_data_":["os:system",{}]}', "not a Struct subclass"),
        (
            b'{"_type_":"msgspec_struct","_data_":["test_transcoder:Money",{"bogus":1}]}',
            "Cannot rebuild Struct",
        ),
        (b'{"_type_":"enum","_data_":["test_transcoder:Priority","urgent"]}', "not a member"),
        (b'{"_type_":"plain_dict","_data_":[1]}', "must be a JSON object"),
    ],
)
def test_malformed_envelope_is_rejected_with_a_value_error(
    transcoder: MsgspecTranscoder, data: bytes, complaint: str
) -> None:
    with pytest.raises(MalformedPayloadError, match=complaint):
        transcoder.decode(data)


# --- Through a real eventsourcing Application -------------------------------


class Call(Aggregate):
    @event("Offered")
    def __init__(
        self, agent_id: UUID, offered_at: datetime, price: Decimal, entry: QueueEntry
    ) -> None:
        self.agent_id = agent_id
        self.offered_at = offered_at
        self.price = price
        self.entry = entry
        self.answered_at: datetime | None = None

    @event("Answered")
    def answer(self, answered_at: datetime, channel: Channel) -> None:
        self.answered_at = answered_at
        self.channel = channel


class Calls(Application[UUID]):
    pass


TRANSCODER_TOPIC = "eventstore.transcoder:MsgspecTranscoder"


def test_transcoder_topic_resolves_to_the_class() -> None:
    assert get_topic(MsgspecTranscoder) == TRANSCODER_TOPIC


def test_application_saves_and_reloads_aggregate_through_the_transcoder() -> None:
    # POPO persistence is the default when PERSISTENCE_MODULE is unset.
    app = Calls(env={"TRANSCODER_TOPIC": TRANSCODER_TOPIC})
    assert isinstance(app.mapper.transcoder, MsgspecTranscoder)
    cet = timezone(timedelta(hours=1))
    call = Call(
        agent_id=uuid4(),
        offered_at=datetime(2024, 6, 1, 12, 0, 0, 1, tzinfo=cet),
        price=Decimal("0.0175"),
        entry=QueueEntry(
            caller=Caller("+3120000000", datetime(2024, 6, 1, 11, 59, tzinfo=cet), ("new",)),
            priority=Priority.LOW,
            quote=Money(Decimal("2.50"), "EUR"),
        ),
    )
    call.answer(datetime(2024, 6, 1, 12, 0, 30, tzinfo=cet), Channel.VOICE)
    pending = list(call.pending_events)
    app.save(call)

    reloaded: Call = app.repository.get(call.id)
    stored = app.recorder.select_events(call.id)

    assert reloaded == call
    assert list(app.events.get(call.id)) == pending
    assert reloaded.offered_at.utcoffset() == timedelta(hours=1)
    assert str(reloaded.price) == "0.0175"
    assert type(reloaded.entry) is QueueEntry
    assert type(reloaded.entry.caller) is Caller
    assert reloaded.channel is Channel.VOICE
    assert b'"_type_":"msgspec_struct"' in stored[0].state


class CallsWithExtensions(Application[UUID]):
    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(ExtensionAsInt())


class Desk(Aggregate):
    @event("Assigned")
    def __init__(self, extension: Extension) -> None:
        self.extension = extension


def test_application_register_transcodings_reaches_the_transcoder() -> None:
    # eventsourcing only calls register_transcodings() on a JSONTranscoder.
    app = CallsWithExtensions(env={"TRANSCODER_TOPIC": TRANSCODER_TOPIC})
    desk = Desk(Extension(4100))
    app.save(desk)

    reloaded: Desk = app.repository.get(desk.id)

    assert reloaded.extension == Extension(4100)


def test_stock_transcodings_do_not_loosen_the_built_in_ones(
    transcoder: MsgspecTranscoder,
) -> None:
    # Every Application registers these; eventsourcing's DecimalAsStr would
    # accept a JSON number, i.e. a float, as a Decimal.
    for stock in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(stock)

    with pytest.raises(MalformedPayloadError, match="decimal_str"):
        transcoder.decode(b'{"_type_":"decimal_str","_data_":1.5}')
    assert round_trip(transcoder, Decimal("2.50")).as_tuple() == Decimal("2.50").as_tuple()


class TestExampleApplicationThroughMsgspecTranscoder(ExampleApplicationTestCase):
    """eventsourcing's example bank application (custom EmailAddress transcoding,
    Decimals, snapshots) on POPO persistence with this transcoder."""

    expected_factory_topic = "eventsourcing.popo:POPOFactory"

    def setUp(self) -> None:
        super().setUp()
        # The test case builds its own Application, so only os.environ reaches it.
        self._saved_topic = os.environ.get("TRANSCODER_TOPIC")
        os.environ["TRANSCODER_TOPIC"] = TRANSCODER_TOPIC

    def tearDown(self) -> None:
        if self._saved_topic is None:
            os.environ.pop("TRANSCODER_TOPIC", None)
        else:
            os.environ["TRANSCODER_TOPIC"] = self._saved_topic
        super().tearDown()


del TranscoderTestCase
del ExampleApplicationTestCase
