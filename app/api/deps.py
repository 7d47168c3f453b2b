"""Dependencies the routes declare, each defined once."""

from typing import Annotated

from fastapi import Depends, Request

from app.connection import ProducerConnection
from app.settings import Settings


def get_connection(request: Request) -> ProducerConnection:
    """The producer connection the lifespan started."""
    connection: ProducerConnection = request.app.state.connection
    return connection


def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


ConnectionDep = Annotated[ProducerConnection, Depends(get_connection)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
