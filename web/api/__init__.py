"""The versioned JSON API (`/api/v1/tenants/<tenant>/...`): one module per domain area
(customers, calls, conversations, tickets, agents, queues, live_calls), behind one door
(auth: a tenant's API key, or a page session for reads); `params` holds what their lists
share (paging, strict query values), `errors` how refusals become 4xx answers, and `v1`
gathers the read-mostly areas for deploy.services. The OpenAPI document is at /schema.
"""
