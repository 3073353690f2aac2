"""REST API of billing (/api/v1/): allocations, wallets, recharges and recharge requests,
transactions, prices, notifications, and lock/unlock of domains, projects and members.

Views validate input with explicit serializers and call one service; querysets come from the
scoped selectors (billing.selectors, tenancy.selectors), so a foreign object is 404 and a
visible one with a forbidden action is 403 (the services' `require()`). Money is a decimal
string in and out.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http.response import HttpResponseBase
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import generics, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from billing import enforcement, idempotency, selectors, services
from billing import requests as allocation_requests
from billing.models import (
    Allocation,
    AllocationRequest,
    Entry,
    Level,
    Notification,
    PriceVersion,
    RechargeRequest,
    Transaction,
    TransactionKind,
    Wallet,
)
from billing.serializers import (
    AllocationFilterSerializer,
    AllocationQuerySerializer,
    AllocationQuoteSerializer,
    AllocationRequestCreateSerializer,
    AllocationRequestDecideSerializer,
    AllocationRequestFilterSerializer,
    AllocationRequestSerializer,
    AllocationSerializer,
    AllocationSetSerializer,
    MemberUnlockSerializer,
    NotificationSerializer,
    PriceVersionCreateSerializer,
    PriceVersionSerializer,
    RechargeCreateSerializer,
    RechargeRequestCreateSerializer,
    RechargeRequestFilterSerializer,
    RechargeRequestSerializer,
    TenantLockSerializer,
    TenantUnlockSerializer,
    TransactionFilterSerializer,
    TransactionSerializer,
    WalletFilterSerializer,
    WalletSerializer,
    WalletUpdateSerializer,
)
from reports import exports
from tenancy import selectors as tenancy_selectors
from tenancy.api import JsonApiMixin, validated_body, validated_query
from tenancy.models import Domain, Membership, Project
from tenancy.serializers import MembershipSerializer

WALLET_PATH_PARAMETER = OpenApiParameter(
    "wallet_pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="The wallet's id."
)


def visible_object(queryset: QuerySet, pk: Any) -> Any:
    """The object `pk` among `queryset` (the caller's scope), or 404 — also for a malformed id."""
    return generics.get_object_or_404(queryset, pk=pk)


# -- Allocations ------------------------------------------------------------------------------


@extend_schema(tags=["allocations"])
class AllocationViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Allocation intervals: platform → domain → project → member (a member's limit)."""

    queryset = Allocation.objects.none()
    serializer_class = AllocationSerializer
    write_query_params = frozenset({"dry_run"})

    def get_queryset(self):
        return selectors.allocations_visible_to(self.request.user)

    @extend_schema(
        summary="Allocation history you can see, newest first",
        parameters=[AllocationFilterSerializer, exports.EXPORT_PARAMETER],
        responses=exports.export_responses(AllocationSerializer),
    )
    def list(self, request: Request) -> HttpResponseBase:  # JSON, or a download
        export = exports.requested_export(request)
        filters = validated_query(AllocationFilterSerializer, request)
        queryset = self.get_queryset()
        if "domain" in filters:
            queryset = queryset.filter(domain_id=filters["domain"])
        if "project" in filters:
            queryset = queryset.filter(project_id=filters["project"])
        if "membership" in filters:
            queryset = queryset.filter(membership_id=filters["membership"])
        if export:
            return exports.allocations_export(
                allocations=queryset.order_by("-start", "-id"), export=export
            )
        return self.paginated(queryset.order_by("-start", "-id"), AllocationSerializer)

    @extend_schema(summary="Show an allocation interval", responses=AllocationSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(AllocationSerializer(self.get_object()).data)

    @extend_schema(
        summary="Change an allocation (or quote the change with ?dry_run=1)",
        description=gettext_lazy(
            "Name exactly one of `domain`, `project` or `membership`. The current interval "
            "ends and a new one opens (never edited in place). Answers 201 with the new "
            "interval; 200 with the current one when nothing changed; 204 when all three "
            "quantities are zero (and no budget is kept): the allocation has ended. With "
            "`?dry_run=1` every check runs, nothing is written and the answer (200) is the "
            "quote: hourly and 30-day cost at today's prices and the new totals. For a "
            "membership, a budget left out is kept."
        ),
        parameters=[AllocationQuerySerializer],
        request=AllocationSetSerializer,
        responses={
            201: AllocationSerializer,
            200: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="AllocationQuoteOrCurrent",
                    serializers=[AllocationQuoteSerializer, AllocationSerializer],
                    resource_type_field_name=None,
                ),
                description=gettext_lazy(
                    "With ?dry_run=1: the quote. Without: nothing changed, the current allocation."
                ),
            ),
            204: OpenApiResponse(description=gettext_lazy("All zero: the allocation has ended.")),
        },
    )
    def create(self, request: Request) -> Response:
        query = validated_query(AllocationQuerySerializer, request)
        data = validated_body(AllocationSetSerializer, request)
        target = services.target_of(
            domain=data.get("domain"),
            project=data.get("project"),
            membership=data.get("membership"),
        )
        current = services.current_allocation(target)
        if "budget" in data:
            budget = data["budget"]
        else:  # left out: a member's budget is kept
            budget = (
                current.budget if current is not None and target.level == Level.MEMBER else None
            )
        arguments = {
            "actor": request.user,
            "target": target,
            "vcpus": data["vcpus"],
            "ram_gib": data["ram_gib"],
            "disk_gib": data["disk_gib"],
            "budget": budget,
        }
        if query.get("dry_run") == "1":
            quote = services.allocation_quote(**arguments)
            return Response(AllocationQuoteSerializer(quote).data)
        allocation = services.allocation_set(**arguments)
        if allocation is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        unchanged = current is not None and allocation.pk == current.pk
        return Response(
            AllocationSerializer(allocation).data,
            status=status.HTTP_200_OK if unchanged else status.HTTP_201_CREATED,
        )


# -- Wallets ----------------------------------------------------------------------------------


@extend_schema(tags=["wallets"])
class WalletViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Prepaid wallets of the platform, each domain and each project."""

    queryset = Wallet.objects.none()
    serializer_class = WalletSerializer

    def get_queryset(self):
        return selectors.wallets_visible_to(self.request.user)

    @extend_schema(
        summary="List the wallets you can see",
        parameters=[WalletFilterSerializer],
        responses=WalletSerializer,
    )
    def list(self, request: Request) -> Response:
        filters = validated_query(WalletFilterSerializer, request)
        queryset = self.get_queryset()
        if "domain" in filters:
            queryset = queryset.filter(
                Q(domain_id=filters["domain"]) | Q(project__domain_id=filters["domain"])
            )
        if "project" in filters:
            queryset = queryset.filter(project_id=filters["project"])
        return self.paginated(queryset.order_by("kind", "id"), WalletSerializer)

    @extend_schema(summary="Show a wallet", responses=WalletSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(WalletSerializer(self.get_object()).data)

    @extend_schema(
        summary="Set the credit limit, ceiling, billing admin or alert threshold",
        description=gettext_lazy(
            "The credit limit is set by the tenant's admin up to the ceiling; the ceiling by "
            "the superior (platform staff for domains, the domain's admins for projects). "
            "`alert_threshold: null` returns to the default (7 days of hourly charges)."
        ),
        request=WalletUpdateSerializer,
        responses=WalletSerializer,
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        wallet = self.get_object()
        data = validated_body(WalletUpdateSerializer, request)
        wallet = services.wallet_update(
            actor=request.user,
            wallet=wallet,
            credit_limit=data.get("credit_limit"),
            credit_ceiling=data.get("credit_ceiling"),
            billing_admin=data.get("billing_admin"),
            alert_threshold=data.get("alert_threshold"),
            clear_alert_threshold="alert_threshold" in data and data["alert_threshold"] is None,
        )
        wallet = Wallet.objects.select_related("project").get(pk=wallet.pk)
        return Response(WalletSerializer(wallet).data)


class WalletChildMixin(JsonApiMixin):
    """Views under wallets/{wallet_pk}/: the wallet is looked up in the caller's scope."""

    def wallet(self) -> Wallet:
        return visible_object(
            selectors.wallets_visible_to(self.request.user),  # type: ignore[attr-defined]
            self.kwargs["wallet_pk"],  # type: ignore[attr-defined]
        )


@extend_schema(tags=["wallets"], parameters=[WALLET_PATH_PARAMETER])
class WalletRechargeViewSet(WalletChildMixin, viewsets.GenericViewSet):
    """Recharges of one wallet: money received, recorded by the receiving side."""

    queryset = Transaction.objects.none()
    serializer_class = TransactionSerializer

    @extend_schema(
        summary="The recharges of a wallet, newest first",
        parameters=[exports.EXPORT_PARAMETER],
        responses=exports.export_responses(TransactionSerializer),
    )
    def list(self, request: Request, wallet_pk: str) -> HttpResponseBase:  # JSON, or a download
        wallet = self.wallet()
        export = exports.requested_export(request)
        if export:
            return exports.recharges_export(wallet=wallet, export=export)
        queryset = (
            Transaction.objects.filter(wallet=wallet, kind=TransactionKind.RECHARGE)
            .prefetch_related("entries")
            .order_by("-created_at", "-id")
        )
        return self.paginated(queryset, TransactionSerializer)

    @extend_schema(
        summary="Record a recharge (the receiving side)",
        description=gettext_lazy(
            "Platform staff record recharges of domain wallets; a domain's admins (or platform "
            "staff) those of its project wallets. Nobody credits their own wallet: a tenant's "
            "admin files a recharge request instead (recharge-requests/)."
        ),
        request=RechargeCreateSerializer,
        responses={201: TransactionSerializer},
        parameters=[idempotency.PARAMETER],
    )
    @idempotency.idempotent
    def create(self, request: Request, wallet_pk: str) -> Response:
        wallet = self.wallet()
        data = validated_body(RechargeCreateSerializer, request)
        tx = services.wallet_recharge(
            actor=request.user,
            wallet=wallet,
            amount=data["amount"],
            method=data["method"],
            reference=data["reference"],
            payer=data["payer"],
        )
        tx = Transaction.objects.prefetch_related("entries").get(pk=tx.pk)
        return Response(TransactionSerializer(tx).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["wallets"], parameters=[WALLET_PATH_PARAMETER])
class WalletRechargeRequestViewSet(WalletChildMixin, viewsets.GenericViewSet):
    """Recharge requests of one wallet: filed by the tenant's staff, decided by the receiver."""

    queryset = RechargeRequest.objects.none()
    serializer_class = RechargeRequestSerializer

    @extend_schema(
        summary="The recharge requests of a wallet, newest first",
        responses=RechargeRequestSerializer,
    )
    def list(self, request: Request, wallet_pk: str) -> Response:
        wallet = self.wallet()
        queryset = RechargeRequest.objects.filter(wallet=wallet).order_by("-created_at", "-id")
        return self.paginated(queryset, RechargeRequestSerializer)

    @extend_schema(
        summary="File a recharge request (the tenant's admins and assistants)",
        request=RechargeRequestCreateSerializer,
        responses={201: RechargeRequestSerializer},
        parameters=[idempotency.PARAMETER],
    )
    @idempotency.idempotent
    def create(self, request: Request, wallet_pk: str) -> Response:
        wallet = self.wallet()
        data = validated_body(RechargeRequestCreateSerializer, request)
        recharge_request = services.recharge_request_create(
            actor=request.user,
            wallet=wallet,
            amount=data["amount"],
            method=data["method"],
            reference=data["reference"],
        )
        return Response(
            RechargeRequestSerializer(recharge_request).data, status=status.HTTP_201_CREATED
        )


@extend_schema(tags=["wallets"])
class RechargeRequestViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Recharge requests of every wallet you can see; the receiving side approves or rejects."""

    queryset = RechargeRequest.objects.none()
    serializer_class = RechargeRequestSerializer

    def get_queryset(self):
        return selectors.recharge_requests_visible_to(self.request.user)

    @extend_schema(
        summary="List the recharge requests you can see",
        parameters=[RechargeRequestFilterSerializer],
        responses=RechargeRequestSerializer,
    )
    def list(self, request: Request) -> Response:
        filters = validated_query(RechargeRequestFilterSerializer, request)
        queryset = self.get_queryset()
        if "wallet" in filters:
            queryset = queryset.filter(wallet_id=filters["wallet"])
        if "status" in filters:
            queryset = queryset.filter(status=filters["status"])
        return self.paginated(queryset.order_by("-created_at", "-id"), RechargeRequestSerializer)

    @extend_schema(summary="Show a recharge request", responses=RechargeRequestSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(RechargeRequestSerializer(self.get_object()).data)

    def _decide(self, request: Request, approve: bool) -> Response:
        decided = services.recharge_request_decide(
            actor=request.user, request=self.get_object(), approve=approve
        )
        return Response(RechargeRequestSerializer(decided).data)

    @extend_schema(
        summary="Approve a recharge request: the recharge is recorded (the receiving side)",
        request=None,
        responses=RechargeRequestSerializer,
        parameters=[idempotency.PARAMETER],
    )
    @action(detail=True, methods=["post"])
    @idempotency.idempotent
    def approve(self, request: Request, pk: str) -> Response:
        return self._decide(request, approve=True)

    @extend_schema(
        summary="Reject a recharge request (the receiving side)",
        request=None,
        responses=RechargeRequestSerializer,
        parameters=[idempotency.PARAMETER],
    )
    @action(detail=True, methods=["post"])
    @idempotency.idempotent
    def reject(self, request: Request, pk: str) -> Response:
        return self._decide(request, approve=False)


# -- Transactions -----------------------------------------------------------------------------


@extend_schema(tags=["transactions"])
class TransactionViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """The double-entry ledger: every transaction's entries sum to zero."""

    queryset = Transaction.objects.none()
    serializer_class = TransactionSerializer

    def get_queryset(self):
        return selectors.transactions_visible_to(self.request.user)

    @extend_schema(
        summary="Ledger transactions touching the wallets you can see, newest first",
        parameters=[TransactionFilterSerializer, exports.EXPORT_PARAMETER],
        responses=exports.export_responses(TransactionSerializer),
    )
    def list(self, request: Request) -> HttpResponseBase:  # JSON, or a download
        export = exports.requested_export(request)
        filters = validated_query(TransactionFilterSerializer, request)
        queryset = self.get_queryset()
        if "wallet" in filters:
            queryset = queryset.filter(
                Exists(
                    Entry.objects.filter(transaction_id=OuterRef("pk"), wallet_id=filters["wallet"])
                )
            )
        if "kind" in filters:
            queryset = queryset.filter(kind=filters["kind"])
        if "start" in filters:
            queryset = queryset.filter(created_at__gte=filters["start"])
        if "end" in filters:
            queryset = queryset.filter(created_at__lt=filters["end"])
        if export:
            return exports.transactions_export(transactions=queryset, export=export)
        return self.paginated(queryset.order_by("-created_at", "-id"), TransactionSerializer)

    @extend_schema(summary="Show a transaction with its entries", responses=TransactionSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(TransactionSerializer(self.get_object()).data)


# -- Prices -----------------------------------------------------------------------------------


@extend_schema(tags=["prices"])
class PriceViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """The unified price plan, versioned; every signed-in user may read it."""

    queryset = PriceVersion.objects.none()
    serializer_class = PriceVersionSerializer

    def get_queryset(self):
        return selectors.prices()

    @extend_schema(summary="Price plan versions, newest first", responses=PriceVersionSerializer)
    def list(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), PriceVersionSerializer)

    @extend_schema(summary="Show a price plan version", responses=PriceVersionSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(PriceVersionSerializer(self.get_object()).data)

    @extend_schema(
        summary="Add a price plan version taking effect in the future (platform staff)",
        request=PriceVersionCreateSerializer,
        responses={201: PriceVersionSerializer},
    )
    def create(self, request: Request) -> Response:
        data = validated_body(PriceVersionCreateSerializer, request)
        version = services.price_version_create(actor=request.user, **data)
        return Response(PriceVersionSerializer(version).data, status=status.HTTP_201_CREATED)


# -- Notifications ----------------------------------------------------------------------------


@extend_schema(tags=["notifications"])
class NotificationViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Your own notifications (emails and webhooks sent to you), newest first."""

    queryset = Notification.objects.none()
    serializer_class = NotificationSerializer

    def get_queryset(self):
        return selectors.notifications_of(self.request.user)

    @extend_schema(summary="Your notifications, newest first", responses=NotificationSerializer)
    def list(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), NotificationSerializer)


# -- Lock and unlock --------------------------------------------------------------------------


class TenantActionView(JsonApiMixin, generics.GenericAPIView):
    """POST on domains/{id}/… or projects/{id}/…: the tenant is looked up in the caller's
    scope (404), the enforcement service decides (403/409) and the wallet is answered."""

    serializer_class = WalletSerializer
    tenant: str = "domain"

    def get_queryset(self):
        if self.tenant == "domain":
            return tenancy_selectors.domains_visible_to(self.request.user)
        return tenancy_selectors.projects_visible_to(self.request.user)

    def wallet_answer(self, wallet: Wallet) -> Response:
        wallet = Wallet.objects.select_related("project").get(pk=wallet.pk)
        return Response(WalletSerializer(wallet).data)


LOCK_SCHEMA = {
    "request": TenantLockSerializer,
    "responses": WalletSerializer,
}
UNLOCK_DESCRIPTION = gettext_lazy(
    "Refused (409, code `not_payable`) while the wallet's available amount is ≤ 0: recharge or "
    "raise the credit limit first. `restart_servers` restarts the VMs that were running when "
    "the tenant was locked."
)


class DomainLockView(TenantActionView):
    queryset = Domain.objects.none()
    tenant = "domain"

    @extend_schema(tags=["domains"], summary="Lock a domain (platform staff)", **LOCK_SCHEMA)
    def post(self, request: Request, pk: str) -> Response:
        domain = self.get_object()
        data = validated_body(TenantLockSerializer, request)
        wallet = enforcement.tenant_lock(
            actor=request.user,
            domain=domain,
            reason=data["reason"] or _("Locked by an administrator."),
        )
        return self.wallet_answer(wallet)


class DomainUnlockView(TenantActionView):
    queryset = Domain.objects.none()
    tenant = "domain"

    @extend_schema(
        tags=["domains"],
        summary="Unlock a domain (its admins or platform staff)",
        description=UNLOCK_DESCRIPTION,
        request=TenantUnlockSerializer,
        responses=WalletSerializer,
    )
    def post(self, request: Request, pk: str) -> Response:
        domain = self.get_object()
        data = validated_body(TenantUnlockSerializer, request)
        wallet = enforcement.tenant_unlock(
            actor=request.user, domain=domain, restart_servers=data["restart_servers"]
        )
        return self.wallet_answer(wallet)


class ProjectLockView(TenantActionView):
    queryset = Project.objects.none()
    tenant = "project"

    @extend_schema(tags=["projects"], summary="Lock a project (its domain's admins)", **LOCK_SCHEMA)
    def post(self, request: Request, pk: str) -> Response:
        project = self.get_object()
        data = validated_body(TenantLockSerializer, request)
        wallet = enforcement.tenant_lock(
            actor=request.user,
            project=project,
            reason=data["reason"] or _("Locked by an administrator."),
        )
        return self.wallet_answer(wallet)


class ProjectUnlockView(TenantActionView):
    queryset = Project.objects.none()
    tenant = "project"

    @extend_schema(
        tags=["projects"],
        summary="Unlock a project (its admins or the domain's admins)",
        description=UNLOCK_DESCRIPTION,
        request=TenantUnlockSerializer,
        responses=WalletSerializer,
    )
    def post(self, request: Request, pk: str) -> Response:
        project = self.get_object()
        data = validated_body(TenantUnlockSerializer, request)
        wallet = enforcement.tenant_unlock(
            actor=request.user, project=project, restart_servers=data["restart_servers"]
        )
        return self.wallet_answer(wallet)


class MemberUnlockView(JsonApiMixin, generics.GenericAPIView):
    queryset = Membership.objects.none()
    serializer_class = MembershipSerializer

    def get_queryset(self):
        return tenancy_selectors.memberships_visible_to(self.request.user)

    @extend_schema(
        tags=["memberships"],
        summary="Unlock a member locked at their budget (project admins and assistants)",
        description=gettext_lazy(
            "Optionally with a new budget (CNY, decimal string); raising it re-arms the alerts."
        ),
        request=MemberUnlockSerializer,
        responses=MembershipSerializer,
    )
    def post(self, request: Request, pk: str) -> Response:
        membership = self.get_object()
        data = validated_body(MemberUnlockSerializer, request)
        membership = enforcement.member_unlock(
            actor=request.user, membership=membership, budget=data["budget"]
        )
        membership = tenancy_selectors.with_consumption(
            tenancy_selectors.memberships_visible_to(request.user)
        ).get(pk=membership.pk)
        return Response(MembershipSerializer(membership).data)


# -- Allocation requests (SPEC Allocations 6) -------------------------------------------------


@extend_schema(tags=["allocations"])
class AllocationRequestViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Requests for a larger project allocation (to the domain's admins) or a larger member
    limit (to the project's staff): justified, approved or denied, recorded."""

    queryset = AllocationRequest.objects.none()
    serializer_class = AllocationRequestSerializer

    def get_queryset(self):
        return allocation_requests.allocation_requests_visible_to(self.request.user)

    @extend_schema(
        summary="List the allocation requests you can see, newest first",
        description=gettext_lazy(
            "Your own requests, the project requests you may decide (domain admins) and the "
            "member requests of the projects you manage; platform staff see all."
        ),
        parameters=[AllocationRequestFilterSerializer],
        responses=AllocationRequestSerializer,
    )
    def list(self, request: Request) -> Response:
        filters = validated_query(AllocationRequestFilterSerializer, request)
        queryset = self.get_queryset()
        for name in ("status", "level"):
            if name in filters:
                queryset = queryset.filter(**{name: filters[name]})
        if "project" in filters:
            queryset = queryset.filter(project_id=filters["project"])
        return self.paginated(queryset.order_by("-created_at", "-id"), AllocationRequestSerializer)

    @extend_schema(summary="Show an allocation request", responses=AllocationRequestSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(AllocationRequestSerializer(self.get_object()).data)

    @extend_schema(
        summary="Ask for a larger allocation (project admins) or a larger own limit (members)",
        description=gettext_lazy(
            "Name exactly one of `project` (a project admin asks the domain's admins) or "
            "`membership` (your own: a member asks the project's staff; may carry a budget). "
            "A justification is required; one pending request per target at a time (409)."
        ),
        request=AllocationRequestCreateSerializer,
        responses={201: AllocationRequestSerializer},
    )
    def create(self, request: Request) -> Response:
        data = validated_body(AllocationRequestCreateSerializer, request)
        created = allocation_requests.allocation_request_create(
            actor=request.user,
            project=data.get("project"),
            membership=data.get("membership"),
            vcpus=data["vcpus"],
            ram_gib=data["ram_gib"],
            disk_gib=data["disk_gib"],
            budget=data.get("budget"),
            justification=data["justification"],
        )
        return Response(AllocationRequestSerializer(created).data, status=status.HTTP_201_CREATED)

    def _decide(self, request: Request, approve: bool) -> Response:
        data = validated_body(AllocationRequestDecideSerializer, request)
        decided = allocation_requests.allocation_request_decide(
            actor=request.user, request=self.get_object(), approve=approve, note=data["note"]
        )
        return Response(AllocationRequestSerializer(decided).data)

    @extend_schema(
        summary="Approve an allocation request: the allocation is applied, every bound checked",
        description=gettext_lazy(
            "Project requests: the domain's admins; member requests: the project's admins and "
            "assistants. Nobody decides their own request. A bound that would be broken answers "
            "409 with the numbers and the request stays pending."
        ),
        request=AllocationRequestDecideSerializer,
        responses=AllocationRequestSerializer,
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        return self._decide(request, approve=True)

    @extend_schema(
        summary="Deny an allocation request",
        request=AllocationRequestDecideSerializer,
        responses=AllocationRequestSerializer,
    )
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str) -> Response:
        return self._decide(request, approve=False)
