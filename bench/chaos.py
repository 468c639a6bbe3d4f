#!/usr/bin/env python3
"""The chaos run's driver (bench/chaos.sh starts it; docs/testing.md, "Chaos run").

Starts on loopback: the Dataverse simulator (the source, with registered asynchronous steps
that post webhooks with Dataverse's one-retry rule and leave failed system jobs for lost ones),
the ERP simulator, PostgreSQL, ClickHouse and dvrouter (lake, SQLite, PostgreSQL, ClickHouse,
ERP for salesorder Creates, the Dataverse write-back of the ERP's statuses, reconciliation every
10 s). Load runs throughout as changes posted to the simulator; a fault schedule drawn from a
seed runs during the chaos phase; then a quiet phase waits until every check holds or a deadline
passes, and the checks are printed as one table. Exit status 0 only when every check holds.

Python 3 standard library only. Every process it starts is written to <work>/pids (one PID a
line) so that bench/chaos.sh can stop what is left if this driver dies; the driver itself stops
them on exit, by PID.
"""

import argparse
import glob
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import ports  # bench/ports.py, beside this script

APP_USER = "9f3c1d2e-0000-4000-8000-00000000a001"
DV_SECRET = "chaos-s3cret"
WEBHOOK_KEY = "chaos-webhook-key"
# The tables the load changes, how many live rows each keeps, and the columns it writes (the
# columns the checks compare: the write-back's own columns and ownerid are not mirrored).
TABLES = {
    "account": {"rows": 800, "columns": ["name", "revenue", "numberofemployees", "description"]},
    "contact": {"rows": 800, "columns": ["firstname", "lastname", "emailaddress1", "jobtitle"]},
    "salesorder": {"rows": 400, "columns": ["name", "totalamount", "description"]},
}
STATUS_COMPLETED, STATUS_FAILED = 3, 4
# The faults the schedule draws from, each with the component it disturbs (one fault at a time
# per component).
COMPONENT = {"router_kill": "router", "pg_kill": "pg", "pg_stop": "pg", "ch_stop": "ch",
             "erp_outage": "erp", "erp_429": "erp", "erp_latency": "erp", "erp_async": "erp",
             "dv_throttle": "dv", "dv_outage": "dv", "duplicates": "sender", "resend": "sender"}


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


_ports_given = set()


def free_port():
    """A free loopback port outside the ephemeral range, never one this run handed out before
    (bench/ports.py): two servers were once started on one port, and the second one's URL
    reached the first."""
    return ports.free_port(_ports_given)


def http(method, url, body=None, headers=None, timeout=30):
    """(status, body text); status 0 when the server cannot be reached."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def wait_for(what, cond, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


class Processes:
    """Children by name, each started in its own process group and recorded in the PID file."""

    def __init__(self, work):
        self.work = work
        self.procs = {}
        self.pid_file = os.path.join(work, "pids")

    def start(self, name, argv, log_name=None, env=None, user=None):
        out = open(os.path.join(self.work, (log_name or name) + ".log"), "ab")
        preexec = None
        if user is not None:
            import pwd
            pw = pwd.getpwnam(user)

            def preexec():
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                             preexec_fn=preexec, start_new_session=True)
        out.close()
        self.procs[name] = p
        with open(self.pid_file, "a") as f:
            f.write(f"{p.pid}\n")
        return p

    def alive(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def send(self, name, sig):
        p = self.procs.get(name)
        if p is not None and p.poll() is None:
            os.kill(p.pid, sig)

    def wait(self, name, timeout):
        p = self.procs.get(name)
        if p is None:
            return True
        try:
            p.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, name, sig=signal.SIGTERM, timeout=30):
        if not self.alive(name):
            return
        self.send(name, sig)
        if not self.wait(name, timeout):
            self.send(name, signal.SIGKILL)
            self.wait(name, 10)

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name, timeout=20)


def children_of(pid):
    """PIDs whose parent is `pid` (PostgreSQL's backends)."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(stat.split("/")[2]))
        except (OSError, IndexError, ValueError):
            pass
    return out


class Postgres:
    def __init__(self, procs, work):
        self.procs, self.work = procs, work
        self.port = free_port()
        self.dir = os.path.join(work, "pg")
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: int(p.split("/")[4]))
        if not bins:
            raise RuntimeError("no PostgreSQL (Debian package postgresql)")
        self.bin = bins[-1]
        self.user = "postgres" if os.getuid() == 0 else None
        os.makedirs(self.dir)
        if self.user:
            shutil.chown(self.dir, self.user, self.user)
        subprocess.run(self.as_user([f"{self.bin}/initdb", "-D", f"{self.dir}/data", "-U",
                                     "dvrouter", "--auth=trust", "-E", "UTF8", "--no-locale",
                                     "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def as_user(self, argv):
        if not self.user:
            return argv
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"] + argv

    def start(self):
        self.procs.start("postgres", [f"{self.bin}/postgres", "-D", f"{self.dir}/data", "-p",
                                      str(self.port), "-k", self.dir, "-c",
                                      "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                         user=self.user)
        wait_for("PostgreSQL", lambda: self.psql("postgres", "SELECT 1", check=False) == "1", 60)

    def psql(self, db, sql, check=True):
        r = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "dvrouter",
                            "-d", db, "-Atc", sql], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()}")
        return r.stdout.strip()

    def kill9(self):
        """kill -9 the postmaster and its backends (a crash: recovery runs at the next start)."""
        p = self.procs.procs["postgres"]
        kids = children_of(p.pid)
        self.procs.send("postgres", signal.SIGKILL)
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.procs.wait("postgres", 10)
        wait_for("PostgreSQL's backends to exit", lambda: not any(
            os.path.exists(f"/proc/{k}") and not open(f"/proc/{k}/stat").read().split()[2] == "Z"
            for k in kids), 30)

    def stop(self):
        # SIGINT: PostgreSQL's fast shutdown.
        self.procs.stop("postgres", signal.SIGINT, timeout=60)


class ClickHouse:
    def __init__(self, procs, work):
        self.procs, self.work = procs, work
        self.bin = next((b for b in ("/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server")
                         if os.access(b, os.X_OK)), None)
        if not self.bin:
            raise RuntimeError("no clickhouse-server (Debian package clickhouse-server)")
        self.port, tcp = free_port(), free_port()
        d = self.dir = os.path.join(work, "ch")
        os.makedirs(d)
        with open(f"{d}/config.xml", "w") as f:
            f.write(f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <http_port>{self.port}</http_port><tcp_port>{tcp}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <mark_cache_size>5368709</mark_cache_size>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile><default_database>default</default_database>
</yandex>
""")
        with open(f"{d}/users.xml", "w") as f:
            f.write("""<?xml version="1.0"?>
<yandex><profiles><default></default></profiles>
<users><default><password></password><networks><ip>127.0.0.1</ip></networks>
<profile>default</profile><quota>default</quota></default></users>
<quotas><default></default></quotas></yandex>
""")

    def start(self):
        self.procs.start("clickhouse", [self.bin, f"--config-file={self.dir}/config.xml"])
        wait_for("ClickHouse", lambda: http("GET", f"http://127.0.0.1:{self.port}/ping")[0] == 200,
                 120, 0.2)

    def stop(self):
        self.procs.stop("clickhouse", signal.SIGTERM, timeout=60)

    def query(self, sql):
        status, body = http("POST", f"http://127.0.0.1:{self.port}/", sql, timeout=120)
        if status != 200:
            raise RuntimeError(f"ClickHouse {status}: {body[:300]}")
        return body


class Sim:
    def __init__(self, url):
        self.url = url

    def control(self, query):
        status, body = http("POST", f"{self.url}/_control?{query}", "")
        if status != 200:
            log(f"control {query} on {self.url}: {status} {body[:200]}")

    def get_json(self, path):
        status, body = http("GET", self.url + path, timeout=120)
        if status != 200:
            raise RuntimeError(f"GET {self.url}{path}: {status} {body[:200]}")
        return json.loads(body)


class Load(threading.Thread):
    """Changes posted to the Dataverse simulator at `rate` per second, in batches every 100 ms,
    with bursts: creates, updates of one or two columns, deletes and assigns over ~2,000 rows.
    Each salesorder create that `rejects` picks is refused by the ERP (a permanent 400)."""

    def __init__(self, rng, rate, dv, erp, reject_share):
        super().__init__(daemon=True)
        self.rng, self.rate, self.dv, self.erp = rng, rate, dv, erp
        self.reject_share = reject_share
        self.live = {t: [] for t in TABLES}
        self.next_id = {t: 0 for t in TABLES}
        self.stop_flag = threading.Event()
        self.burst_until = 0
        self.changes = self.posts = self.post_errors = 0
        self.delivered = self.failed_jobs = 0
        self.rejected = set()
        self.lock = threading.Lock()

    def new_id(self, table):
        n = self.next_id[table]
        self.next_id[table] += 1
        kind = {"account": 0xacc, "contact": 0xc0c, "salesorder": 0x5a1e}[table]
        return "%08x-0000-4000-8000-%012d" % (kind, n)

    def value(self, table, column):
        r = self.rng
        if column in ("revenue", "numberofemployees", "totalamount"):
            return r.randint(0, 10_000_000)
        return f"{column} {r.randint(0, 1 << 30):x}"

    def change(self):
        r = self.rng
        table = r.choices(list(TABLES), weights=[4, 4, 2])[0]
        live, want = self.live[table], TABLES[table]["rows"]
        x = r.random()
        if not live or (len(live) < want and x < 0.5) or x < 0.02:
            row = self.new_id(table)
            live.append(row)
            cols = {c: self.value(table, c) for c in TABLES[table]["columns"]}
            if table == "salesorder" and r.random() < self.reject_share:
                self.rejected.add(row)
                self.erp.control("reject=" + row)
            return {"op": "create", "table": table, "id": row, "columns": cols}
        i = r.randrange(len(live))
        row = live[i]
        if x < 0.035 and len(live) > want // 2:
            live[i] = live[-1]
            live.pop()
            return {"op": "delete", "table": table, "id": row}
        if x < 0.065:
            owner = "%08x-0000-4000-8000-%012d" % (0x5e5, r.randrange(5))
            return {"op": "assign", "table": table, "id": row, "columns": {
                "ownerid": {"@odata.type": "EntityReference", "id": owner,
                            "logicalname": "systemuser"}}}
        cols = r.sample(TABLES[table]["columns"], r.randint(1, 2))
        return {"op": "update", "table": table, "id": row,
                "columns": {c: self.value(table, c) for c in cols}}

    def post(self, n):
        with self.lock:
            batch = [self.change() for _ in range(n)]
        status, body = http("POST", self.dv.url + "/_changes", json.dumps(batch), timeout=600)
        self.posts += 1
        if status != 200:
            self.post_errors += 1
            log(f"POST /_changes: {status} {body[:200]}")
            return
        a = json.loads(body)
        self.changes += a["changes"]
        self.delivered += a["delivered"]
        self.failed_jobs += a["failed_jobs"]

    def seed_rows(self):
        """The initial rows, created before the faults start."""
        while any(len(self.live[t]) < TABLES[t]["rows"] for t in TABLES):
            batch = []
            with self.lock:
                for t in TABLES:
                    for _ in range(min(100, TABLES[t]["rows"] - len(self.live[t]))):
                        row = self.new_id(t)
                        self.live[t].append(row)
                        batch.append({"op": "create", "table": t, "id": row, "columns": {
                            c: self.value(t, c) for c in TABLES[t]["columns"]}})
            status, body = http("POST", self.dv.url + "/_changes", json.dumps(batch), timeout=600)
            if status != 200:
                raise RuntimeError(f"seeding rows: {status} {body[:200]}")
            a = json.loads(body)
            self.changes += a["changes"]
            self.delivered += a["delivered"]
            self.failed_jobs += a["failed_jobs"]

    def run(self):
        start = time.monotonic()
        sent = 0
        while not self.stop_flag.is_set():
            now = time.monotonic()
            if now >= self.burst_until and self.rng.random() < 0.01:
                self.burst_until = now + self.rng.uniform(2, 5)  # a burst: 3x the rate
            rate = self.rate * (3 if now < self.burst_until else 1)
            due = sent + rate * 0.1
            n = max(1, min(int(due - sent), 2000))
            self.post(n)
            sent += n
            # Open loop within reason: a slow simulator delays the next batch, bursts refill.
            sleep = start + (self.posts * 0.1) - time.monotonic()
            if sleep > 0:
                self.stop_flag.wait(sleep)
            else:
                start = time.monotonic() - self.posts * 0.1

    def stop(self):
        self.stop_flag.set()
        self.join()


class Chaos:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(self.seed)
        self.work = args.work
        self.bin = args.build
        self.procs = Processes(self.work)
        self.fault_log = []
        self.router_runs = 0
        self.resent = self.resent_duplicates = 0

    # ---------------------------------------------------------------- setup
    def setup(self):
        w = self.work
        self.erp_port, self.dv_port = free_port(), free_port()
        self.procs.start("erp", [f"{self.bin}/tests/dvrouter-erp-sim", "--listen",
                                 f"127.0.0.1:{self.erp_port}"])
        self.procs.start("dataverse", [
            f"{self.bin}/tests/dvrouter-dataverse-sim", "--listen", f"127.0.0.1:{self.dv_port}",
            "--client", "dvrouter:" + DV_SECRET, "--app-user", APP_USER,
            "--tables", "account,contact,salesorder", "--webhook-timeout-ms", "5000",
            "--acked-log", f"{w}/acked.log"])
        self.erp = Sim(f"http://127.0.0.1:{self.erp_port}")
        self.dv = Sim(f"http://127.0.0.1:{self.dv_port}")
        for s in (self.erp, self.dv):
            wait_for(s.url, lambda s=s: http("GET", s.url + "/_stats")[0] == 200, 30)
        self.pg = Postgres(self.procs, w)
        self.pg.start()
        self.pg.psql("postgres", "CREATE DATABASE dvrouter")
        self.ch = ClickHouse(self.procs, w)
        self.ch.start()
        self.port, self.admin = free_port(), free_port()
        self.write_config()
        env = dict(os.environ, DVROUTER_CHAOS_KEY=WEBHOOK_KEY, DVROUTER_CHAOS_SECRET=DV_SECRET)
        self.env = env
        r = subprocess.run([f"{self.bin}/dvrouter", "register", "-c", f"{w}/router.yaml"],
                           env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("dvrouter register: " + r.stdout + r.stderr)
        self.start_router()

    def write_config(self):
        w, dv = self.work, self.dv.url
        cols = {t: TABLES[t]["columns"] for t in TABLES}
        with open(f"{w}/router.yaml", "w") as f:
            f.write(f"""# The chaos run's router (bench/chaos.py).
ingress:
  listen: 127.0.0.1:{self.port}
  auth: {{mode: webhook_key, secret: "${{DVROUTER_CHAOS_KEY}}"}}
admin:
  listen: 127.0.0.1:{self.admin}
journal:
  data_dir: {w}/data
  partitions: 8
adapters:
  lake:
    type: lake
    dir: {w}/lake
    roll_interval: 1s
  mirror:
    type: sqlite
    path: {w}/mirror.db
    table_prefix: crm_
  pg:
    type: postgres
    host: 127.0.0.1
    port: {self.pg.port}
    dbname: dvrouter
    user: dvrouter
    sslmode: disable
    table_prefix: crm_
    retry: {{max_backoff: 5s}}
  ch:
    type: clickhouse
    url: http://127.0.0.1:{self.ch.port}
    batch: {{linger: 500ms}}
    retry: {{max_backoff: 5s}}
  erp:
    type: erp
    base_url: {self.erp.url}
    request_timeout: 10s
    retry: {{max_backoff: 5s}}
    requests:
      - path: /api/orders
        body: '{{"crm_id": {{{{header.row_id}}}}, "seq": {{{{event.seq}}}}}}'
        capture: {{order_number: /orderNumber}}
    async:
      poll: {{url_pointer: /statusUrl, interval: 1s}}
  crm:
    type: dataverse
    source: erp
    url: {dv}
    auth: {{token_url: {dv}/tenant/oauth2/v2.0/token, client_id: dvrouter,
            client_secret: "${{DVROUTER_CHAOS_SECRET}}"}}
    status_column: new_integrationstatus
    status_values: {{completed: {STATUS_COMPLETED}, failed: {STATUS_FAILED}}}
    error_column: new_integrationerror
    answer_columns: {{new_erpordernumber: order_number}}
    max_requests_per_second: 50
    retry: {{max_backoff: 5s}}
loop_guard:
  user_ids: [{APP_USER}]
  ignore_columns: [new_integrationstatus, new_integrationerror, new_erpordernumber]
routes:
  - {{tables: [account, contact, salesorder], adapters: [lake, mirror, pg, ch]}}
  - {{tables: [salesorder], messages: [Create], adapters: [erp]}}
registration:
  dataverse: crm
  endpoint_name: dvrouter-chaos
  webhook_url: http://127.0.0.1:{self.port}/webhooks/dataverse
  steps:
    - {{table: account, messages: [Create, Delete, Assign]}}
    - {{table: account, messages: [Update], filtering_attributes: [{", ".join(cols["account"])}]}}
    - {{table: contact, messages: [Create, Delete, Assign]}}
    - {{table: contact, messages: [Update], filtering_attributes: [{", ".join(cols["contact"])}]}}
    - {{table: salesorder, messages: [Create, Delete, Assign]}}
    - {{table: salesorder, messages: [Update],
        filtering_attributes: [{", ".join(cols["salesorder"])}]}}
reconcile:
  interval: 10s
  max_requests_per_second: 100
  failed_jobs: {{lookback: 1h}}
""")

    def start_router(self):
        self.router_runs += 1
        self.procs.start("router", [f"{self.bin}/dvrouter", "serve", "-c",
                                    f"{self.work}/router.yaml"], env=self.env)
        wait_for("the router's /readyz",
                 lambda: http("GET", f"http://127.0.0.1:{self.admin}/readyz", timeout=2)[0] == 200,
                 120)

    def admin_json(self, path):
        status, body = http("GET", f"http://127.0.0.1:{self.admin}{path}", timeout=60)
        if status != 200:
            raise RuntimeError(f"admin {path}: {status} {body[:200]}")
        return json.loads(body)

    # ---------------------------------------------------------------- faults
    # Each fault: (component it disturbs, how long it lasts at most, start, heal). The schedule
    # is drawn from the seed before the run: the same seed gives the same schedule.
    def schedule(self, chaos_s):
        r = random.Random(self.seed * 7919 + 1)
        gap_min, gap_max = self.args.gap
        cap = max(10.0, chaos_s * 0.3)  # no outage longer than 30% of the chaos phase
        kinds = list(COMPONENT)
        component = COMPONENT
        busy = {}
        out = []
        t = r.uniform(gap_min, gap_max) / 2
        while t < chaos_s - 5:
            # The router's crash is the fault that loses webhooks at the source: drawn 3 times as
            # often as each other one.
            kind = r.choices(kinds, weights=[3 if k == "router_kill" else 1 for k in kinds])[0]
            c = component[kind]
            if busy.get(c, 0) > t:
                kind = r.choice([k for k in kinds if busy.get(component[k], 0) <= t] or [None])
                c = component.get(kind)
            if kind is not None:
                p = {}
                if kind == "router_kill":
                    p["down_s"] = round(r.uniform(0, 20), 1)
                elif kind == "pg_kill":
                    p["down_s"] = round(r.uniform(0, 10), 1)
                elif kind == "pg_stop":
                    p["down_s"] = round(min(cap, r.uniform(60, 180)), 1)
                elif kind == "ch_stop":
                    p["down_s"] = round(min(cap, r.uniform(10, 60)), 1)
                elif kind in ("erp_outage", "dv_outage", "erp_latency"):
                    p["down_s"] = round(min(cap, r.uniform(10, 60)), 1)
                elif kind == "erp_async":
                    p["down_s"] = round(min(cap, r.uniform(20, 90)), 1)
                    p["job_ms"] = r.randint(500, 5000)
                elif kind == "erp_429":
                    # Every caller waits out each 429: N of them hold the ERP for N x S / (calls
                    # in flight) seconds.
                    p["count"], p["retry_after"] = r.randint(50, 300), r.randint(1, 5)
                elif kind == "dv_throttle":
                    # The write-back and reconciliation call one at a time or nearly: N 429s
                    # hold them for up to N x S seconds.
                    p["count"], p["retry_after"] = r.randint(3, 30), r.randint(1, 5)
                elif kind == "duplicates":
                    p["count"] = r.randint(5, 50)
                elif kind == "resend":
                    p["count"] = r.randint(10, 100)
                # A component is left alone until its last fault healed (and the router has
                # been up again for a while).
                busy[c] = t + p.get("down_s", 0) + 5
                out.append((round(t, 1), kind, p))
            t += r.uniform(gap_min, gap_max)
        return out

    def run_fault(self, kind, p):
        """Starts one fault; returns its heal function (None when it heals itself)."""
        if kind == "router_kill":
            self.procs.send("router", signal.SIGKILL)
            self.procs.wait("router", 30)
            return lambda: self.start_router()
        if kind == "pg_kill":
            self.pg.kill9()
            return lambda: self.pg.start()
        if kind == "pg_stop":
            self.pg.stop()
            return lambda: self.pg.start()
        if kind == "ch_stop":
            self.ch.stop()
            return lambda: self.ch.start()
        if kind == "erp_outage":
            self.erp.control("outage=1")
            return lambda: self.erp.control("outage=0")
        if kind == "erp_latency":
            self.erp.control("latency_ms=5000")
            return lambda: self.erp.control("latency_ms=0")
        if kind == "erp_async":
            self.erp.control(f"async=1&job_ms={p['job_ms']}")
            return lambda: self.erp.control("async=0")
        if kind == "erp_429":
            self.erp.control(f"ratelimit={p['count']}&retry_after={p['retry_after']}")
            return None
        if kind == "dv_outage":
            self.dv.control("outage=1")
            return lambda: self.dv.control("outage=0")
        if kind == "dv_throttle":
            self.dv.control(f"throttle={p['count']}&retry_after={p['retry_after']}")
            return None
        if kind == "duplicates":
            # The router answers, the simulator records a timeout: a failed job for an event the
            # router has, which reconciliation must find to be a duplicate.
            self.dv.control(f"ack_lost={p['count']}")
            return None
        if kind == "resend":
            self.resend(p["count"])
            return None
        raise ValueError(kind)

    def resend(self, count):
        """Posts again, as the sender would, bodies of webhooks the router already acknowledged
        (read back from its journal through the admin API): each must be a duplicate."""
        try:
            with open(f"{self.work}/acked.log") as f:
                ids = [line.strip() for line in f if line.strip()]
        except OSError:
            return
        r = random.Random(self.seed + len(ids))
        for event_id in r.sample(ids, min(count, len(ids))):
            status, body = http("GET", f"http://127.0.0.1:{self.admin}/events/{event_id}?record=1")
            if status != 200:
                continue
            record = json.loads(body).get("record", {})
            payload = record.get("body")
            if not isinstance(payload, str):
                continue
            status, answer = http("POST", f"http://127.0.0.1:{self.port}/webhooks/dataverse?code="
                                  + WEBHOOK_KEY, payload, {"Content-Type": "application/json"})
            if status == 200:
                self.resent += 1
                self.resent_duplicates += '"status":"duplicate"' in answer

    def chaos_phase(self, chaos_s):
        plan = self.schedule(chaos_s)
        with open(f"{self.work}/schedule.json", "w") as f:
            json.dump(plan, f)
        counts = {}
        for _, kind, _ in plan:
            counts[kind] = counts.get(kind, 0) + 1
        log(f"fault schedule (seed {self.seed}): {len(plan)} faults: " +
            ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        self.plan_counts = counts
        start = time.monotonic()
        heals = []  # (due, kind, heal)
        i = 0
        while i < len(plan) or heals:
            now = time.monotonic() - start
            heals.sort(key=lambda h: h[0])
            if heals and heals[0][0] <= now:
                _, kind, heal = heals.pop(0)
                log(f"heal {kind}")
                heal()
                self.last_heal = time.monotonic()
                continue
            # A fault waits while an earlier one still holds its component (a heal that took long,
            # e.g. ClickHouse starting, delays the rest of the schedule, never overlaps it).
            if (i < len(plan) and plan[i][0] <= now and
                    not any(COMPONENT[h[1]] == COMPONENT[plan[i][1]] for h in heals)):
                t, kind, p = plan[i]
                i += 1
                log(f"fault {kind} {p}")
                heal = self.run_fault(kind, p)
                self.fault_log.append((t, kind, p))
                self.last_heal = time.monotonic()
                if heal is not None:
                    heals.append((now + p.get("down_s", 0), kind, heal))
                continue
            nxt = min([h[0] for h in heals] + ([plan[i][0]] if i < len(plan) else []))
            time.sleep(min(1.0, max(0.1, nxt - now)))
        # The load goes on until the end of the chaos phase; then the 429s not yet given out
        # are called off, so that the quiet phase starts with every fault over.
        left = chaos_s - (time.monotonic() - start)
        if left > 0:
            time.sleep(left)
        self.erp.control("ratelimit=0")
        self.dv.control("throttle=0&ack_lost=0")

    # ---------------------------------------------------------------- checks
    def expected_rows(self):
        """{table: {id: {column: value} or None (deleted)}} as the simulator holds them."""
        want = {}
        for table in TABLES:
            rows = {}
            for row in self.dv.get_json(f"/_rows?set={table}s")["value"]:
                rows[row[table + "id"]] = row
            for d in self.dv.get_json(f"/_deleted?set={table}s")["value"]:
                rows[d["id"]] = None
            want[table] = rows
        return want

    @staticmethod
    def compare_mirror(want, got):
        """Rows that differ, column for column over the load's columns (deleted marked)."""
        bad = []
        for table, rows in want.items():
            mirror = got.get(table, {})
            for row_id, row in rows.items():
                m = mirror.get(row_id)
                if m is None:
                    bad.append(f"{table} {row_id}: missing")
                    continue
                attrs, deleted = m
                if row is None:
                    if not deleted:
                        bad.append(f"{table} {row_id}: deleted in the CRM, not in the mirror")
                    continue
                if deleted:
                    bad.append(f"{table} {row_id}: marked deleted, the CRM has it")
                    continue
                for c in TABLES[table]["columns"]:
                    if attrs.get(c) != row.get(c):
                        bad.append(f"{table} {row_id}.{c}: {attrs.get(c)!r} != {row.get(c)!r}")
            for row_id in mirror:
                if row_id not in rows:
                    bad.append(f"{table} {row_id}: not in the CRM")
        return bad

    def sqlite_rows(self):
        got = {}
        db = sqlite3.connect(f"file:{self.work}/mirror.db?mode=ro", uri=True, timeout=10)
        try:
            for table in TABLES:
                try:
                    cur = db.execute(f"SELECT id, attributes, deleted FROM crm_{table}")
                except sqlite3.OperationalError:
                    continue
                got[table] = {i: (json.loads(a), bool(d)) for i, a, d in cur}
        finally:
            db.close()
        return got

    def pg_rows(self):
        got = {}
        for table in TABLES:
            out = self.pg.psql("dvrouter", f"SELECT json_build_object('id', id, 'a', attributes, "
                               f"'d', deleted) FROM crm_{table}", check=False)
            got[table] = {}
            for line in out.splitlines():
                r = json.loads(line)
                got[table][r["id"]] = (r["a"], r["d"])
        return got

    def journal_events(self):
        """Event ids of the journal's events (status records left out)."""
        r = subprocess.run([f"{self.bin}/dvrouter", "journal", "--data-dir", f"{self.work}/data"],
                           capture_output=True, text=True, check=True)
        ids = set()
        for line in r.stdout.splitlines():
            rec = json.loads(line)
            if not rec.get("status_record"):
                ids.add(rec["event_id"])
        return ids

    def lake_events(self):
        ids = set()
        for path in glob.glob(f"{self.work}/lake/*/*/part-*.jsonl"):
            with open(path) as f:
                for line in f:
                    ids.add(json.loads(line)["event_id"])
        return ids

    def ch_events(self):
        out = self.ch.query("SELECT DISTINCT event_id FROM dvrouter_events FORMAT TSV")
        return set(out.split())

    def orders_check(self, want):
        """(duplicates, missing, status problems) of the salesorders."""
        orders = self.erp.get_json("/_orders")
        dup = [f"{k}: {len(v)} orders {v}" for k, v in orders.items() if len(v) > 1]
        rows = want["salesorder"]
        unknown = [k for k in orders if k not in rows]
        missing, status_bad = [], []
        dlq_rows = set()
        for e in self.admin_json("/dlq?adapter=erp&all=1"):
            if e.get("last_error"):  # the entry says why
                dlq_rows.add(e["row_id"])
        completed = failed = 0
        for row_id, row in rows.items():
            if row is None:
                continue
            numbers = orders.get(row_id, [])
            st = row.get("new_integrationstatus")
            if row_id in self.load.rejected:
                if numbers:
                    status_bad.append(f"{row_id}: refused by the ERP, yet ordered {numbers}")
                elif st != STATUS_FAILED or not row.get("new_integrationerror"):
                    status_bad.append(f"{row_id}: refused, the CRM shows status {st!r} "
                                      f"error {row.get('new_integrationerror')!r}")
                elif row_id not in dlq_rows:
                    status_bad.append(f"{row_id}: Failed without a DLQ entry")
                else:
                    failed += 1
                continue
            if len(numbers) != 1:
                missing.append(f"{row_id}: {len(numbers)} orders")
            elif st != STATUS_COMPLETED or row.get("new_erpordernumber") != numbers[0]:
                status_bad.append(f"{row_id}: CRM shows status {st!r} order "
                                  f"{row.get('new_erpordernumber')!r}, ERP {numbers[0]}")
            else:
                completed += 1
        return dup, unknown, missing, status_bad, completed, failed, len(orders)

    def checks(self):
        """[(name, value text, ok, details)]: the full set, run until all hold."""
        res = []
        want = self.expected_rows()
        n_rows = sum(len(v) for v in want.values())
        n_deleted = sum(1 for v in want.values() for r in v.values() if r is None)
        for name, rows in (("PostgreSQL rows = CRM rows", self.pg_rows),
                           ("SQLite rows = CRM rows", self.sqlite_rows)):
            try:
                bad = self.compare_mirror(want, rows())
            except Exception as e:  # a sink still down counts as not converged
                bad = [f"cannot read: {e}"]
            rows_bad = min(n_rows, len({d.split(":")[0].split(".")[0] for d in bad}))
            res.append((name, f"{n_rows - rows_bad} of {n_rows} equal ({n_deleted} deleted)",
                        not bad, bad))
        journal = self.journal_events()
        try:
            ch = self.ch_events()
        except Exception as e:
            ch = set()
            res.append(("ClickHouse reachable", str(e)[:80], False, [str(e)]))
        lake = self.lake_events()
        res.append(("ClickHouse distinct event_id = journal events",
                    f"{len(ch)} / {len(journal)}", bool(journal) and ch == journal,
                    [f"missing {i}" for i in list(journal - ch)[:20]] +
                    [f"not journaled {i}" for i in list(ch - journal)[:20]]))
        res.append(("lake events = journal events", f"{len(lake)} / {len(journal)}",
                    lake == journal,
                    [f"missing {i}" for i in list(journal - lake)[:20]] +
                    [f"not journaled {i}" for i in list(lake - journal)[:20]]))
        try:
            dup, unknown, missing, status_bad, completed, failed, n_orders = self.orders_check(want)
        except Exception as e:
            dup, unknown, missing, status_bad = [], [], [f"cannot read: {e}"], []
            completed = failed = n_orders = 0
        res.append(("ERP orders per salesorder > 1", f"{len(dup)} of {n_orders}", not dup, dup))
        res.append(("ERP orders for unknown rows", str(len(unknown)), not unknown, unknown))
        res.append(("live salesorders without exactly one order", str(len(missing)), not missing,
                    missing))
        res.append(("salesorders Completed + order no. / Failed + reason + DLQ",
                    f"{completed} completed, {failed} failed, {len(status_bad)} wrong",
                    completed > 0 and not status_bad, status_bad))
        with open(f"{self.work}/acked.log") as f:
            acked = {line.strip() for line in f if line.strip()}
        lost = acked - journal
        # A check over nothing proves nothing: an empty log (the simulator could not write it)
        # fails too.
        res.append(("acknowledged webhooks lost", f"{len(lost)} of {len(acked)}",
                    bool(acked) and not lost,
                    [f"lost {i}" for i in list(lost)[:20]]))
        return res

    def quiet_phase(self, deadline_s):
        """Load stopped, faults healed: runs the checks until all hold or the deadline passes."""
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            res = self.checks()
            failing = [r for r in res if not r[2]]
            elapsed = time.monotonic() - start
            if not failing:
                return res, elapsed
            log(f"quiet phase {elapsed:.0f} s: not yet: " +
                "; ".join(f"{n}: {v}" for n, v, _, _ in failing))
            if elapsed > deadline_s:
                return res, None
            time.sleep(min(15.0, 2.0 + attempt))

    # ---------------------------------------------------------------- run
    def run(self):
        a = self.args
        chaos_s = a.seconds
        log(f"chaos run: seed {self.seed}, {chaos_s:.0f} s of chaos, {a.rate} changes/s, "
            f"work dir {self.work}")
        t0 = time.monotonic()
        self.setup()
        log(f"up in {time.monotonic() - t0:.0f} s: router 127.0.0.1:{self.port} "
            f"(admin {self.admin}), dataverse-sim {self.dv_port}, erp-sim {self.erp_port}, "
            f"postgres {self.pg.port}, clickhouse {self.ch.port}")
        self.load = Load(random.Random(self.seed), a.rate, self.dv, self.erp, a.reject_share)
        self.load.seed_rows()
        self.load.start()
        self.last_heal = time.monotonic()
        self.chaos_phase(chaos_s)
        self.load.stop()
        last_fault_end = self.last_heal
        log(f"chaos phase over: {self.load.changes} changes in {self.load.posts} posts, "
            f"{self.load.delivered} webhooks delivered, {self.load.failed_jobs} failed jobs; "
            f"quiet phase (deadline {a.quiet_max:.0f} s)")
        res, took = self.quiet_phase(a.quiet_max)
        converge_s = time.monotonic() - last_fault_end if took is not None else None
        res.append(("time to converge after the last fault",
                    f"{converge_s:.0f} s" if converge_s is not None else
                    f"> {a.quiet_max:.0f} s (deadline)", converge_s is not None, []))
        self.report(res, converge_s)
        return all(r[2] for r in res)

    def stats(self):
        out = {}
        try:
            runs = self.admin_json("/reconcile")["runs"]
            out["Reconciliation (the last router's runs)"] = ", ".join(
                f"{k} {sum(r.get(k, 0) for r in runs)}" for k in (
                    "failed_jobs_found", "events_journaled", "already_seen", "deletes",
                    "throttled", "errors")) + f" in {len(runs)} runs"
        except Exception:
            pass
        try:
            dead = []
            for adapter in ("lake", "mirror", "pg", "ch", "erp", "crm"):
                entries = self.admin_json(f"/dlq?adapter={adapter}")
                if entries:
                    example = entries[-1]["last_error"][:120]
                    dead.append(f"{adapter} {len(entries)} (e.g. {example})")
            out["Dead letters"] = "; ".join(dead) or "none"
        except Exception:
            pass
        try:
            erp = self.erp.get_json("/_stats")
            out["ERP"] = ", ".join(f"{k} {erp[k]}" for k in ("requests", "created", "duplicates",
                                                            "rate_limited", "errors_5xx",
                                                            "rejected", "polls"))
            dv = self.dv.get_json("/_stats")
            out["Dataverse simulator"] = ", ".join(f"{k} {dv[k]}" for k in (
                "webhooks_posted", "webhooks_delivered", "failed_jobs", "patched", "not_found",
                "throttled", "errors_5xx", "requests"))
        except Exception:
            pass
        return out

    def report(self, res, converge_s):
        a = self.args
        lines = []
        lines.append(f"| check | value | holds |")
        lines.append("|---|---|---|")
        for name, value, ok, _ in res:
            lines.append(f"| {name} | {value} | {'yes' if ok else '**NO**'} |")
        table = "\n".join(lines)
        print("\n" + table + "\n", flush=True)
        for name, _, ok, details in res:
            if not ok and details:
                print(f"{name}: first differences:", flush=True)
                for d in details[:10]:
                    print("  " + d, flush=True)
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.plan_counts.items()))
        s = self.stats()
        with open(a.summary, "w") as f:
            f.write(f"- Seed: {self.seed} (replay: `{a.replay}`)\n")
            f.write(f"- Chaos phase: {a.seconds:.0f} s, load {a.rate} changes/s (bursts 3x), "
                    f"{self.load.changes} changes posted, {self.load.delivered} webhooks "
                    f"acknowledged at the source, {self.load.failed_jobs} failed system jobs\n")
            f.write(f"- Faults ({len(self.fault_log)}): {faults}; router started "
                    f"{self.router_runs} times; {self.resent} webhooks resent "
                    f"({self.resent_duplicates} answered duplicate)\n")
            for k, v in s.items():
                f.write(f"- {k}: {v}\n")
            f.write("\n" + table + "\n")
            bad = [(n, d) for n, _, ok, d in res if not ok and d]
            for n, d in bad:
                f.write(f"\n{n}, first differences:\n\n")
                for x in d[:10]:
                    f.write(f"    {x}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, required=True, help="length of the chaos phase")
    ap.add_argument("--replay", default="", help="the command line that replays this run")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--rate", type=int, default=500, help="changes per second")
    ap.add_argument("--gap", type=float, nargs=2, default=[10, 60],
                    help="seconds between two faults, drawn between MIN and MAX")
    ap.add_argument("--quiet-max", type=float, default=600, help="deadline of the quiet phase")
    ap.add_argument("--reject-share", type=float, default=0.02,
                    help="share of salesorders the ERP refuses (Failed in the CRM)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--build", required=True, help="the release build directory")
    ap.add_argument("--summary", required=True, help="where the results (markdown) go")
    args = ap.parse_args()
    chaos = Chaos(args)

    def on_signal(sig, _frame):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, on_signal)
    ok = False
    try:
        ok = chaos.run()
    except KeyboardInterrupt as e:
        log(f"stopped: {e}")
    except Exception as e:
        log(f"chaos run failed: {type(e).__name__}: {e}")
    finally:
        if hasattr(chaos, "load"):
            chaos.load.stop_flag.set()
        chaos.procs.stop_all()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
