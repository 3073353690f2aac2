"""REST API of the tenancy app (/api/v1/): domains, projects, memberships, domain roles.

Views validate input with explicit serializers and call one service; querysets come from the
scoped selectors, so a foreign object is 404 and a visible one with a forbidden action is 403
(the services' `require()`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response

from teachcloud.api.parsers import StrictJSONParser
from teachcloud.errors import ServiceError
from tenancy import selectors, services
from tenancy.models import Domain, DomainRole, Membership, Project
from tenancy.serializers import (
    DomainCreateSerializer,
    DomainRoleCreateSerializer,
    DomainRoleFilterSerializer,
    DomainRoleSerializer,
    DomainSerializer,
    DomainUpdateSerializer,
    MembershipCreateSerializer,
    MembershipFilterSerializer,
    MembershipSerializer,
    MembershipUpdateSerializer,
    ProjectCreateSerializer,
    ProjectFilterSerializer,
    ProjectSerializer,
    ProjectUpdateSerializer,
)


def refuse_repeated_query(request: Request) -> None:
    """A query parameter given twice (`?dry_run=1&dry_run=0`) is ambiguous: 400, never a guess."""
    repeated = sorted(k for k, values in request.query_params.lists() if len(values) > 1)
    if repeated:
        raise ServiceError(
            _("Give each query parameter once: %(names)s.") % {"names": ", ".join(repeated)},
            code="repeated_parameter",
            fields={name: [_("Given more than once.")] for name in repeated},
        )


def refuse_unknown_query(request: Request, allowed: frozenset[str] = frozenset()) -> None:
    """A write takes no query parameter but its own (`allowed`), each once: an unknown one
    (`?dryrun=1`, `?DRY_RUN=1`) is a 400, never ignored."""
    refuse_repeated_query(request)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise ServiceError(
            _("Unknown query parameter: %(names)s.") % {"names": ", ".join(unknown)[:200]},
            code="unknown_parameter",
            fields={name[:100]: [_("Not accepted here.")] for name in unknown},
        )


def validated_query(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    """Query parameters checked by a serializer: a bad (or empty) value is a 400, never a 500."""
    refuse_repeated_query(request)
    serializer = serializer_class(data=request.query_params.dict())
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def validated_body(
    serializer_class: type[serializers.Serializer], request: Request, **kwargs: Any
) -> dict:
    """The body checked by a serializer; a field it does not know is a 400 (a misspelt or
    misplaced option — `{"dry_run": true}` — must not be silently ignored)."""
    serializer = serializer_class(data=request.data, context={"request": request}, **kwargs)
    if isinstance(request.data, Mapping):
        known = {name for name, field in serializer.fields.items() if not field.read_only}
        unknown = sorted(str(key) for key in request.data if key not in known)
        if unknown:
            raise ServiceError(
                _("Unknown field: %(names)s.") % {"names": ", ".join(unknown)[:200]},
                code="unknown_field",
                fields={name[:100]: [_("This field is not accepted here.")] for name in unknown},
            )
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class JsonApiMixin:
    """JSON in, JSON out, and a paginated list helper for the (already filtered) queryset.

    A write (POST, PUT, PATCH, DELETE) takes no query parameters but the view's
    `write_query_params`, each once: an unknown one (`?dryrun=1`, `?DRY_RUN=1`) is a 400, never
    ignored."""

    parser_classes = [StrictJSONParser]
    write_query_params: frozenset[str] = frozenset()

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if request.method in SAFE_METHODS:
            return
        refuse_unknown_query(request, self.write_query_params)

    def paginated(self, queryset: Any, output: type[serializers.Serializer]) -> Response:
        page = self.paginate_queryset(queryset)  # type: ignore[attr-defined]
        return self.get_paginated_response(  # type: ignore[attr-defined]
            output(page, many=True).data
        )


# -- Domains ----------------------------------------------------------------------------------


@extend_schema(tags=["domains"])
class DomainViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Schools on the platform. Platform staff create them; their admins rename them."""

    queryset = Domain.objects.none()  # for the schema; requests use get_queryset()
    serializer_class = DomainSerializer

    def get_queryset(self):
        return selectors.domains_visible_to(self.request.user)

    @extend_schema(summary="List the domains you can see", responses=DomainSerializer)
    def list(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), DomainSerializer)

    @extend_schema(
        summary="Create a domain (platform staff)",
        request=DomainCreateSerializer,
        responses={201: DomainSerializer},
    )
    def create(self, request: Request) -> Response:
        data = validated_body(DomainCreateSerializer, request)
        domain = services.domain_create(actor=request.user, name=data["name"], code=data["code"])
        return Response(DomainSerializer(domain).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Show a domain", responses=DomainSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(DomainSerializer(self.get_object()).data)

    @extend_schema(
        summary="Rename a domain (its admins)",
        request=DomainUpdateSerializer,
        responses=DomainSerializer,
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        domain = self.get_object()
        data = validated_body(DomainUpdateSerializer, request)
        domain = services.domain_update(actor=request.user, domain=domain, name=data.get("name"))
        return Response(DomainSerializer(domain).data)


# -- Projects ---------------------------------------------------------------------------------


@extend_schema(tags=["projects"])
class ProjectViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Projects (courses) inside a domain."""

    queryset = Project.objects.none()
    serializer_class = ProjectSerializer

    def get_queryset(self):
        return selectors.projects_visible_to(self.request.user)

    @extend_schema(
        summary="List the projects you can see",
        parameters=[ProjectFilterSerializer],
        responses=ProjectSerializer,
    )
    def list(self, request: Request) -> Response:
        filters = validated_query(ProjectFilterSerializer, request)
        queryset = self.get_queryset()
        if "domain" in filters:
            queryset = queryset.filter(domain_id=filters["domain"])
        return self.paginated(queryset, ProjectSerializer)

    @extend_schema(
        summary="Create a project in a domain",
        request=ProjectCreateSerializer,
        responses={201: ProjectSerializer},
    )
    def create(self, request: Request) -> Response:
        data = validated_body(ProjectCreateSerializer, request)
        project = services.project_create(
            actor=request.user,
            domain=data["domain"],
            name=data["name"],
            code=data["code"],
            description=data["description"],
        )
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Show a project", responses=ProjectSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(ProjectSerializer(self.get_object()).data)

    @extend_schema(
        summary="Change a project's name, code, description or course end date",
        request=ProjectUpdateSerializer,
        responses=ProjectSerializer,
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        project = self.get_object()
        data = validated_body(ProjectUpdateSerializer, request)
        project = services.project_update(
            actor=request.user,
            project=project,
            name=data.get("name"),
            code=data.get("code"),
            description=data.get("description"),
            end_date=data.get("end_date", services.KEEP),
        )
        return Response(ProjectSerializer(project).data)


# -- Memberships ------------------------------------------------------------------------------


@extend_schema(tags=["memberships"])
class MembershipViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Users in projects, with their role (member, assistant or admin)."""

    queryset = Membership.objects.none()
    serializer_class = MembershipSerializer

    def get_queryset(self):
        return selectors.with_consumption(selectors.memberships_visible_to(self.request.user))

    @extend_schema(
        summary="List the memberships you can see",
        parameters=[MembershipFilterSerializer],
        responses=MembershipSerializer,
    )
    def list(self, request: Request) -> Response:
        filters = validated_query(MembershipFilterSerializer, request)
        queryset = self.get_queryset()
        if "project" in filters:
            queryset = queryset.filter(project_id=filters["project"])
        if "user" in filters:
            queryset = queryset.filter(user_id=filters["user"])
        return self.paginated(queryset, MembershipSerializer)

    @extend_schema(
        summary="Add a user to a project (as member, assistant or admin)",
        request=MembershipCreateSerializer,
        responses={201: MembershipSerializer},
    )
    def create(self, request: Request) -> Response:
        data = validated_body(MembershipCreateSerializer, request)
        membership = services.membership_add(
            actor=request.user,
            project=data["project"],
            user=data["user"],
            role=data["role"],
            expires_at=data["expires_at"],
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Show a membership", responses=MembershipSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(MembershipSerializer(self.get_object()).data)

    @extend_schema(
        summary="Change a member's role or an assistant's end date",
        request=MembershipUpdateSerializer,
        responses=MembershipSerializer,
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        membership = self.get_object()
        data = validated_body(MembershipUpdateSerializer, request)
        role = data.get("role", membership.role)
        # PATCH semantics: an end date left out is kept, unless the role changes.
        if "expires_at" in data:
            expires_at = data["expires_at"]
        else:
            expires_at = membership.expires_at if role == membership.role else None
        membership = services.membership_update(
            actor=request.user, membership=membership, role=role, expires_at=expires_at
        )
        return Response(MembershipSerializer(membership).data)

    @extend_schema(summary="Remove a user from a project", responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        services.membership_remove(actor=request.user, membership=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


# -- Domain roles -----------------------------------------------------------------------------


@extend_schema(tags=["domain-roles"])
class DomainRoleViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Admins and assistants of domains."""

    queryset = DomainRole.objects.none()
    serializer_class = DomainRoleSerializer

    def get_queryset(self):
        return selectors.domain_roles_visible_to(self.request.user)

    @extend_schema(
        summary="List the domain admins and assistants you can see",
        parameters=[DomainRoleFilterSerializer],
        responses=DomainRoleSerializer,
    )
    def list(self, request: Request) -> Response:
        filters = validated_query(DomainRoleFilterSerializer, request)
        queryset = self.get_queryset()
        if "domain" in filters:
            queryset = queryset.filter(domain_id=filters["domain"])
        if "user" in filters:
            queryset = queryset.filter(user_id=filters["user"])
        return self.paginated(queryset, DomainRoleSerializer)

    @extend_schema(
        summary="Appoint a domain admin or assistant (or change their role)",
        request=DomainRoleCreateSerializer,
        responses={201: DomainRoleSerializer},
    )
    def create(self, request: Request) -> Response:
        data = validated_body(DomainRoleCreateSerializer, request)
        grant = services.domain_role_set(
            actor=request.user,
            domain=data["domain"],
            user=data["user"],
            role=data["role"],
            expires_at=data["expires_at"],
        )
        return Response(DomainRoleSerializer(grant).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Show a domain role", responses=DomainRoleSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(DomainRoleSerializer(self.get_object()).data)

    @extend_schema(summary="Remove a domain admin or assistant", responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        services.domain_role_remove(actor=request.user, grant=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
