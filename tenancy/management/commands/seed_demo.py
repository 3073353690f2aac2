"""`python manage.py seed_demo [--password P]`: a small, realistic demo world.

Built through the services (so the audit log reads like real use) and idempotent: what exists is
kept, what is missing is added, and running it twice changes nothing.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from accounts import services as account_services
from accounts.models import EnrollmentCode, PlatformRole, User
from teachcloud.errors import ServiceError
from tenancy import services
from tenancy.models import Domain, DomainRole, Membership, Project

DEFAULT_PASSWORD = "teachcloud-demo"


@dataclass
class Person:
    username: str
    real_name: str
    id_number: str


@dataclass
class Course:
    code: str
    name: str
    teacher: Person
    assistant: Person
    students: list[Person]


@dataclass
class School:
    code: str
    name: str
    admin: Person
    assistant: Person
    courses: list[Course] = field(default_factory=list)


def _students(school: str, course_no: int, names: list[str]) -> list[Person]:
    people = []
    for seq, name in enumerate(names, start=1):
        number = f"2024{course_no:02d}{seq:04d}"
        people.append(Person(f"{school}-{number}", name, number))
    return people


SCHOOLS = [
    School(
        code="north",
        name="北方大学",
        admin=Person("north-admin", "张建国", "T0001"),
        assistant=Person("north-assistant", "李秀英", "T0002"),
        courses=[
            Course(
                code="cloud101",
                name="云计算导论",
                teacher=Person("north-teacher1", "王志强", "T1001"),
                assistant=Person("north-ta1", "赵晓明", "2023010001"),
                students=_students(
                    "north", 1, ["陈雨涵", "刘子轩", "杨思琪", "黄浩然", "周欣怡", "吴俊杰"]
                ),
            ),
            Course(
                code="os201",
                name="操作系统实验",
                teacher=Person("north-teacher2", "孙丽华", "T1002"),
                assistant=Person("north-ta2", "钱佳怡", "2023010002"),
                students=_students(
                    "north", 2, ["徐梓涵", "朱一鸣", "马诗雨", "胡宇航", "郭静怡", "何嘉豪"]
                ),
            ),
        ],
    ),
    School(
        code="south",
        name="南方学院",
        admin=Person("south-admin", "林国栋", "S0001"),
        assistant=Person("south-assistant", "郑美玲", "S0002"),
        courses=[
            Course(
                code="db101",
                name="数据库系统",
                teacher=Person("south-teacher1", "高文博", "S1001"),
                assistant=Person("south-ta1", "罗晓燕", "2023020001"),
                students=_students(
                    "south", 1, ["梁子豪", "宋雅琳", "谢明轩", "唐梦瑶", "韩宇飞", "冯诗涵"]
                ),
            ),
            Course(
                code="ml201",
                name="机器学习实践",
                teacher=Person("south-teacher2", "曹志明", "S1002"),
                assistant=Person("south-ta2", "彭雪婷", "2023020002"),
                students=_students(
                    "south", 2, ["董浩宇", "袁欣然", "邓嘉怡", "许博文", "傅晨曦", "沈俊熙"]
                ),
            ),
        ],
    ),
]


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


class Command(BaseCommand):
    help = "Create (or complete) a demo platform: two schools, courses, teachers and students."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password",
            default=DEFAULT_PASSWORD,
            help=f"The one password of every demo account (default: {DEFAULT_PASSWORD}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password: str = options["password"]
        try:
            validate_password(password)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self.password = password
        self.logins: list[tuple[str, str, str]] = []
        self.codes: list[tuple[str, str]] = []
        try:
            platform = self._platform_admin()
            self._finance(platform)
            for school in SCHOOLS:
                self._school(platform, school)
            self._billing(platform)
            self._compute()
        except (ServiceError, PermissionDenied) as exc:
            detail = getattr(exc, "detail", str(exc))
            fields = getattr(exc, "fields", None)
            raise CommandError(f"{detail} {fields or ''}".strip()) from exc
        self._report()

    # -- Building blocks (each one keeps what exists) -------------------------------------------

    def _platform_admin(self) -> User:
        user = User.objects.filter(username="admin").first()
        if user is None:
            # Bootstrap, like `createsuperuser`: there is no platform staff yet to act.
            user = User.objects.create_superuser(
                username="admin",
                email="admin@teachcloud.example.com",
                password=self.password,
                real_name="平台管理员",
                platform_role=PlatformRole.OPERATOR,
            )
        elif not (
            user.is_superuser and user.is_staff and user.platform_role == PlatformRole.OPERATOR
        ):
            user.is_superuser = user.is_staff = True
            user.platform_role = PlatformRole.OPERATOR
            user.save(update_fields=["is_superuser", "is_staff", "platform_role"])
        self._finish_user(user)
        self.logins.append(
            (_("Platform admin"), user.username, _("/admin/ and every school in the portal"))
        )
        return user

    def _finance(self, platform: User) -> None:
        """A finance staff account: reports, statements and read-only money views."""
        user = User.objects.filter(username="finance").first()
        if user is None:
            user = account_services.staff_user_create(
                actor=platform,
                username="finance",
                real_name="财务 王会计",
                email="wang.kuaiji@example.com",
                password=self.password,
                platform_role=PlatformRole.FINANCE,
            )
        self._finish_user(user)
        self.logins.append(
            (_("Finance staff"), user.username, _("reports, statements, money in /admin/"))
        )

    def _finish_user(self, user: User) -> None:
        """The demo password and a verified primary email address."""
        if not user.check_password(self.password):
            account_services.user_password_set(user=user, password=self.password)
        if user.email:
            address = EmailAddress.objects.filter(user=user, email__iexact=user.email).first()
            if address is None:
                EmailAddress.objects.create(
                    user=user, email=user.email, primary=True, verified=True
                )
            elif not (address.verified and address.primary):
                address.verified = address.primary = True
                address.save(update_fields=["verified", "primary"])

    def _user(self, actor: User, domain: Domain, person: Person) -> User:
        user = User.objects.filter(username=person.username).first()
        if user is None:
            user = account_services.user_create(
                actor=actor,
                domain=domain,
                username=person.username,
                real_name=person.real_name,
                id_number=person.id_number,
                email=f"{person.username}@{domain.code}.example.edu",
                password=self.password,
            )
        self._finish_user(user)
        return user

    def _domain_role(self, actor: User, domain: Domain, user: User, role: str) -> None:
        grant = DomainRole.objects.filter(domain=domain, user=user).first()
        if grant is None or grant.role != role:
            services.domain_role_set(actor=actor, domain=domain, user=user, role=role)

    def _member(self, actor: User, project: Project, user: User, role: str) -> None:
        membership = Membership.objects.filter(project=project, user=user).first()
        if membership is None:
            services.membership_add(actor=actor, project=project, user=user, role=role)
        elif membership.role != role:
            services.membership_update(actor=actor, membership=membership, role=role)

    def _school(self, platform: User, school: School) -> None:
        domain = Domain.objects.filter(code=school.code).first()
        if domain is None:
            domain = services.domain_create(actor=platform, name=school.name, code=school.code)
        admin = self._user(platform, domain, school.admin)
        self._domain_role(platform, domain, admin, "admin")
        assistant = self._user(admin, domain, school.assistant)
        self._domain_role(admin, domain, assistant, "assistant")
        self.logins.append(
            (
                _("Domain admin"),
                admin.username,
                _("%(school)s: projects, users, appointments, allocations, wallet, reports")
                % {"school": school.name},
            )
        )
        self.logins.append(
            (
                _("Domain assistant"),
                assistant.username,
                _("%(school)s: daily work of the domain admin, no appointments")
                % {"school": school.name},
            )
        )
        for course in school.courses:
            self._course(admin, domain, course)

    def _course(self, domain_admin: User, domain: Domain, course: Course) -> None:
        teacher = self._user(domain_admin, domain, course.teacher)
        project = Project.objects.filter(domain=domain, code=course.code).first()
        if project is None:
            project = services.project_create(
                actor=domain_admin,
                domain=domain,
                name=course.name,
                code=course.code,
                admin=teacher,
            )
        self._member(domain_admin, project, teacher, "admin")
        assistant = self._user(teacher, domain, course.assistant)
        self._member(teacher, project, assistant, "assistant")
        students = []
        for person in course.students:
            student = self._user(teacher, domain, person)
            self._member(teacher, project, student, "member")
            students.append(student)
        code = EnrollmentCode.objects.filter(project=project).order_by("created_at").first()
        if code is None:
            code = account_services.enrollment_code_create(
                actor=teacher, project=project, label=_("Demo enrollment code")
            )
        self.codes.append((f"{domain.name} / {project.name}", code.code))
        self.logins.append(
            (
                _("Project admin (teacher)"),
                teacher.username,
                _("%(course)s: members, limits, enrollment, all VMs, wallet")
                % {"course": course.name},
            )
        )
        self.logins.append(
            (
                _("Project assistant"),
                assistant.username,
                _("%(course)s: daily work of the teacher, no appointments")
                % {"course": course.name},
            )
        )
        for student in students:
            self.logins.append(
                (
                    _("Student"),
                    student.username,
                    _("%(course)s: own VMs and own usage") % {"course": course.name},
                )
            )

    def _billing(self, platform: User) -> None:
        """Capacity, allocations at every level and some money, where none exist yet."""
        from billing import services as billing
        from billing.models import PlatformCapacity, Transaction, TransactionKind

        capacity = PlatformCapacity.objects.get_or_create(pk=1)[0]
        if capacity.vcpus == 0:
            billing.platform_capacity_set(
                actor=platform, vcpus=512, ram_gib=2048, disk_gib=40960, overcommit="2"
            )
        for school in SCHOOLS:
            domain = Domain.objects.get(code=school.code)
            admin = User.objects.get(username=school.admin.username)
            target = billing.target_of(domain=domain)
            if billing.current_allocation(target) is None:
                billing.allocation_set(
                    actor=platform, target=target, vcpus=128, ram_gib=512, disk_gib=8192
                )
            wallet = billing.wallet_open(domain=domain)
            if not Transaction.objects.filter(wallet=wallet, kind=TransactionKind.RECHARGE):
                billing.wallet_recharge(
                    actor=platform,
                    wallet=wallet,
                    amount="20000.00",
                    method="bank_transfer",
                    reference=f"DEMO-{domain.code.upper()}-001",
                    payer=domain.name,
                )
            for project in domain.projects.all():
                target = billing.target_of(project=project)
                if billing.current_allocation(target) is None:
                    billing.allocation_set(
                        actor=admin, target=target, vcpus=32, ram_gib=128, disk_gib=1024
                    )
                    billing.project_defaults_set(
                        actor=admin,
                        project=project,
                        vcpus=4,
                        ram_gib=8,
                        disk_gib=80,
                        budget="200.00",
                    )
                wallet = billing.wallet_open(project=project)
                if not Transaction.objects.filter(wallet=wallet, kind=TransactionKind.RECHARGE):
                    billing.wallet_recharge(
                        actor=admin,
                        wallet=wallet,
                        amount="3000.00",
                        method="internal_transfer",
                        reference=f"DEMO-{project.code.upper()}",
                        payer=project.name,
                    )
                for membership in project.memberships.filter(role="member"):
                    limit = billing.target_of(membership=membership)
                    if billing.current_allocation(limit) is None:
                        billing.allocation_set(
                            actor=admin,
                            target=limit,
                            vcpus=4,
                            ram_gib=8,
                            disk_gib=80,
                            budget="200.00",
                        )
        self._low_balance_example(platform)

    def _low_balance_example(self, platform: User) -> None:
        """One course whose alert level is above its balance, and the enforcement run that
        notices it: the real low-balance email (console) and a recorded notification, so the
        Notifications pages have something to show. Once: the alert is marked as sent."""
        from django.utils import timezone

        from billing import services as billing
        from billing.enforcement import enforce

        course = SCHOOLS[0].courses[0]
        project = Project.objects.get(domain__code=SCHOOLS[0].code, code=course.code)
        wallet = billing.wallet_open(project=project)
        if wallet.alert_threshold is None and not wallet.low_balance_alerted:
            teacher = User.objects.get(username=course.teacher.username)
            billing.wallet_update(actor=teacher, wallet=wallet, alert_threshold="5000.00")
            enforce(now=timezone.now())

    def _compute(self) -> None:
        """The cloud's flavor and image catalogue, and a VM for the first two students of each
        school's first course — only when a cloud answers; the seed never fails for it."""
        from compute.backends.base import BackendError
        from compute.models import Flavor, Image, Server
        from compute.services import server_create
        from compute.sync import catalogue_sync

        self.compute_note = ""
        try:
            catalogue_sync()
        except BackendError as exc:
            self.compute_note = _("No cloud answered (%(error)s): no VMs were created.") % {
                "error": exc.message
            }
            return
        flavor = (
            Flavor.objects.filter(enabled=True, removed=False, name="c1.small").first()
            or Flavor.objects.filter(enabled=True, removed=False, vcpus=1).first()
        )
        image = (
            Image.objects.filter(enabled=True, removed=False, name__startswith="cirros").first()
            or Image.objects.filter(enabled=True, removed=False).first()
        )
        if flavor is None or image is None:
            self.compute_note = _("The cloud offers no flavor or image: no VMs were created.")
            return
        for school in SCHOOLS:
            course = school.courses[0]
            project = Project.objects.get(domain__code=school.code, code=course.code)
            for person in course.students[:2]:
                student = User.objects.get(username=person.username)
                if Server.objects.filter(owner=student, project=project).exists():
                    continue
                try:
                    server_create(
                        actor=student,
                        project=project,
                        name=f"{person.username.split('-')[-1]}-lab",
                        flavor=flavor,
                        image=image,
                    )
                except ServiceError as exc:
                    self.compute_note = exc.detail
                    return

    # -- Output ---------------------------------------------------------------------------------

    def _report(self) -> None:
        base = settings.TEACHCLOUD_BASE_URL.rstrip("/")
        header = (_("Role"), _("Username"), _("Password"), _("What they see"))
        rows = [(role, username, self.password, sees) for role, username, sees in self.logins]
        widths = [max(_width(row[i]) for row in [header, *rows]) for i in range(3)]

        def line(row: tuple[str, str, str, str]) -> str:
            cells = [_pad(row[i], widths[i]) for i in range(3)]
            return f"| {' | '.join(cells)} | {row[3]}"

        out = self.stdout
        out.write(self.style.SUCCESS(_("Demo data is ready.")))
        out.write(
            _("Portal: %(url)s   Admin: %(admin)s") % {"url": base + "/", "admin": base + "/admin/"}
        )
        out.write("")
        out.write(line(header))
        out.write("|-" + "-+-".join("-" * w for w in widths) + "-+-" + "-" * 20)
        for row in rows:
            out.write(line(row))
        out.write("")
        out.write(_("Enrollment codes:"))
        for project, code in self.codes:
            out.write(f"  {project}: {code}")
        if getattr(self, "compute_note", ""):
            out.write(self.compute_note)
        out.write(
            _("Domains: %(d)d, projects: %(p)d, users: %(u)d, memberships: %(m)d.")
            % {
                "d": Domain.objects.count(),
                "p": Project.objects.count(),
                "u": User.objects.count(),
                "m": Membership.objects.count(),
            }
        )
