"""The catalog of built-in actions, listed explicitly."""

from __future__ import annotations

from collections.abc import Mapping

from clampdown.actions.contract import Action
from clampdown.actions.credential import Reactivate, Revoke, Rotate, Suspend
from clampdown.actions.finding import FindingUpdate
from clampdown.actions.gateway import Block, DisableEndpoint, EnableEndpoint, Throttle, Unblock
from clampdown.actions.identity import ConfirmCompromised, Disable, RevokeSessions
from clampdown.actions.notify import FlowTrigger, NotifySend
from clampdown.actions.task import TaskCreate
from clampdown.actions.ticket import TicketCreate, TicketResolve, TicketUpdate

BUILTIN: tuple[type[Action], ...] = (
    Block,
    Unblock,
    Throttle,
    DisableEndpoint,
    EnableEndpoint,
    Suspend,
    Reactivate,
    Rotate,
    Revoke,
    NotifySend,
    FlowTrigger,
    TaskCreate,
    TicketCreate,
    TicketUpdate,
    TicketResolve,
    RevokeSessions,
    Disable,
    ConfirmCompromised,
    FindingUpdate,
)

CATALOG: Mapping[str, type[Action]] = {action.name: action for action in BUILTIN}


def get(name: str) -> Action:
    """An instance of the action called `name`; KeyError when there is none."""
    return CATALOG[name]()
