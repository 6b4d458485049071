"""`cloudcc up --demo`: a demo tenant and believable traffic, so a newcomer sees a living
contact center at once.

- `seed`: tenant "demo" and everything in it, created only where missing;
- `traffic`: the customers, the callers and agents' phones (on the built-in switch's panel),
  the SMS gateway and the agents, simulated;
- `service`: `DemoService`, which seeds, then keeps the traffic flowing until stopped.
"""

from deploy.demo.seed import (
    AGENTS,
    HOTLINE,
    QUEUES,
    TENANT,
    AgentSpec,
    DemoCustomer,
    DemoSetup,
    QueueSpec,
    created_events,
    demo_customers,
    seed,
)
from deploy.demo.service import SPEED_ENV, DemoService, speed_from_env
from deploy.demo.traffic import Traffic

__all__ = [
    "AGENTS",
    "HOTLINE",
    "QUEUES",
    "SPEED_ENV",
    "TENANT",
    "AgentSpec",
    "DemoCustomer",
    "DemoService",
    "DemoSetup",
    "QueueSpec",
    "Traffic",
    "created_events",
    "demo_customers",
    "seed",
    "speed_from_env",
]
