"""The domain: flows (records.py), the service that runs them (service.py) and the browser
sessions that own them (sessions.py). No HTTP framework, no raw httpx, no raw Redis commands.

The API layer imports from here, never from the store.
"""

from app.flows.handoff import checked_challenge
from app.flows.links import (
    Account,
    AccountData,
    DataPending,
    HostLink,
    LinkPolicy,
    Links,
    Transaction,
    TransactionsPage,
)
from app.flows.records import (
    INSTITUTION_ID,
    INSTITUTION_ID_PATTERN,
    Challenge,
    FlowError,
    FlowKind,
    FlowRecord,
    FlowStatus,
    InstitutionId,
    Language,
    LinkRecord,
)
from app.flows.runner import Timing
from app.flows.service import (
    CallbackResult,
    ConnectSession,
    FlowConfig,
    Flows,
    MintedToken,
    OAuthStart,
    StatusRead,
)
from app.flows.sessions import BrowserSession, BrowserSessions
from app.flows.tasks import TaskRegistry

__all__ = [
    "INSTITUTION_ID",
    "INSTITUTION_ID_PATTERN",
    "Account",
    "AccountData",
    "DataPending",
    "HostLink",
    "LinkPolicy",
    "LinkRecord",
    "Links",
    "Transaction",
    "TransactionsPage",
    "checked_challenge",
    "BrowserSession",
    "BrowserSessions",
    "CallbackResult",
    "Challenge",
    "ConnectSession",
    "FlowConfig",
    "FlowError",
    "FlowKind",
    "FlowRecord",
    "FlowStatus",
    "Flows",
    "InstitutionId",
    "Language",
    "MintedToken",
    "OAuthStart",
    "StatusRead",
    "TaskRegistry",
    "Timing",
]
