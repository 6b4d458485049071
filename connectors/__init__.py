"""One package per channel (email, facebook, livechat, sms): inbound normalising, outbound sending.

Shared by every channel and by the telephony bridge: `facts` (the inbound fact wire types
and their subjects on the FACTS stream), `handlers` (each fact turned into domain
commands, without NATS) and `bus` (the faststream subscribers that feed the handlers).

May import: domain commands, NATS.
"""
