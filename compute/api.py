"""REST API of compute (/api/v1/): the flavor and image catalogue, servers (VMs) and their
actions, the per-project overview for domain staff and a member's room under their limit.

Views validate input with explicit serializers and call one service (compute.services) or
selector (compute.selectors); servers are looked up among `servers_visible_to(user)`, so a
foreign server is 404 and a visible one with a forbidden action is 403 (the services'
`require()`). A refusal is `{code, detail}` (e.g. 409 `over_member_limit` with the numbers).

Answers: creating a server and every action on one (start, stop, reboot, delete) are carried
out by the cloud after the request, so they answer **202** with the server as it is at that
moment (`status`/`task` say what is under way); renaming answers 200; the console 200 `{url}`.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from compute import keypairs, selectors, services
from compute.models import (
    Flavor,
    Image,
    KeyPair,
    Server,
    ServerStatus,
    ServerTask,
    StopCause,
)
from tenancy import selectors as tenancy_selectors
from tenancy.api import JsonApiMixin, validated_body
from tenancy.models import Domain, Project
from tenancy.permissions import Action, require, roles_of
from tenancy.serializers import (
    StrictBooleanField,
    StrictCharField,
    VisiblePrimaryKeyRelatedField,
    id_field,
)

RESOURCES = ("vcpus", "ram_gib", "disk_gib")

# -- Catalogue scope --------------------------------------------------------------------------


def catalogue_visible_to(user: Any, queryset: QuerySet) -> QuerySet:
    """Offered flavors or images that at least one project the user can see may use
    (platform and finance staff: every offered one)."""
    queryset = queryset.filter(enabled=True, removed=False)
    roles = roles_of(user)
    if roles.platform or roles.finance:
        return queryset
    projects = tenancy_selectors.projects_visible_to(user)
    open_to_all = Q(domains__isnull=True, projects__isnull=True)
    return queryset.filter(
        open_to_all
        | Q(domains__in=projects.values("domain_id"))
        | Q(projects__in=projects.values("pk"))
    ).distinct()


def visible_flavors(user: Any) -> QuerySet[Flavor]:
    return catalogue_visible_to(user, Flavor.objects.all())


def visible_images(user: Any) -> QuerySet[Image]:
    return catalogue_visible_to(user, Image.objects.all())


# -- Serializers ------------------------------------------------------------------------------


class VisibleQueryIdField(VisiblePrimaryKeyRelatedField):
    """A query parameter naming an object the caller can see (`?project=12`); anything else
    is a 400 with `fields: {<name>: ["Object 12 not found."]}`."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and data.isascii() and data.isdigit() and len(data) < 20:
            data = int(data)
        return super().to_internal_value(data)


class ResourcesSerializer(serializers.Serializer):
    vcpus = serializers.IntegerField()
    ram_gib = serializers.IntegerField()
    disk_gib = serializers.IntegerField()


class FlavorSerializer(serializers.ModelSerializer):
    ram_gib = serializers.IntegerField(
        read_only=True, help_text=_("RAM held against limits: whole GiB, rounded up.")
    )
    fits = serializers.SerializerMethodField(
        help_text=_(
            "With ?project= and you a member of it: whether this flavor fits what remains of "
            "your limit (and of the project's allocation). Otherwise null."
        )
    )

    class Meta:
        model = Flavor
        fields = ["id", "name", "vcpus", "ram_gib", "disk_gib", "ram_mib", "fits"]
        read_only_fields = fields

    def get_fits(self, flavor: Flavor) -> bool | None:
        room = self.context.get("room")
        if room is None:
            return None
        return bool(selectors.flavor_fits(flavor, room))


class FlavorFilterSerializer(serializers.Serializer):
    project = VisibleQueryIdField(
        selector=tenancy_selectors.projects_visible_to,
        queryset=Project.objects.none(),
        required=False,
        help_text=_("Only the flavors this project may use, with `fits` for you."),
    )


class ImageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Image
        fields = ["id", "name", "min_disk_gib", "min_ram_mib"]
        read_only_fields = fields


class ImageFilterSerializer(serializers.Serializer):
    project = VisibleQueryIdField(
        selector=tenancy_selectors.projects_visible_to,
        queryset=Project.objects.none(),
        required=False,
        help_text=_("Only the images this project may use."),
    )


class ServerSerializer(serializers.ModelSerializer):
    owner_name = serializers.CharField(source="owner.username", read_only=True)
    project_name = serializers.CharField(source="project.name", read_only=True)
    flavor_name = serializers.CharField(source="flavor.name", read_only=True)
    image_name = serializers.CharField(source="image.name", read_only=True)
    status = serializers.ChoiceField(choices=ServerStatus.choices, read_only=True)
    task = serializers.ChoiceField(
        choices=ServerTask.choices,
        read_only=True,
        help_text=_("What is under way: starting, stopping, rebooting, deleting, or empty."),
    )
    stop_cause = serializers.ChoiceField(choices=StopCause.choices, read_only=True)
    addresses = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        read_only=True,
        help_text=_("Network name → IP addresses."),
    )
    fault = serializers.CharField(
        read_only=True, help_text=_("Why the last build or action failed, if it did.")
    )

    class Meta:
        model = Server
        fields = [
            "id",
            "project",
            "project_name",
            "owner",
            "owner_name",
            "name",
            "flavor",
            "flavor_name",
            "image",
            "image_name",
            "key_name",
            "status",
            "task",
            "stop_cause",
            "addresses",
            "fault",
            "vcpus",
            "ram_gib",
            "disk_gib",
            "created_at",
            "active_at",
            "deleted_at",
        ]
        read_only_fields = fields


class ServerFilterSerializer(serializers.Serializer):
    project = id_field(help_text=_("Only servers of this project."))
    owner = id_field(help_text=_("Only servers of this user."))
    status = serializers.ChoiceField(
        choices=ServerStatus.choices,
        required=False,
        help_text=_("Only servers in this state. Without it, deleted servers are left out."),
    )


class ServerCreateSerializer(serializers.Serializer):
    project = VisiblePrimaryKeyRelatedField(
        selector=tenancy_selectors.projects_visible_to, queryset=Project.objects.none()
    )
    name = StrictCharField(max_length=64, help_text=_("1–64 characters."))
    flavor = VisiblePrimaryKeyRelatedField(selector=visible_flavors, queryset=Flavor.objects.none())
    image = VisiblePrimaryKeyRelatedField(selector=visible_images, queryset=Image.objects.none())
    key_name = StrictCharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text=_("The name of one of your SSH key pairs (see keypairs/), optional."),
    )


class ServerRenameSerializer(serializers.Serializer):
    name = StrictCharField(max_length=64, help_text=_("1–64 characters."))


class ServerRebootSerializer(serializers.Serializer):
    hard = StrictBooleanField(
        required=False, default=False, help_text=_("Power-cycle instead of a clean restart.")
    )


class ConsoleSerializer(serializers.Serializer):
    url = serializers.URLField(help_text=_("The noVNC console; open it in a browser."))


class OverviewFilterSerializer(serializers.Serializer):
    domain = VisibleQueryIdField(
        selector=tenancy_selectors.domains_visible_to,
        queryset=Domain.objects.none(),
        help_text=_("The domain whose projects to show (its admins and assistants)."),
    )


class ServerCountsSerializer(serializers.Serializer):
    building = serializers.IntegerField()
    active = serializers.IntegerField()
    stopped = serializers.IntegerField()
    error = serializers.IntegerField()


class ProjectOverviewSerializer(serializers.Serializer):
    project = serializers.IntegerField(help_text=_("The project's id."))
    name = serializers.CharField()
    code = serializers.CharField()
    status = serializers.CharField(help_text=_("The project's status: active, locked, purged."))
    end_date = serializers.DateField(allow_null=True, help_text=_("When the course ends."))
    servers = ServerCountsSerializer(help_text=_("Live servers by status."))
    held = ResourcesSerializer(help_text=_("Held by the project's VMs now."))
    allocation = ResourcesSerializer(
        allow_null=True, help_text=_("The project's current allocation (null: none).")
    )


class OverviewSerializer(serializers.Serializer):
    domain = serializers.IntegerField()
    projects = ProjectOverviewSerializer(many=True)


class RoomFilterSerializer(serializers.Serializer):
    project = VisibleQueryIdField(
        selector=tenancy_selectors.projects_visible_to,
        queryset=Project.objects.none(),
        help_text=_("The project you are a member of."),
    )


class RoomSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    limit = ResourcesSerializer(
        allow_null=True, help_text=_("Your limit in the project (null: none set yet).")
    )
    held = ResourcesSerializer(help_text=_("What your VMs in the project hold now."))
    remaining = ResourcesSerializer(
        help_text=_("What you can still create: the smaller of your limit's and the project's.")
    )
    project_remaining = ResourcesSerializer(
        help_text=_("What remains of the project's allocation.")
    )


# -- Views ------------------------------------------------------------------------------------


def validated_query(serializer_class: type[serializers.Serializer], request: Request) -> dict:
    """Query parameters checked by a serializer that may look ids up in the caller's scope."""
    serializer = serializer_class(data=request.query_params.dict(), context={"request": request})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _room_for(user: Any, project: Project) -> dict[str, Any] | None:
    """The caller's room in `project` when they are a member of it, else None."""
    if roles_of(user).project_role(project.pk) is None:
        return None
    return selectors.member_room(project=project, user=user)


@extend_schema(tags=["compute"])
class FlavorViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Flavors (sizes) offered to you: vCPUs, RAM and disk a VM holds against your limit."""

    queryset = Flavor.objects.none()
    serializer_class = FlavorSerializer

    def get_queryset(self):
        return visible_flavors(self.request.user)

    @extend_schema(
        summary="Flavors you may use (with ?project=: those of the project, and whether each fits)",
        parameters=[FlavorFilterSerializer],
        responses=FlavorSerializer,
    )
    def list(self, request: Request) -> Response:
        filters = validated_query(FlavorFilterSerializer, request)
        project = filters.get("project")
        context: dict[str, Any] = {}
        if project is None:
            queryset = self.get_queryset()
        else:
            queryset = selectors.flavors_for(project)
            context["room"] = _room_for(request.user, project)
        queryset = queryset.order_by("vcpus", "ram_mib", "disk_gib", "name", "pk")
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(FlavorSerializer(page, many=True, context=context).data)


@extend_schema(tags=["compute"])
class ImageViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Images (operating systems) offered to you."""

    queryset = Image.objects.none()
    serializer_class = ImageSerializer

    def get_queryset(self):
        return visible_images(self.request.user)

    @extend_schema(
        summary="Images you may use (with ?project=: those of the project)",
        parameters=[ImageFilterSerializer],
        responses=ImageSerializer,
    )
    def list(self, request: Request) -> Response:
        filters = validated_query(ImageFilterSerializer, request)
        project = filters.get("project")
        queryset = self.get_queryset() if project is None else selectors.images_for(project)
        return self.paginated(queryset.order_by("name", "pk"), ImageSerializer)


ACCEPTED = {202: ServerSerializer}


@extend_schema(tags=["servers"])
class ServerViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Virtual machines. Members create and use their own; a project's admins and assistants
    (and the domain's) see every VM of the project and may stop or delete any."""

    queryset = Server.objects.none()
    serializer_class = ServerSerializer

    def get_queryset(self):
        return selectors.servers_visible_to(self.request.user).select_related(
            "project", "owner", "flavor", "image"
        )

    def answer(self, server: Server, code: int = status.HTTP_200_OK) -> Response:
        server = self.get_queryset().get(pk=server.pk)
        return Response(ServerSerializer(server).data, status=code)

    @extend_schema(
        summary="Servers you can see, newest first",
        description=_(
            "Your own; for project staff every server of their projects. Deleted servers are "
            "left out unless `?status=deleted` asks for them."
        ),
        parameters=[ServerFilterSerializer],
        responses=ServerSerializer,
    )
    def list(self, request: Request) -> Response:
        filters = validated_query(ServerFilterSerializer, request)
        queryset = self.get_queryset()
        if "project" in filters:
            queryset = queryset.filter(project_id=filters["project"])
        if "owner" in filters:
            queryset = queryset.filter(owner_id=filters["owner"])
        if "status" in filters:
            queryset = queryset.filter(status=filters["status"])
        else:
            queryset = queryset.exclude(status=ServerStatus.DELETED)
        return self.paginated(queryset.order_by("-created_at", "-pk"), ServerSerializer)

    @extend_schema(
        summary="Create a server in a project you are a member of",
        description=_(
            "The resources are reserved against your limit and the project's allocation at "
            "once (409 `over_member_limit` / `over_project_allocation` with the numbers when "
            "they do not fit; 409 `member_locked` / `tenant_locked` while locked); the cloud "
            "then builds the server. Answers 202 with the server in status `building`; poll "
            "it until `active` (or `error`, with `fault` saying why: the reservation is "
            "released)."
        ),
        request=ServerCreateSerializer,
        responses=ACCEPTED,
    )
    def create(self, request: Request) -> Response:
        data = validated_body(ServerCreateSerializer, request)
        server = services.server_create(
            actor=request.user,
            project=data["project"],
            name=data["name"],
            flavor=data["flavor"],
            image=data["image"],
            key_name=data["key_name"],
        )
        return self.answer(server, status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Show a server", responses=ServerSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(ServerSerializer(self.get_object()).data)

    @extend_schema(
        summary="Rename your server", request=ServerRenameSerializer, responses=ServerSerializer
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        server = self.get_object()
        data = validated_body(ServerRenameSerializer, request)
        server = services.server_rename(actor=request.user, server=server, name=data["name"])
        return self.answer(server)

    @extend_schema(
        summary="Delete a server (its owner, or the project's staff)",
        description=_(
            "Answers 202 with the server: `task: deleting` until the cloud confirms, then "
            "`status: deleted` (the resources are released). A server that never reached "
            "the cloud is deleted at once."
        ),
        responses=ACCEPTED,
    )
    def destroy(self, request: Request, pk: str) -> Response:
        server = services.server_delete(actor=request.user, server=self.get_object())
        return self.answer(server, status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Start your stopped server",
        description=_("Refused (409) while you or the project is locked."),
        request=None,
        responses=ACCEPTED,
    )
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str) -> Response:
        server = services.server_start(actor=request.user, server=self.get_object())
        return self.answer(server, status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Stop a running server (its owner, or the project's staff)",
        request=None,
        responses=ACCEPTED,
    )
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str) -> Response:
        server = services.server_stop(actor=request.user, server=self.get_object())
        return self.answer(server, status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Reboot your running server",
        request=ServerRebootSerializer,
        responses=ACCEPTED,
    )
    @action(detail=True, methods=["post"])
    def reboot(self, request: Request, pk: str) -> Response:
        server = self.get_object()
        data = validated_body(ServerRebootSerializer, request)
        server = services.server_reboot(actor=request.user, server=server, hard=data["hard"])
        return self.answer(server, status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="The noVNC console of your running server",
        description=_(
            "A short-lived URL to open in a browser. 409 unless the server is active; "
            "`cloud_unavailable` when the cloud does not answer."
        ),
        responses={200: ConsoleSerializer},
    )
    @action(detail=True, methods=["get"])
    def console(self, request: Request, pk: str) -> Response:
        url = services.server_console_url(actor=request.user, server=self.get_object())
        return Response({"url": url})


@extend_schema(tags=["compute"])
class OverviewView(JsonApiMixin, generics.GenericAPIView):
    """Per project of a domain: servers by status and what they hold against the allocation."""

    serializer_class = OverviewSerializer
    pagination_class = None

    @extend_schema(
        summary="Per-project compute overview of a domain (its admins and assistants)",
        parameters=[OverviewFilterSerializer],
        responses=OverviewSerializer,
    )
    def get(self, request: Request) -> Response:
        domain = validated_query(OverviewFilterSerializer, request)["domain"]
        require(request.user, Action.COMPUTE_OVERVIEW, domain)
        rows = [overview_row(row) for row in selectors.project_overview(domain)]
        return Response(OverviewSerializer({"domain": domain.pk, "projects": rows}).data)


def overview_row(row: dict[str, Any]) -> dict[str, Any]:
    """One row of `selectors.project_overview` in the API's shape."""
    project = row["project"]
    counts = row.get("servers") or {}
    return {
        "project": project.pk,
        "name": project.name,
        "code": project.code,
        "status": project.status,
        "end_date": project.end_date,
        "servers": {s: int(counts.get(s, 0)) for s in ("building", "active", "stopped", "error")},
        "held": {r: int(row["held"][r]) for r in RESOURCES},
        "allocation": (
            {r: int(row["allocation"][r]) for r in RESOURCES}
            if row.get("allocation") is not None
            else None
        ),
    }


def _resources(value: Any) -> dict[str, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        value = {r: getattr(value, r) for r in RESOURCES}
    return {r: int(value[r]) for r in RESOURCES}


@extend_schema(tags=["compute"])
class RoomView(JsonApiMixin, generics.GenericAPIView):
    """What you may still create in a project: your limit, what your VMs hold, what remains."""

    serializer_class = RoomSerializer
    pagination_class = None

    @extend_schema(
        summary="Your limit, holdings and remaining room in a project (its members)",
        parameters=[RoomFilterSerializer],
        responses=RoomSerializer,
    )
    def get(self, request: Request) -> Response:
        project = validated_query(RoomFilterSerializer, request)["project"]
        require(request.user, Action.SERVER_CREATE, project)
        room = selectors.member_room(project=project, user=request.user)
        body = {
            "project": project.pk,
            "limit": _resources(room.get("limit")),
            "held": _resources(room["held"]),
            "remaining": _resources(room["remaining"]),
            "project_remaining": _resources(room["project_remaining"]),
        }
        return Response(RoomSerializer(body).data)


# -- SSH key pairs ----------------------------------------------------------------------------


class KeyPairSerializer(serializers.ModelSerializer):
    fingerprint = serializers.CharField(
        read_only=True, help_text=_("SHA256 fingerprint, as `ssh-keygen -l` shows it.")
    )
    public_key = serializers.CharField(
        read_only=True, help_text=_("The OpenSSH public key line (type, key data, comment).")
    )

    class Meta:
        model = KeyPair
        fields = ["id", "name", "fingerprint", "public_key", "created_at"]
        read_only_fields = fields


class KeyPairCreateSerializer(serializers.Serializer):
    name = StrictCharField(
        max_length=64,
        help_text=_(
            "1–64 letters, digits, spaces, dots, @, hyphens or underscores; unique among your "
            "key pairs (409 `key_name_taken`)."
        ),
    )
    public_key = StrictCharField(
        max_length=keypairs.MAX_PUBLIC_KEY,
        help_text=_(
            "One line in OpenSSH format: the contents of ~/.ssh/id_ed25519.pub (ssh-ed25519, "
            "ssh-rsa of at least 2048 bits, or ecdsa-sha2-nistp256/384/521). 400 "
            "`invalid_public_key` otherwise, also for a private key."
        ),
    )


@extend_schema(tags=["keypairs"])
class KeyPairViewSet(JsonApiMixin, viewsets.GenericViewSet):
    """Your SSH public keys. Name one as `key_name` when you create a server: the cloud puts it
    into the VM, so you can sign in with `ssh`. Only you see your key pairs."""

    queryset = KeyPair.objects.none()
    serializer_class = KeyPairSerializer

    def get_queryset(self):
        return selectors.keypairs_of(self.request.user)

    @extend_schema(summary="Your SSH key pairs, by name", responses=KeyPairSerializer)
    def list(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), KeyPairSerializer)

    @extend_schema(
        summary="Register an SSH public key",
        request=KeyPairCreateSerializer,
        responses={201: KeyPairSerializer},
    )
    def create(self, request: Request) -> Response:
        data = validated_body(KeyPairCreateSerializer, request)
        keypair = keypairs.keypair_create(
            actor=request.user, name=data["name"], public_key=data["public_key"]
        )
        return Response(KeyPairSerializer(keypair).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Show one of your key pairs", responses=KeyPairSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(KeyPairSerializer(self.get_object()).data)

    @extend_schema(
        summary="Delete one of your key pairs",
        description=_(
            "It is removed from the cloud too. Servers already created with it keep the key "
            "inside the VM; a server still waiting to be built with it fails."
        ),
        responses={204: None},
    )
    def destroy(self, request: Request, pk: str) -> Response:
        keypairs.keypair_delete(actor=request.user, keypair=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
