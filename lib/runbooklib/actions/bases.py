"""The action bases channel runbooks share: a tenant's channel configuration changed with rollback, verify
and undo (`TenantChannelChange`), and a gated test message (`SendTestMessage`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from runbooklib.actions import Action, Plan
from runbooklib.errors import MitigationFailed, PlatformAPIError
from runbooklib.evidence import Key

if TYPE_CHECKING:
    from runbooklib.context import RunContext

MAX_TENANTS_PER_CHANGE = 25
MITIGATED_AT: Key[datetime] = Key("mitigated_at", "an applied mitigation",
                                   "when a mitigation that should bring failures down started")
"""Set by the apply() of a mitigation; the recovery checks measure from it."""


def affected_tenants(ctx: RunContext) -> list[str]:
    """`tenant_id` if given, else the tenants with failures in the window (from the tenant split, which must have run:
    without it "no tenant is affected" would be a guess)."""
    if ctx.params.tenant_id:
        return [ctx.params.tenant_id]
    from runbooklib.runbooks.channel_checks import TENANT_FRAME

    frame = ctx.evidence.get(TENANT_FRAME)  # not run yet: NotYet, and the gate says what to run first
    if frame.empty:
        return []
    return [str(t) for t in frame[frame["failed"] > 0]["tenant_id"] if str(t) != "(none)"]


class TenantChannelChange(Action):
    """Set one key of the affected tenants' channel configuration, with rollback, verify and undo.

    Subclasses say which channel and key (`channel`, `key`), the value to set (`target`), and may
    add a precondition (`preflight`). Steps record the value read before the change, so that a
    failure part-way puts back what was changed and `undo()` restores exactly what was there.
    """

    channel = ""
    key = ""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def target(self, current: Any) -> Any:
        """The value to set, given the current one."""
        raise NotImplementedError

    def preflight(self) -> tuple[bool, str]:
        return True, ""

    def describe(self, count: int) -> str:
        return f"set {self.channel} {self.key} for {count} tenant(s)"

    def plan(self) -> Plan:
        ok, why = self.preflight()
        details: dict[str, Any] = {"preflight": why} if why else {}
        if not ok:
            return Plan(self.name, self.title, blocked=why, details=details)
        tenants = affected_tenants(self.ctx)
        if not tenants:
            return Plan(self.name, "no tenant to change", details=details,
                        blocked="no tenant has failures in the window; give tenant_id to change one explicitly")
        if len(tenants) > MAX_TENANTS_PER_CHANGE:
            return Plan(self.name, f"{len(tenants)} tenants affected", details=details,
                        blocked=(f"{len(tenants)} tenants are affected, more than {MAX_TENANTS_PER_CHANGE} per run; run "
                                 "per tenant (tenant_id) or use the platform's global setting"))
        steps, unchanged = [], []
        for tenant in tenants:
            current = self.ctx.api.get_channel(self.channel, tenant).get(self.key)
            wanted = self.target(current)
            if wanted == current:
                unchanged.append(tenant)
                continue
            steps.append({"call": f"PATCH /api/v1/communication/channels/{self.channel}", "tenant_id": tenant,
                          "from": current, "to": wanted})
        details["already_set"] = unchanged
        if not steps:
            return Plan(self.name, "nothing to change", blocked="every affected tenant already has it", details=details)
        return Plan(self.name, self.describe(len(steps)), steps=steps, details=details)

    def resources(self, plan: Plan) -> list[str]:
        return [f"channel:{self.channel}:tenant:{s['tenant_id']}" for s in plan.steps]

    def verify_by_hand(self, plan: Plan) -> str:
        tenants = ", ".join(str(s["tenant_id"]) for s in plan.steps)
        return (f"the {self.channel} channel's {self.key} of tenants {tenants} (GET /api/v1/communication/channels/"
                f"{self.channel}?tenant_id=…): each is either still the 'from' value of the plan or its 'to' value")

    def apply(self, plan: Plan) -> dict[str, Any]:
        started = datetime.now(UTC)  # messages created from here on follow the new configuration
        done: list[dict[str, Any]] = []
        for step in plan.steps:
            try:
                self.ctx.api.update_channel(self.channel, step["tenant_id"], {self.key: step["to"]})
            except PlatformAPIError as exc:
                restored = self._put_back(done)
                raise MitigationFailed(f"changed {len(done)} of {len(plan.steps)} tenants, then {exc}; "
                                       f"put back {restored} of {len(done)}") from exc
            done.append(step)
        self.ctx.evidence.put(MITIGATED_AT, started)
        return {"changed": [s["tenant_id"] for s in done], "key": self.key}

    def _put_back(self, steps: list[dict[str, Any]]) -> int:
        count = 0
        for step in reversed(steps):
            try:
                self.ctx.api.update_channel(self.channel, step["tenant_id"], {self.key: step["from"]})
                count += 1
            except PlatformAPIError:
                continue
        return count

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        wrong = [s["tenant_id"] for s in plan.steps
                 if self.ctx.api.get_channel(self.channel, s["tenant_id"]).get(self.key) != s["to"]]
        if wrong:
            return False, f"{self.channel} {self.key} did not change for {', '.join(wrong)}"
        return True, f"{self.describe(len(plan.steps))}: done and read back"

    @property
    def can_undo(self) -> bool:
        return True

    def undo(self, plan: Plan, result: dict[str, Any]) -> dict[str, Any]:
        for step in plan.steps:
            self.ctx.api.update_channel(self.channel, step["tenant_id"], {self.key: step["from"]})
        wrong = [s["tenant_id"] for s in plan.steps
                 if self.ctx.api.get_channel(self.channel, s["tenant_id"]).get(self.key) != s["from"]]
        if wrong:
            raise MitigationFailed(f"undo did not take for {', '.join(wrong)}")
        self.ctx.evidence.drop(MITIGATED_AT)
        return {"restored": [{"tenant_id": s["tenant_id"], self.key: s["from"]} for s in plan.steps]}


class SendTestMessage(Action):
    """A gated test message to the address or number that the parameter `param_name` gives."""

    param_name = ""
    accepted_by = ""
    readback = False  # a sent message cannot be read back: an interrupted send is never repeated on its own

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.to = str(getattr(ctx.params, self.param_name))

    def needed(self) -> tuple[bool, str]:
        if not self.to:
            return False, f"no {self.param_name} given"
        return True, f"recovery confirmation needs a test message that {self.accepted_by} accepts"

    def resources(self, plan: Plan) -> list[str]:
        return [f"test-message:{self.name}:{self.to}"]

    def verify_by_hand(self, plan: Plan) -> str:
        return f"whether the test message reached {self.to} (its inbox or phone, or the provider's log)"
