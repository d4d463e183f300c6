"""Dependencies the routers share: the app's services from the lifespan state.

All `async def`: FastAPI runs a plain `def` dependency in a worker thread, a hop that cost
several milliseconds per request under load.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.flows import Flows
from app.services import Services


async def get_services(request: Request) -> Services:
    services: Services = request.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_flows(services: ServicesDep) -> Flows:
    return services.flows


FlowsDep = Annotated[Flows, Depends(get_flows)]
