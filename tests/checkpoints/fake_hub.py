"""A fake Hugging Face hub on the loopback: the part of the hub's HTTP protocol that `snapshot_download` speaks.

huggingface_hub fetches a snapshot with these requests (its `_snapshot_download.py`, `hf_api.py` and
`file_download.py`), and the fake hub answers nothing else:

    GET  /api/models/{org}/{name}/revision/{revision}   the commit a branch or tag names (JSON: sha, siblings)
    GET  /api/models/{org}/{name}/tree/{commit}         the files at that commit (JSON: type, path, size, oid, lfs)
    HEAD /{org}/{name}/resolve/{revision}/{file}        a file's metadata: X-Repo-Commit, ETag, Content-Length
    GET  /{org}/{name}/resolve/{revision}/{file}        the file's bytes
    GET  /api/agent-harnesses                           a registry the client reads for its User-Agent (empty here)

Errors carry the hub's `X-Error-Code` header, from which huggingface_hub picks its exception: `RepoNotFound` (404),
`RevisionNotFound` and `EntryNotFound` (404), `GatedRepo` (401: as on the hub, a gated repository's listing is
public and its downloads need a login). Any other request is answered 404 and recorded in `unexpected` (and
logged), so that a failing test says what the client asked for.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger("fake_hub")

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_ROUTES = [  # (method, pattern on the still-quoted path, handler name); a revision arrives quoted (refs%2Fpr%2F1)
    ("GET", re.compile(r"^/api/agent-harnesses$"), "_harnesses"),
    ("GET", re.compile(rf"^/api/models/{_REPO}/revision/(?P<revision>[^/]+)$"), "_info"),
    ("GET", re.compile(rf"^/api/models/{_REPO}/tree/(?P<revision>[^/]+)$"), "_tree"),
    ("HEAD", re.compile(rf"^/{_REPO}/resolve/(?P<revision>[^/]+)/(?P<file>.+)$"), "_resolve"),
    ("GET", re.compile(rf"^/{_REPO}/resolve/(?P<revision>[^/]+)/(?P<file>.+)$"), "_resolve"),
]


def _is_lfs(path: str) -> bool:
    return path.endswith(".safetensors")  # weights are LFS files on the hub; their ETag is the content's sha256


def _git_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Repo:
    files: dict[str, bytes]  # path in the repository -> content
    refs: dict[str, str]  # branch or tag -> commit
    gated: bool = False

    def etag(self, path: str) -> str:
        content = self.files[path]
        return hashlib.sha256(content).hexdigest() if _is_lfs(path) else _git_oid(content)


@dataclass
class FakeHub:
    """Repositories served at `url` once started (`with FakeHub() as hub:`); `requests` lists every request as
    "METHOD /path", `unexpected` those the hub's protocol has no answer for."""

    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def add(self, repo_id: str, folder: Path, revision: str = "main", gated: bool = False) -> str:
        """Publish a folder's files as `repo_id` at `revision`; return the commit it names."""
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        digest = hashlib.sha1(f"{repo_id}@{revision}".encode())
        for path, content in files.items():
            digest.update(path.encode() + b"\0" + content)
        commit = digest.hexdigest()
        self.repos[repo_id] = Repo(files, {revision: commit}, gated)
        return commit

    @property
    def url(self) -> str:
        assert self._server is not None, "the fake hub is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def downloads(self, repo_id: str) -> list[str]:
        """The files of a repository whose bytes were fetched (GET on resolve)."""
        prefix = f"GET /{repo_id}/resolve/"
        return sorted({r.split("/resolve/", 1)[1].split("/", 1)[1] for r in self.requests if r.startswith(prefix)})

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    fake_hub: FakeHub

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    def log_message(self, format: str, *args) -> None:  # the default writes every request to stderr
        pass

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        self.fake_hub.requests.append(f"{method} {path}")
        for route_method, pattern, handler in _ROUTES:
            match = pattern.match(path)
            if route_method == method and match:
                params = {k: unquote(v) for k, v in match.groupdict().items()}
                if "repo" not in params:
                    return getattr(self, handler)()
                repo_id = params.pop("repo")
                repo = self.fake_hub.repos.get(repo_id)
                if repo is None:
                    return self._error(404, "RepoNotFound", "Repository not found")
                commit = repo.refs.get(params["revision"], params["revision"])
                if commit not in repo.refs.values():
                    return self._error(404, "RevisionNotFound", "Invalid rev id: " + params["revision"])
                return getattr(self, handler)(method, repo_id, repo, commit, **params)
        self.fake_hub.unexpected.append(f"{method} {self.path}")
        log.warning("fake hub: no answer for %s %s", method, self.path)
        self._error(404, None, "the fake hub does not implement this request")

    def _harnesses(self) -> None:
        self._json({"standardEnvVars": [], "harnesses": {}})

    def _info(self, method: str, repo_id: str, repo: Repo, commit: str, revision: str) -> None:
        self._json({"id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                    "gated": "manual" if repo.gated else False, "disabled": False,
                    "siblings": [{"rfilename": path} for path in repo.files]})

    def _tree(self, method: str, repo_id: str, repo: Repo, commit: str, revision: str) -> None:
        entries = []
        for path, content in repo.files.items():
            entry = {"type": "file", "path": path, "size": len(content), "oid": _git_oid(content)}
            if _is_lfs(path):
                entry["lfs"] = {"oid": repo.etag(path), "size": len(content), "pointerSize": 134}
            entries.append(entry)
        self._json(entries)

    def _resolve(self, method: str, repo_id: str, repo: Repo, commit: str, revision: str, file: str) -> None:
        if repo.gated:
            return self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access "
                                                 "to it and be authenticated to access it. Please log in.")
        if file not in repo.files:
            return self._error(404, "EntryNotFound", f"{file} does not exist on {revision!r}", commit=commit)
        content = repo.files[file]
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{repo.etag(file)}"')
        if _is_lfs(file):
            self.send_header("X-Linked-Etag", f'"{repo.etag(file)}"')
            self.send_header("X-Linked-Size", str(len(content)))
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if method == "GET":
            self.wfile.write(content)

    def _json(self, value: object) -> None:
        body = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code is not None:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit is not None:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
