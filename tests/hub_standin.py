"""A local stand-in of the Hugging Face Hub's HTTP API: just the endpoints `HfApi.create_repo` and
`HfApi.upload_folder` call (huggingface_hub 1.x/2.x), on a free port of 127.0.0.1. Tests point
HF_ENDPOINT (or huggingface_hub.constants.ENDPOINT) at it; nothing reaches the network.

  POST /api/validate-yaml                       README.md's metadata, checked before the upload
  POST /api/repos/create                        {"name", "organization", ...} -> {"url"}; 409 if it exists
  GET  /api/models/{owner}/{name}               repo_info (create_repo asks it after a 401/403)
  POST /api/models/{owner}/{name}/preupload/{rev}  -> every file "regular" (inline in the commit), so no
                                                 LFS or Xet transfer is needed
  POST /api/models/{owner}/{name}/commit/{rev}  ndjson: a header line, then one {"key": "file"} line per
                                                 file with its base64 content -> {"commitUrl", "commitOid"}

Every request needs `Authorization: Bearer <token>`; another token gets a 401, as the Hub answers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml


class HubStandIn:
    def __init__(self, token: str = "hf_standin_token"):
        self.token = token
        self.repos: dict[str, dict[str, bytes]] = {}  # repo id -> {path: content}
        self.created: list[dict] = []  # create_repo payloads
        self.commits: list[dict] = []  # commit headers
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.validated: list[str] = []  # README.md contents sent to /api/validate-yaml
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "HubStandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status >= 400:
                    self.send_header("X-Error-Message", body.get("error", ""))
                self.end_headers()
                self.wfile.write(data)

            def authorised(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {hub.token}":
                    return True
                self.reply(401, {"error": "Invalid credentials in Authorization header"})
                return False

            def body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self):
                hub.requests.append(("GET", self.path))
                if not self.authorised():
                    return
                found = re.fullmatch(r"/api/models/([^/]+/[^/?]+)(\?.*)?", self.path)
                if found and found.group(1) in hub.repos:
                    return self.reply(200, {"id": found.group(1), "sha": "0" * 40, "siblings": []})
                self.reply(404, {"error": "Repository not found"})

            def do_POST(self):
                hub.requests.append(("POST", self.path))
                data = self.body()
                if not self.authorised():
                    return
                if self.path == "/api/validate-yaml":  # upload_folder sends README.md's metadata first
                    content = json.loads(data)["content"]
                    hub.validated.append(content)
                    front = content.split("---", 2)
                    if not content.startswith("---") or len(front) < 3 or not isinstance(yaml.safe_load(front[1]), dict):
                        return self.reply(400, {"errors": [{"message": "no YAML metadata block"}]})
                    return self.reply(200, {"errors": [], "warnings": []})
                if self.path == "/api/repos/create":
                    payload = json.loads(data)
                    repo = f"{payload['organization']}/{payload['name']}" if payload.get("organization") \
                        else payload["name"]
                    hub.created.append(payload)
                    if repo in hub.repos:
                        return self.reply(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo}"})
                    hub.repos[repo] = {}
                    return self.reply(200, {"url": f"{hub.url}/{repo}", "name": repo})
                found = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/?]+)(\?.*)?", self.path)
                if not found or found.group(1) not in hub.repos:
                    return self.reply(404, {"error": "Repository not found"})
                repo, action = found.group(1), found.group(2)
                if action == "preupload":
                    files = json.loads(data)["files"]
                    return self.reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                                       "oid": None} for f in files]})
                header = None
                for line in data.splitlines():
                    item = json.loads(line)
                    if item["key"] == "header":
                        header = item["value"]
                    elif item["key"] == "file":
                        value = item["value"]
                        hub.repos[repo][value["path"]] = base64.b64decode(value["content"])
                    else:  # lfsFile, deletedFile, ...: not used by these tests
                        return self.reply(400, {"error": f"the stand-in does not take {item['key']}"})
                hub.commits.append(header or {})
                oid = hashlib.sha1(data).hexdigest()
                return self.reply(200, {"commitUrl": f"{hub.url}/{repo}/commit/{oid}", "commitOid": oid})

        return Handler
