"""The live chat channel (CT8, CT9): a widget on the tenant's website, visitors over a
WebSocket, their messages as `ChatMessageReceived` facts, agents' replies pushed back.

Shaped like every connector (Wazo's plugin layout):

- `schemas`: the WebSocket frames, msgspec wire types decoded strictly at the edge;
- `inbound`: visitor tokens, the per-socket rate limit, the per-address and per-tenant
  limits on sockets and new visitors (`Admission`), frames turned into facts;
- `outbound`: `ChatHub`, one NATS subscription per process to the read models' live
  changes (projections.live), waking the sockets whose conversation changed;
- `services`: `LiveChat`, what a socket asks the domain and the read models (is the
  tenant's chat open, is an agent online, the visitor's conversation so far), and the
  queue a new chat is handed to (CT9).

The page side (the widget script, the socket handler, the sample site) is web.pages.chat.

May import: domain commands, projections' read models, connectors.facts, NATS.
"""
