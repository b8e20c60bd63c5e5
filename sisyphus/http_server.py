"""The manager's status page (``sis manager --http PORT``): a small read-only web view.

``/`` is an HTML table of every job of the graph with its state, current task, visual name
(``Job.set_vis_name``) and aliases, refreshed every 10 s; ``/json`` is the same as JSON
(``{"jobs": [{"id", "state", "task", "vis_name", "aliases"}], "summary": {state: count}}``).
The server runs in a daemon thread of the manager and reads the state of the last manager pass.
"""

from __future__ import annotations

import html
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _rows(manager: Any) -> list[dict[str, Any]]:
    rows = []
    for job_id, (job, state, task) in sorted(manager.last_states_by_job.items()):
        rows.append(
            {
                "id": job_id,
                "state": state,
                "task": task,
                "vis_name": job.get_vis_name(),
                "aliases": sorted(job.get_aliases() or ()),
            }
        )
    return rows


def object_to_html(obj: Any) -> str:
    """An escaped HTML rendering of ``obj`` (i6_core imports this name)."""
    return f"<pre>{html.escape(str(obj))}</pre>"


class StatusServer:
    """Serves the manager's state on ``host:port`` (port 0: a free port, see ``.port``)."""

    def __init__(self, manager: Any, port: int, host: str = "127.0.0.1") -> None:
        self.manager = manager

        class Handler(BaseHTTPRequestHandler):
            def do_GET(handler) -> None:  # noqa: N805 - the handler instance
                rows = _rows(manager)
                summary = dict(Counter(r["state"] for r in rows))
                if handler.path.split("?")[0] == "/json":
                    body = json.dumps({"jobs": rows, "summary": summary}).encode()
                    ctype = "application/json"
                elif handler.path.split("?")[0] == "/":
                    body = _page(rows, summary).encode()
                    ctype = "text/html; charset=utf-8"
                else:
                    handler.send_error(404)
                    return
                handler.send_response(200)
                handler.send_header("Content-Type", ctype)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args: Any) -> None:  # noqa: N805
                pass  # no request log on the manager's output

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="sis-http", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _page(rows: list[dict[str, Any]], summary: dict[str, int]) -> str:
    esc = html.escape
    head = " ".join(f"{esc(state)}({n})" for state, n in sorted(summary.items()))
    lines = [
        "<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='10'>",
        "<title>sisyphus manager</title></head><body>",
        f"<h1>sisyphus manager</h1><p>{esc(head)}</p>",
        "<table border='1'><tr><th>job</th><th>state</th><th>task</th><th>name</th><th>aliases</th></tr>",
    ]
    for r in rows:
        lines.append(
            f"<tr><td>{esc(r['id'])}</td><td class='{esc(r['state'])}'>{esc(r['state'])}</td>"
            f"<td>{esc(r['task'])}</td><td>{esc(r['vis_name'] or '')}</td><td>{esc(', '.join(r['aliases']))}</td></tr>"
        )
    lines.append("</table></body></html>")
    return "\n".join(lines)
