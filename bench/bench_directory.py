"""A large directory through the real CLI: ``ptt user list --json`` of 100,000 users and
``ptt group show --json`` of a 5,000-member group, against a real ``ptt server`` on loopback.

The users are written into a fresh store before the server starts, all with one credential
(no one logs in as them: only the directory's size matters here). Prints the wall time of each
command (process start included), the size of its JSON output and the rows in it.

    .venv/bin/python bench/bench_directory.py --users 100000 --members 5000
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ptt.protocol import auth
from ptt.server.store import Store

PTT = str(Path(sys.executable).with_name("ptt"))


def make_directory(db: Path, users: int, members: int) -> list[str]:
    store = Store(db)
    names = [f"volunteer-{i:06d}" for i in range(users)]
    try:
        token = auth.new_token(secrets.token_bytes(auth.TOKEN_BYTES))
        creds = auth.make_credentials(token, secrets.token_bytes(auth.SALT_SIZE),
                                      auth.MIN_ITERATIONS)
        for name in names:
            store.add_user(name, "volunteer", creds.salt, creds.iterations, creds.verifier)
        store.create_group("everyone", encrypted=False)
        store.change_members("everyone", add=names[:members])
    finally:
        store.close()
    return names


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=True)
    return time.perf_counter() - t0, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--members", type=int, default=5_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = root / "db" / "ptt.db"
        db.parent.mkdir()
        t0 = time.perf_counter()
        # the first start makes the coordinator; the directory is added with the server stopped
        port = 20000 + os.getpid() % 20000
        env = {**os.environ, "HOME": str(root), "PTT_CONFIG": str(root / "client.toml")}
        for attempt in range(2):
            log = root / f"server{attempt}.log"
            with open(log, "wb") as out:
                server = subprocess.Popen([PTT, "server", "--port", str(port), "--db", str(db)],
                                          stdout=out, stderr=out, env=env)
            deadline = time.monotonic() + 120
            while b"listening on" not in log.read_bytes():
                if time.monotonic() > deadline or server.poll() is not None:
                    server.kill()
                    raise RuntimeError(log.read_text())
                time.sleep(0.05)
            if attempt == 1:
                break
            server.terminate()
            server.wait(10)
            make_directory(db, args.users, args.members)
        setup = time.perf_counter() - t0
        try:
            subprocess.run([PTT, "login", "--credentials", str(db.parent / "coordinator.toml")],
                           env=env, check=True, capture_output=True, timeout=60)
            t_list, listed = timed([PTT, "user", "list", "--json"], env)
            t_show, shown = timed([PTT, "group", "show", "everyone", "--json"], env)
        except subprocess.CalledProcessError as exc:
            print(exc.stderr, log.read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
    users = json.loads(listed)
    rows = len(users["users"] if isinstance(users, dict) else users)
    members = len(json.loads(shown)["members"])
    print(f"setup_s={setup:.1f}  user_list_s={t_list:.2f}  user_list_rows={rows}  "
          f"user_list_json_bytes={len(listed)}  group_show_s={t_show:.2f}  "
          f"group_show_members={members}  group_show_json_bytes={len(shown)}", flush=True)


if __name__ == "__main__":
    main()
