"""Dependencies the routers share: the app's services from the lifespan state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from app.flows import Flows
from app.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_flows(services: ServicesDep) -> Flows:
    return services.flows


def no_store(response: Response) -> None:
    """API answers carry tokens or per-user state: no cache may keep them."""
    response.headers["Cache-Control"] = "no-store"


FlowsDep = Annotated[Flows, Depends(get_flows)]
