"""The versioned JSON API (`/api/v1`): one module per domain area."""
