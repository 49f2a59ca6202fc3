#!/usr/bin/python3
"""The admin's REST calls that scripts/openstack.sh makes, in one Python process each (an `openstack` CLI
call costs 3-9 s of start-up on two busy cores; keystoneauth is what the CLI uses underneath).

  cloud.py catalog TYPE=URL...   service project, service users and roles, services and endpoints
                                 (idempotent; an endpoint whose URL changed is updated)
  cloud.py neutron-warmup        one GET /v2.0/networks (see openstack.sh: after_start_neutron_server)
  cloud.py canary NAME           flavor "tiny", image "stackwatch-tiny", server NAME ACTIVE (created if
                                 missing, recreated if in ERROR); its console URL must work. Prints
                                 "SERVER_ID CONSOLE_URL".

Credentials from OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, OS_*_DOMAIN_NAME, OS_REGION_NAME;
service users' password from CLOUD_SERVICE_PASSWORD; nova-manage's config files from CLOUD_NOVA_CONFIGS
(colon-separated). Progress goes to stderr.
"""
import os
import subprocess
import sys
import time

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

SERVICES = {  # catalog type -> (service name, service user)
    "compute": "nova",
    "placement": "placement",
    "image": "glance",
    "network": "neutron",
}
FLAVOR = "tiny"
IMAGE = "stackwatch-tiny"
COMPUTE_MV = {"OpenStack-API-Version": "compute 2.37", "X-OpenStack-Nova-API-Version": "2.37"}


def say(msg):
    print(f"cloud.py: {msg}", file=sys.stderr, flush=True)


def admin_session():
    auth = v3.Password(
        auth_url=os.environ["OS_AUTH_URL"],
        username=os.environ["OS_USERNAME"],
        password=os.environ["OS_PASSWORD"],
        project_name=os.environ["OS_PROJECT_NAME"],
        user_domain_name=os.environ["OS_USER_DOMAIN_NAME"],
        project_domain_name=os.environ["OS_PROJECT_DOMAIN_NAME"],
    )
    return ks_session.Session(auth=auth, timeout=90)


def ks(sess, method, path, **kw):
    return sess.request(os.environ["OS_AUTH_URL"].rstrip("/") + path, method, **kw)


def first(items):
    return items[0] if items else None


def catalog(sess, pairs):
    region = os.environ["OS_REGION_NAME"]
    password = os.environ["CLOUD_SERVICE_PASSWORD"]
    project = first(ks(sess, "GET", "/projects?name=service").json()["projects"])
    if not project:
        project = ks(sess, "POST", "/projects", json={"project": {"name": "service", "domain_id": "default"}}).json()["project"]
    roles = {}
    for name in ("admin", "service"):
        role = first(ks(sess, "GET", f"/roles?name={name}").json()["roles"])
        if not role:
            role = ks(sess, "POST", "/roles", json={"role": {"name": name}}).json()["role"]
        roles[name] = role["id"]
    for typ, url in pairs:
        name = SERVICES[typ]
        user = first(ks(sess, "GET", f"/users?name={name}").json()["users"])
        if not user:
            user = ks(sess, "POST", "/users", json={"user": {"name": name, "domain_id": "default", "password": password}}).json()["user"]
        for role_id in roles.values():
            ks(sess, "PUT", f"/projects/{project['id']}/users/{user['id']}/roles/{role_id}")
        service = first(ks(sess, "GET", f"/services?type={typ}").json()["services"])
        if not service:
            service = ks(sess, "POST", "/services", json={"service": {"name": name, "type": typ}}).json()["service"]
        have = {e["interface"]: e for e in ks(sess, "GET", f"/endpoints?service_id={service['id']}").json()["endpoints"]}
        for interface in ("public", "internal", "admin"):
            endpoint = have.get(interface)
            if endpoint is None:
                body = {"endpoint": {"service_id": service["id"], "interface": interface, "url": url, "region_id": region}}
                ks(sess, "POST", "/endpoints", json=body)
            elif endpoint["url"] != url:
                ks(sess, "PATCH", f"/endpoints/{endpoint['id']}", json={"endpoint": {"url": url}})
        say(f"{typ}: user {name}, endpoints {url}")
    print("catalog ok")


def api(sess, service_type, method, path, **kw):
    kw.setdefault("endpoint_filter", {"service_type": service_type, "interface": "public", "region_name": os.environ["OS_REGION_NAME"]})
    return sess.request(path, method, **kw)


def neutron_warmup(sess):
    api(sess, "network", "GET", "/v2.0/networks")
    print("neutron warm")


def wait(what, timeout, probe, every=1.0):
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"cloud.py: timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def compute_up(sess):
    services = api(sess, "compute", "GET", "/os-services?binary=nova-compute", raise_exc=False)
    if services.status_code != 200:
        return None
    return first([s["host"] for s in services.json()["services"] if s["state"] == "up" and s["status"] == "enabled"])


def canary(sess, name):
    host = wait("an up nova-compute service", 120, lambda: compute_up(sess), every=2)
    flavor = first([f for f in api(sess, "compute", "GET", "/flavors").json()["flavors"] if f["name"] == FLAVOR])
    if not flavor:
        flavor = api(sess, "compute", "POST", "/flavors", json={"flavor": {"name": FLAVOR, "ram": 64, "vcpus": 1, "disk": 1}}).json()["flavor"]
        say(f"flavor {FLAVOR} created")
    image = first(api(sess, "image", "GET", f"/v2/images?name={IMAGE}").json()["images"])
    if image and image["status"] != "active":
        api(sess, "image", "DELETE", f"/v2/images/{image['id']}")
        image = None
    if not image:
        body = {"name": IMAGE, "disk_format": "raw", "container_format": "bare", "visibility": "public"}
        image = api(sess, "image", "POST", "/v2/images", json=body).json()
        api(sess, "image", "PUT", f"/v2/images/{image['id']}/file", data=b"\0" * 65536, headers={"Content-Type": "application/octet-stream"})
        say(f"image {IMAGE} uploaded")
    servers = api(sess, "compute", "GET", f"/servers/detail?name=^{name}$", headers=COMPUTE_MV).json()["servers"]
    server = first([s for s in servers if s["status"] not in ("ERROR", "DELETED")])
    for broken in [s for s in servers if s["status"] == "ERROR"]:
        say(f"deleting {name} {broken['id']} in ERROR: {broken.get('fault', {}).get('message')}")
        api(sess, "compute", "DELETE", f"/servers/{broken['id']}")
    if not server:
        # A compute host is scheduled to only once it is mapped to the cell: discover it now rather than
        # wait for the scheduler's periodic discovery.
        cmd = ["nova-manage"]
        for conf in os.environ["CLOUD_NOVA_CONFIGS"].split(":"):
            cmd += ["--config-file", conf]
        subprocess.run(cmd + ["cell_v2", "discover_hosts"], check=False, stdout=sys.stderr, stderr=sys.stderr)
        body = {"server": {"name": name, "imageRef": image["id"], "flavorRef": flavor["id"], "networks": "none"}}
        server = api(sess, "compute", "POST", "/servers", json=body, headers=COMPUTE_MV).json()["server"]
        say(f"server {name} {server['id']} created on a cloud whose compute host is {host}")

    def active():
        s = api(sess, "compute", "GET", f"/servers/{server['id']}", headers=COMPUTE_MV).json()["server"]
        if s["status"] == "ERROR":
            raise SystemExit(f"cloud.py: server {name} went to ERROR: {s.get('fault', {}).get('message')}")
        return s if s["status"] == "ACTIVE" else None

    server = wait(f"server {name} ACTIVE", 180, active, every=2)
    body = {"remote_console": {"protocol": "vnc", "type": "novnc"}}
    console = api(sess, "compute", "POST", f"/servers/{server['id']}/remote-consoles", json=body, headers=COMPUTE_MV).json()
    print(server["id"], console["remote_console"]["url"])


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    sess = admin_session()
    if argv[1] == "catalog":
        catalog(sess, [a.split("=", 1) for a in argv[2:]])
    elif argv[1] == "neutron-warmup":
        neutron_warmup(sess)
    elif argv[1] == "canary" and len(argv) == 3:
        canary(sess, argv[2])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
