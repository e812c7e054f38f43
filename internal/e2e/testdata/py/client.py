#!/usr/bin/env python3
"""One chat completion with Python's standard library only, as a sandboxed
agent might make it: a dummy key, the real base URL, no proxy. hermes-netd is
expected to intercept the connection and put the real key in. Trust comes from
SSL_CERT_FILE, set by the caller.

Prints the answer's JSON on stdout. On an HTTP error prints
{"status": N, "body": ...} on stderr and exits 1; on any other failure prints
{"error": "..."} on stderr and exits 2.

Environment: CLIENT_BASE_URL (default https://api.openai.com/v1),
CLIENT_API_KEY (default sk-dummy), CLIENT_MODEL (default gpt-4o-mini).
"""

import json
import os
import ssl
import sys
import urllib.error
import urllib.request


def main() -> int:
    base = os.environ.get("CLIENT_BASE_URL", "https://api.openai.com/v1").rstrip("/")
    body = json.dumps({
        "model": os.environ.get("CLIENT_MODEL", "gpt-4o-mini"),
        "messages": [{"role": "user", "content": "Say hello."}],
    }).encode()
    req = urllib.request.Request(
        base + "/chat/completions",
        data=body,
        method="POST",
        headers={
            "Authorization": "Bearer " + os.environ.get("CLIENT_API_KEY", "sk-dummy"),
            "Content-Type": "application/json",
        },
    )
    # No proxy, whatever the environment says: the point is that nothing in
    # the client knows about hermes-netd.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
    )
    try:
        with opener.open(req, timeout=30) as resp:
            answer = json.load(resp)
    except urllib.error.HTTPError as err:
        print(json.dumps({"status": err.code, "body": err.read().decode(errors="replace")}),
              file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as err:
        print(json.dumps({"error": str(err)}), file=sys.stderr)
        return 2
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
