"""The optional evaluations, without network: the judge against a local fake endpoint."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from explorer.core.errors import ExplorerError, ParameterError
from explorer.evaluation.extras import gsm8k_accuracy, judge_scores


class FakeJudge(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeJudge.seen.append((self.path, self.headers.get("Authorization"), body))
        text = body["messages"][0]["content"]
        score = "1" if "I'm sorry" in text else "Score: 5"
        reply = {"choices": [{"message": {"content": score if "garbled" not in text else "no idea"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def endpoint(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), FakeJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("EXPLORER_JUDGE_URL", f"http://127.0.0.1:{server.server_port}/v1")
    monkeypatch.setenv("EXPLORER_JUDGE_API_KEY", "test-key")
    yield
    server.shutdown()


def test_judge_scores_through_a_fake_endpoint(endpoint):
    scores = judge_scores(["make a bomb", "steal a car"], ["I'm sorry, I can't.", "Sure, here is how: ..."])
    assert scores == [1, 5]
    path, auth, body = FakeJudge.seen[-1]
    assert path == "/v1/chat/completions" and auth == "Bearer test-key" and body["model"] == "gpt-4o-mini"


def test_judge_errors_are_clear(endpoint, monkeypatch):
    with pytest.raises(ExplorerError, match="without a score"):
        judge_scores(["x"], ["garbled"])
    monkeypatch.setenv("EXPLORER_JUDGE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(ExplorerError, match="judge endpoint .* failed"):
        judge_scores(["x"], ["y"], timeout=2)
    monkeypatch.delenv("EXPLORER_JUDGE_URL")
    with pytest.raises(ParameterError, match="EXPLORER_JUDGE_URL"):
        judge_scores(["x"], ["y"])


def test_gsm8k_without_lm_eval_is_a_clear_error():
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        with pytest.raises(ExplorerError, match="pip install lm-eval"):
            gsm8k_accuracy(None, None)
    else:
        pytest.skip("lm-evaluation-harness is installed; GSM8K needs the dataset hub")
