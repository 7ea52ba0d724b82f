"""Print a dataplane token shaped like the ones `kumactl generate dataplane-token` makes (tests only).

kuma-dp checks the token file before it talks to the control plane: not
empty, one line, a JWT whose header names a signing algorithm. The stand-in
kuma-dp runs the same check, so tests need a JWT-shaped token. This one is
not signed by anything (there is no control plane to verify it).

    python3 make_token.py [--name NAME] [--mesh MESH] [--out FILE]
"""

import argparse
import base64
import json
import sys


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_token(name="", mesh="default"):
    header = {"alg": "RS256", "kid": "1", "typ": "JWT"}
    claims = {"Name": name, "Mesh": mesh, "Tags": {}, "Type": "", "jti": "kuma-mesh-standin", "iat": 0}
    signature = b"kuma.mesh stand-in token: not signed"
    return ".".join(b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)) + \
        "." + b64url(signature)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="")
    p.add_argument("--mesh", default="default")
    p.add_argument("--out", help="write to this file (mode 0600) instead of stdout")
    args = p.parse_args(argv)
    token = make_token(args.name, args.mesh)
    if args.out:
        import os
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    else:
        sys.stdout.write(token + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
