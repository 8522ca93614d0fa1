"""`convbert serve` driven by the real Python clients.

    python serve_clients.py PATH/TO/convbert PATH/TO/fixtures

For each task it starts a server (`--port 0`), waits for /health, then calls it through
`huggingface_hub.InferenceClient(base_url=...)` (POST /, the HF Inference API) and through
`openai.OpenAI(base_url=.../v1)` (POST /v1/embeddings), and checks that what the clients parse
equals the server's own routes (/embed, /predict, /fill_mask, /ner, /qa) and the committed HF
pipeline goldens in fixtures/pipelines/*.json. Stops each server with SIGTERM and expects exit 0.
Exits non-zero with a message on the first mismatch.
"""
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from huggingface_hub import InferenceClient
from openai import OpenAI

SCORE_TOL = 1e-6  # client vs the server's own route: same computation, JSON round trip only
GOLDEN_TOL = 1e-4  # client vs HF's pipeline (PyTorch)
TEXTS = ["John Smith lives in Paris.", "the capital of france is paris , and berlin is the capital of germany."]


class Mismatch(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Mismatch(what)


class Server:
    """`convbert serve --port 0` in a subprocess; `url` once /health answers 200."""

    def __init__(self, binary, model, *extra):
        self.cmd = [str(binary), "serve", "--model", str(model), "--port", "0", *extra]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        found = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.log.append(line.rstrip("\n"))
                m = re.search(r"listening on (http://\S+)", line)
                if m and not found.is_set():
                    self.url = m.group(1).rstrip("/")
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        try:
            if not found.wait(120) or not hasattr(self, "url"):
                raise Mismatch(f"no `listening on` line from {' '.join(self.cmd)}")
            deadline = time.time() + 120
            while True:
                try:
                    with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError):
                    pass
                if self.proc.poll() is not None or time.time() > deadline:
                    raise Mismatch(f"/health never answered 200 ({' '.join(self.cmd)})")
                time.sleep(0.1)
        except BaseException:
            self.kill()
            raise

    def post(self, route, body):
        req = urllib.request.Request(self.url + route, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            raise Mismatch(f"POST {route} {json.dumps(body)} -> {e.code}: {e.read().decode(errors='replace')}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Mismatch(f"server did not exit within 30 s of SIGTERM ({' '.join(self.cmd)})")
        check(code == 0, f"server exited with {code} after SIGTERM ({' '.join(self.cmd)})")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail(self):
        return "\n".join(self.log[-20:])


def plain(x):
    """A client dataclass (or a list of them) as plain dicts, the fields that are set."""
    if isinstance(x, list):
        return [plain(v) for v in x]
    return {k: v for k, v in vars(x).items() if v is not None}


def same(got, want, tol, where):
    """Equal: numbers within `tol`, everything else exactly, same keys."""
    if isinstance(want, dict):
        check(isinstance(got, dict), f"{where}: got {got!r}, want {want!r}")
        check(set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}")
        for k in want:
            same(got[k], want[k], tol, f"{where}.{k}")
    elif isinstance(want, list):
        check(isinstance(got, list) and len(got) == len(want),
              f"{where}: got {len(got) if isinstance(got, list) else got!r} items, want {len(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, tol, f"{where}[{i}]")
    elif isinstance(want, float) or isinstance(got, float):
        check(isinstance(got, (int, float)) and abs(got - want) <= tol,
              f"{where}: got {got!r}, want {want!r} (tolerance {tol})")
    else:
        check(got == want, f"{where}: got {got!r}, want {want!r}")


def sorted_by_score(items, where):
    scores = [x["score"] for x in items]
    check(scores == sorted(scores, reverse=True), f"{where}: not sorted by score: {scores}")


def golden(fixtures, name):
    return json.loads((fixtures / "pipelines" / f"{name}.json").read_text(encoding="utf-8"))


def feature_extraction(binary, fixtures, counts):
    srv = Server(binary, fixtures / "default-model", "--task", "feature-extraction")
    try:
        client = InferenceClient(base_url=srv.url)
        for text in TEXTS:
            for normalize in (None, False):
                got = client.feature_extraction(text, normalize=normalize)
                check(isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (1, 128),
                      f"feature_extraction({text!r}): {type(got)} {getattr(got, 'dtype', '')} "
                      f"{getattr(got, 'shape', '')}, want float32 (1, 128)")
                body = {"inputs": text} if normalize is None else {"inputs": text, "normalize": normalize}
                want = np.array(srv.post("/embed", body), dtype=np.float32)
                err = float(np.abs(got - want).max())
                check(err <= 1e-5, f"feature_extraction({text!r}, normalize={normalize}) vs /embed: max diff {err}")
                counts["feature_extraction"] += 1

        oa = OpenAI(base_url=srv.url + "/v1", api_key="x")
        inputs = ["a", "b"]
        want = np.array(srv.post("/embed", {"inputs": inputs, "normalize": True}), dtype=np.float64)
        for fmt in (None, "float"):
            args = {} if fmt is None else {"encoding_format": fmt}
            res = oa.embeddings.create(model="m", input=inputs, **args)
            check(len(res.data) == len(inputs), f"openai embeddings ({fmt or 'base64'}): {len(res.data)} items")
            for i, item in enumerate(res.data):
                check(item.index == i, f"openai embeddings ({fmt or 'base64'}): data[{i}].index = {item.index}")
                got = np.array(item.embedding, dtype=np.float64)
                check(got.shape == want[i].shape,
                      f"openai embeddings ({fmt or 'base64'}): data[{i}] shape {got.shape}, want {want[i].shape}")
                err = float(np.abs(got - want[i]).max())
                check(err <= 1e-6, f"openai embeddings ({fmt or 'base64'}) data[{i}] vs /embed: max diff {err}")
            counts["openai_embeddings"] += 1
        srv.stop()
    except BaseException:
        srv.kill()
        raise


def text_classification(binary, fixtures, counts):
    gold = golden(fixtures, "text_classification")
    srv = Server(binary, fixtures / "pipelines" / gold["model"])
    try:
        client = InferenceClient(base_url=srv.url)
        for text in TEXTS:
            got = plain(client.text_classification(text))
            sorted_by_score(got, f"text_classification({text!r})")
            same(got, srv.post("/predict", {"inputs": text}), SCORE_TOL, f"text_classification({text!r}) vs /predict")
            counts["text_classification"] += 1
        for case in gold["cases"]:
            for text, want in zip(case["inputs"], case["outputs"]):
                if not isinstance(text, str):
                    continue  # text pairs: the client takes one text
                got = plain(client.text_classification(text, **case["args"]))
                same(got, want, GOLDEN_TOL, f"text_classification({text!r}, {case['args']}) vs golden")
                counts["text_classification golden"] += 1
        srv.stop()
    except BaseException:
        srv.kill()
        raise


def fill_mask(binary, fixtures, counts):
    gold = golden(fixtures, "fill_mask")
    srv = Server(binary, fixtures / "pipelines" / gold["model"])
    try:
        client = InferenceClient(base_url=srv.url)
        for text in gold["cases"][0]["inputs"]:
            got = plain(client.fill_mask(text))
            for mask in got if got and isinstance(got[0], list) else [got]:
                sorted_by_score(mask, f"fill_mask({text!r})")
            same(got, srv.post("/fill_mask", {"inputs": text}), SCORE_TOL, f"fill_mask({text!r}) vs /fill_mask")
            counts["fill_mask"] += 1
        for case in gold["cases"]:
            for text, want in zip(case["inputs"], case["outputs"]):
                # One list of candidates per [MASK] in the goldens; HF (and the client) flatten one mask.
                want = want[0] if len(want) == 1 else want
                got = plain(client.fill_mask(text, **case["args"]))
                same(got, want, GOLDEN_TOL, f"fill_mask({text!r}, {case['args']}) vs golden")
                counts["fill_mask golden"] += 1
        srv.stop()
    except BaseException:
        srv.kill()
        raise


def token_classification(binary, fixtures, counts):
    gold = golden(fixtures, "token_classification")
    srv = Server(binary, fixtures / "pipelines" / gold["model"])
    try:
        client = InferenceClient(base_url=srv.url)
        for text in TEXTS:
            got = plain(client.token_classification(text, aggregation_strategy="simple"))
            want = srv.post("/ner", {"inputs": text, "aggregation_strategy": "simple"})
            same(got, want, SCORE_TOL, f"token_classification({text!r}, simple) vs /ner")
            counts["token_classification"] += 1
        for case in gold["cases"]:
            if "model_max_length" in case["args"]:
                continue  # a tokenizer setting the client cannot send
            for text, want in zip(case["inputs"], case["outputs"]):
                got = plain(client.token_classification(text, **case["args"]))
                same(got, want, GOLDEN_TOL, f"token_classification({text!r}, {case['args']}) vs golden")
                counts["token_classification golden"] += 1
        srv.stop()
    except BaseException:
        srv.kill()
        raise


def question_answering(binary, fixtures, counts):
    gold = golden(fixtures, "question_answering")
    srv = Server(binary, fixtures / "pipelines" / gold["model"])
    try:
        client = InferenceClient(base_url=srv.url)
        for x in gold["cases"][0]["inputs"]:
            for top_k in (None, 3):
                args = {} if top_k is None else {"top_k": top_k}
                got = plain(client.question_answering(question=x["question"], context=x["context"], **args))
                want = srv.post("/qa", {"question": x["question"], "context": x["context"], **args})
                same(got, want, SCORE_TOL, f"question_answering({x['question']!r}, {args}) vs /qa")
                counts["question_answering"] += 1
        for case in gold["cases"]:
            for x, want in zip(case["inputs"], case["outputs"]):
                got = plain(client.question_answering(question=x["question"], context=x["context"], **case["args"]))
                if case["args"].get("top_k", 1) == 1:
                    check(isinstance(got, dict), f"question_answering({case['args']}): want one answer, got {got!r}")
                    got = [got]
                same(got, want, GOLDEN_TOL, f"question_answering({x['question']!r}, {case['args']}) vs golden")
                counts["question_answering golden"] += 1
        srv.stop()
    except BaseException:
        srv.kill()
        raise


def main():
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} PATH/TO/convbert FIXTURES_DIR")
    binary, fixtures = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
    class Counts(dict):
        def __missing__(self, k):
            return 0

    counts = Counts()
    for run in (feature_extraction, text_classification, fill_mask, token_classification, question_answering):
        try:
            run(binary, fixtures, counts)
        except Mismatch as e:
            sys.exit(f"FAIL {run.__name__}: {e}")
        except Exception as e:  # a client that cannot parse the response, an HTTP error
            sys.exit(f"FAIL {run.__name__}: {type(e).__name__}: {e}")
        print(f"ok {run.__name__}", flush=True)
    print("checked: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
