"""openstacksdk smoke test of the calls TeachCloud needs.

Needs OS_CLIENT_CONFIG_FILE (cloud 'openstack-ci'); run by `recipe.sh smoke`."""

import os
import sys
import time

import openstack
from openstack import connection

c = openstack.connect(cloud="openstack-ci")
results = []


def step(name, fn):
    t = time.time()
    try:
        r = fn()
        results.append((name, True))
        print(f"{name:<34} OK   {time.time() - t:5.2f}s  {str(r)[:80]}")
        return r
    except Exception as e:
        results.append((name, False))
        print(f"{name:<34} FAIL {time.time() - t:5.2f}s  {type(e).__name__}: {str(e)[:300]}")


idn = c.identity
suffix = str(int(time.time()))
dom = step("identity: create domain", lambda: idn.create_domain(name="tc-" + suffix))
proj = step(
    "identity: create project",
    lambda: idn.create_project(name="course-" + suffix, domain_id=dom.id),
)
user = step(
    "identity: create user",
    lambda: idn.create_user(
        name="student-" + suffix, domain_id=dom.id, password="pw", default_project_id=proj.id
    ),
)
step(
    "identity: assign member role",
    lambda: idn.assign_project_role_to_user(proj, user, idn.find_role("member")) or "ok",
)
step(
    "identity: list domains/projects/users",
    lambda: (len(list(idn.domains())), len(list(idn.projects())), len(list(idn.users()))),
)


def as_student():
    s = connection.Connection(
        auth={
            "auth_url": c.auth["auth_url"],
            "username": user.name,
            "password": "pw",
            "project_name": proj.name,
            "user_domain_name": dom.name,
            "project_domain_name": dom.name,
        },
        region_name="RegionOne",
    )
    return s.current_project_id == proj.id


step("identity: authenticate as new user", as_student)
flavor = step(
    "compute: list flavors", lambda: next(f for f in c.compute.flavors() if f.name == "m1.tiny")
)
image = step("image: list images", lambda: next(i for i in c.image.images() if i.name == "tiny"))


def boot():
    srv = c.compute.create_server(
        name="vm-" + suffix, image_id=image.id, flavor_id=flavor.id, networks="none"
    )
    return c.compute.wait_for_server(srv, status="ACTIVE", wait=120, interval=1)


srv = step("compute: boot (networks=none) ACTIVE", boot)
step(
    "compute: stop -> SHUTOFF",
    lambda: (
        c.compute.wait_for_server(
            c.compute.stop_server(srv) or srv, status="SHUTOFF", wait=60, interval=1
        ).status
    ),
)
step(
    "compute: start -> ACTIVE",
    lambda: (
        c.compute.wait_for_server(
            c.compute.start_server(srv) or srv, status="ACTIVE", wait=60, interval=1
        ).status
    ),
)
# NB: compute.get_server_console_url() sends the legacy os-getVNCConsole action, which Nova
# answers with 404 at microversion >= 2.6 (SDK negotiates 2.100): use create_console instead.
step("compute: create_console (novnc url)", lambda: c.compute.create_console(srv, "novnc")["url"])
step(
    "compute: set quotas",
    lambda: c.compute.update_quota_set(proj.id, cores=4, ram=4096, instances=2).instances,
)
step(
    "compute: get quotas (cloud layer)",
    lambda: {
        k: v for k, v in c.get_compute_quotas(proj.id).items() if k in ("cores", "ram", "instances")
    },
)
step(
    "compute: delete server",
    lambda: (
        c.compute.wait_for_delete(c.compute.delete_server(srv) or srv, wait=60, interval=1)
        and "gone"
    ),
)


def quota_enforced():
    """As the project's member, with instances quota 1: the second boot is refused (403)."""
    c.compute.update_quota_set(proj.id, instances=1)
    st = connection.Connection(
        auth={
            "auth_url": c.auth["auth_url"],
            "username": user.name,
            "password": "pw",
            "project_name": proj.name,
            "user_domain_name": dom.name,
            "project_domain_name": dom.name,
        },
        region_name="RegionOne",
    )
    s1 = st.compute.wait_for_server(
        st.compute.create_server(
            name="q1", image_id=image.id, flavor_id=flavor.id, networks="none"
        ),
        wait=60,
        interval=1,
    )
    try:
        st.compute.create_server(name="q2", image_id=image.id, flavor_id=flavor.id, networks="none")
        verdict = "NOT enforced"
    except openstack.exceptions.ForbiddenException as e:
        verdict = "refused: " + str(e).split("Quota exceeded")[-1][:60]
    st.compute.delete_server(s1)
    st.compute.wait_for_delete(s1, wait=60, interval=1)
    assert verdict.startswith("refused"), verdict
    return verdict


step("compute: quota enforced for member", quota_enforced)


def networked_boot():
    net = c.network.find_network("smoke-net") or c.network.create_network(
        name="smoke-net",
        provider_network_type="flat",
        provider_physical_network="physnet1",
        shared=True,
    )
    c.network.find_subnet("smoke-sub") or c.network.create_subnet(
        name="smoke-sub", network_id=net.id, ip_version=4, cidr="10.250.0.0/24", gateway_ip=None
    )
    s = c.compute.wait_for_server(
        c.compute.create_server(
            name="vm-net", image_id=image.id, flavor_id=flavor.id, networks=[{"uuid": net.id}]
        ),
        wait=90,
        interval=1,
    )
    addrs = s.addresses
    c.compute.stop_server(s)
    c.compute.wait_for_server(s, status="SHUTOFF", wait=60, interval=1)
    c.compute.start_server(s)
    c.compute.wait_for_server(s, status="ACTIVE", wait=60, interval=1)
    c.compute.delete_server(s)
    c.compute.wait_for_delete(s, wait=60, interval=1)
    return addrs


if os.environ.get("OSS_NETWORKED") == "1":
    step("compute+network: boot on neutron net", networked_boot)
ok = sum(1 for _, good in results if good)
print(f"{ok} passed, {len(results) - ok} failed")
sys.exit(0 if ok == len(results) else 1)
