#!/usr/bin/env python3
"""Helpers for scripts/zabbix.sh (Python 3 standard library only).

Subcommands:
  send    -z SERVER -p PORT -s HOST -k KEY -o VALUE   zabbix_sender-compatible subset (the Zabbix
          sender/trapper protocol; Debian 12 packages no zabbix_sender binary)
  call    METHOD [JSON-PARAMS]                        one JSON-RPC call (logs in first unless the
          method is apiinfo.version or user.login); prints the result as JSON
  ready                                               exit 0 when apiinfo.version and user.login work
  setup                                               idempotent: host group, host, trapper items,
          triggers; disables the stock "Zabbix server" host; prints {"hostid":..,"items":{key:itemid}}
  wait-value KEY SINCE TIMEOUT                        wait until item KEY of the host has a history
          value with clock >= SINCE (unix seconds); prints "clock value"
  feeder                                              the lag feeder loop (see feeder())

Configuration comes from the environment (set by scripts/zabbix.sh):
  ZBX_API_URL ZBX_API_USER ZBX_API_PASSWORD ZBX_TRAPPER_HOST ZBX_TRAPPER_PORT ZBX_HOST
  MARIADB_PRIMARY_SOCKET MARIADB_REPLICA_PORT MARIADB_MONITOR_USER MARIADB_MONITOR_PASSWORD
  FEED_INTERVAL HEARTBEAT_INTERVAL
"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request

HOST = os.environ.get("ZBX_HOST", "db-replica")
GROUP = os.environ.get("ZBX_GROUP", "Stackwatch databases")
LAG_KEY = "db.replication.seconds_behind_master"
RUNNING_KEY = "db.replication.running"
WSREP_KEY = "db.wsrep.local_state"

# value_type 3 = numeric unsigned (history.get's default history type), type 2 = Zabbix trapper
ITEMS = [
    {"key_": LAG_KEY, "name": "MariaDB replica: Seconds_Behind_Master", "units": "s",
     "description": "SHOW SLAVE STATUS Seconds_Behind_Master of the replica, pushed every few seconds by the "
                    "stackwatch feeder (scripts/zabbix.sh). Not sent while it is NULL (replication stopped)."},
    {"key_": RUNNING_KEY, "name": "MariaDB replica: replication running", "units": "",
     "description": "1 when Slave_IO_Running and Slave_SQL_Running are both Yes, else 0 (also when the replica "
                    "does not answer); pushed by the stackwatch feeder."},
    {"key_": WSREP_KEY, "name": "Galera: wsrep_local_state", "units": "",
     "description": "wsrep_local_state pushed by tests: 4 = Synced, 2 = Donor/Desynced, 1 = Joining, 3 = Joined."},
]
TRIGGERS = [
    {"description": "MariaDB replication lag is above 30s on {HOST.NAME}",
     "expression": "last(/{host}/%s)>30" % LAG_KEY, "priority": 3},
    {"description": "MariaDB replication is not running on {HOST.NAME}",
     "expression": "last(/{host}/%s)=0" % RUNNING_KEY, "priority": 4},
    {"description": "Galera node is not synced on {HOST.NAME}",
     "expression": "last(/{host}/%s)<>4" % WSREP_KEY, "priority": 2},
]


def log(msg):
    print("%s zbx.py: %s" % (time.strftime("%Y-%m-%dT%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ------------------------------------------------------------------ sender protocol

def zbx_send(server, port, data, timeout=5.0):
    """data: list of {"host","key","value"[, "clock","ns"]}. Returns the server's JSON reply."""
    payload = json.dumps({"request": "sender data", "data": data}).encode()
    packet = b"ZBXD\x01" + struct.pack("<II", len(payload), 0) + payload
    with socket.create_connection((server, int(port)), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(packet)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    if len(buf) < 13 or buf[:4] != b"ZBXD":
        raise RuntimeError("bad reply from %s:%s: %r" % (server, port, buf[:64]))
    flags = buf[4]
    if flags & 0x04:  # large packet: 8-byte lengths
        (length,) = struct.unpack("<Q", buf[5:13])
        body = buf[21:21 + length]
    else:
        (length,) = struct.unpack("<I", buf[5:9])
        body = buf[13:13 + length]
    if flags & 0x02:
        import zlib
        body = zlib.decompress(body)
    return json.loads(body.decode())


def processed_counts(reply):
    info = reply.get("info", "")
    counts = {}
    for part in info.split(";"):
        if ":" in part:
            k, v = part.split(":", 1)
            try:
                counts[k.strip()] = float(v.strip())
            except ValueError:
                pass
    return counts


def cmd_send(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="zabbix_sender", description="Zabbix sender (subset of zabbix_sender's options)")
    ap.add_argument("-z", "--zabbix-server", default=os.environ.get("ZBX_TRAPPER_HOST", "127.0.0.1"))
    ap.add_argument("-p", "--port", type=int, default=int(os.environ.get("ZBX_TRAPPER_PORT", "10051")))
    ap.add_argument("-s", "--host", default=HOST)
    ap.add_argument("-k", "--key", required=True)
    ap.add_argument("-o", "--value", required=True)
    ap.add_argument("-c", "--config", help="ignored (accepted for compatibility)")
    ap.add_argument("-v", "--verbose", action="count", default=0)
    a = ap.parse_args(argv)
    now = time.time()
    item = {"host": a.host, "key": a.key, "value": a.value, "clock": int(now), "ns": int((now % 1) * 1e9)}
    try:
        reply = zbx_send(a.zabbix_server, a.port, [item])
    except Exception as e:  # noqa: BLE001
        print("zabbix_sender: sending failed: %s" % e, file=sys.stderr)
        return 1
    c = processed_counts(reply)
    print('Response from "%s:%s": "%s"' % (a.zabbix_server, a.port, reply.get("info", "")))
    failed, total = int(c.get("failed", 0)), int(c.get("total", 1))
    print("sent: %d; skipped: 0; total: %d" % (total, total))
    if reply.get("response") != "success":
        return 1
    return 2 if failed else 0


# ------------------------------------------------------------------ JSON-RPC API

class Api:
    def __init__(self, url=None, user=None, password=None, timeout=10.0):
        env = os.environ.get
        self.url = url or env("ZBX_API_URL") or env("STACKWATCH_ZABBIX_URL") or "http://127.0.0.1:29080/api_jsonrpc.php"
        self.user = user or env("ZBX_API_USER") or env("STACKWATCH_ZABBIX_USER") or "Admin"
        self.password = password or env("ZBX_API_PASSWORD") or env("STACKWATCH_ZABBIX_PASSWORD") or "zabbix"
        self.timeout = timeout
        self.auth = None
        self.next_id = 1

    def call(self, method, params=None, auth=True):
        body = {"jsonrpc": "2.0", "method": method, "params": params if params is not None else {}, "id": self.next_id}
        self.next_id += 1
        if auth:
            if self.auth is None:
                self.login()
            body["auth"] = self.auth
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json-rpc"})
        with urllib.request.urlopen(req, timeout=self.timeout) as r:
            reply = json.loads(r.read().decode())
        if "error" in reply:
            e = reply["error"]
            raise RuntimeError("%s: %s %s" % (method, e.get("message"), e.get("data")))
        return reply["result"]

    def login(self):
        self.auth = self.call("user.login", {"username": self.user, "password": self.password}, auth=False)
        return self.auth


def cmd_call(argv):
    api = Api()
    method = argv[0]
    params = json.loads(argv[1]) if len(argv) > 1 else {}
    print(json.dumps(api.call(method, params, auth=method not in ("apiinfo.version", "user.login")), indent=1))
    return 0


def cmd_ready(_argv):
    api = Api(timeout=5)
    try:
        api.call("apiinfo.version", {}, auth=False)
        api.login()
    except Exception as e:  # noqa: BLE001
        print(e, file=sys.stderr)
        return 1
    return 0


def ensure(api, get_method, get_params, create_method, create_params, id_field, label):
    found = api.call(get_method, get_params)
    if found:
        return found[0][id_field], False
    created = api.call(create_method, create_params)
    ids = created[list(created.keys())[0]]
    log("created %s" % label)
    return ids[0], True


def cmd_setup(_argv):
    api = Api()
    groupid, _ = ensure(api, "hostgroup.get", {"filter": {"name": [GROUP]}, "output": ["groupid"]},
                        "hostgroup.create", {"name": GROUP}, "groupid", "host group %r" % GROUP)
    hostid, _ = ensure(api, "host.get", {"filter": {"host": [HOST]}, "output": ["hostid"]},
                       "host.create", {
                           "host": HOST, "name": HOST, "groups": [{"groupid": groupid}],
                           "description": "MariaDB replica of the stackwatch test pair (scripts/zabbix.sh)",
                           "interfaces": [{"type": 1, "main": 1, "useip": 1, "ip": "127.0.0.1", "dns": "",
                                           "port": "10050"}],
                       }, "hostid", "host %r" % HOST)
    items = {}
    for it in ITEMS:
        itemid, _ = ensure(api, "item.get", {"hostids": [hostid], "filter": {"key_": [it["key_"]]}, "output": ["itemid"]},
                           "item.create", dict(it, hostid=hostid, type=2, value_type=3, delay="0",
                                               history="7d", trends="0"),
                           "itemid", "item %r" % it["key_"])
        items[it["key_"]] = itemid
    for tr in TRIGGERS:
        expr = tr["expression"].replace("{host}", HOST)
        ensure(api, "trigger.get", {"hostids": [hostid], "filter": {"description": [tr["description"]]},
                                    "output": ["triggerid"]},
               "trigger.create", dict(tr, expression=expr), "triggerid", "trigger %r" % tr["description"])
    # The stock "Zabbix server" host polls an agent on 127.0.0.1:10050 that is not there: disable it.
    for h in api.call("host.get", {"filter": {"host": ["Zabbix server"], "status": 0}, "output": ["hostid"]}):
        api.call("host.update", {"hostid": h["hostid"], "status": 1})
        log("disabled the stock host 'Zabbix server'")
    print(json.dumps({"host": HOST, "hostid": hostid, "items": items}))
    return 0


def cmd_wait_value(argv):
    key, since, timeout = argv[0], float(argv[1]), float(argv[2])
    api = Api(timeout=5)
    deadline = time.time() + timeout
    itemid = None
    while True:
        try:
            if itemid is None:
                found = api.call("item.get", {"host": HOST, "filter": {"key_": [key]}, "output": ["itemid"]})
                itemid = found[0]["itemid"] if found else None
            if itemid is not None:
                h = api.call("history.get", {"itemids": [itemid], "history": 3, "sortfield": "clock",
                                             "sortorder": "DESC", "limit": 1})
                if h and int(h[0]["clock"]) >= since:
                    print("%s %s" % (h[0]["clock"], h[0]["value"]))
                    return 0
        except Exception as e:  # noqa: BLE001
            err = e
        else:
            err = None
        if time.time() >= deadline:
            print("no value for %s since %d within %ds%s" % (key, since, timeout, (": %s" % err) if err else ""),
                  file=sys.stderr)
            return 1
        time.sleep(0.5)


# ------------------------------------------------------------------ feeder

def mariadb(args, sql, timeout=5):
    r = subprocess.run(["mariadb", "--no-defaults", "--connect-timeout=3"] + args + ["-e", sql],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip() or "mariadb exited %d" % r.returncode)
    return r.stdout


def slave_status():
    out = mariadb(["-h", "127.0.0.1", "-P", os.environ["MARIADB_REPLICA_PORT"],
                   "-u", os.environ["MARIADB_MONITOR_USER"], "-p" + os.environ["MARIADB_MONITOR_PASSWORD"], "-E"],
                  "SHOW SLAVE STATUS")
    st = {}
    for line in out.splitlines():
        if ":" in line and not line.startswith("*"):
            k, v = line.split(":", 1)
            st[k.strip()] = v.strip()
    return st


def feeder(_argv):
    """Every HEARTBEAT_INTERVAL s: write a heartbeat row on the primary (a steady trickle of binlog
    events, which is what makes Seconds_Behind_Master show MASTER_DELAY). Every FEED_INTERVAL s: read
    SHOW SLAVE STATUS on the replica (as the monitoring user, over TCP) and push
    db.replication.seconds_behind_master and db.replication.running to the Zabbix trapper."""
    sock = os.environ["MARIADB_PRIMARY_SOCKET"]
    server, port = os.environ["ZBX_TRAPPER_HOST"], os.environ["ZBX_TRAPPER_PORT"]
    feed_every = float(os.environ.get("FEED_INTERVAL", "2"))
    beat_every = float(os.environ.get("HEARTBEAT_INTERVAL", "1"))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    log("feeder started: heartbeat every %gs to %s, Seconds_Behind_Master every %gs to %s:%s host %s"
        % (beat_every, sock, feed_every, server, port, HOST))
    seq = 0
    next_beat = next_feed = time.time()
    last_state = None
    errors = {}

    def report_error(what, e):
        msg = str(e).splitlines()[0] if str(e) else repr(e)
        if errors.get(what) != msg:
            log("%s failed: %s" % (what, msg))
            errors[what] = msg

    while not stop:
        now = time.time()
        if now >= next_beat:
            next_beat = max(next_beat + beat_every, now)
            seq += 1
            try:
                mariadb(["-S", sock, "-u", "root"],
                        "REPLACE INTO stackwatch.heartbeat (id, ts, seq) VALUES (1, NOW(6), %d)" % seq)
                errors.pop("heartbeat", None)
            except Exception as e:  # noqa: BLE001
                report_error("heartbeat", e)
        if now >= next_feed:
            next_feed = max(next_feed + feed_every, now)
            try:
                st = slave_status()
                running = 1 if st.get("Slave_IO_Running") == "Yes" and st.get("Slave_SQL_Running") == "Yes" else 0
                sbm = st.get("Seconds_Behind_Master", "NULL")
                clock = time.time()
                data = [{"host": HOST, "key": RUNNING_KEY, "value": str(running),
                         "clock": int(clock), "ns": int((clock % 1) * 1e9)}]
                if sbm not in ("", "NULL"):
                    data.append({"host": HOST, "key": LAG_KEY, "value": sbm,
                                 "clock": int(clock), "ns": int((clock % 1) * 1e9)})
                reply = zbx_send(server, port, data)
                c = processed_counts(reply)
                if reply.get("response") != "success" or c.get("failed", 0):
                    raise RuntimeError("trapper: %s" % reply)
                errors.pop("feed", None)
                state = (sbm, running, st.get("SQL_Delay"))
                if state != last_state:
                    log("Seconds_Behind_Master=%s running=%d SQL_Delay=%s" % state)
                    last_state = state
            except Exception as e:  # noqa: BLE001
                report_error("feed", e)
                # replica unreachable: replication is not running as far as anyone can tell
                try:
                    clock = time.time()
                    zbx_send(server, port, [{"host": HOST, "key": RUNNING_KEY, "value": "0",
                                             "clock": int(clock), "ns": int((clock % 1) * 1e9)}])
                except Exception as e2:  # noqa: BLE001
                    report_error("trapper", e2)
        time.sleep(max(0.05, min(next_beat, next_feed) - time.time()))
    log("feeder stopped")
    return 0


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd, argv = sys.argv[1], sys.argv[2:]
    fn = {"send": cmd_send, "call": cmd_call, "ready": cmd_ready, "setup": cmd_setup,
          "wait-value": cmd_wait_value, "feeder": feeder}.get(cmd)
    if fn is None:
        print("unknown subcommand %s" % cmd, file=sys.stderr)
        return 2
    return fn(argv)


if __name__ == "__main__":
    sys.exit(main())
