"""A loopback Hugging Face Hub: the HTTP calls `huggingface_hub` makes to create a
repository and commit files to it (preupload, the LFS batch API and its upload URL,
the NDJSON commit), recorded so tests can check what would have been sent.

The real Hub stores large files through Xet when `hf_xet` is installed; tests set
HF_HUB_DISABLE_XET=1 so `huggingface_hub` uses its LFS protocol, which this speaks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

LFS_SUFFIXES = (".parquet", ".safetensors", ".bin", ".png")


@dataclass
class FakeHub:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)  # method, path, headers
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)  # "type/id" -> settings
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # "type/id" -> path -> bytes
    blobs: dict[str, bytes] = field(default_factory=dict)  # LFS uploads by sha256
    commits: list[dict[str, Any]] = field(default_factory=list)
    validated: list[dict[str, Any]] = field(default_factory=list)  # README metadata checks
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        body = self.read_body(h)
        path = h.path.split("?")[0]
        with self.lock:
            self.requests.append(
                {
                    "method": method,
                    "path": path,
                    "headers": {k.lower(): v for k, v in h.headers.items()},
                }
            )
        auth = h.headers.get("Authorization", "")
        if method == "PUT" and path.startswith("/lfs-upload/"):
            oid = path.rsplit("/", 1)[-1]
            if hashlib.sha256(body).hexdigest() != oid:
                return self.send(h, 400, {"error": "sha256 mismatch"})
            self.blobs[oid] = body
            return self.send(h, 200, {})
        if not auth.startswith("Bearer "):
            return self.send(h, 401, {"error": "Invalid credentials in Authorization header"})
        if method == "POST" and path == "/api/repos/create":
            req = json.loads(body)
            kind = req.get("type") or "model"
            repo_id = (
                f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
            )
            key = f"{kind}/{repo_id}"
            prefix = "" if kind == "model" else f"{kind}s/"
            url = f"{self.url}/{prefix}{repo_id}"
            if key in self.repos:
                return self.send(h, 409, {"error": "You already created this repo", "url": url})
            private = req.get("visibility") == "private" or bool(req.get("private"))
            self.repos[key] = {"private": private}
            self.files[key] = {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"}
            return self.send(h, 200, {"url": url, "name": repo_id})
        m = re.fullmatch(r"/api/(model|dataset|space)s/(.+)/settings", path)
        if method == "PUT" and m:  # HfApi.update_repo_settings
            key = f"{m[1]}/{m[2]}"
            if key not in self.repos:
                return self.send(h, 404, {"error": "Repository not found"})
            req = json.loads(body)
            if "visibility" in req:
                self.repos[key]["private"] = req["visibility"] == "private"
            elif "private" in req:
                self.repos[key]["private"] = bool(req["private"])
            return self.send(h, 200, {})
        m = re.fullmatch(r"/api/(model|dataset|space)s/(.+)/tree/([^/]+)", path)
        if method == "GET" and m:  # HfApi.list_repo_files (recursive, one page)
            key = f"{m[1]}/{m[2]}"
            if key not in self.files:
                return self.send(h, 404, {"error": "Repository not found"})
            listing = [
                {"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                for p, b in sorted(self.files[key].items())
            ]
            return self.send(h, 200, listing)
        if method == "POST" and path == "/api/validate-yaml":  # a README's front matter
            req = json.loads(body)
            self.validated.append(req)
            try:
                meta = yaml.safe_load(req["content"].split("---")[1])
            except (IndexError, yaml.YAMLError) as e:
                return self.send(h, 400, {"errors": [{"message": f"invalid YAML: {e}"}]})
            if not isinstance(meta, dict):
                return self.send(h, 400, {"errors": [{"message": "metadata is not a mapping"}]})
            return self.send(h, 200, {"errors": [], "warnings": []})
        m = re.fullmatch(r"/api/(model|dataset|space)s/(.+)/preupload/([^/]+)", path)
        if method == "POST" and m:
            req = json.loads(body)
            return self.send(
                h,
                200,
                {
                    "files": [
                        {
                            "path": f["path"],
                            "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular",
                            "shouldIgnore": False,
                        }
                        for f in req["files"]
                    ]
                },
            )
        m = re.fullmatch(r"/(datasets/|spaces/)?(.+)\.git/info/lfs/objects/batch", path)
        if method == "POST" and m:
            req = json.loads(body)
            objects = [
                {
                    "oid": o["oid"],
                    "size": o["size"],
                    "authenticated": True,
                    "actions": {"upload": {"href": f"{self.url}/lfs-upload/{o['oid']}"}},
                }
                for o in req["objects"]
                if o["oid"] not in self.blobs
            ]
            return self.send(h, 200, {"transfer": "basic", "objects": objects})
        m = re.fullmatch(r"/api/(model|dataset|space)s/(.+)/commit/([^/]+)", path)
        if method == "POST" and m:
            key = f"{m[1]}/{m[2]}"
            if key not in self.files:
                return self.send(h, 404, {"error": "Repository not found"})
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            for line in lines:
                v = line["value"]
                if line["key"] == "file":
                    self.files[key][v["path"]] = base64.b64decode(v["content"])
                elif line["key"] == "deletedFile":
                    if self.files[key].pop(v["path"], None) is None:
                        return self.send(h, 404, {"error": f"{v['path']} does not exist"})
                elif line["key"] == "lfsFile":
                    if v["oid"] not in self.blobs:
                        return self.send(h, 422, {"error": f"LFS object {v['oid']} not uploaded"})
                    self.files[key][v["path"]] = self.blobs[v["oid"]]
            header = next(line["value"] for line in lines if line["key"] == "header")
            oid = hashlib.sha1(body).hexdigest()
            self.commits.append({"repo": key, "summary": header["summary"], "oid": oid})
            prefix = "" if m[1] == "model" else f"{m[1]}s/"
            return self.send(
                h,
                200,
                {"commitUrl": f"{self.url}/{prefix}{m[2]}/commit/{oid}", "commitOid": oid},
            )
        return self.send(h, 404, {"error": f"not served by the fake Hub: {method} {path}"})

    @staticmethod
    def read_body(h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return h.rfile.read(int(h.headers.get("Content-Length") or 0))
        parts = []  # a streamed upload: chunked transfer encoding
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                h.rfile.readline()
                return b"".join(parts)
            parts.append(h.rfile.read(size))
            h.rfile.readline()

    @staticmethod
    def send(h: BaseHTTPRequestHandler, status: int, payload: dict[str, Any] | list[Any]) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


@contextmanager
def serve_hub() -> Iterator[FakeHub]:
    hub = FakeHub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            hub.handle(self, "POST")

        def do_PUT(self) -> None:  # noqa: N802
            hub.handle(self, "PUT")

        def do_GET(self) -> None:  # noqa: N802
            hub.handle(self, "GET")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
